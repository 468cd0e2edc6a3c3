"""Decode stage: manifest rows → fixed-length clips, streamed through Ray Data CPU tasks.

:func:`clip_dataset` is the stream later stages consume (embeddings, classifier data): rows
``video_id, label, split, clip, error``, decoded lazily a few rows per task so memory stays
bounded by the blocks in flight, never the dataset.

:func:`run_decode` is the stage the pipeline runs: it writes a clip cache,
``clips/{split}/shard-NNNNN.parquet``, one shard per ``decode.shard_size`` manifest rows and one
Ray Data task per shard (see :mod:`raydistill.pipeline.shards`): a rerun decodes only missing
shards, and rows that fail become ``clips/rejects.parquet`` (reason ``decode_error``) instead of
failing the job.
"""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pyarrow as pa
import ray

from raydistill.config import DecodeConfig, RunConfig, frame_sampling
from raydistill.layout import CLIPS_FOLDER, MANIFEST
from raydistill.pipeline.resources import Cluster, Request
from raydistill.pipeline.shards import (collect_rejects, decode_shard_isolated, decode_shards,
                                        missing_shards, prepare_output, shard_path, shard_plan,
                                        source, task_pool, write_rejects_then)
from raydistill.pipeline.stage import Stage, frames_said
from raydistill.runs import RunDir
from raydistill.video.clips import clips_table, decode_batch

log = logging.getLogger(__name__)


def clip_dataset(manifest: pa.Table, decode: DecodeConfig, rows_per_block: int = 8,
                 batch_size: int = 4) -> ray.data.Dataset:
    """A lazy Ray Dataset of clips for every manifest row.

    Columns: ``video_id``, ``label``, ``split``, ``clip`` uint8 (T, S, S, 3) with T =
    ``decode.num_frames`` and S = ``decode.size``, and ``error`` (empty string when decoded; a
    failed row carries a zero clip and the reason). Nothing runs until the dataset is consumed.
    """
    blocks = [manifest.slice(i, rows_per_block)
              for i in range(0, manifest.num_rows, rows_per_block)] or [manifest]
    return source(blocks).map_batches(
        decode_batch, fn_kwargs={"num_frames": decode.num_frames, "size": decode.size,
                                 **frame_sampling(decode)},
        batch_size=batch_size, batch_format="numpy", compute=task_pool(decode.num_cpus,
                                                                       len(blocks)),
        num_cpus=decode.num_cpus)


def write_clip_shards(batch: dict, run_url: str) -> dict:
    """Ray Data UDF: write each decoded shard row of ``batch`` as a clip-cache shard.

    Returns the shards' (split, index) written.
    """
    run = RunDir(run_url)
    for split, index, ids, labels, clips, rejects in zip(
            batch["split"], batch["index"], batch["video_ids"], batch["labels"],
            batch["clips"], batch["rejects"]):
        ids, labels = json.loads(ids), json.loads(labels)
        table = clips_table({"video_id": ids, "label": np.asarray(labels, np.int32),
                             "split": [split] * len(ids), "clip": np.asarray(clips),
                             "error": [""] * len(ids)})
        write_rejects_then(run, shard_path(CLIPS_FOLDER, split, int(index)), rejects, table)
    return {"split": batch["split"], "index": batch["index"]}


def run_decode(run: RunDir, config: RunConfig, decode_fn=decode_shards) -> dict:
    """Write the clip cache of every manifest row and ``clips/rejects.parquet``; returns counts.

    Shards written by an earlier, interrupted run with the same settings are kept and not
    decoded again. If a decode task dies (a decoder crash takes its worker down), the shards
    still missing are decoded one row per task, so only the crashing file is rejected.
    ``decode_fn`` is the Ray Data UDF that decodes shard items (see ``shards.decode_shards``).
    """
    started = time.time()
    decode = config.decode
    manifest = run.read_manifest(MANIFEST)
    plan, todo = write_clip_cache(run, manifest, decode, decode_fn)
    rejects = collect_rejects(run, plan, CLIPS_FOLDER)
    run.write_table(f"{CLIPS_FOLDER}/rejects.parquet", rejects)
    summary = {"shards": len(plan), "shards_decoded_now": len(todo),
               "clips": manifest.num_rows - rejects.num_rows, "decode_errors": rejects.num_rows,
               "num_frames": decode.num_frames, "size": decode.size, **frame_sampling(decode),
               "seconds": round(time.time() - started, 2)}
    log.info(f"decode: {summary['clips']} clips of {decode.num_frames}×{decode.size}² in "
             f"{len(plan)} shards ({len(todo)} decoded now), {rejects.num_rows} decode errors")
    return summary


def write_clip_cache(run: RunDir, videos: pa.Table, decode: DecodeConfig,
                     decode_fn=decode_shards) -> tuple[list[dict], list[dict]]:
    """Decode the rows of ``videos`` (``video_id, path, label, split``) into the clip cache,
    ``clips/{split}/shard-NNNNN.parquet``, skipping shards already there.

    Returns the shard plan and the items decoded now.
    """
    prepare_output(run, CLIPS_FOLDER, {"num_frames": decode.num_frames, "size": decode.size,
                                       "shard_size": decode.shard_size,
                                       **frame_sampling(decode)})
    plan = shard_plan(videos, decode.shard_size)
    todo = missing_shards(run, plan, CLIPS_FOLDER)
    if todo:
        try:
            # One shard per task, decoded and written in plain CPU tasks (the two maps fuse);
            # no retry: a task that died once on a file would die again.
            source(todo).map_batches(
                decode_fn, fn_kwargs={"num_frames": decode.num_frames, "size": decode.size,
                                      **frame_sampling(decode)},
                batch_size=1, compute=task_pool(decode.num_cpus, len(todo)),
                num_cpus=decode.num_cpus, max_retries=0,
            ).map_batches(write_clip_shards, fn_kwargs={"run_url": run.url}, batch_size=1,
                          compute=task_pool(decode.num_cpus, len(todo)),
                          num_cpus=decode.num_cpus, max_retries=0).materialize()
        except Exception as error:  # Ray Data wraps the worker's death in its own errors
            log.warning(f"decode: a task failed ({type(error).__name__}); decoding the remaining "
                        "shards one file per task")
            for item in missing_shards(run, plan, CLIPS_FOLDER):
                write_clip_shards(decode_shard_isolated(item, decode.num_frames, decode.size,
                                                        decode_fn, frame_sampling(decode)),
                                  run.url)
    return plan, todo


def describe(config: RunConfig) -> str:
    """The plan's line: the classifier's clips and how they are sampled and sharded."""
    decode = config.decode
    return (f"{decode.num_frames}×{decode.size}² clips for the classifier "
            f"({frames_said(decode)}), {decode.shard_size} videos per shard")


def requests(config: RunConfig, cluster: Cluster) -> list[Request]:
    """Decode tasks of ``decode.num_cpus`` CPUs, as many at once as the cluster holds."""
    return [Request("decode task", None, config.decode.num_cpus, 0.0, "decode.shard_size",
                    "decode.num_cpus")]


STAGE = Stage("decode", run_decode, describe, requests)
