"""Finetune stage: the class-conditional Latte trained on the latent cache with Ray Train.

``TorchTrainer``, data-parallel over ``finetune.num_workers`` (DDP; GPUs when the cluster has
them, bf16 autocast there), EMA weights, gradient clipping, a checkpoint every
``checkpoint_every`` steps into ``RUN/finetune/ray/`` (local or S3). Rerunning the stage — or Ray
Train restarting a dead worker, up to ``max_failures`` times — resumes from the last checkpoint.
Outputs: ``finetune/model/`` (EMA weights, ``from_pretrained``-loadable; its config names the
label rows), ``finetune/loss.csv``, ``report/finetune_loss.png`` and, when it starts from
``finetune.model``, ``finetune/initialisation.json`` (what it took from it: tensors, and label
rows matched by class name), also in the stage summary. With ``finetune.steps: 0`` (the paper's
UCF101 / MiniUCF setting) nothing trains: one task where a fine-tuning worker would run loads
``finetune.model`` for the run's classes and saves it as ``finetune/model/``, and refuses a model
that lacks a tensor or a run class's label row (they would be untrained).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer, prepare_model

from raydistill.accel import compiled
from raydistill.config import ConfigError, FinetuneConfig, from_dict, to_dict
from raydistill.config import RunConfig as RaydistillConfig
from raydistill.generation.training import (build_model, new_state, restore_checkpoint,
                                            save_checkpoint, step_seed, train_step)
from raydistill.layout import FINETUNE_MODEL_DIR, REPORT_FOLDER, latents_folder
from raydistill.logs import setup_console, time_left
from raydistill.pipeline.cluster import (arrow_filesystem, failure_config, fit_resuming,
                                         ray_storage, train_on_gpu)
from raydistill.pipeline.latents import latent_shape
from raydistill.pipeline.resources import Cluster, Request, train_request
from raydistill.pipeline.shards import shard_files, use_assigned_cpus
from raydistill.pipeline.stage import Stage, missing_model, model_source
from raydistill.runs import RunDir
from raydistill.tracking import open_tracker, prepare_tracking

log = logging.getLogger(__name__)

INITIALISATION = "finetune/initialisation.json"
"""What the model took from ``finetune.model``: tensor counts and label rows matched by name."""


def latent_files(run: RunDir) -> list[str]:
    """URIs of the latent-cache shards of the training split."""
    return [run.uri(path) for path in shard_files(run, latents_folder("train"))]


def streamed_latents(run: RunDir) -> ray.data.Dataset:
    """The latent cache as a Ray Data dataset (``latent``, ``label``), read through the run's
    own filesystem (on S3: its retry settings)."""
    paths = [run.path(path) for path in shard_files(run, latents_folder("train"))]
    return ray.data.read_parquet(paths, filesystem=arrow_filesystem(run)).select_columns(["latent",
                                                                              "label"])


def train_loop(loop_config: dict) -> None:
    """Ray Train worker loop: resume if a checkpoint exists, train to ``steps``, checkpoint."""
    use_assigned_cpus()
    finetune = from_dict(FinetuneConfig, loop_config["finetune"])
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    mixed = device.type == "cuda" and finetune.mixed_precision == "bf16"
    torch.manual_seed(loop_config["seed"] + rank)
    model = build_model(finetune, len(loop_config["class_names"]),
                        tuple(loop_config["latent_shape"]), loop_config["class_names"])
    state = new_state(prepare_model(model), finetune)
    compiled(model, finetune.compile, device)
    checkpoint = ray.train.get_checkpoint()
    if rank == 0 and finetune.model and not checkpoint:
        RunDir(loop_config["run_url"]).write_json(INITIALISATION, model.load_report.summary())
    if checkpoint:
        with checkpoint.as_directory() as folder:
            restore_checkpoint(state, folder)
    if finetune.cache_latents:
        latents, labels = latent_share(RunDir(loop_config["run_url"]), rank,
                                       context.get_world_size())
        batches = cached_batches(latents, labels, finetune.batch_size, loop_config["seed"],
                                 rank, start_step=state.step)
    else:
        batches = streamed_batches(ray.train.get_dataset_shard("train"), finetune)
    setup_console()  # a worker process: its records reach the driver's console through Ray
    tracker = open_tracker(loop_config.get("tracking") if rank == 0 else None, "finetune",
                           {**loop_config["finetune"], "seed": loop_config["seed"]})
    started, first_step = time.time(), state.step
    with tracker:
        while state.step < finetune.steps:
            latents, labels = next(batches)
            loss = train_step(state, latents.to(device), labels.to(device), finetune,
                              loop_config["seed"], rank, mixed)
            if state.step % finetune.log_every == 0:
                state.losses.append((state.step, loss))
                if rank == 0:
                    tracker.log({"loss": loss}, state.step)
                    left = time_left(state.step - first_step, finetune.steps - first_step,
                                     started)
                    log.info(f"finetune: step {state.step} of {finetune.steps}, loss "
                             f"{loss:.4f}{left}")
            if state.step % finetune.checkpoint_every == 0 or state.step == finetune.steps:
                _report(state, loss, rank)


def latent_share(run: RunDir, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """This worker's share of the latent cache in memory: (latents (n, T, C, h, w), labels
    (n,)), every ``world``-th row in video-id order — the same rows in the same order on every
    attempt, so a restarted worker trains on exactly what the lost one did."""
    ids = sorted(video_id for path in shard_files(run, latents_folder("train"))
                 for video_id in run.read_table(path, columns=["video_id"])
                 .column("video_id").to_pylist())
    mine = pa.array(ids[rank::world] or ids[:1], pa.string())
    parts = [table.filter(pc.is_in(table["video_id"], mine))
             for table in map(run.read_table, shard_files(run, latents_folder("train")))]
    table = pa.concat_tables(parts).sort_by("video_id")
    latents = table.column("latent").combine_chunks().to_numpy_ndarray().astype(np.float32)
    return (torch.from_numpy(latents),
            torch.from_numpy(np.asarray(table.column("label").to_pylist(), np.int64)))


def cached_batches(latents: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int,
                   rank: int, start_step: int = 0):
    """Endless (latents (B, T, C, h, w), labels (B,)) batches of an in-memory share, reshuffled
    every epoch with a generator seeded by (seed, rank, epoch), starting at the batch of step
    ``start_step``: a run resumed at step k draws the batches the uninterrupted one drew."""
    size = min(batch_size, len(latents))
    per_epoch = (len(latents) - size) // size + 1
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        order = torch.randperm(len(latents), generator=torch.Generator().manual_seed(
            step_seed(seed, rank, epoch)))
        for start in range(skip * size, per_epoch * size, size):
            chosen = order[start:start + size]
            yield latents[chosen], labels[chosen]
        epoch, skip = epoch + 1, 0


def streamed_batches(shard, finetune: FinetuneConfig):
    """Endless batches streamed from this worker's Ray Data shard, one pass per epoch (a cache
    too large for memory). A restarted worker resumes at its checkpoint's step, but Ray Data's
    streaming order makes the rows it sees after that differ from an uninterrupted run's."""
    while True:
        for batch in shard.iter_batches(batch_size=finetune.batch_size, batch_format="numpy",
                                        local_shuffle_buffer_size=4 * finetune.batch_size,
                                        drop_last=True):
            yield (torch.from_numpy(np.asarray(batch["latent"])),
                   torch.from_numpy(np.asarray(batch["label"], np.int64)))


def _report(state, loss: float, rank: int) -> None:
    """Report metrics on every rank; rank 0 attaches the checkpoint."""
    metrics = {"step": state.step, "loss": loss}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(state, folder)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))


def untrained_parts(report, num_classes: int) -> str | None:
    """What a model loaded with ``report`` (:class:`generation.convert.LoadReport`) would have
    untrained for a run of ``num_classes`` classes, in words; None when everything came from
    the source."""
    missing = report.not_in_source + report.skipped_shape
    if missing:
        return (f"{len(missing)} of this model's tensors are not in it or have another shape "
                f"(e.g. {missing[0]})")
    if report.class_rows_by_name is None:
        return ("its label rows could not be matched to the run's classes by name (set "
                "finetune.model_classes to the file naming them)")
    if report.classes_without_row:
        return (f"its label table has no row for {len(report.classes_without_row)} of the "
                f"run's {num_classes} classes (e.g. {report.classes_without_row[0]!r})")
    if not report.null_row_from_source:
        return "its label table has no null-class row (what classifier-free guidance samples)"
    return None


def keep_pretrained(run_url: str, finetune_settings: dict, class_names: list[str],
                    shape: tuple) -> dict:
    """Ray task of ``finetune.steps: 0``: load ``finetune.model`` for the run's classes and save
    it as the run's ``finetune/model/``. Returns ``{"problem": str}`` (nothing saved) when part
    of it would be untrained, else the load summary."""
    finetune = from_dict(FinetuneConfig, finetune_settings)
    model = build_model(finetune, len(class_names), tuple(shape), list(class_names))
    problem = untrained_parts(model.load_report, len(class_names))
    if problem:
        return {"problem": problem}
    run = RunDir(run_url)
    with tempfile.TemporaryDirectory(prefix="raydistill-latte-") as folder:
        model.eval().save_pretrained(folder)
        run.put_dir(folder, FINETUNE_MODEL_DIR)
    summary = model.load_report.summary()
    run.write_json(INITIALISATION, summary)
    return summary


def use_pretrained_as_is(run: RunDir, config: RaydistillConfig, shape: tuple,
                         class_names: list[str]) -> dict:
    """``finetune.steps: 0``: the pretrained model becomes the run's model, untrained parts
    refused (:class:`ConfigError` naming ``finetune.steps``); returns the stage summary."""
    started = time.time()
    finetune = config.finetune
    gpu = train_on_gpu(finetune.use_gpu)
    task = ray.remote(keep_pretrained).options(
        num_cpus=1 if gpu else finetune.cpus_per_worker, num_gpus=1 if gpu else 0,
        max_retries=finetune.max_failures)
    taken = ray.get(task.remote(run.url, to_dict(finetune), list(class_names), shape))
    if "problem" in taken:
        raise ConfigError(f"finetune.steps: 0 uses {finetune.model} as it is, but "
                          f"{taken['problem']}; fine-tune it (finetune.steps > 0)")
    return {"steps": 0, "loss_first": None, "loss_last": None, "latent_shape": shape,
            "num_classes": len(class_names), "seconds": round(time.time() - started, 2),
            "initialisation": taken}


def run_finetune(run: RunDir, config: RaydistillConfig) -> dict:
    """Train (or resume training) and save the EMA model — or, with ``finetune.steps: 0``, save
    the pretrained model as it is; returns the loss summary."""
    started = time.time()
    finetune = config.finetune
    files = latent_files(run)
    if not files:
        raise FileNotFoundError(f"no latent cache in {run.uri(latents_folder('train'))}; run the "
                                "latents stage first")
    if finetune.steps == 0:
        return use_pretrained_as_is(run, config, latent_shape(run),
                                    run.stage_summary("ingest")["class_names"])
    # A cache that fits in memory is read by the workers themselves (a fixed order: exact
    # resumes); a large one streams through Ray Data.
    datasets = None if finetune.cache_latents else {"train": streamed_latents(run)}
    shape = latent_shape(run)
    class_names = run.stage_summary("ingest")["class_names"]
    storage_path, filesystem = ray_storage(run, "finetune", "ray")
    gpu = train_on_gpu(finetune.use_gpu)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"run_url": run.url, "finetune": to_dict(finetune), "seed": config.seed,
                           "class_names": list(class_names), "latent_shape": shape,
                           "tracking": prepare_tracking(run, config)},
        scaling_config=ScalingConfig(
            num_workers=finetune.num_workers, use_gpu=gpu,
            resources_per_worker=None if gpu else {"CPU": finetune.cpus_per_worker}),
        run_config=RunConfig(name="latte", storage_path=storage_path,
                             storage_filesystem=filesystem,
                             failure_config=failure_config(finetune.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
        datasets=datasets,
    )
    result = fit_resuming(trainer, finetune.max_failures)
    with result.checkpoint.as_directory() as folder:
        run.put_dir(os.path.join(folder, "ema"), FINETUNE_MODEL_DIR)
        saved = torch.load(os.path.join(folder, "state.pt"), map_location="cpu",
                           weights_only=True)
    losses = saved["losses"]
    write_loss_curve(run, losses)
    return {"steps": saved["step"], "loss_first": losses[0][1] if losses else None,
            "loss_last": losses[-1][1] if losses else None, "latent_shape": shape,
            "num_classes": len(class_names), "seconds": round(time.time() - started, 2),
            "initialisation": (run.read_json(INITIALISATION)
                               if finetune.model and run.exists(INITIALISATION) else None)}


def write_loss_curve(run: RunDir, losses: list[tuple[int, float]]) -> None:
    """``finetune/loss.csv`` (step,loss) and the plot ``report/finetune_loss.png``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    run.write_bytes("finetune/loss.csv", ("step,loss\n" + "".join(
        f"{step},{loss:.6f}\n" for step, loss in losses)).encode())
    figure, axis = plt.subplots(figsize=(6, 3.5))
    if losses:
        steps, values = zip(*losses)
        axis.plot(steps, values, linewidth=1)
    axis.set_xlabel("step")
    axis.set_ylabel("diffusion loss")
    axis.set_title("Latte fine-tuning")
    axis.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    run.write_bytes(f"{REPORT_FOLDER}/finetune_loss.png", buffer.getvalue())


ARCHITECTURE_NAMES = {"xl": "Latte-XL/2", "small": "small Latte", "tiny": "tiny Latte"}


def describe(config: RaydistillConfig) -> str:
    """The plan's line: the Latte, where it starts from and how it is trained."""
    f = config.finetune
    architecture = ARCHITECTURE_NAMES[f.architecture]
    rows = ("" if not f.model else
            f" (label rows by class name: {f.model_classes or 'where the model names them'})")
    source = model_source(f.model, "scratch", local_only=True)
    if f.steps == 0:
        return f"{architecture} {source}{rows} used as it is (0 steps: no training)"
    return (f"{architecture} from {source}{rows}, {f.steps:,} steps, batch "
            f"{f.batch_size}/worker, lr {f.learning_rate:g}, {f.prediction_type}, "
            f"cache_latents {f.cache_latents}")


def requests(config: RaydistillConfig, cluster: Cluster) -> list[Request]:
    """The Ray Train workers of the fine-tuning."""
    f = config.finetune
    return [train_request("Latte worker", "finetune", f.use_gpu, f.num_workers, cluster,
                          f.cpus_per_worker)]


def warnings(config: RaydistillConfig) -> list[str]:
    """A Latte or a class-name list this node lacks (both load from local files only)."""
    f = config.finetune
    classes = [] if f.model_classes == "ucf101" else missing_model(
        "finetune.model_classes", f.model_classes, local_only=True)
    return missing_model("finetune.model", f.model, local_only=True) + classes


STAGE = Stage("finetune", run_finetune, describe, requests, warnings=warnings)
