"""Select stage: every (method, VPC, seed) of the training-free selectors, classes fanned out.

The pool's embeddings are put in the object store once; classes are grouped into Ray tasks of
``select.classes_per_task`` classes (400 classes are not 400 tiny tasks), and each task runs every
missing (method, VPC, seed) on its classes. A selector's result for a class depends only on that
class's rows and on (seed, label) (``selection/base.py``), so the fan-out equals one sequential
fit. Output per (method, VPC, seed): ``selection/{pool}/{method}/vpc={k}/seed={s}.parquet``
(``video_id, label, rank, score, seed, class_name, path``: the path as the pool's manifest
stores it, run-relative for generated videos) and, beside it, ``….quality.json`` (coverage,
diversity, class balance on the embeddings). The Parquet file marks the selection done: a rerun
computes only the missing ones. ``vst_unet`` trains a model per (VPC, seed) with Ray Train instead
(``pipeline/vst.py``) and writes the same files.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter

import numpy as np
import pyarrow as pa
import ray

from raydistill.config import ConfigError, RunConfig, SelectConfig
from raydistill.datasets.manifest import PoolVideos, pool_videos
from raydistill.embedding.scorer import embeddings_name
from raydistill.layout import (MANIFEST, method_settings_path, quality_path, selection_folder,
                               selection_path)
from raydistill.logs import time_left
from raydistill.pipeline import vst
from raydistill.pipeline.embed import read_embeddings
from raydistill.pipeline.resources import Cluster, Request, train_request
from raydistill.pipeline.stage import Stage
from raydistill.runs import RunDir
from raydistill.selection import (PER_CLASS_METHODS, SELECTORS, make_selector,
                                  merge_class_selections, selection_quality)
from raydistill.tracking import prepare_tracking

log = logging.getLogger(__name__)

SELECTION_SCHEMA = pa.schema([("video_id", pa.string()), ("label", pa.int32()),
                              ("rank", pa.int32()), ("score", pa.float64()),
                              ("seed", pa.int64()), ("class_name", pa.string()),
                              ("path", pa.string())])
Job = tuple[str, int, int]  # (method, vpc, seed)


def selection_jobs(select: SelectConfig) -> list[Job]:
    """Every (method, VPC, seed) the config asks for, in a stable order."""
    return [(method, vpc, seed) for method in select.methods for vpc in select.vpc
            for seed in range(select.seeds)]


def build_selector(job: Job, params: dict):
    """The selector of a job, with the method's parameters from ``select.params``."""
    method, vpc, seed = job
    return make_selector(method, n_per_class=vpc, random_state=seed, **params.get(method, {}))


def pool_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(X (n, D) float32, y (n,) int64, scores (n,) or None when any is missing) of an
    embeddings table."""
    X = table.column("embedding").combine_chunks().to_numpy_ndarray().astype(np.float32)
    y = np.asarray(table.column("label").to_pylist(), np.int64)
    scores = np.asarray(table.column("score").to_numpy(zero_copy_only=False), np.float64)
    return X, y, (None if np.isnan(scores).any() else scores)


def prepared_scores(jobs: list[Job], params: dict, X: np.ndarray, y: np.ndarray,
                    scores: np.ndarray | None) -> dict[Job, np.ndarray | None]:
    """Pool-level scores per job, computed once over the whole pool (``mae_score`` without
    classifier scores needs every class; the other methods pass ``scores`` through)."""
    cache: dict = {}
    prepared = {}
    for job in jobs:
        selector = build_selector(job, params)
        key = (job[0], job[2])  # depends on the method and seed, not on VPC
        if key not in cache:
            cache[key] = selector.prepare_scores(X, y, scores)
        prepared[job] = cache[key]
    return prepared


def select_classes(X: np.ndarray, y: np.ndarray, prepared: dict, labels: list[int],
                   jobs: list[Job], params: dict) -> dict[Job, dict]:
    """Run every job on the classes ``labels``; returns job → {label: (local_indices, scores)}.

    The body of one fan-out task, and (with every label) the sequential loop.
    """
    results: dict[Job, dict] = {job: {} for job in jobs}
    rows_of = {label: np.flatnonzero(y == label) for label in labels}
    for job in jobs:
        selector = build_selector(job, params)
        for label in labels:
            rows = rows_of[label]
            scores = prepared[job]
            results[job][label] = selector.select_class(
                X[rows], label, None if scores is None else scores[rows])
    return results


_select_task = ray.remote(num_cpus=1)(select_classes)


def class_groups(labels: np.ndarray, classes_per_task: int | None) -> list[list[int]]:
    """The classes split into consecutive groups, one Ray task each; by default about four
    groups per CPU of the cluster, so tasks balance without being tiny."""
    labels = sorted(int(label) for label in np.unique(labels))
    if classes_per_task is None:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        classes_per_task = max(1, math.ceil(len(labels) / (4 * cpus)))
    return [labels[i:i + classes_per_task] for i in range(0, len(labels), classes_per_task)]


def fan_out(X: np.ndarray, y: np.ndarray, prepared: dict, jobs: list[Job], params: dict,
            classes_per_task: int | None = None) -> dict[Job, dict]:
    """:func:`select_classes` over every class, as parallel Ray tasks of grouped classes."""
    X_ref, y_ref, prepared_ref = ray.put(X), ray.put(y), ray.put(prepared)
    futures = [_select_task.remote(X_ref, y_ref, prepared_ref, group, jobs, params)
               for group in class_groups(y, classes_per_task)]
    pending, started = list(futures), time.time()
    while pending:  # progress as class groups finish; merged below in class order
        finished, pending = ray.wait(pending, num_returns=1)
        done = len(futures) - len(pending)
        if done * 10 // len(futures) > (done - 1) * 10 // len(futures):  # every tenth
            log.info(f"select: class group {done} of {len(futures)} done"
                     f"{time_left(done, len(futures), started)}")
    merged: dict[Job, dict] = {job: {} for job in jobs}
    for part in ray.get(futures):
        for job, per_class in part.items():
            merged[job].update(per_class)
    return merged


def selection_table(ids: np.ndarray, y: np.ndarray, per_class: dict, seed: int,
                    videos: PoolVideos) -> tuple[pa.Table, np.ndarray]:
    """The selection file of one job (made with ``seed``; ``videos``: the pool's
    :func:`pool_videos`) and its pool row indices."""
    indices, scores, labels = merge_class_selections(y, per_class)
    ranks = np.concatenate([np.arange(len(per_class[label][0])) for label in sorted(per_class)])
    chosen = ids[indices].tolist()
    table = pa.table({"video_id": pa.array(chosen, pa.string()),
                      "label": pa.array(labels, pa.int32()),
                      "rank": pa.array(ranks, pa.int32()),
                      "score": pa.array(scores, pa.float64()),
                      "seed": pa.array([seed] * len(chosen), pa.int64()),
                      "class_name": pa.array([videos.get(v, (None, None))[1] for v in chosen],
                                             pa.string()),
                      "path": pa.array([videos.get(v, (None, None))[0] for v in chosen],
                                       pa.string())},
                     schema=SELECTION_SCHEMA)
    return table, indices


def write_selection(run: RunDir, pool: str, job: Job, ids: np.ndarray, y: np.ndarray,
                    per_class: dict, X_quality: np.ndarray, videos: PoolVideos) -> None:
    """Write one job's quality metrics, then its selection (whose existence marks it done)."""
    selected, indices = selection_table(ids, y, per_class, job[2], videos)
    run.write_json(quality_path(pool, *job), selection_quality(X_quality, y, indices, job[1]))
    run.write_table(selection_path(pool, *job), selected)


def select_per_class(run: RunDir, select: SelectConfig, model_name: str, jobs: list[Job],
                     videos: PoolVideos) -> None:
    """The training-free jobs: fanned out over class groups, on the pool's embeddings."""
    table = read_embeddings(run, select.pool, model_name)
    X, y, scores = pool_arrays(table)
    ids = np.asarray(table.column("video_id").to_pylist(), dtype=object)
    prepared = prepared_scores(jobs, select.params, X, y, scores)
    results = fan_out(X, y, prepared, jobs, select.params, select.classes_per_task)
    for job in jobs:
        write_selection(run, select.pool, job, ids, y, results[job], X, videos)


def select_vst_unet(run: RunDir, select: SelectConfig, model_name: str, jobs: list[Job],
                    videos: PoolVideos, tracking: dict | None = None) -> None:
    """The ``vst_unet`` jobs: trained with Ray Train on the pool's latents (logging to
    ``tracking``, :func:`raydistill.tracking.prepare_tracking`), then scored. Quality is measured
    on the embeddings when the pool has them (comparable with the other methods), else on the
    flattened latents."""
    pairs = [(vpc, seed) for _, vpc, seed in jobs]
    latents_labels = vst.pool_latents(run, select.pool)[1]
    vst.train_models(run, select, sorted(set(latents_labels.tolist())), pairs, tracking)
    results, latents, y, ids = vst.select_with_models(run, select.pool, pairs)
    X_quality = latents.reshape(len(latents), -1)
    try:
        table = read_embeddings(run, select.pool, model_name)
        by_id = dict(zip(table.column("video_id").to_pylist(), range(table.num_rows)))
        if all(video_id in by_id for video_id in ids):
            X_all = pool_arrays(table)[0]
            X_quality = X_all[[by_id[video_id] for video_id in ids]]
    except FileNotFoundError:
        pass
    for job, pair in zip(jobs, pairs):
        write_selection(run, select.pool, job, ids, y, results[pair], X_quality, videos)


def check_method_params(run: RunDir, select: SelectConfig, model_name: str) -> None:
    """Refuse to mix selections made with other method parameters or embeddings in one folder:
    ``selection/{pool}/{method}/settings.json`` records them at the first run, with the
    selector's ``defaults_version`` where it has one (its defaults changed since older runs)."""
    for method in select.methods:
        settings = {"params": select.params.get(method, {}), "embedding": model_name}
        version = getattr(SELECTORS.get(method), "defaults_version", None)
        if version is not None:
            settings["defaults_version"] = version
        path = method_settings_path(select.pool, method)
        if not run.exists(path):
            run.write_json(path, settings)
        elif run.read_json(path) != settings:
            raise ConfigError(f"select.params.{method}: {run.uri(path)} holds selections made "
                              f"with {run.read_json(path)}, not {settings}; use a new run "
                              "directory (or delete that folder)")


def run_select(run: RunDir, config: RunConfig) -> dict:
    """Write every missing selection of ``config.select``; returns counts and timings."""
    started = time.time()
    select = config.select
    model_name = select.embedding or embeddings_name(config.embed)
    check_method_params(run, select, model_name)
    jobs = selection_jobs(select)
    done = set(run.list(selection_folder(select.pool), ".parquet"))
    todo = [job for job in jobs if selection_path(select.pool, *job) not in done]
    per_class = [job for job in todo if job[0] in PER_CLASS_METHODS]
    learned = [job for job in todo if job[0] == vst.METHOD]
    videos = pool_videos(run, select.pool) if todo else {}
    if per_class:
        select_per_class(run, select, model_name, per_class, videos)
    if learned:
        select_vst_unet(run, select, model_name, learned, videos,
                        prepare_tracking(run, config))
    seconds = time.time() - started
    log.info(f"select: {len(jobs)} selections of the {select.pool} pool ({len(todo)} computed "
             f"now) in {seconds:.1f} s, under {run.uri(selection_folder(select.pool))}")
    return {"pool": select.pool, "embedding": model_name, "selections": len(jobs),
            "computed_now": len(todo), "seconds": round(seconds, 2)}


def describe(config: RunConfig) -> str:
    """The plan's line: methods × VPCs × seeds, and the pool."""
    s = config.select
    return (f"{' '.join(s.methods)} × VPC {' '.join(map(str, s.vpc))} × {s.seeds} seeds "
            f"from the {s.pool} pool")


def requests(config: RunConfig, cluster: Cluster) -> list[Request]:
    """Selection tasks of 1 CPU, and VST-UNet's Ray Train workers when it is selected."""
    s = config.select
    asks = [Request("selection task", None, 1.0, 0.0, "select.classes_per_task", "select")]
    if vst.METHOD in s.methods:
        asks.append(train_request("VST-UNet worker", "select", s.use_gpu, s.train_workers,
                                  cluster, count_name="train_workers"))
    return asks


def needs(config: RunConfig) -> tuple[str, ...]:
    """The pool's embeddings, and for VST-UNet, which selects from the pool's VAE latents, the
    latents of real videos or the generated ones (VST-UNet alone needs no embeddings)."""
    s = config.select
    embeddings = () if s.methods == (vst.METHOD,) else ("embed",)
    if vst.METHOD not in s.methods:
        return embeddings
    return embeddings + ("latents" if s.pool == "real" else "generate",)


def validate_selection_params(config: RunConfig) -> None:
    """Build every selector of ``select.params`` once, so a parameter the method does not have
    stops the run before any work (:class:`ConfigError` naming it)."""
    for method, params in config.select.params.items():
        known = sorted(set(SELECTORS[method]().get_params()) - {"n_per_class", "random_state"})
        for name in params:
            if name not in known:
                raise ConfigError(f"select.params.{method}.{name}: not a parameter of "
                                  f"{method} (known: {', '.join(known) or 'none'})")


def validate_real_pool_size(run: RunDir, config: RunConfig) -> None:
    """Check ``select.vpc`` against the real pool once the run's manifest exists (the synthetic
    pool's size, ``generate.per_class``, is checked with the config itself).

    Raises :class:`ConfigError` naming ``select.vpc`` when a VPC is more than the training videos
    of some class: every method would keep that whole class, and the comparison means nothing.
    """
    if (config.select.pool != "real" or not run.is_done("ingest")
            or not run.exists(MANIFEST)):
        return
    manifest = run.read_table(MANIFEST, columns=["class_name", "split"])
    per_class = Counter(name for name, split in zip(manifest.column("class_name").to_pylist(),
                                                    manifest.column("split").to_pylist())
                        if split == "train")
    # A class of the class list without a single training video counts too (as 0).
    for name in run.stage_summary("ingest").get("class_names") or []:
        per_class.setdefault(name, 0)
    if not per_class:
        return
    smallest, count = min(per_class.items(), key=lambda item: (item[1], item[0]))
    largest_vpc = max(config.select.vpc)
    if largest_vpc > count:
        raise ConfigError(f"select.vpc: {largest_vpc} videos per class is more than the {count} "
                          f"training videos of class {smallest!r} in the real pool "
                          f"({run.uri(MANIFEST)})")


STAGE = Stage("select", run_select, describe, requests, needs,
              validate=validate_selection_params, check_inputs=validate_real_pool_size)
