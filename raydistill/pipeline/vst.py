"""VST-UNet selection with Ray Train: one model per (VPC, seed), trained over the pool's latents.

Every missing (VPC, seed) of ``vst_unet`` is trained in one ``TorchTrainer`` run, one after the
other, data-parallel over classes: each of ``select.train_workers`` workers holds the latents of
its share of the classes (one class per step, as Algorithm 1), and DDP averages the gradients.
Rank 0 reports a checkpoint of the model in training every ``select.checkpoint_every`` epochs
(into ``RUN/selection/{pool}/vst_unet/ray/``, local or S3); rerunning the stage, or Ray Train
restarting a dead worker (``select.max_failures``), resumes from it, and reaches the weights of an
uninterrupted run (each epoch's randomness is a function of (seed, epoch, rank)). A finished model
is saved as ``…/vst_unet/vpc={k}/seed={s}.model.pt``; then the pool is scored class by class and
the top-VPC by p_c written like every other selection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_model

from raydistill.layout import SYNTHETIC_MANIFEST, latents_folder, selection_folder, vst_model_path
from raydistill.pipeline.cluster import failure_config, fit_resuming, ray_storage, train_on_gpu
from raydistill.pipeline.shards import shard_files, use_assigned_cpus
from raydistill.runs import RunDir, is_local
from raydistill.selection.vst_selector import (ClassBatch, VSTUNetSelector, build_model,
                                               load_state, save_state, score_classes)
from raydistill.selection.vst_unet import VSTUNetConfig
from raydistill.tracking import open_tracker

METHOD = "vst_unet"


def pool_latents(run: RunDir, pool: str, labels: list[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(latents (n, T, C, h, w) float32, labels (n,), video ids (n,)) of a pool, sorted by id,
    restricted to ``labels`` when given (a worker loads only its classes)."""
    if pool == "synthetic":
        table = run.read_manifest(SYNTHETIC_MANIFEST).sort_by("video_id")
        if labels is not None:
            table = table.filter(pc.is_in(table["label"], pa.array(labels, pa.int32())))
        latents = [np.load(io.BytesIO(run.fs.cat_file(_strip(run, path))))
                   for path in table.column("latent_path").to_pylist()]
        stacked = np.stack(latents).astype(np.float32) if latents else np.zeros((0,), np.float32)
    else:
        parts = []
        for shard in shard_files(run, latents_folder("train")):
            part = run.read_table(shard)
            if labels is not None:
                part = part.filter(pc.is_in(part["label"], pa.array(labels, pa.int32())))
            parts.append(part)
        table = pa.concat_tables(parts).sort_by("video_id")
        stacked = table.column("latent").combine_chunks().to_numpy_ndarray().astype(np.float32)
    return (stacked, np.asarray(table.column("label").to_pylist(), np.int64),
            np.asarray(table.column("video_id").to_pylist(), dtype=object))


def _strip(run: RunDir, uri: str) -> str:
    """A filesystem path from a URI the run wrote (``s3://b/k`` → ``b/k``)."""
    return uri.split("://", 1)[1] if "://" in uri and not is_local(run.fs) else uri


def rank_classes(classes: list[int], rank: int, world: int) -> list[int]:
    """This rank's classes: every ``world``-th, padded by repeating its first ones so that every
    rank takes the same number of steps per epoch (DDP needs matching steps)."""
    mine = classes[rank::world]
    per_rank = -(-len(classes) // world)
    return (mine * per_rank)[:per_rank] if mine else classes[:per_rank]


def selector_for(job: tuple[int, int], params: dict) -> VSTUNetSelector:
    """The VST-UNet selector of a (VPC, seed) job with the configured parameters."""
    vpc, seed = job
    return VSTUNetSelector(n_per_class=vpc, random_state=seed, **params)


def class_batches(latents: np.ndarray, labels: np.ndarray, classes: list[int],
                  wanted: list[int]) -> list[ClassBatch]:
    """One batch per wanted class, labelled by its index among all ``classes`` (the CE head)."""
    source = torch.from_numpy(latents)
    return [ClassBatch(classes.index(label), np.flatnonzero(labels == label), source)
            for label in wanted]


def train_loop(loop_config: dict) -> None:
    """Ray Train worker loop: train every job in turn, resuming the one in the checkpoint."""
    use_assigned_cpus()
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    run = RunDir(loop_config["run_url"])
    classes, pool = loop_config["classes"], loop_config["pool"]
    mine = rank_classes(classes, rank, world)
    latents, labels, _ = pool_latents(run, pool, sorted(set(mine)))
    batches = class_batches(latents, labels, classes, mine)
    checkpoint = ray.train.get_checkpoint()
    for job in map(tuple, loop_config["jobs"]):
        if run.exists(vst_model_path(pool, *job)):
            continue
        train_job(run, job, loop_config, batches, checkpoint, device, rank, world)


def train_job(run: RunDir, job: tuple[int, int], loop_config: dict, batches, checkpoint,
              device, rank: int, world: int) -> None:
    """Train one (VPC, seed) model to its last epoch with
    :meth:`~raydistill.selection.vst_selector.VSTUNetSelector.train_model` on this rank's class
    batches, and save it into the run (rank 0)."""
    selector = selector_for(job, loop_config["params"]).set_params(
        device=device, mixed_precision=loop_config.get("mixed_precision", "bf16"))
    name = f"select/{loop_config['pool']}/{METHOD}/vpc={job[0]}/seed={job[1]}"
    with open_tracker(loop_config.get("tracking") if rank == 0 else None, name,
                      selector.get_params()) as tracker:
        model, history = selector.train_model(
            batches, len(loop_config["classes"]),
            RayTrainCheckpoints(checkpoint, job, rank, device), loop_config["checkpoint_every"],
            rank, world,
            wrap=lambda module: prepare_model(
                module, parallel_strategy_kwargs={"find_unused_parameters": True}) if world > 1
            else module,
            on_epoch=lambda entry: tracker.log(entry, entry["epoch"]))
    if rank == 0:
        buffer = io.BytesIO()
        torch.save({"config": dataclasses.asdict(model.config), "model": model.state_dict(),
                    "history": history}, buffer)
        run.write_bytes(vst_model_path(loop_config["pool"], *job), buffer.getvalue())


class RayTrainCheckpoints:
    """A (VPC, seed) job's checkpoints in Ray Train: restored from the trainer's last checkpoint,
    saved by reporting every epoch (a barrier for every worker; rank 0 attaches the state)."""

    save_final = False  # the finished model is saved right after

    def __init__(self, checkpoint: Checkpoint | None, job: tuple[int, int], rank: int, device):
        self.checkpoint, self.job, self.rank, self.device = checkpoint, job, rank, device
        self.file = f"vpc={job[0]}-seed={job[1]}.pt"

    def restore(self, model, optimizer) -> list[dict]:
        """The history of the epochs done, from this job's file in the trainer's checkpoint
        (its state loaded), or []."""
        if self.checkpoint:
            with self.checkpoint.as_directory() as folder:
                state = os.path.join(folder, self.file)
                if os.path.exists(state):
                    _, history, _ = load_state(state, model, optimizer, map_location=self.device)
                    return history
        return []

    def save(self, model, optimizer, history: list[dict]) -> None:
        """Report the epoch's losses, with rank 0's checkpoint."""
        metrics = {"vpc": self.job[0], "seed": self.job[1], "epoch": len(history),
                   **history[-1]}
        if self.rank != 0:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="raydistill-vst-") as folder:
            save_state(os.path.join(folder, self.file), model, optimizer, len(history) - 1,
                       history)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))


def train_models(run: RunDir, select, classes: list[int], jobs: list[tuple[int, int]],
                 tracking: dict | None = None) -> None:
    """Train the missing (VPC, seed) VST-UNets with Ray Train (resuming an interrupted run),
    logging each epoch's losses to ``tracking`` (:func:`raydistill.tracking.prepare_tracking`)."""
    params = dict(select.params.get(METHOD, {}))
    use_gpu = train_on_gpu(select.use_gpu)
    path, filesystem = ray_storage(run, selection_folder(select.pool), METHOD, "ray")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"run_url": run.url, "pool": select.pool, "classes": classes,
                           "jobs": [list(job) for job in jobs], "params": params,
                           "checkpoint_every": select.checkpoint_every, "tracking": tracking,
                           "mixed_precision": select.mixed_precision},
        scaling_config=ScalingConfig(num_workers=select.train_workers, use_gpu=use_gpu,
                                     resources_per_worker=None if use_gpu else {"CPU": 1}),
        run_config=RunConfig(name="train", storage_path=path, storage_filesystem=filesystem,
                             failure_config=failure_config(select.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)))
    fit_resuming(trainer, select.max_failures)


def select_with_models(run: RunDir, pool: str, jobs: list[tuple[int, int]]
                       ) -> tuple[dict[tuple[int, int], dict], np.ndarray, np.ndarray,
                                  np.ndarray]:
    """Score every class with each job's trained model.

    Returns job → {label: (local indices, p_c)} (top-VPC by p_c, local to the class's rows in id
    order), and the pool's latents, labels and ids those indices refer to.
    """
    latents, labels, ids = pool_latents(run, pool)
    classes = sorted(set(labels.tolist()))
    batches = class_batches(latents, labels, classes, classes)
    results = {}
    for job in jobs:
        state = torch.load(io.BytesIO(run.read_bytes(vst_model_path(pool, *job))),
                           weights_only=True)
        config = VSTUNetConfig(**{key: tuple(value) if isinstance(value, list) else value
                                  for key, value in state["config"].items()})
        model = build_model(config, job[1])
        model.load_state_dict(state["model"])
        results[job] = {}
        with torch_threads(SCORING_THREADS):
            probabilities = score_classes(model, batches)
        for label, p in zip(classes, probabilities):
            order = np.argsort(-p, kind="stable")[:job[0]]
            results[job][label] = (order.astype(np.int64), p[order].astype(np.float64))
    return results, latents, labels, ids


SCORING_THREADS = 1
"""Torch threads the driver scores with. A local driver would use every core and a driver
started by ``ray job submit`` uses one (Ray gives it ``OMP_NUM_THREADS=1``); sums split across
threads round differently, so the scores written with a selection (and a near tie) followed
where the driver ran. One thread everywhere makes them the same, at the cost of a local driver's
other cores (a large pool scores slower there than it could; submitted jobs lose nothing)."""


@contextlib.contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
