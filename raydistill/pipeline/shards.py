"""Sharded, resumable stages over the manifest: the machinery the clip and latent caches share.

A stage splits the manifest rows of each split into shards of a fixed size (sorted rows, so a
shard's content depends only on the manifest). Each shard is one Ray Data work item; its output
file appears atomically and only when complete, so a rerun does only the missing shards. Rows
that fail to decode go to a rejects file (``{folder}/_rejects/{split}/``), written before it.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pyarrow as pa
import ray
from ray.data import ActorPoolStrategy, TaskPoolStrategy

from raydistill.layout import REJECTS_FOLDER, is_rejects_file
from raydistill.pipeline.busy import busy_summary
from raydistill.pipeline.resources import actor_gpus, autoscaler_reports, bootstrap_node_types
from raydistill.runs import RunDir
from raydistill.schema import REJECTS_SCHEMA, reject, table_from_rows
from raydistill.video.clips import decode_batch

# The map stages pass ``max_retries=0`` (a task that died on a file would die again), which Ray
# 2.60's map_batches takes only through its deprecated ``**ray_remote_args``: it has no named
# parameter for it yet, so its deprecation warning says nothing a user can act on.
warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")

WRITER_CPUS = 0.5
"""CPUs of each task that writes what a GPU stage's actors computed (generate's mp4s, embed's
shards), so the actors never wait on encoding or storage. Half a CPU: beside inference actors of
0.5 CPU (a CPU cluster's default) on a 2-CPU laptop, two writers still fit (where none fits, the
actors write themselves: :func:`writers_fit`)."""


def source(items, items_per_block: int = 1) -> ray.data.Dataset:
    """An input dataset (Arrow tables or work-item dicts) whose pipeline may give every CPU to
    its map operators.

    Ray Data reserves part of the budget for each operator; for these CPU pipelines that kept a
    2-CPU node to about one decode task at a time (benchmarks/decode.py: 1.37× a plain loop with
    the reservation, 1.77× without). The setting lives in this dataset's own copy of the
    DataContext, so other pipelines of the driver keep the default. Work items are grouped
    ``items_per_block`` to a block (one block per task call avoids per-block overheads).
    """
    blocks = -(-len(items) // items_per_block)
    dataset = (ray.data.from_arrow(items) if isinstance(items[0], pa.Table)
               else ray.data.from_items(items, override_num_blocks=blocks))
    dataset.context.op_resource_reservation_enabled = False
    return dataset


def use_assigned_cpus() -> int | None:
    """Give the torch of this Ray task, actor or Ray Train worker as many threads as the CPUs it
    was assigned (at least 1); returns them, or None outside one (the driver keeps its own).
    Without it a worker's thread count is whatever its process first got: Ray sets
    ``OMP_NUM_THREADS`` only where it is unset, and a reused worker process keeps the count of
    what it ran first (a 2-CPU fine-tuning worker trained on one thread, 1.4× slower per step)."""
    import torch

    if ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
        return None
    threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    torch.set_num_threads(threads)
    return threads


def gpus_per_actor(requested: float | None) -> float:
    """:func:`~raydistill.pipeline.resources.actor_gpus` of the connected cluster."""
    return actor_gpus(requested, ray.cluster_resources().get("GPU", 0))


def worker_node() -> str:
    """Id of the Ray node this code runs on. The actor UDFs of the GPU stages (latents, generate,
    embed) return it with each batch, and each stage's summary lists the nodes that did its work
    (``nodes``), so a run shows where its GPU work landed."""
    return ray.get_runtime_context().get_node_id()


def worker_nodes(done: ray.data.Dataset) -> list[str]:
    """The distinct ``node_id`` values of a materialized stage output, sorted (see
    :func:`worker_node`)."""
    return sorted({row["node_id"] for row in done.select_columns(["node_id"]).take_all()})


ACTOR_TASKS_IN_FLIGHT = 4
"""Inputs queued at each actor of a pool (Ray Data's default: 2). With 4, an actor's next input is
already there when a call ends: the gap between calls of a 10 ms UDF fell from 15–18 ms to 7 ms
(benchmarks/BENCHMARKS.md, "Ray Data actors' busy share")."""


def actor_pool(actors: int) -> ActorPoolStrategy:
    """A fixed pool of ``actors`` actors, all started at once, each with
    :data:`ACTOR_TASKS_IN_FLIGHT` inputs queued."""
    return ActorPoolStrategy(min_size=actors, max_size=actors, initial_size=actors,
                             max_tasks_in_flight_per_actor=ACTOR_TASKS_IN_FLIGHT)


def writers_fit(actors_cpus: float) -> bool:
    """Whether writer tasks of :data:`WRITER_CPUS` fit beside actors holding ``actors_cpus`` CPUs
    in all: on a cluster that can grow, or with that much left. Where they do not (the
    quickstart's actor takes both CPUs of a laptop) the actors write themselves: writer tasks
    would wait for a free CPU until sampling had ended (every sampled video held in the object
    store meanwhile), and without a CPU of their own they would only take the actors' cores and
    start worker processes of their own (generate 32 → 60 s in the quickstart)."""
    if cluster_can_grow():
        return True
    return float(ray.cluster_resources().get("CPU", 0)) - actors_cpus >= WRITER_CPUS


def written_by_tasks(computed: ray.data.Dataset, actors_write: bool, writer, fn_kwargs: dict,
                     work_items: int) -> ray.data.Dataset:
    """A GPU stage's ``computed`` rows, followed by ``writer`` (a task UDF with ``fn_kwargs``)
    in :func:`writer_tasks`, unless ``actors_write`` (:func:`writers_fit` said no: the actors
    wrote their output themselves)."""
    if actors_write:
        return computed
    return computed.map_batches(writer, fn_kwargs=fn_kwargs, batch_size=None,
                                **writer_tasks(work_items))


def actors_outcome(output: ray.data.Dataset) -> tuple[list[dict], dict]:
    """Run a GPU stage's dataset ``output`` to its end. Returns its rows and ``{"nodes": the
    sorted ids of the nodes whose actors did the work, **busy_summary(rows)}`` (the rows carry
    :func:`worker_node` and the actors' clocks, :mod:`raydistill.pipeline.busy`)."""
    rows = output.materialize().take_all()
    return rows, {"nodes": sorted({row["node_id"] for row in rows}), **busy_summary(rows)}


def no_outcome() -> dict:
    """:func:`actors_outcome`'s summary where no actor ran: no nodes, no actors' shares."""
    return {"nodes": [], **busy_summary([])}


def writer_tasks(work_items: int) -> dict:
    """The ``map_batches`` keywords of a stage's writer tasks: :data:`WRITER_CPUS` each, as many
    at once as the cluster's CPUs hold."""
    return {"num_cpus": WRITER_CPUS, "compute": task_pool(WRITER_CPUS, work_items)}


def task_pool(num_cpus: float, work_items: int) -> TaskPoolStrategy:
    """As many concurrent tasks of ``num_cpus`` as the cluster's CPUs hold, at most one per item.

    On a cluster that can grow (an autoscaler) the pool is not capped by the CPUs it has now
    (an autoscaling cluster often starts with none): every item is submitted, the queued tasks
    are the demand the autoscaler answers with CPU nodes, and they run as the nodes join.
    """
    if cluster_can_grow():
        return TaskPoolStrategy(size=max(1, work_items))
    cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
    return TaskPoolStrategy(size=max(1, min(work_items, int(cpus // num_cpus))))


_CAN_GROW: list[bool] = []


def cluster_can_grow() -> bool:
    """Whether an autoscaler may add nodes to the connected cluster. A "yes" is remembered for
    the process; a "no" is asked again (the autoscaler may not have reported yet)."""
    if not _CAN_GROW and (bootstrap_node_types() or autoscaler_reports()):
        _CAN_GROW.append(True)
    return bool(_CAN_GROW)


def shard_path(folder: str, split: str, index: int) -> str:
    """Run-relative path of shard ``index`` of ``split`` under ``folder`` (``clips``, …)."""
    return f"{folder}/{split}/shard-{index:05d}.parquet"


def shard_files(run: RunDir, folder: str) -> list[str]:
    """Run-relative paths of the shards under ``folder`` (their rejects files left out), sorted."""
    return [path for path in run.list(folder, ".parquet")
            if "/shard-" in path and not is_rejects_file(path)]


def shard_rejects_path(shard: str) -> str:
    """Run-relative path of the rejects of ``shard`` (``{folder}/{split}/shard-N.parquet`` →
    ``{folder}/_rejects/{split}/shard-N.parquet``)."""
    folder, split, name = shard.rsplit("/", 2)
    return f"{folder}/{REJECTS_FOLDER}/{split}/{name}"


def shard_plan(manifest: pa.Table, shard_size: int, splits: tuple[str, ...] | None = None
               ) -> list[dict]:
    """One work item per shard: ``split``, ``index`` and its manifest rows as JSON."""
    plan = []
    rows = manifest.select(["video_id", "path", "label", "split"]).to_pylist()
    for split in sorted({row["split"] for row in rows}):
        if splits is not None and split not in splits:
            continue
        in_split = [row for row in rows if row["split"] == split]
        for index, start in enumerate(range(0, len(in_split), shard_size)):
            plan.append({"split": split, "index": index,
                         "rows": json.dumps(in_split[start:start + shard_size])})
    return plan


def missing_shards(run: RunDir, plan: list[dict], folder: str) -> list[dict]:
    """The plan's items whose shard file does not exist yet (one listing of ``folder``)."""
    written = set(run.list(folder, ".parquet"))
    return [item for item in plan
            if shard_path(folder, item["split"], item["index"]) not in written]


def decode_shards(batch: dict, num_frames: int, size: int, frame_interval: int | None = None,
                  frame_start: str = "center") -> dict:
    """Ray Data UDF: decode each shard item of ``batch`` into one row of clips (frames sampled
    as ``frame_interval`` / ``frame_start`` say: :func:`raydistill.video.decode.sample_indices`).

    Returns per shard: ``split``, ``index``, ``video_ids`` / ``labels`` (JSON lists of the rows
    that decoded), ``clips`` uint8 (n, T, S, S, 3) and ``rejects`` (JSON list of reject rows,
    reason ``decode_error``).
    """
    out = {"split": [], "index": [], "video_ids": [], "labels": [], "clips": [], "rejects": []}
    for split, index, rows_json in zip(batch["split"], batch["index"], batch["rows"]):
        rows = json.loads(rows_json)
        columns = {key: [row[key] for row in rows] for key in ("video_id", "path", "label",
                                                               "split")}
        decoded = decode_batch(columns, num_frames, size, frame_interval, frame_start)
        ok = [i for i, error in enumerate(decoded["error"]) if not error]
        out["split"].append(split)
        out["index"].append(int(index))
        out["video_ids"].append(json.dumps([rows[i]["video_id"] for i in ok]))
        out["labels"].append(json.dumps([int(rows[i]["label"]) for i in ok]))
        out["clips"].append(decoded["clip"][ok])
        out["rejects"].append(json.dumps([
            reject(row["video_id"], row["path"], row["split"], "decode_error", error)
            for row, error in zip(rows, decoded["error"]) if error]))
    if len(out["clips"]) == 1:
        out["clips"] = out["clips"][0][None]
    else:  # shards of different sizes: a ragged (object) column
        clips = np.empty(len(out["clips"]), dtype=object)
        clips[:] = out["clips"]
        out["clips"] = clips
    return out


def prepare_output(run: RunDir, folder: str, settings: dict) -> None:
    """Make ``folder`` hold only outputs of ``settings``: drop shards left by an interrupted run
    made with other settings (the run config lets an unfinished stage's settings change)."""
    marker = f"{folder}/settings.json"
    if run.exists(marker) and run.read_json(marker) != settings:
        run.fs.rm(run.path(folder), recursive=True)
        if "/" in folder:  # embeddings/{pool}/{model}: its rejects are in embeddings/{pool}/
            parent, name = folder.rsplit("/", 1)
            if run.exists(f"{parent}/{REJECTS_FOLDER}/{name}"):
                run.fs.rm(run.path(f"{parent}/{REJECTS_FOLDER}/{name}"), recursive=True)
    if not run.exists(marker):
        run.write_json(marker, settings)


# Retried: a worker lost to a preempted node must not reject the file; a file that kills the
# worker on every attempt is rejected.
@ray.remote(max_retries=2)
def _decode_alone(item: dict, num_frames: int, size: int, decode_fn, sampling: dict) -> dict:
    return decode_fn({key: [value] for key, value in item.items()}, num_frames, size,
                     **sampling)


def decode_shard_isolated(item: dict, num_frames: int, size: int,
                          decode_fn=None, sampling: dict | None = None) -> dict:
    """Decode a shard one row per Ray task, so a row whose decoder kills its worker (decord can
    abort on a damaged file) becomes a ``decode_error`` reject instead of failing the shard.

    Returns the same one-shard batch as :func:`decode_shards`. Used after a shard's task died.
    ``sampling``: the frame-sampling keywords of the stage (:func:`config.frame_sampling`).
    """
    decode_fn = decode_fn or decode_shards
    rows = json.loads(item["rows"])
    singles = [{**item, "rows": json.dumps([row])} for row in rows]
    futures = [_decode_alone.remote(single, num_frames, size, decode_fn, sampling or {})
               for single in singles]
    ids, labels, clips, rejects = [], [], [], []
    for row, future in zip(rows, futures):
        try:
            result = ray.get(future)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError) as error:
            rejects.append(reject(row["video_id"], row["path"], row["split"], "decode_error",
                                  f"decoding crashed the worker: {type(error).__name__}"))
            continue
        ids += json.loads(result["video_ids"][0])
        labels += json.loads(result["labels"][0])
        clips += list(np.asarray(result["clips"][0]))
        rejects += json.loads(result["rejects"][0])
    shape = (0, num_frames, size, size, 3)
    return {"split": [item["split"]], "index": [int(item["index"])],
            "video_ids": [json.dumps(ids)], "labels": [json.dumps(labels)],
            "clips": (np.stack(clips) if clips else np.zeros(shape, np.uint8))[None],
            "rejects": [json.dumps(rejects)]}


def write_rejects_then(run: RunDir, shard: str, rejects_json: str, table: pa.Table) -> None:
    """Write a shard's rejects, then the shard itself (the shard's existence marks it done)."""
    run.write_table(shard_rejects_path(shard),
                    table_from_rows(json.loads(rejects_json), REJECTS_SCHEMA))
    run.write_table(shard, table)


def collect_rejects(run: RunDir, plan: list[dict], folder: str) -> pa.Table:
    """All rejects of the plan's shards, as one table (a run made before
    :data:`REJECTS_FOLDER` has them beside its shards)."""
    written = set(run.list(f"{folder}/{REJECTS_FOLDER}", ".parquet"))
    paths = []
    for item in plan:
        shard = shard_path(folder, item["split"], item["index"])
        path = shard_rejects_path(shard)
        paths.append(path if path in written else shard.replace(".parquet", ".rejects.parquet"))
    return pa.concat_tables([table_from_rows([], REJECTS_SCHEMA)]
                            + [run.read_table(path) for path in paths])
