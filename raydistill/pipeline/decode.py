"""Decode stage: manifest rows → fixed-length clips, streamed through Ray Data CPU tasks.

:func:`clip_dataset` is the stream later stages consume (latent cache, embeddings, classifier
data): rows ``video_id, label, split, clip, error``, decoded lazily a few rows per task so memory
stays bounded by the blocks in flight, never the dataset.

:func:`run_decode` is the stage the pipeline runs: it writes a clip cache,
``clips/{split}/shard-NNNNN.parquet``, one shard per ``decode.shard_size`` manifest rows and one
Ray Data task per shard. A shard's name depends only on its rows, its file appears atomically and
only when complete, so a rerun decodes only the missing shards. Rows that fail become
``clips/rejects.parquet`` (reason ``decode_error``) instead of failing the job.
"""

from __future__ import annotations

import json
import time

import pyarrow as pa
import ray
from ray.data import TaskPoolStrategy

from raydistill.config import DecodeConfig, RunConfig
from raydistill.runs import RunDir
from raydistill.schema import REJECTS_SCHEMA, reject, table_from_rows
from raydistill.video.clips import clips_table, decode_batch

STAGE = "decode"


def _task_pool(decode: DecodeConfig, work_items: int) -> TaskPoolStrategy:
    """As many concurrent decode tasks as the cluster's CPUs hold, and no more than work items."""
    cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
    return TaskPoolStrategy(size=max(1, min(work_items, int(cpus // decode.num_cpus))))


def _source(items) -> ray.data.Dataset:
    """An input dataset whose pipeline may give every CPU to the decode operator.

    Ray Data reserves part of the budget for each operator; in this one-operator CPU pipeline
    that kept a 2-CPU node to about one decode task at a time (benchmarks/decode.py: 1.37× a
    plain loop with the reservation, 1.77× without). The setting lives in this dataset's own
    copy of the DataContext, so other pipelines of the driver keep the default.
    """
    dataset = (ray.data.from_arrow(items) if isinstance(items[0], pa.Table)
               else ray.data.from_items(items, override_num_blocks=len(items)))
    dataset.context.op_resource_reservation_enabled = False
    return dataset


def clip_dataset(manifest: pa.Table, decode: DecodeConfig, rows_per_block: int = 8,
                 batch_size: int = 4) -> ray.data.Dataset:
    """A lazy Ray Dataset of clips for every manifest row.

    Columns: ``video_id``, ``label``, ``split``, ``clip`` uint8 (T, S, S, 3) with T =
    ``decode.num_frames`` and S = ``decode.size``, and ``error`` (empty string when decoded; a
    failed row carries a zero clip and the reason). Nothing runs until the dataset is consumed.
    """
    blocks = [manifest.slice(i, rows_per_block)
              for i in range(0, manifest.num_rows, rows_per_block)] or [manifest]
    return _source(blocks).map_batches(
        decode_batch, fn_kwargs={"num_frames": decode.num_frames, "size": decode.size},
        batch_size=batch_size, batch_format="numpy", compute=_task_pool(decode, len(blocks)),
        num_cpus=decode.num_cpus)


def shard_path(split: str, index: int) -> str:
    """Run-relative path of clip-cache shard ``index`` of ``split``."""
    return f"clips/{split}/shard-{index:05d}.parquet"


def shard_rejects_path(shard: str) -> str:
    """Run-relative path of the rejects written beside a shard."""
    return shard.replace(".parquet", ".rejects.parquet")


def _shard_plan(manifest: pa.Table, shard_size: int) -> list[dict]:
    """One work item per shard: its split, index and manifest rows (sorted, so stable)."""
    plan = []
    rows = manifest.select(["video_id", "path", "label", "split"]).to_pylist()
    for split in sorted({row["split"] for row in rows}):
        in_split = [row for row in rows if row["split"] == split]
        for index, start in enumerate(range(0, len(in_split), shard_size)):
            plan.append({"split": split, "index": index,
                         "rows": json.dumps(in_split[start:start + shard_size])})
    return plan


def write_shards(batch: dict, run_url: str, num_frames: int, size: int) -> dict:
    """Ray Data UDF: decode the rows of each shard item and write the shard atomically.

    Takes a batch of shard items (``split``, ``index``, ``rows`` as JSON) and returns the failed
    rows as reject rows (columns of ``REJECTS_SCHEMA``). A shard's rejects are written beside it
    before the shard itself, so a finished shard always has its rejects.
    """
    run = RunDir(run_url)
    rejected = []
    for split, index, rows_json in zip(batch["split"], batch["index"], batch["rows"]):
        rows = json.loads(rows_json)
        columns = {key: [row[key] for row in rows] for key in ("video_id", "path", "label",
                                                               "split")}
        decoded = decode_batch(columns, num_frames, size)
        failed = [reject(row["video_id"], row["path"], row["split"], "decode_error", error)
                  for row, error in zip(rows, decoded["error"]) if error]
        path = shard_path(split, int(index))
        run.write_table(shard_rejects_path(path), table_from_rows(failed, REJECTS_SCHEMA))
        run.write_table(path, clips_table(decoded))
        rejected += failed
    return {name: [row[name] for row in rejected] for name in REJECTS_SCHEMA.names}


def _write_missing_shards(run: RunDir, todo: list[dict], decode: DecodeConfig) -> None:
    if not todo:
        return
    # One shard per task, in plain CPU tasks; the driver only sees the (few) reject rows.
    _source(todo).map_batches(
        write_shards, fn_kwargs={"run_url": run.url, "num_frames": decode.num_frames,
                                 "size": decode.size},
        batch_size=1, compute=_task_pool(decode, len(todo)), num_cpus=decode.num_cpus,
    ).materialize()


def run_decode(run: RunDir, config: RunConfig) -> dict:
    """Write the clip cache of every manifest row and ``clips/rejects.parquet``; returns counts.

    Shards written by an earlier, interrupted run are kept and not decoded again.
    """
    started = time.time()
    decode = config.decode
    manifest = run.read_table("manifest.parquet")
    plan = _shard_plan(manifest, decode.shard_size)
    todo = [item for item in plan if not run.exists(shard_path(item["split"], item["index"]))]
    _write_missing_shards(run, todo, decode)
    rejects = pa.concat_tables(
        [table_from_rows([], REJECTS_SCHEMA)] +
        [run.read_table(shard_rejects_path(shard_path(item["split"], item["index"])))
         for item in plan])
    run.write_table("clips/rejects.parquet", rejects)
    summary = {"shards": len(plan), "shards_decoded_now": len(todo),
               "clips": manifest.num_rows - rejects.num_rows, "decode_errors": rejects.num_rows,
               "num_frames": decode.num_frames, "size": decode.size,
               "seconds": round(time.time() - started, 2)}
    print(f"decode: {summary['clips']} clips of {decode.num_frames}×{decode.size}² in "
          f"{len(plan)} shards ({len(todo)} decoded now), {rejects.num_rows} decode errors",
          flush=True)
    return summary
