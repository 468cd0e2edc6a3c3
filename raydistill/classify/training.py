"""Training and inference of a classifier on uint8 clips: settings, one epoch, predict, fit, resume.

Pure torch. One training loop, :func:`fit_classifier`: tests, small runs and the embedding
classifier call it in-process; the evaluate stage's Ray Train workers call it on their share of
the clips with their own checkpoints (:class:`Checkpoints`) and the DistributedDataParallel
wrapper.

Defaults (:data:`PAPER_TRAINING`). The paper names the classifier (C3D) and the protocol (train on
the selected set, test on the real test split, 5 runs) but no optimiser settings. We follow the
evaluation protocol of the video-distillation benchmarks it compares against (Wang et al.'s
scripts, after DC/DM's ``evaluate_synset``: train from scratch for 500 epochs, SGD momentum 0.9,
weight decay 5e-4, lr × 0.1 at half the epochs) with C3D's own learning rate and batch
(Tran et al. 2015: lr 0.003, batch ≈ 30); the benchmarks' lr 0.01 was tuned for their
ConvNet3D (``classify.models.ConvNet3D``). To evaluate that one as they did (batch 256, no
augmentation), set ``evaluate: {classifier: convnet3d, training: {lr: 0.01, batch_size: 256,
augmentation: {crop: none, flip: false, temporal_jitter: false}}}``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raydistill.accel import FastPaths
from raydistill.classify.augment import Augmentation, augment_clips, clips_on, to_model_input
from raydistill.classify.metrics import classification_metrics

DEFAULT_AUGMENTATION = Augmentation()
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "cosine", "constant")


@dataclass(frozen=True)
class TrainSettings:
    """How to train a classifier. ``schedule`` is per epoch: ``"step"`` multiplies the lr by
    ``step_gamma`` after each fraction ``step_at`` of the epochs, ``"cosine"`` anneals it to 0."""

    epochs: int = 500
    batch_size: int = 32
    lr: float = 0.003
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    momentum: float = 0.9
    schedule: str = "step"
    step_at: tuple[float, ...] = (0.5,)
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    augmentation: Augmentation = field(default_factory=Augmentation)
    seed: int = 0
    min_steps: int = 0

    def for_clips(self, count: int, workers: int = 1) -> TrainSettings:
        """These settings for a training set of ``count`` clips split over ``workers``: epochs
        raised until there are at least ``min_steps`` optimiser steps (a selection of one video
        per class is a single batch, which ``epochs`` alone would train for a few steps)."""
        steps_per_epoch = max(1, math.ceil(count / (self.batch_size * max(1, workers))))
        epochs = max(self.epochs, math.ceil(self.min_steps / steps_per_epoch))
        return self if epochs == self.epochs else replace(self, epochs=epochs)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of "
                             f"{', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of "
                             f"{', '.join(SCHEDULES)}")
        if not all(math.isfinite(value) for value in (self.lr, self.weight_decay,
                                                       self.momentum, self.step_gamma,
                                                       self.label_smoothing)):
            raise ValueError("lr, weight_decay, momentum, step_gamma and label_smoothing must "
                             "be finite numbers")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError("epochs and batch_size must be >= 1 and lr > 0")
        if self.min_steps < 0:
            raise ValueError("min_steps must be >= 0")
        if not 0 <= self.label_smoothing < 1 or any(not 0 < f < 1 for f in self.step_at):
            raise ValueError("label_smoothing must be in [0, 1) and step_at fractions in (0, 1)")


PAPER_TRAINING = TrainSettings()
# Toy runs: Adam converges in tens of epochs where SGD at 0.003 needs hundreds; no flip, because
# the toy classes are left/right and clockwise/counter-clockwise motions.
TOY_TRAINING = TrainSettings(
    epochs=30, batch_size=16, lr=2e-3, weight_decay=0.0, optimizer="adam", schedule="cosine",
    augmentation=Augmentation(crop="pad", pad=2, flip=False))


def training_recipe(spec: Mapping, settings: TrainSettings, videos: int, workers: int = 1,
                    device: str = "cpu") -> dict:
    """Everything that decides a classifier trained on ``videos`` clips, JSON-ready: the
    classifier ``spec`` (``name, frames, size, options``), the settings as they apply to that
    many clips (``min_steps`` already turned into epochs), the data-parallel ``workers`` (each
    has its own share, seed and batch) and the ``device`` type. Two trainings with equal recipes
    on the same clips in the same order train the same model, up to the rounding of sums split
    over a different number of CPU threads."""
    effective = replace(settings.for_clips(videos, workers), min_steps=0)
    return json.loads(json.dumps({"classifier": dict(spec), "training": asdict(effective),
                                  "videos": int(videos), "workers": int(workers),
                                  "device": device}))


def unwrap(model: nn.Module) -> nn.Module:
    """The classifier inside a DistributedDataParallel wrapper (Ray Train), or ``model``."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam over all of ``model``'s parameters, weight decay on all."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=settings.lr,
                            weight_decay=settings.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer,
                   settings: TrainSettings) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch lr schedule; call ``step()`` once after each epoch."""
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    milestones = [] if settings.schedule == "constant" else sorted(
        {max(1, round(f * settings.epochs)) for f in settings.step_at})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, settings.step_gamma)


def iterate_batches(clips: np.ndarray, labels: np.ndarray, batch_size: int,
                    generator: torch.Generator | None = None
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(clips (b, T, H, W, 3), labels (b,)) batches of an in-memory set, shuffled with
    ``generator`` (in order without one); the last batch may be smaller."""
    labels = np.asarray(labels)
    if len(clips) != len(labels):
        raise ValueError(f"{len(clips)} clips but {len(labels)} labels")
    order = (torch.randperm(len(labels), generator=generator).numpy() if generator is not None
             else np.arange(len(labels)))
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        yield clips[chosen], labels[chosen]


def _unpack(batch) -> tuple:
    """A ``(clips, labels)`` pair, or a mapping with ``clip`` and ``label`` (a clip-table batch)."""
    if isinstance(batch, Mapping):
        return batch["clip"], batch["label"]
    return batch


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def train_one_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable,
                    generator: torch.Generator, augmentation: Augmentation = DEFAULT_AUGMENTATION,
                    label_smoothing: float = 0.0, fast: FastPaths = FastPaths()) -> float:
    """One pass of SGD steps over ``batches``; returns the sample-weighted mean training loss.

    Each batch is ``(clips, labels)`` or ``{"clip": …, "label": …}`` with uint8 clips
    (b, T, H, W, 3) and int labels (b,), numpy or torch; clips are augmented on the CPU with
    ``generator`` to the model's (frames, size) and moved to the model's device.
    """
    core = unwrap(model)
    device = _device(model)
    model.train()
    total_loss, total_count = 0.0, 0
    for batch in batches:
        clips, labels = _unpack(batch)
        inputs = augment_clips(clips, core.frames, core.size, augmentation, generator)
        targets = torch.as_tensor(labels, dtype=torch.long, device=device)
        with fast.autocast(device):
            logits = model(fast.inputs(inputs, device))
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(targets)
        total_count += len(targets)
    if total_count == 0:
        raise ValueError("no batches to train on")
    return total_loss / total_count


@torch.no_grad()
def predict(model: nn.Module, clips: np.ndarray | torch.Tensor,
            batch_size: int = 32, fast: FastPaths = FastPaths()) -> np.ndarray:
    """Class probabilities (N, num_classes) float64 of uint8 clips (N, T, H, W, 3), with the
    deterministic test-time input (uniform frames, centre square), under ``fast``'s autocast
    and memory order; leaves ``model`` in eval mode."""
    core = unwrap(model)
    device = _device(model)
    model.eval()
    out = []
    for start in range(0, len(clips), batch_size):
        inputs = to_model_input(clips_on(clips[start:start + batch_size], device), core.frames,
                                core.size)
        with fast.autocast(device):
            logits = model(fast.inputs(inputs, device))
        out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    if not out:
        return np.zeros((0, core.num_classes))
    return np.concatenate(out).astype(np.float64)


def evaluate(model: nn.Module, clips: np.ndarray, labels: np.ndarray,
             batch_size: int = 32) -> dict[str, float]:
    """:func:`~raydistill.classify.metrics.classification_metrics` of ``model`` on a test set."""
    probabilities = predict(model, clips, batch_size)
    return classification_metrics(labels, probabilities,
                                  labels=np.arange(unwrap(model).num_classes))


class SavedState(NamedTuple):
    """What :func:`load_state` returns besides the restored objects."""

    epoch: int
    history: list[dict]


def save_state(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, epoch: int = 0,
               generator: torch.Generator | None = None,
               history: list[dict] | None = None) -> None:
    """Write model, optimizer, scheduler, ``epoch`` (epochs completed), the data generator's and
    torch's global RNG state (dropout) and ``history`` to one file, atomically."""
    state = {
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": epoch,
        "generator": generator.get_state() if generator is not None else None,
        "global_rng": torch.get_rng_state(),
        "history": list(history or []),
    }
    partial = f"{os.fspath(path)}.partial"
    torch.save(state, partial)
    os.replace(partial, path)


def load_state(path: str | os.PathLike, model: nn.Module,
               optimizer: torch.optim.Optimizer | None = None,
               scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
               generator: torch.Generator | None = None,
               restore_global_rng: bool = False) -> SavedState:
    """Restore what :func:`save_state` wrote into the given objects (those not None); torch's
    global RNG only when ``restore_global_rng``. Returns the epoch and history saved."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if generator is not None and state["generator"] is not None:
        generator.set_state(state["generator"])
    if restore_global_rng:
        torch.set_rng_state(state["global_rng"])
    return SavedState(int(state["epoch"]), list(state["history"]))


class Checkpoints(Protocol):
    """Where :func:`fit_classifier` keeps its state between epochs: a local file
    (:class:`FileCheckpoint`), or the evaluate stage's Ray Train reports and run-directory files
    (``pipeline/evaluate.py``)."""

    save_final: bool
    """Whether the state after the last epoch is saved too (not where the caller saves the
    finished model right after)."""

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler,
                generator: torch.Generator) -> tuple[int, list[dict]]:
        """Load the saved state into the objects; returns (epochs done, history), (0, [])
        when there is none."""

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
             history: list[dict]) -> None:
        """Keep the state after epoch ``history[-1]["epoch"]``."""


class FileCheckpoint:
    """A checkpoint in one local file (:func:`save_state`), resumed from when it exists and
    saved after every epoch, the last included: a finished training rerun returns at once."""

    save_final = True

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def restore(self, model, optimizer, scheduler, generator) -> tuple[int, list[dict]]:
        """(epochs done, history) from the file, torch's global RNG included; (0, []) without
        one."""
        if not os.path.exists(self.path):
            return 0, []
        return load_state(self.path, model, optimizer, scheduler, generator,
                          restore_global_rng=True)

    def save(self, model, optimizer, scheduler, generator, history) -> None:
        """Write the state after the last epoch of ``history`` (atomically)."""
        save_state(self.path, model, optimizer, scheduler, history[-1]["epoch"], generator,
                   history)


def fit_classifier(model: nn.Module, train_clips: np.ndarray, train_labels: np.ndarray,
                   settings: TrainSettings = PAPER_TRAINING,
                   checkpoint_path: str | os.PathLike | None = None,
                   on_epoch: Callable[[dict], None] | None = None, *,
                   checkpoints: Checkpoints | None = None, checkpoint_every: int = 1,
                   rank: int = 0, world: int = 1,
                   wrap: Callable[[nn.Module], nn.Module] | None = None,
                   fast: FastPaths = FastPaths()) -> list[dict]:
    """Train ``model`` (already on its device) on uint8 clips (N, T, H, W, 3) and labels (N,).

    Returns the history, one ``{"epoch", "loss", "lr"}`` per epoch. Seeds torch's global RNG
    (dropout) and a data generator (shuffling, augmentation) from ``settings.seed``, so a CPU run
    is deterministic. With ``checkpoint_path`` (a :class:`FileCheckpoint`) or ``checkpoints``
    the state is restored first and saved every ``checkpoint_every`` epochs, continuing exactly
    where it stopped. ``on_epoch`` gets each epoch's history entry once it is saved (to log,
    evaluate or stop).

    The evaluate stage's Ray Train workers run this same loop, each on its share of the clips:
    ``rank`` of ``world`` workers seeds with ``settings.seed + rank`` and counts epochs on the
    whole set (``world`` shares of N clips), and ``wrap(model)``, once the state is restored,
    gives the module that takes the steps (DistributedDataParallel: the workers' weights stay
    equal); ``fast`` its autocast, memory order and compilation on a GPU.
    """
    if checkpoints is None and checkpoint_path is not None:
        checkpoints = FileCheckpoint(checkpoint_path)
    settings = settings.for_clips(len(train_clips) * world, world)
    torch.manual_seed(settings.seed + rank)
    generator = torch.Generator().manual_seed(settings.seed + rank)
    optimizer = make_optimizer(model, settings)
    scheduler = make_scheduler(optimizer, settings)
    start, history = (checkpoints.restore(model, optimizer, scheduler, generator)
                      if checkpoints is not None else (0, []))
    stepped = fast.model(model, _device(model), wrap)
    for epoch in range(start, settings.epochs):
        lr = optimizer.param_groups[0]["lr"]
        batches = iterate_batches(train_clips, train_labels, settings.batch_size, generator)
        loss = train_one_epoch(stepped, optimizer, batches, generator,
                               settings.augmentation, settings.label_smoothing, fast)
        scheduler.step()
        history.append({"epoch": epoch + 1, "loss": loss, "lr": lr})
        done = epoch + 1
        if (checkpoints is not None and done % checkpoint_every == 0
                and (done < settings.epochs or checkpoints.save_final)):
            checkpoints.save(model, optimizer, scheduler, generator, history)
        if on_epoch is not None:
            on_epoch(history[-1])
    return history
