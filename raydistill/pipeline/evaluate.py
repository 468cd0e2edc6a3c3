"""Evaluate stage: a classifier trained on each selection, tested on the real test split.

Jobs: every (method, VPC, seed) of the selections (``eval/{pool}/{method}/vpc={k}/seed={s}``)
and the upper bounds ``eval/full_real/seed={s}`` (every real training clip) and
``eval/full_synthetic/seed={s}`` (the whole synthetic pool, decoded once into
``clips/synthetic/``). Seed ``s`` trains on selection seed ``s`` with training seed ``s``, so a new
seed re-selects and retrains, as the paper repeats both.

Training: with ``evaluate.parallelism: data`` one ``TorchTrainer`` run trains the missing jobs
one after the other, data-parallel over ``evaluate.num_workers`` workers (DDP; each worker holds
its share of the job's clips), with Ray Train checkpoints every ``evaluate.checkpoint_every``
epochs. With ``jobs`` each missing job is one Ray task that trains its classifier alone, exactly
as a single Ray Train worker would, longest job first and at most ``num_workers`` at a time (a
laptop's cores, or a cluster's GPUs, each busy with a classifier of its own), checkpointing into
``eval/…/checkpoint.pt``; a task whose worker dies is retried (``max_failures`` times) and resumes
there. No Ray Train run is started: a worker group's start costs ≈ 13 s and its reports are a
barrier for all workers, which jobs of unequal length cannot share. Either way, rerunning the
stage resumes a job from its checkpoint, and finished jobs are kept as
``eval/…/model.pt``. A full-real
job whose classifier the embed stage already trained (its C3D, with this job's recipe) adopts
that model instead (:func:`adopt_run_classifier`). Testing:
Ray Data streams the test split's clip-cache shards through actors that hold the trained models
(``models_per_pass`` at a time) and return class probabilities; the driver computes top-1,
top-5, macro AUC and macro F1 and writes ``eval/…/metrics.json`` (which marks the job done).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_model

from raydistill.accel import FastPaths
from raydistill.classify import (PAPER_CLASSIFIERS, PAPER_TRAINING, TOY_CLASSIFIERS, TOY_TRAINING,
                                 build_classifier, classification_metrics)
from raydistill.classify.augment import Augmentation
from raydistill.classify.training import (Checkpoints, TrainSettings, fit_classifier, load_state,
                                          predict, save_state, training_recipe)
from raydistill.config import ConfigError, EvaluateConfig, to_dict
from raydistill.config import RunConfig as RaydistillConfig
from raydistill.embedding.c3d import read_c3d_state
from raydistill.embedding.c3d import MODEL_FILE as C3D_MODEL_FILE
from raydistill.layout import (CLIPS_FOLDER, EVAL_FOLDER, MANIFEST, SYNTHETIC_MANIFEST, BoundKey,
                               SelectionKey, clips_folder, eval_checkpoint_path, eval_metrics_path,
                               eval_predictions_path,
                               eval_model_path, run_model_dir, selection_path)
from raydistill.logs import setup_console, time_left
from raydistill.pipeline.cluster import failure_config, fit_resuming, ray_storage, train_on_gpu
from raydistill.pipeline.decode import write_clip_cache
from raydistill.pipeline.resources import Cluster, Request, actor_cpus, train_request
from raydistill.pipeline.shards import actor_pool, shard_files, source, use_assigned_cpus
from raydistill.pipeline.stage import Stage
from raydistill.runs import RunDir
from raydistill.tracking import open_tracker, prepare_tracking
from raydistill.video.clips import clips_from_table

log = logging.getLogger(__name__)


def classifier_settings(evaluate: EvaluateConfig) -> tuple[dict, TrainSettings]:
    """(classifier spec ``name, frames, size, options``, training settings) of the config: the
    preset's, with ``classifier_options`` and ``training`` applied. ValueError/TypeError for a
    field or option that does not exist."""
    preset = PAPER_CLASSIFIERS if evaluate.preset == "paper" else TOY_CLASSIFIERS
    base = PAPER_TRAINING if evaluate.preset == "paper" else TOY_TRAINING
    overrides = dict(evaluate.training)
    if "augmentation" in overrides:
        overrides["augmentation"] = dataclasses.replace(base.augmentation,
                                                        **overrides["augmentation"])
    if "step_at" in overrides:
        overrides["step_at"] = tuple(overrides["step_at"])
    spec = preset.spec(evaluate.classifier, evaluate.classifier_options)
    return spec, dataclasses.replace(base, **overrides)


def validate_evaluation(config: RaydistillConfig) -> None:
    """Build the classifier (on the meta device: no memory) and the training settings once, so a
    bad option or field stops the run before any work (:class:`ConfigError` naming it)."""
    try:
        spec, _ = classifier_settings(config.evaluate)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"evaluate.training: {error}") from None
    try:
        with torch.device("meta"):
            build_classifier(spec["name"], 2, spec["frames"], spec["size"], **spec["options"])
    except (TypeError, ValueError) as error:
        raise ConfigError(f"evaluate.classifier_options: {error}") from None


def test_split(run: RunDir) -> str:
    """``test``, or ``val`` for datasets without a test split (Kinetics-400, SSv2)."""
    splits = set(run.read_table(MANIFEST, columns=["split"]).column("split").to_pylist())
    return "test" if "test" in splits else "val"


def selections_to_evaluate(config: RaydistillConfig) -> list[SelectionKey]:
    """Every selection the evaluate section asks for: its pools × methods × VPCs × seeds, the
    select stage's where it says None."""
    evaluate, select = config.evaluate, config.select
    return [SelectionKey(pool, method, vpc, seed)
            for pool in evaluate.pools or (select.pool,)
            for method in evaluate.methods or select.methods
            for vpc in evaluate.vpc or select.vpc
            for seed in range(evaluate.seeds or select.seeds)]


def completion_settings(config: RaydistillConfig) -> dict:
    """What a finished evaluate stage is recorded with: its section with the select stage's
    pool, methods, VPCs and seeds filled in where it says None, so that a run whose select
    stage gained a pool, a method or a VPC is not taken for evaluated."""
    evaluate, select = config.evaluate, config.select
    return {**to_dict(evaluate), "pools": list(evaluate.pools or (select.pool,)),
            "methods": list(evaluate.methods or select.methods),
            "vpc": list(evaluate.vpc or select.vpc), "seeds": evaluate.seeds or select.seeds}


def evaluation_jobs(run: RunDir, config: RaydistillConfig) -> list[dict]:
    """Every job the config asks for: ``key``, clip ``split`` to train on, ``ids`` (None: all of
    it) and ``seed``. ConfigError when a selection to evaluate does not exist."""
    evaluate, select = config.evaluate, config.select
    seeds = evaluate.seeds or select.seeds
    bound_seeds = evaluate.upper_bound_seeds or seeds
    jobs = []
    if evaluate.full_real:
        jobs += [{"key": BoundKey("full_real", s).name, "split": "train", "ids": None,
                  "seed": s}
                 for s in range(bound_seeds)]
    if evaluate.full_synthetic:
        jobs += [{"key": BoundKey("full_synthetic", s).name, "split": "synthetic",
                  "ids": None, "seed": s}
                 for s in range(bound_seeds)]
    for key in selections_to_evaluate(config):
        path = selection_path(key.pool, key.method, key.vpc, key.seed)
        if not run.exists(path):
            raise ConfigError(f"evaluate: no selection {run.uri(path)}; select it first "
                              f"(raydistill select --pool {key.pool} --method {key.method} "
                              f"--vpc {key.vpc} --seeds {seeds})")
        ids = run.read_table(path).column("video_id").to_pylist()
        jobs.append({"key": key.name, "split": "train" if key.pool == "real" else "synthetic",
                     "ids": ids, "seed": key.seed})
    # A method or VPC listed twice is one job: two workers must never train one key at once.
    return list({job["key"]: job for job in jobs}.values())


def adopt_run_classifier(run: RunDir, config: RaydistillConfig, jobs: list[dict]) -> list[str]:
    """Full-real jobs that the embed stage's C3D already is: trained on all the real training
    clips with this job's recipe (classifier, settings, seed, one CPU worker;
    ``classify.training_recipe``). Its weights and history become the job's ``model.pt``
    (marked ``adopted_from``), instead of training the same classifier twice. Returns the keys
    adopted."""
    folder = run_model_dir("c3d")
    candidates = [job for job in jobs if job["split"] == "train" and job["ids"] is None]
    if not candidates or not run.exists(f"{folder}/training.json"):
        return []
    trained = run.read_json(f"{folder}/training.json")
    spec, settings = classifier_settings(config.evaluate)
    device = "cuda" if train_on_gpu(config.evaluate.use_gpu) else "cpu"
    workers = job_world_size(config.evaluate)
    videos = _count(run, "train")
    adopted = []
    for job in candidates:
        wanted = training_recipe(spec, dataclasses.replace(settings, seed=job["seed"]), videos,
                                 workers, device)
        if trained.get("recipe") != wanted:
            continue
        saved = read_c3d_state(run.read_bytes(f"{folder}/{C3D_MODEL_FILE}"))
        save_model(run, job["key"], saved["model"], saved["history"], None,
                   trained.get("seconds"), adopted_from=folder)
        adopted.append(job["key"])
    return adopted


def save_model(run: RunDir, key: str, weights: dict, history: list[dict],
               train_videos: int | None, seconds: float | None, **extra) -> None:
    """Write a job's ``eval/{key}/model.pt``: weights, per-epoch history, training videos
    (None: the whole split) and seconds, plus ``extra`` fields."""
    buffer = io.BytesIO()
    # CPU tensors: the driver that tests the models may have no GPU.
    weights = {name: value.detach().cpu() for name, value in weights.items()}
    torch.save({"model": weights, "history": history, "train_videos": train_videos,
                "seconds": seconds, **extra}, buffer)
    run.write_bytes(eval_model_path(key), buffer.getvalue())


def ensure_synthetic_clips(run: RunDir, config: RaydistillConfig) -> None:
    """Decode the synthetic videos into ``clips/synthetic/`` once (same settings as the real
    clips, so classifiers see both alike)."""
    table = run.read_manifest(SYNTHETIC_MANIFEST).select(["video_id", "path", "label"])
    table = table.append_column("split", pa.array(["synthetic"] * table.num_rows))
    write_clip_cache(run, table, config.decode)


def load_clips(run: RunDir, split: str, ids: list[str] | None = None, rank: int = 0,
               world: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """uint8 clips (n, T, S, S, 3) and labels (n,) of a clip-cache split, restricted to ``ids``.

    With ``world`` > 1, this rank's share: every ``world``-th clip in id order, padded by
    repetition so that all ranks hold the same number (DDP needs equal steps).
    """
    wanted = None if ids is None else pa.array(ids, pa.string())
    # Filtered shard by shard: a few selected clips out of a large cache never hold it all.
    parts = [part if wanted is None else part.filter(pc.is_in(part["video_id"], wanted))
             for part in map(run.read_table, shard_files(run, clips_folder(split)))]
    if not parts:
        raise ValueError(f"no clip shards in {run.uri(clips_folder(split))}; run the decode stage")
    table = pa.concat_tables(parts).sort_by("video_id")
    if table.num_rows == 0:
        raise ValueError(f"no clips of split {split!r} in {run.uri(CLIPS_FOLDER)} for this job")
    order = np.arange(table.num_rows)
    per_rank = -(-len(order) // world)
    mine = order[rank::world] if len(order) >= world else order
    mine = np.resize(mine, per_rank) if len(mine) else order[:per_rank]
    table = table.take(pa.array(mine))
    return clips_from_table(table), np.asarray(table.column("label").to_pylist(), np.int64)


def _checkpoint_name(key: str) -> str:
    return key.replace("/", "__").replace("=", "-") + ".pt"


def job_world_size(evaluate: EvaluateConfig) -> int:
    """Workers that train each classifier together: ``num_workers`` (DDP) or 1 (``jobs``)."""
    return 1 if evaluate.parallelism == "jobs" else evaluate.num_workers


def longest_first(jobs: list[dict], costs: list[float]) -> list[dict]:
    """``jobs`` in the order their tasks are started: highest cost first (ties in job order),
    so that no long job starts last while the other workers idle."""
    return [jobs[i] for i in sorted(range(len(jobs)), key=lambda i: (-costs[i], i))]


def job_cost(job: dict, settings: TrainSettings, split_sizes: dict[str, int]) -> float:
    """A job's training cost in clip passes: epochs (``min_steps`` applied) × clips (its
    selection's, or ``split_sizes[split]`` for a whole split)."""
    clips = len(job["ids"]) if job["ids"] else split_sizes[job["split"]]
    return float(settings.for_clips(clips).epochs * clips)


def train_loop(loop_config: dict) -> None:
    """Ray Train worker loop (``parallelism: data``): train every job without a saved model, in
    order, data-parallel over the workers."""
    use_assigned_cpus()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    run = RunDir(loop_config["run_url"])
    checkpoint = ray.train.get_checkpoint()
    device = ray.train.torch.get_device()
    setup_console()  # a worker process: its records reach the driver's console through Ray
    started, jobs = time.time(), loop_config["jobs"]
    for number, job in enumerate(jobs, 1):
        if not run.exists(eval_model_path(job["key"])):
            train_job(run, job, loop_config, RayTrainCheckpoints(checkpoint, job["key"], rank),
                      rank, world, device)
        if rank == 0:
            log.info(f"evaluate: classifier {number} of {len(jobs)} trained ({job['key']})"
                     f"{time_left(number, len(jobs), started)}")


def train_alone(run_url: str, job: dict, loop_config: dict) -> str:
    """Ray task body (``parallelism: jobs``): train one job's classifier alone, resuming from
    its checkpoint in the run; returns the job's key. A model saved before a lost worker could
    delete its checkpoint only has the checkpoint deleted."""
    use_assigned_cpus()
    run = RunDir(run_url)
    checkpoints = RunDirCheckpoints(run, job["key"], job_recipe(loop_config, job))
    if run.exists(eval_model_path(job["key"])):
        checkpoints.finish()
    else:
        device = torch.device("cuda" if ray.get_gpu_ids() else "cpu")
        train_job(run, job, loop_config, checkpoints, 0, 1, device)
    return job["key"]


# A CPU task's worker process is reused by the next (torch already imported); a GPU task's is
# not (max_calls=1): a reused process keeps the CUDA device it first saw, whatever GPU Ray
# assigns the next task.
train_alone_on_cpu = ray.remote(train_alone)
train_alone_on_gpu = ray.remote(num_gpus=1, max_calls=1)(train_alone)


class RayTrainCheckpoints:
    """A data-parallel job's checkpoints: Ray Train's (every worker reports; rank 0 saves)."""

    save_final = False  # the finished model is saved right after

    def __init__(self, checkpoint: Checkpoint | None, job_key: str, rank: int):
        self.checkpoint, self.job_key, self.rank = checkpoint, job_key, rank

    def restore(self, model, optimizer, scheduler, generator) -> tuple[int, list[dict]]:
        """(epochs done, history) restored from the run's last checkpoint of this job, or
        (0, [])."""
        if self.checkpoint:
            with self.checkpoint.as_directory() as folder:
                saved = os.path.join(folder, _checkpoint_name(self.job_key))
                if os.path.exists(saved):
                    return load_state(saved, model, optimizer, scheduler, generator,
                                      restore_global_rng=True)
        return 0, []

    def save(self, model, optimizer, scheduler, generator, history) -> None:
        """Report this epoch (a barrier for every worker), with rank 0's checkpoint."""
        _report(self.job_key, model, optimizer, scheduler, generator, history, self.rank)

    def finish(self) -> None:
        """Nothing to clean: Ray Train keeps one checkpoint for the whole run."""


def job_recipe(loop_config: dict, job: dict) -> dict:
    """What decides a job's training (classifier, settings, seed, clips), JSON-ready: a
    checkpoint written under another recipe is not resumed."""
    return json.loads(json.dumps({"classifier": loop_config["classifier"],
                                  "training": loop_config["training"], "seed": job["seed"],
                                  "split": job["split"], "ids": job["ids"]}))


class RunDirCheckpoints:
    """A job trained alone (``parallelism: jobs``): its checkpoint is ``eval/…/checkpoint.pt``
    in the run, beside the ``recipe`` it was trained under (``checkpoint.json``), written and
    read by whichever worker trains it."""

    save_final = False  # the finished model is saved right after

    def __init__(self, run: RunDir, job_key: str, recipe: dict | None = None):
        self.run, self.relpath = run, eval_checkpoint_path(job_key)
        self.recipe_path = self.relpath.removesuffix(".pt") + ".json"
        self.recipe = recipe or {}

    def restore(self, model, optimizer, scheduler, generator) -> tuple[int, list[dict]]:
        """(epochs done, history) from the job's checkpoint in the run, or (0, []) when there
        is none or it was written under another recipe (then it is deleted)."""
        if not self.run.exists(self.relpath):
            return 0, []
        if (not self.run.exists(self.recipe_path)
                or self.run.read_json(self.recipe_path) != self.recipe):
            log.warning(f"evaluate: {self.run.uri(self.relpath)} was written with other "
                        "settings; training that job from the start")
            self.finish()
            return 0, []
        with tempfile.TemporaryDirectory(prefix="raydistill-eval-") as folder:
            local = os.path.join(folder, "checkpoint.pt")
            with open(local, "wb") as file:
                file.write(self.run.read_bytes(self.relpath))
            return load_state(local, model, optimizer, scheduler, generator,
                              restore_global_rng=True)

    def save(self, model, optimizer, scheduler, generator, history) -> None:
        """Write the job's checkpoint into the run (atomically)."""
        with tempfile.TemporaryDirectory(prefix="raydistill-eval-") as folder:
            local = os.path.join(folder, "checkpoint.pt")
            save_state(local, model, optimizer, scheduler, history[-1]["epoch"], generator,
                       history)
            with open(local, "rb") as file:
                self.run.write_json(self.recipe_path, self.recipe)
                self.run.write_bytes(self.relpath, file.read())

    def finish(self) -> None:
        """Delete the checkpoint (and its recipe) once the job's model is saved."""
        for relpath in (self.relpath, self.recipe_path):
            if self.run.exists(relpath):
                self.run.fs.rm(self.run.path(relpath))


def train_job(run: RunDir, job: dict, loop_config: dict, checkpoints: Checkpoints,
              rank: int, world: int, device: torch.device) -> None:
    """Train one job's classifier on ``device`` with :func:`~raydistill.classify.fit_classifier`
    on this rank's share of the clips (restoring from and saving to ``checkpoints``); rank 0
    saves it to ``eval/…/model.pt``."""
    started = time.time()
    spec = loop_config["classifier"]
    settings = dataclasses.replace(settings_from_dict(loop_config["training"]), seed=job["seed"])
    clips, labels = load_clips(run, job["split"], job["ids"], rank, world)
    # The initial weights are drawn as an in-process ``fit_classifier``'s caller draws them after
    # ``torch.manual_seed(seed)`` (rank 0); the loop then seeds dropout and the data generator.
    torch.manual_seed(settings.seed + rank)
    model = build_classifier(spec["name"], loop_config["num_classes"], spec["frames"],
                             spec["size"], **spec["options"]).to(device)
    params = {"classifier": spec["name"], **dataclasses.asdict(settings),
              "trained_on": (f"{len(set(job['ids']))} selected videos" if job["ids"]
                             else f"every video of {job['split']}")}
    with open_tracker(loop_config.get("tracking") if rank == 0 else None,
                      tracking_name(job["key"]), params) as tracker:
        history = fit_classifier(model, clips, labels, settings, checkpoints=checkpoints,
                                 checkpoint_every=loop_config["checkpoint_every"], rank=rank,
                                 world=world, wrap=prepare_model if world > 1 else None,
                                 on_epoch=lambda entry: tracker.log(entry, entry["epoch"]),
                                 fast=FastPaths(**loop_config.get("fast", {})))
    if rank == 0:
        save_model(run, job["key"], model.state_dict(), history,
                   len(set(job["ids"])) if job["ids"] else None, round(time.time() - started, 2))
        checkpoints.finish()


def fast_paths(evaluate: EvaluateConfig) -> FastPaths:
    """The classifiers' GPU fast paths (training and testing) of the ``evaluate`` section."""
    return FastPaths(evaluate.mixed_precision, evaluate.compile, evaluate.channels_last)


def tracking_name(key: str) -> str:
    """The tracking run of evaluation job ``key`` (its training losses, then its test
    accuracy)."""
    return f"evaluate/{key}"


def settings_from_dict(values: dict) -> TrainSettings:
    """The :class:`TrainSettings` of a ``dataclasses.asdict`` dict (as passed to workers)."""
    values = dict(values)
    values["augmentation"] = Augmentation(**values["augmentation"])
    values["step_at"] = tuple(values["step_at"])
    return TrainSettings(**values)


def _report(key, model, optimizer, scheduler, generator, history, rank) -> None:
    metrics = {"job": key, "epoch": history[-1]["epoch"], "loss": history[-1]["loss"]}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="raydistill-eval-") as folder:
        save_state(os.path.join(folder, _checkpoint_name(key)), model, optimizer, scheduler,
                   history[-1]["epoch"], generator, history)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))


def train_classifiers(run: RunDir, config: RaydistillConfig, jobs: list[dict],
                      num_classes: int, tracking: dict | None = None) -> None:
    """Train the jobs' classifiers that have no saved model: one Ray Train run (``data``,
    resuming an interrupted one) or one Ray task each (``jobs``), logging to ``tracking``
    (:func:`raydistill.tracking.prepare_tracking`)."""
    evaluate = config.evaluate
    spec, settings = classifier_settings(evaluate)
    use_gpu = train_on_gpu(evaluate.use_gpu)
    loop_config = {"run_url": run.url, "classifier": spec,
                   "training": dataclasses.asdict(settings), "num_classes": num_classes,
                   "checkpoint_every": evaluate.checkpoint_every,
                   "tracking": tracking,
                   "fast": dataclasses.asdict(fast_paths(evaluate))}
    if evaluate.parallelism == "jobs":
        train_jobs_alone(run, evaluate, jobs, loop_config, settings, use_gpu)
        return
    path, filesystem = ray_storage(run, EVAL_FOLDER, "ray")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**loop_config, "jobs": jobs},
        scaling_config=ScalingConfig(
            num_workers=evaluate.num_workers, use_gpu=use_gpu,
            resources_per_worker=None if use_gpu else {"CPU": evaluate.cpus_per_worker}),
        run_config=RunConfig(name="train", storage_path=path, storage_filesystem=filesystem,
                             failure_config=failure_config(evaluate.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    fit_resuming(trainer, evaluate.max_failures)


def train_jobs_alone(run: RunDir, evaluate: EvaluateConfig, jobs: list[dict], loop_config: dict,
                     settings: TrainSettings, use_gpu: bool) -> None:
    """``parallelism: jobs``: a :func:`train_alone` task per job (those without a saved model),
    longest first, at most ``evaluate.num_workers`` in flight, each
    on one GPU (and a CPU, as a Ray Train worker) or ``cpus_per_worker`` CPUs. A task that
    fails (its worker lost, or an error such as a storage fault) is retried ``max_failures``
    times, resuming from its checkpoint; then the others are cancelled and a RuntimeError names
    the job."""
    counts = {split: _count(run, split) for split in {job["split"] for job in jobs}}
    queue = longest_first(jobs, [job_cost(job, settings, counts) for job in jobs])
    retries = {"max_retries": evaluate.max_failures, "retry_exceptions": True}
    task = (train_alone_on_gpu.options(num_cpus=1, **retries) if use_gpu
            else train_alone_on_cpu.options(num_cpus=evaluate.cpus_per_worker, **retries))
    in_flight: dict = {}
    started, done = time.time(), 0
    while queue or in_flight:
        while queue and len(in_flight) < evaluate.num_workers:
            job = queue.pop(0)
            in_flight[task.remote(run.url, job, loop_config)] = job["key"]
        [finished], _ = ray.wait(list(in_flight), num_returns=1)
        key = in_flight.pop(finished)
        try:
            ray.get(finished)
            done += 1
            log.info(f"evaluate: classifier {done} of {len(jobs)} trained ({key})"
                     f"{time_left(done, len(jobs), started)}")
        except Exception as error:
            for other in in_flight:
                ray.cancel(other, force=True)
            cause = getattr(error, "cause", None) or error  # a task's own exception, no trace
            raise RuntimeError(f"evaluate: training the classifier of {run.uri(EVAL_FOLDER, key)} "
                               f"failed {evaluate.max_failures + 1} times (evaluate."
                               f"max_failures: {evaluate.max_failures}): "
                               f"{type(cause).__name__}: {cause}") from error


class TestPredictor:
    """Ray Data actor UDF: class probabilities of every model for each test clip shard."""

    def __init__(self, run_url: str, keys: list[str], classifier: dict, num_classes: int,
                 fast: dict | None = None):
        use_assigned_cpus()
        self.fast = FastPaths(**(fast or {}))
        self.run = RunDir(run_url)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.models = []
        for key in keys:
            state = torch.load(io.BytesIO(self.run.read_bytes(eval_model_path(key))),
                               map_location="cpu", weights_only=True)
            model = build_classifier(classifier["name"], num_classes, classifier["frames"],
                                     classifier["size"], **classifier["options"])
            model.load_state_dict(state["model"])
            self.models.append(self.fast.model(model.to(device), device).eval())

    def __call__(self, batch: dict) -> dict:
        tables = [self.run.read_table(path) for path in batch["path"]]
        table = pa.concat_tables(tables)
        clips = clips_from_table(table)
        out = {"video_id": np.asarray(table.column("video_id").to_pylist(), dtype=object),
               "label": np.asarray(table.column("label").to_pylist(), np.int64)}
        for index, model in enumerate(self.models):
            out[f"model_{index}"] = predict(model, clips, fast=self.fast).astype(np.float32)
        return out


def predict_on_gpu(cluster_gpus: float) -> bool:
    """Whether the test actors take a GPU each: when this node has CUDA or the cluster GPUs
    (``cluster_gpus`` now)."""
    return torch.cuda.is_available() or cluster_gpus > 0


def predictor_cpus(evaluate: EvaluateConfig, use_gpu: bool) -> float:
    """CPUs of one test actor: 1 beside a GPU, else ``evaluate.test_cpus_per_actor`` (None:
    half a core, so that two share one)."""
    return actor_cpus(None if use_gpu else evaluate.test_cpus_per_actor, 1.0 if use_gpu else 0.0)


def predict_test_split(run: RunDir, config: RaydistillConfig, keys: list[str],
                       num_classes: int
                       ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """(test video ids (n,), their labels (n,), key → probabilities (n, C)), in video-id order,
    with Ray Data batch inference over the test split's clip-cache shards, ``models_per_pass``
    models per pass."""
    evaluate = config.evaluate
    spec, _ = classifier_settings(evaluate)
    split = test_split(run)
    shards = [{"path": p} for p in shard_files(run, clips_folder(split))]
    probabilities: dict[str, np.ndarray] = {}
    labels, ids = np.zeros(0, np.int64), []
    use_gpu = predict_on_gpu(ray.cluster_resources().get("GPU", 0))
    for start in range(0, len(keys), evaluate.models_per_pass):
        chunk = keys[start:start + evaluate.models_per_pass]
        actors = min(evaluate.test_actors, len(shards))
        rows = source(shards).map_batches(
            TestPredictor, fn_constructor_kwargs={
                "run_url": run.url, "keys": chunk, "classifier": spec,
                "num_classes": num_classes,
                # compiling each of models_per_pass models for one pass over the test split
                # costs more than it saves
                "fast": dataclasses.asdict(dataclasses.replace(fast_paths(evaluate),
                                                               compile=False))},
            batch_size=1, num_gpus=1 if use_gpu else 0,
            num_cpus=predictor_cpus(evaluate, use_gpu),
            compute=actor_pool(actors),
        ).take_all()
        # 200 rows or 20 000: sorted here, not by a Ray Data sort (a shuffle of its own tasks).
        rows.sort(key=lambda row: row["video_id"])
        labels = np.asarray([row["label"] for row in rows], np.int64)
        ids = [str(row["video_id"]) for row in rows]
        for index, key in enumerate(chunk):
            probabilities[key] = np.stack([row[f"model_{index}"] for row in rows])
    return ids, labels, probabilities


def predictions_table(ids: list[str], labels: np.ndarray, probabilities: np.ndarray) -> pa.Table:
    """One row per test video: ``video_id``, ``label``, ``predicted`` (top-1 class) and
    ``top5`` (the five likeliest classes, likeliest first; fewer when there are fewer classes)
    of probabilities (n, C)."""
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :5]
    return pa.table({"video_id": pa.array(ids, pa.string()),
                     "label": pa.array(labels, pa.int32()),
                     "predicted": pa.array(ranked[:, 0], pa.int32()),
                     "top5": pa.array(ranked.tolist(), pa.list_(pa.int32()))})


def run_evaluate(run: RunDir, config: RaydistillConfig) -> dict:
    """Train and test every missing job; returns counts and timings."""
    started = time.time()
    validate_evaluation(config)
    jobs = evaluation_jobs(run, config)
    done = set(run.list(EVAL_FOLDER, "metrics.json"))
    todo = [job for job in jobs if eval_metrics_path(job["key"]) not in done]
    adopted: list[str] = []
    num_classes = len(run.stage_summary("ingest")["class_names"])
    if todo:
        if any(job["split"] == "synthetic" for job in todo):
            ensure_synthetic_clips(run, config)
        untrained = [job for job in todo if not run.exists(eval_model_path(job["key"]))]
        adopted = adopt_run_classifier(run, config, untrained)
        to_train = [job for job in untrained if job["key"] not in adopted]
        target = prepare_tracking(run, config)
        if to_train:
            train_classifiers(run, config, to_train, num_classes, target)
        ids, labels, probabilities = predict_test_split(run, config, [j["key"] for j in todo],
                                                        num_classes)
        spec, _ = classifier_settings(config.evaluate)
        for job in todo:
            state = torch.load(io.BytesIO(run.read_bytes(eval_model_path(job["key"]))),
                               map_location="cpu", weights_only=True)
            metrics = classification_metrics(labels, probabilities[job["key"]],
                                             labels=np.arange(num_classes))
            if state.get("adopted_from") and job["key"] not in adopted:  # adopted, then cut
                adopted.append(job["key"])
            run.write_table(eval_predictions_path(job["key"]),
                            predictions_table(ids, labels, probabilities[job["key"]]))
            with open_tracker(target, tracking_name(job["key"])) as tracker:
                tracker.final({f"test_{name}": value for name, value in metrics.items()},
                              len(state["history"]))
            run.write_json(eval_metrics_path(job["key"]), {
                **metrics, "classifier": spec["name"], "epochs": len(state["history"]),
                "train_videos": state["train_videos"] or _count(run, job["split"]),
                "test_videos": int(len(labels)), "seconds": state["seconds"],
                "final_loss": state["history"][-1]["loss"]})
    seconds = time.time() - started
    reused = f", {len(adopted)} the embed stage's" if adopted else ""
    log.info(f"evaluate: {len(jobs)} classifiers ({len(todo) - len(adopted)} trained now{reused}) "
             f"in {seconds:.1f} s, under {run.uri(EVAL_FOLDER)}")
    return {"evaluations": len(jobs), "trained_now": len(todo) - len(adopted),
            "adopted": adopted, "seconds": round(seconds, 2)}


def _count(run: RunDir, split: str) -> int:
    """Clips in a split of the clip cache, from the shards' Parquet footers (no clip is read)."""
    total = 0
    for path in shard_files(run, clips_folder(split)):
        with run.fs.open(run.fresh_path(path), "rb") as handle:
            total += pq.ParquetFile(handle).metadata.num_rows
    return total


def describe(config: RaydistillConfig) -> str:
    """The plan's line: the classifier, the pools, the upper bounds and the test split."""
    e = config.evaluate
    bounds = [b for b, on in (("full real", e.full_real), ("full synthetic", e.full_synthetic))
              if on]
    pools = " and ".join(e.pools or (config.select.pool,))
    return (f"{e.classifier} ({e.preset} preset) per selection of the {pools} pool"
            f"{' + ' + ', '.join(bounds) if bounds else ''}, tested on the real test "
            "split (val where there is none)")


def requests(config: RaydistillConfig, cluster: Cluster) -> list[Request]:
    """The Ray Train workers that train the classifiers, and the test actors (on GPUs as
    :func:`predict_test_split` decides, :func:`predict_on_gpu`)."""
    e = config.evaluate
    use_gpu = predict_on_gpu(cluster.gpus)
    cpu_field = (None if use_gpu or e.test_cpus_per_actor is None
                 else "evaluate.test_cpus_per_actor")
    return [train_request("classifier worker", "evaluate", e.use_gpu, e.num_workers, cluster,
                          e.cpus_per_worker),
            Request("test actor", e.test_actors, predictor_cpus(e, use_gpu),
                    1.0 if use_gpu else 0.0, "evaluate.test_actors", "evaluate.test_actors",
                    cpu_field)]


def needs(config: RaydistillConfig) -> tuple[str, ...]:
    """The clip cache (the test split, the real videos it trains on) and the selections; the
    generated videos too when it trains on all of them."""
    return ("decode", "select") + (("generate",) if config.evaluate.full_synthetic else ())


STAGE = Stage("evaluate", run_evaluate, describe, requests, needs, validate=validate_evaluation,
              settings=completion_settings)
