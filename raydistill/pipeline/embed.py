"""Embed stage: one vector per video of each pool, for the training-free selectors.

Pools: ``synthetic`` (the generated videos) and ``real`` (the real training split, for coreset
selection). Videos are decoded in CPU tasks at the model's own frame count and size, embedded by
an actor pool holding the model (one GPU per actor when the cluster has GPUs) and written by CPU
tasks, so the actors only compute (their shares of time: the summary's ``actors``); where no half
CPU is left beside the actors (``shards.writers_fit``) the actors write themselves. Output, one
file per shard of ``embed.shard_size`` videos, resumable like the clip cache:
``embeddings/{pool}/{model}/shard-NNNNN.parquet`` (``video_id, label, embedding`` float32 (D,),
``score``: the model's probability for the video's own class, NaN without a matching classifier
head; ``predicted``: the run class the classifier ranks first, -1 without one). With
``embed.model`` unset, an action classifier is first trained on the run's real training clips
(``embed.run_classifier``: a tiny VideoMAE or a small C3D) and saved to ``embed/videomae-run/`` or
``embed/c3d-run/``.

``embed.score_model`` takes ``score`` and ``predicted`` from another classifier of the run's
classes (``embedding/scorer.py``); the folder is then ``{model}+score-{scorer}``. Beside the
shards, ``scorer.json`` says which model gave the scores and what ``mae_score`` ranks by (that
model, or the out-of-fold logistic regression when the pool has no scores).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from raydistill.classify.training import TOY_TRAINING, training_recipe
from raydistill.config import SCORE_RUN, ConfigError, EmbedConfig, RunConfig
from raydistill.embedding.c3d import (TOY_C3D_SPEC, C3DEmbedder, c3d_input_shape, save_c3d,
                                      train_c3d_classifier)
from raydistill.embedding.scorer import (ClassScorer, embeddings_name, score_model_problem,
                                         scorer_description)
from raydistill.embedding.videomae import (VideoMAEEmbedder, train_videomae_classifier,
                                           videomae_input_shape)
from raydistill.layout import (MANIFEST, SYNTHETIC_MANIFEST, clips_folder, embeddings_folder,
                               run_model_dir)
from raydistill.pipeline.busy import ActorClock, idle_warning
from raydistill.pipeline.resources import Cluster, Request, actor_cpus, inference_actors
from raydistill.pipeline.shards import (actor_pool, actors_outcome, collect_rejects,
                                        decode_shard_isolated, decode_shards, gpus_per_actor,
                                        missing_shards, no_outcome, prepare_output, shard_files,
                                        shard_path, shard_plan, source, task_pool,
                                        use_assigned_cpus, worker_node, write_rejects_then,
                                        writers_fit, written_by_tasks)
from raydistill.pipeline.stage import Stage, missing_model, model_source
from raydistill.runs import RunDir
from raydistill.schema import tensor_array
from raydistill.selection.mae_score import OUT_OF_FOLD_SCORER
from raydistill.video.clips import clips_from_table

log = logging.getLogger(__name__)


def pool_videos(run: RunDir, pool: str) -> pa.Table:
    """The videos of a pool (``video_id, path, label, split``), sorted by id."""
    if pool == "real":
        manifest = run.read_manifest(MANIFEST)
        table = manifest.filter(pc.equal(manifest["split"], "train"))
    else:
        table = run.read_manifest(SYNTHETIC_MANIFEST)
        table = table.append_column("split", pa.array(["synthetic"] * table.num_rows))
    return table.select(["video_id", "path", "label", "split"]).sort_by("video_id")


def embedding_table(ids: list[str], labels: list[int], embedded: dict) -> pa.Table:
    """An embeddings table: ``video_id, label, embedding`` (float32 (D,) tensors), ``score``,
    ``predicted`` (-1 for every video when ``embedded`` has no ``predicted``)."""
    predicted = embedded.get("predicted")
    return pa.table({"video_id": pa.array(ids, pa.string()),
                     "label": pa.array(labels, pa.int32()),
                     "embedding": tensor_array(embedded["embedding"].astype(np.float32),
                                               pa.float32()),
                     "score": pa.array(embedded["score"], pa.float32()),
                     "predicted": pa.array(np.full(len(ids), -1) if predicted is None
                                           else predicted, pa.int32())})


def read_embeddings(run: RunDir, pool: str, model_name: str) -> pa.Table:
    """All embeddings of a pool by one model, sorted by ``video_id`` (so a selection does not
    depend on the order shards were written in)."""
    folder = embeddings_folder(pool, model_name)
    files = shard_files(run, folder)
    if not files:
        raise FileNotFoundError(f"{run.uri(folder)} holds no embeddings; run the embed stage "
                                f"for pool {pool!r} first")
    return pa.concat_tables([run.read_table(path) for path in files]).sort_by("video_id")


class ShardEmbedder:
    """Ray Data actor UDF: embed each decoded shard (:func:`decode_shards`' rows) of ``pool``.
    The files are written by :func:`write_embedding_shards` tasks, so the model never waits on
    storage, unless ``writes`` (no CPU left for writer tasks:
    :func:`~raydistill.pipeline.shards.writers_fit`): then the actor writes them itself.

    Returns per shard: ``split``, ``index``, ``rejects`` (JSON), ``table`` (the embeddings
    table, :func:`embedding_table`, as Arrow IPC bytes; with ``writes``: ``index`` only),
    the node and the actor's clock (:mod:`raydistill.pipeline.busy`)."""

    def __init__(self, run_url: str, pool: str, model: str | None, class_names: list[str],
                 features: str, batch_size: int, run_classifier: str = "videomae",
                 score_model: str | None = None, mixed_precision: str = "bf16",
                 compile: bool = False, writes: bool = False):
        use_assigned_cpus()
        self.run = RunDir(run_url)
        self.pool, self.writes = pool, writes
        # Resolved on the actor's node: an S3 run's model folder is downloaded where it is used.
        source_dir = model or self.run.local_dir(run_model_dir(run_classifier))
        fast = {"mixed_precision": mixed_precision, "compile": compile}
        if model is None and run_classifier == "c3d":
            self.embedder = C3DEmbedder(source_dir, class_names, batch_size, **fast)
        else:
            self.embedder = VideoMAEEmbedder(source_dir, class_names, features, batch_size,
                                             **fast)
        self.scorer = None
        if score_model == SCORE_RUN:
            self.scorer = ClassScorer(self.run.local_dir(run_model_dir(run_classifier)),
                                      class_names, batch_size, kind=run_classifier)
        elif score_model is not None:
            self.scorer = ClassScorer(score_model, class_names, batch_size)
        self.clock = ActorClock()

    def __call__(self, batch: dict) -> dict:
        self.clock.start_call()
        tables = []
        for ids, labels, clips in zip(batch["video_ids"], batch["labels"], batch["clips"]):
            ids, labels = json.loads(ids), json.loads(labels)
            with self.clock.model():
                embedded = self.embedder(np.asarray(clips), np.asarray(labels, np.int64))
                if self.scorer is not None:
                    embedded.update(self.scorer(np.asarray(clips),
                                                np.asarray(labels, np.int64)))
            tables.append(embedding_table(ids, labels, embedded))
        count = len(batch["index"])
        out = {"index": batch["index"], "node_id": [worker_node()] * count}
        if self.writes:
            for model_name, index, rejects, table in zip(batch["split"], batch["index"],
                                                         batch["rejects"], tables):
                write_embedding_shard(self.run, self.pool, model_name, int(index), rejects,
                                      table)
        else:
            out.update({"split": batch["split"], "rejects": batch["rejects"],
                        "table": [ipc_bytes(table) for table in tables]})
        return {**out, **self.clock.columns(count)}


def ipc_bytes(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes (a copy, no encoding: cheap on the actor)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def write_embedding_shards(batch: dict, run_url: str, pool: str) -> dict:
    """Ray Data task UDF: write the rejects, then the embeddings file, of each shard that
    :class:`ShardEmbedder` embedded and that is not written yet (a retried task writes nothing
    twice). Returns the other columns of the rows (``index``, ``node_id``, the clock's)."""
    run = RunDir(run_url)
    for model_name, index, rejects, table in zip(batch["split"], batch["index"],
                                                 batch["rejects"], batch["table"]):
        write_embedding_shard(run, pool, model_name, int(index), rejects, table)
    return {key: values for key, values in batch.items()
            if key not in ("split", "rejects", "table")}


def write_embedding_shard(run: RunDir, pool: str, model_name: str, index: int, rejects: str,
                          table: pa.Table | bytes) -> None:
    """Write shard ``index`` of ``pool``'s embeddings by ``model_name``: its rejects (JSON),
    then ``table`` (a table, or its Arrow IPC bytes: :func:`ipc_bytes`); nothing if the shard is
    written already (a retried writer, a rerun), without reading the bytes."""
    shard = shard_path(embeddings_folder(pool), model_name, index)
    if not run.exists(shard):
        if not isinstance(table, pa.Table):
            table = pa.ipc.open_stream(table).read_all()
        write_rejects_then(run, shard, rejects, table)


@ray.remote(max_retries=1)
def _train_and_save_classifier(run_url: str, class_names: list[str], embed: dict,
                               seed: int) -> dict:
    """Train the run's own classifier (``embed.run_classifier``: a tiny VideoMAE for
    ``classifier_steps`` steps or a toy C3D for ``classifier_epochs`` epochs) on its training
    clips; save it into the run."""
    started = time.time()
    use_assigned_cpus()
    run = RunDir(run_url)
    # In video-id order, as the evaluate stage loads them: a full-real classifier with the same
    # recipe is then this very model, and evaluate adopts it instead of training it again.
    shards = shard_files(run, clips_folder("train"))
    table = pa.concat_tables([run.read_table(path) for path in shards]).sort_by("video_id")
    clips = clips_from_table(table)
    labels = np.asarray(table.column("label").to_pylist(), np.int64)
    folder_in_run = run_model_dir(embed["run_classifier"])
    with tempfile.TemporaryDirectory(prefix="raydistill-embedder-") as folder:
        if embed["run_classifier"] == "c3d":
            settings = dataclasses.replace(TOY_TRAINING, epochs=embed["classifier_epochs"],
                                           seed=seed)
            model, history = train_c3d_classifier(clips, labels, len(class_names), settings,
                                                  seed)
            save_c3d(model, folder, class_names, history)
            losses = [entry["loss"] for entry in history]
            summary = {"classifier_epochs": embed["classifier_epochs"],
                       "recipe": training_recipe(TOY_C3D_SPEC, settings, len(labels))}
        else:
            model, losses = train_videomae_classifier(clips, labels, class_names,
                                                      embed["classifier_steps"],
                                                      learning_rate=2e-3, seed=seed)
            model.save_pretrained(folder)
            summary = {"classifier_steps": embed["classifier_steps"]}
        run.put_dir(folder, folder_in_run)
    summary.update({"classifier": embed["run_classifier"],
                    "classifier_loss_first": round(losses[0], 4),
                    "classifier_loss_last": round(float(np.mean(losses[-10:])), 4),
                    "classifier_videos": len(labels),
                    "seconds": round(time.time() - started, 2)})
    run.write_json(f"{folder_in_run}/training.json", summary)
    return summary


def model_input_shape(run: RunDir, model: str | None,
                      run_classifier: str = "videomae") -> tuple[int, int]:
    """(frames, size) the embedding model takes, from its saved config alone."""
    if model is None and run_classifier == "c3d":
        return c3d_input_shape(run.local_dir(run_model_dir(run_classifier)))
    return videomae_input_shape(model or run.local_dir(run_model_dir(run_classifier)))


def uses_run_classifier(embed: EmbedConfig) -> bool:
    """Whether the embed stage needs the classifier trained on the run's real clips (for the
    features, or for the scores with ``score_model: run``)."""
    return embed.model is None or embed.score_model == SCORE_RUN


def check_score_model(embed: EmbedConfig, class_names: list[str]) -> None:
    """Refuse an ``embed.score_model`` whose head does not name the run's classes
    (:class:`ConfigError` naming the field and the model), before any video is embedded."""
    if embed.score_model in (None, SCORE_RUN):
        return
    problem = score_model_problem(embed.score_model, class_names)
    if problem:
        raise ConfigError(f"embed.score_model: {problem}")


def write_scorer_record(run: RunDir, folder: str, embed: EmbedConfig) -> dict:
    """Write ``{folder}/scorer.json``: which model gave the pool's scores (``scorer``), how many
    videos it scored, and what ``mae_score`` ranks by (``mae_score``: the scorer when every
    video has a score, else the out-of-fold logistic regression). Returns the record."""
    scores = [run.read_table(path, columns=["score"]).column("score").to_numpy(
        zero_copy_only=False) for path in shard_files(run, folder)]
    scores = np.concatenate(scores) if scores else np.zeros(0)
    scored = int(np.isfinite(scores).sum())
    described = scorer_description(embed)
    record = {"scorer": described if scored else None, "videos": int(len(scores)),
              "scored": scored,
              "mae_score": (described if scored and scored == len(scores)
                            else OUT_OF_FOLD_SCORER)}
    run.write_json(f"{folder}/scorer.json", record)
    return record


def embed_pool(run: RunDir, config: RunConfig, pool: str, class_names: list[str]) -> dict:
    """Write every missing embeddings shard of ``pool``; returns counts."""
    embed = config.embed
    model_name = embeddings_name(embed)
    folder = embeddings_folder(pool, model_name)
    frames, size = model_input_shape(run, embed.model, embed.run_classifier)
    # score_model only when set: the folders of runs from before the field stay valid.
    scoring = {} if embed.score_model is None else {"score_model": embed.score_model}
    prepare_output(run, folder, {"model": embed.model, "features": embed.features,
                                 "shard_size": embed.shard_size, "frames": frames, "size": size,
                                 **scoring})
    plan = shard_plan(pool_videos(run, pool), embed.shard_size)
    for item in plan:  # shard_path(embeddings_folder(pool), model, i) is the folder's shard i
        item["split"] = model_name
    todo = missing_shards(run, plan, embeddings_folder(pool))
    embedder_kwargs = {"run_url": run.url, "pool": pool, "model": embed.model,
                       "class_names": class_names, "features": embed.features,
                       "batch_size": embed.batch_size, "run_classifier": embed.run_classifier,
                       "score_model": embed.score_model,
                       "mixed_precision": embed.mixed_precision, "compile": embed.compile}
    outcome = no_outcome()  # nodes: those that embedded shards now
    if todo:
        gpus = gpus_per_actor(embed.gpus_per_actor)
        actors = min(embed.num_actors, len(todo))
        cpus = actor_cpus(None, gpus)
        actors_write = not writers_fit(actors * cpus)
        try:
            embedded = source(todo).map_batches(
                decode_shards, fn_kwargs={"num_frames": frames, "size": size}, batch_size=1,
                compute=task_pool(1.0, len(todo)), num_cpus=1, max_retries=0,
            ).map_batches(
                ShardEmbedder, fn_constructor_kwargs={**embedder_kwargs, "writes": actors_write},
                batch_size=1, num_gpus=gpus, num_cpus=cpus, compute=actor_pool(actors))
            _, outcome = actors_outcome(written_by_tasks(
                embedded, actors_write, write_embedding_shards,
                {"run_url": run.url, "pool": pool}, len(todo)))
            warn_if_idle(outcome)
        except Exception as error:  # a decode task died: isolate the file that killed it
            log.warning(f"embed: a task failed ({type(error).__name__}); decoding the remaining "
                        "shards one file per task")
            embedder = ShardEmbedder(**embedder_kwargs, writes=True)
            for item in missing_shards(run, plan, embeddings_folder(pool)):
                embedder(decode_shard_isolated(item, frames, size))
            outcome = {**outcome, "nodes": [worker_node()]}
    rejects = collect_rejects(run, plan, embeddings_folder(pool))
    videos = sum(len(json.loads(item["rows"])) for item in plan)
    scorer = write_scorer_record(run, folder, embed)
    return {"folder": folder, "videos": videos - rejects.num_rows, "shards": len(plan),
            "shards_embedded_now": len(todo), "nodes": outcome["nodes"],
            "decode_errors": rejects.num_rows, "frames": frames, "size": size,
            "scorer": scorer["scorer"], "mae_score": scorer["mae_score"],
            "actors": outcome["actors"], "busy_share_min": outcome["busy_share_min"]}


def warn_if_idle(busy: dict) -> None:
    """Log when the embedding actors waited (:func:`raydistill.pipeline.busy.idle_warning`):
    on GPUs that means the decode tasks do not keep up."""
    message = idle_warning(busy, "embed", (
        "between calls an actor waits for decoded clips (decode tasks of 1 CPU each, over "
        "every CPU of the cluster: CPU nodes beside the GPU ones feed them) and for Ray Data's "
        "hand-over of each shard (a larger embed.shard_size makes calls longer)"))
    if message:
        log.warning(message)


def run_embed(run: RunDir, config: RunConfig) -> dict:
    """Embed every pool of ``embed.pools``; returns a summary per pool."""
    started = time.time()
    class_names = run.stage_summary("ingest")["class_names"]
    summary: dict = {}
    embed = config.embed
    check_score_model(embed, class_names)
    if uses_run_classifier(embed) and not run.exists(
            f"{run_model_dir(embed.run_classifier)}/training.json"):
        summary["classifier"] = ray.get(_train_and_save_classifier.options(
            num_cpus=embed.classifier_cpus).remote(
            run.url, class_names, dataclasses.asdict(embed), config.seed))
    for pool in config.embed.pools:
        summary[pool] = embed_pool(run, config, pool, class_names)
        log.info(f"embed: {summary[pool]['videos']} {pool} videos embedded into "
                 f"{run.uri(summary[pool]['folder'])} ({summary[pool]['shards_embedded_now']} "
                 f"shards now); mae_score ranks by {summary[pool]['mae_score']}")
    summary["seconds"] = round(time.time() - started, 2)
    return summary


def describe(config: RunConfig) -> str:
    """The plan's line: the pools, the embedding model and where class scores come from."""
    embed = config.embed
    own = ("C3D, trained on the run's real clips first" if embed.run_classifier == "c3d"
           else "VideoMAE, tiny, trained on the run's real clips first")
    scores = ("" if embed.score_model is None
              else ", scores from the run's own classifier (trained first)"
              if embed.score_model == SCORE_RUN
              else f", scores from {model_source(embed.score_model, '')}")
    model = "VideoMAE " + model_source(embed.model, own) if embed.model else own
    return f"pools {', '.join(embed.pools)}, {model}{scores}"


def requests(config: RunConfig, cluster: Cluster) -> list[Request]:
    """The embedding actors, and the task that trains the run's own classifier when it is
    used (no ``embed.model``, or scores from the run's classifier)."""
    embed = config.embed
    asks = [inference_actors("embedding actor", "embed", embed, cluster)]
    if embed.model is None or embed.score_model == SCORE_RUN:
        asks.append(Request("embedding classifier task", 1, embed.classifier_cpus, 0.0,
                            "embed.model", "embed.classifier_cpus"))
    return asks


def needs(config: RunConfig) -> tuple[str, ...]:
    """The synthetic pool needs the generated videos; real videos alone (coreset selection) need
    only their clips (toy runs train the embedding classifier on the clip cache)."""
    return ("generate",) if "synthetic" in config.embed.pools else ("decode",)


def warnings(config: RunConfig) -> list[str]:
    """An embedding or scoring model path this node lacks."""
    embed = config.embed
    scorer = ([] if embed.score_model == SCORE_RUN
              else missing_model("embed.score_model", embed.score_model))
    return missing_model("embed.model", embed.model) + scorer


STAGE = Stage("embed", run_embed, describe, requests, needs, warnings=warnings)
