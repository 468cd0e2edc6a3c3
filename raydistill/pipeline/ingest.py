"""Ingest stage: official layout → ``manifest.parquet`` + ``rejects.parquet``.

The layout is listed once on the driver (one recursive listing of the tree); every listed file is
then opened in parallel Ray tasks to read its header. A task whose worker dies (a decoder crash on
a damaged file) is retried file by file, so one bad file rejects only itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import ray

from raydistill.config import ConfigError, RunConfig
from raydistill.dataset_info import dataset_info
from raydistill.datasets import LAYOUTS, toy
from raydistill.datasets.common import DatasetError, check_class_names
from raydistill.datasets.manifest import (build_tables, format_summary, label_set_warnings,
                                          probe_rows, summarize)
from raydistill.layout import MANIFEST
from raydistill.pipeline.resources import Cluster, Request
from raydistill.pipeline.stage import Stage, open_url, url_exists
from raydistill.runs import RunDir, open_fs
from raydistill.schema import reject

log = logging.getLogger(__name__)


def dataset_root(run: RunDir, config: RunConfig) -> str:
    """Where the dataset lives: ``ingest.root``, or ``RUN/source/toy`` for a generated toy set."""
    return config.ingest.root or run.uri("source", "toy")


ISOLATED_RETRIES = 2
"""Retries of a file probed (or decoded) alone after its task's worker died."""


@ray.remote(max_retries=0)
def _generate_toy_class(root: str, toy_config, label: int) -> int:
    return toy.generate_class(root, toy_config, label)


@ray.remote(max_retries=0)
def _probe_task(rows: list[dict], verify: bool,
                max_pixels: int | None = None) -> tuple[list[dict], list[dict]]:
    return probe_rows(rows, verify, max_pixels)


def generate_toy(root: str, config: RunConfig) -> int:
    """Write the toy dataset under ``root``, one Ray task per class; returns files written.

    The run's own toy folder (no ``ingest.root``) left by an interrupted run with another toy
    config is regenerated; any other folder holding a different toy set is refused.
    """
    toy_config = config.ingest.toy
    if toy.is_generated(root, toy_config):
        return 0
    try:
        toy.start_generation(root, toy_config)
    except toy.ToyRootInUse as error:
        if config.ingest.root is not None:
            raise ConfigError(f"ingest.root: {error}; choose another folder") from None
        fs, path = open_fs(root)
        fs.rm(path, recursive=True)
        toy.start_generation(root, toy_config)
    written = sum(ray.get([_generate_toy_class.remote(root, toy_config, label)
                           for label in range(toy_config.num_classes)]))
    toy.write_metadata(root, toy_config, complete=True)
    return written


def _chunks(rows: list[dict], size: int) -> list[list[dict]]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def probe_in_parallel(rows: list[dict], batch_size: int, verify: bool,
                      max_in_flight: int = 64,
                      probe_task=_probe_task,
                      max_pixels: int | None = None) -> tuple[list[dict], list[dict]]:
    """Probe listing rows in Ray tasks of ``batch_size`` files; returns (videos, rejects).

    At most ``max_in_flight`` tasks are pending at once, so 250 k files do not become 8 k
    queued tasks holding their arguments in the object store. ``probe_task`` is the Ray remote
    function ``(rows, verify, max_pixels) -> (videos, rejects)`` to run; ``max_pixels``: see
    ``ingest.max_frame_pixels``.
    """
    videos, rejects = [], []
    pending: dict = {}
    queue = _chunks(rows, batch_size)
    while queue or pending:
        while queue and len(pending) < max_in_flight:
            chunk = queue.pop()
            # A file probed alone is retried: a worker lost to a preempted node must not reject
            # it; one that dies on every attempt is a crash (decoder abort on a damaged file).
            task = probe_task.options(max_retries=ISOLATED_RETRIES) if len(chunk) == 1 \
                else probe_task
            pending[task.remote(chunk, verify, max_pixels)] = chunk
        done, _ = ray.wait(list(pending), num_returns=1)
        chunk = pending.pop(done[0])
        try:
            found, rejected = ray.get(done[0])
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError) as error:
            if len(chunk) > 1:  # find the file that took the worker down
                queue.extend([row] for row in chunk)
                continue
            row = chunk[0]
            found, rejected = [], [reject(row["video_id"], row["path"], row["split"], "corrupt",
                                          f"probing crashed the worker: {type(error).__name__}")]
        videos += found
        rejects += rejected
    return videos, rejects


def run_ingest(run: RunDir, config: RunConfig) -> dict:
    """Write ``manifest.parquet`` and ``rejects.parquet`` into ``run``; returns the summary.

    A toy dataset is generated first when ``ingest.dataset == "toy"``. Prints the summary.
    """
    started = time.time()
    ingest = config.ingest
    root = dataset_root(run, config)
    if ingest.dataset == "toy":
        generate_toy(root, config)
    try:
        listing = LAYOUTS[ingest.dataset](root, ingest.split)
        check_class_names(listing.class_names)
    except ValueError as error:  # a malformed class list or label file: nothing to list
        raise DatasetError(f"{ingest.dataset} at {root}: {error}") from None
    videos, probe_rejects = probe_in_parallel(listing.videos, ingest.probe_batch_size,
                                              ingest.verify_decode,
                                              max_pixels=ingest.max_frame_pixels)
    # Videos inside the run (the toy set) are stored run-relative: a copied run reads its own.
    videos = [{**video, "path": run.relative(video["path"])} for video in videos]
    manifest, rejects = build_tables(videos, listing.rejects + probe_rejects)
    run.write_table("rejects.parquet", rejects)
    run.write_table(MANIFEST, manifest)
    summary = summarize(manifest, rejects)
    summary["class_names"] = listing.class_names
    summary["warnings"] = label_set_warnings(listing.class_names, manifest)
    summary["seconds"] = round(time.time() - started, 2)
    log.info(format_summary(summary, ingest.dataset, run.url))
    return summary


def describe(config: RunConfig) -> str:
    """The plan's line: the dataset, its split and where it is read from."""
    ingest = config.ingest
    split = f", split {ingest.split}" if dataset_info(ingest.dataset).official_splits else ""
    if ingest.root is None:  # only a toy set has no root: it is generated into the run
        return f"{ingest.dataset}, generated into RUN/source/toy"
    return f"{ingest.dataset}{split} from {ingest.root}"


def requests(config: RunConfig, cluster: Cluster) -> list[Request]:
    """Probe tasks of 1 CPU, as many at once as the cluster holds."""
    return [Request("probe task", None, 1.0, 0.0, "ingest", "ingest")]


def validate_root(config: RunConfig) -> None:
    """Check that ``ingest.root`` exists (a toy root is where the dataset will be generated);
    ConfigError naming it."""
    root = config.ingest.root
    if root is None or config.ingest.dataset == "toy":
        return
    fs, path = open_url(root, "ingest.root")
    if not url_exists(fs, path, "ingest.root", root):
        raise ConfigError(f"ingest.root: {root} does not exist")


def check_layout(config: RunConfig) -> str | None:
    """What the dataset layout under ``ingest.root`` lists, in words (videos per split and
    classes, listed entries rejected); None for a toy set (generated at ingest). ConfigError
    naming ``ingest.root`` when the layout cannot be read or lists no video whose file exists:
    a run would stop at ingest."""
    ingest = config.ingest
    if ingest.dataset == "toy" or ingest.root is None:
        return None
    try:
        listing = LAYOUTS[ingest.dataset](ingest.root, ingest.split)
        check_class_names(listing.class_names)
    except (OSError, ValueError, DatasetError) as error:  # not found, denied, unreachable
        raise ConfigError(f"ingest.root: {ingest.root} is not a readable {ingest.dataset} "
                          f"layout: {error}") from None
    reasons = Counter(row["reason"] for row in listing.rejects)
    rejected = ", ".join(f"{count:,} {reason}" for reason, count in reasons.most_common())
    example = (f" (e.g. {listing.rejects[0]['path']}: {listing.rejects[0]['reason']})"
               if listing.rejects else "")
    if not listing.videos:
        raise ConfigError(f"ingest.root: {ingest.root} lists no {ingest.dataset} video whose "
                          f"file exists ({rejected or 'nothing listed'}{example})")
    splits = Counter(video["split"] for video in listing.videos)
    found = (f"{_count(len(listing.videos), 'video')} in "
             f"{_count(len(listing.class_names), 'class', 'classes')} ("
             + ", ".join(f"{split} {count:,}" for split, count in sorted(splits.items())) + ")")
    return found + (f"; listed but rejected: {rejected}{example}" if rejected else "")


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number:,} {noun if number == 1 else plural or noun + 's'}"


STAGE = Stage("ingest", run_ingest, describe, requests, needs=lambda config: (),
              validate=validate_root, plan_check=check_layout)
