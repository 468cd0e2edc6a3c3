"""VST-UNet selection (Algorithm 1) as a scikit-learn style estimator, plus its pure pieces.

One model is trained over all classes; each optimiser step sees the N_c latent videos of one
class. After training, the top-VPC videos of each class by p_c are the selection.

One training loop, :meth:`VSTUNetSelector.train_model`, serves ``fit`` and the select stage's
Ray Train workers (``pipeline/vst.py``), which supply their class batches, their checkpoints
(:class:`VSTCheckpoints`) and the DistributedDataParallel wrapper; they reuse ``score_classes``,
``build_model`` and ``save_state`` / ``load_state`` too. All randomness of epoch ``e`` (class
order, REINFORCE draws) comes from ``epoch_generator(random_state, e)``, so training resumed
from the checkpoint of epoch ``e`` reaches the same weights as training straight through.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from sklearn.base import BaseEstimator

from raydistill.accel import autocast, to_device
from raydistill.selection.base import check_count_and_seed
from raydistill.selection.vst_losses import (LOSS_NAMES, REP_DISTANCES, default_lambdas,
                                             total_loss)
from raydistill.selection.vst_unet import SCORE_INPUTS, VSTUNet, VSTUNetConfig, VSTUNetOutput

STATE_FILE = "vst_unet_state.pt"
REWARD_SPACES = ("features", "latents")


@dataclass(frozen=True, eq=False)
class ClassBatch:
    """The videos of one class: ``source[indices]`` is (N_c, T, C, h, w); ``label`` is 0..K-1."""

    label: int
    indices: np.ndarray
    source: torch.Tensor

    @property
    def latents(self) -> torch.Tensor:
        return self.source[torch.from_numpy(self.indices)]


def make_class_batches(X, y, latent_shape: Sequence[int] | None = None
                       ) -> tuple[list[ClassBatch], np.ndarray]:
    """Group ``X`` (n, T, C, h, w), or (n, D) with ``latent_shape`` (T, C, h, w), by ``y`` (n,).

    Returns one batch per class in ascending label order and the sorted original labels.
    """
    source = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X)
    labels = np.asarray(y)
    if source.ndim == 2 and latent_shape is not None:
        source = source.reshape(source.shape[0], *latent_shape)
    if source.ndim != 5:
        raise ValueError(f"X must be (n, T, C, h, w), or (n, D) with latent_shape; got "
                         f"{tuple(source.shape)}")
    if labels.ndim != 1 or labels.shape[0] != source.shape[0]:
        raise ValueError(f"y must be (n,) with n = {source.shape[0]}; got {labels.shape}")
    if source.shape[0] == 0:
        raise ValueError("X is empty")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"y must hold integer labels, got dtype {labels.dtype}")
    if not torch.isfinite(source).all():
        raise ValueError("X contains NaN or infinite values")
    source = source.float()
    classes = np.unique(labels)
    batches = [ClassBatch(index, np.flatnonzero(labels == label), source)
               for index, label in enumerate(classes)]
    return batches, classes


def build_model(config: VSTUNetConfig, seed: int) -> VSTUNet:
    """A VST-UNet initialised from ``seed`` without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VSTUNet(config)


def make_optimizer(model: VSTUNet, lr: float, score_lr_scale: float = 10.0
                   ) -> torch.optim.Adam:
    """Adam with the score head at ``score_lr_scale × lr``.

    The score head (a linear map of the LayerNorm'd, or whitened, features) sets how sharply the
    policy ranks the videos; its slope has to grow for the ranking to sharpen, faster than the
    trunk's weights may move (measured with the whitened input on planted data: 0.9 of the
    optimal reward after 100 epochs with ×10, ~0.2 with ×1).
    """
    head = list(model.score_head.parameters())
    head_ids = {id(p) for p in head}
    trunk = [p for p in model.parameters() if id(p) not in head_ids]
    return torch.optim.Adam([{"params": trunk, "lr": lr},
                             {"params": head, "lr": lr * score_lr_scale}])


def epoch_generator(random_state: int, epoch: int) -> torch.Generator:
    """The CPU generator for all randomness of ``epoch``, a function of (random_state, epoch)."""
    seed = np.random.SeedSequence([random_state, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(seed))


def train_epoch(model: VSTUNet, optimizer: torch.optim.Optimizer,
                class_batches: Sequence[ClassBatch], *, n_select: int, lambda_div: float,
                lambda_rep: float, generator: torch.Generator,
                losses: tuple[str, ...] = LOSS_NAMES, n_samples: int = 16,
                reward_space: str = "features", rep_distance: str = "mse",
                device: str | torch.device = "cpu",
                mixed_precision: str = "no") -> dict[str, float]:
    """One pass over the classes in a ``generator``-drawn order; one step per class.

    ``reward_space``: L_div / L_rep measure the model's features f_c ("features", the paper) or
    the flattened latents ("latents"); ``rep_distance`` is L_rep's distance ("mse", the paper, or
    "l2"); both detached, see ``vst_losses``. The model runs under bf16 autocast on a GPU with
    ``mixed_precision="bf16"``; the losses are computed in float32.
    Returns the mean over classes of each loss part (see ``vst_losses.total_loss``).
    """
    model.train()
    totals: dict[str, float] = {}
    for position in torch.randperm(len(class_batches), generator=generator).tolist():
        batch = class_batches[position]
        latents = to_device(batch.latents, device)
        embeddings = latents.flatten(1) if reward_space == "latents" else None
        with autocast(device, mixed_precision):
            outputs = model(latents)
        loss, parts = total_loss(as_float(outputs), batch.label, n_select, lambda_div, lambda_rep,
                                 losses=losses, n_samples=n_samples, generator=generator,
                                 embeddings=embeddings, rep_distance=rep_distance)
        optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
            optimizer.step()
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + float(value)
    return {name: value / len(class_batches) for name, value in totals.items()}


def as_float(outputs: VSTUNetOutput) -> VSTUNetOutput:
    """``outputs`` with every tensor in float32 (an autocast forward returns some in bf16)."""
    return VSTUNetOutput(*(tensor.float() for tensor in outputs))


@torch.no_grad()
def score_classes(model: VSTUNet, class_batches: Sequence[ClassBatch],
                  device: str | torch.device = "cpu",
                  mixed_precision: str = "no") -> list[np.ndarray]:
    """p_c (N_c,) of every class batch, in the order of ``class_batches`` (bf16 autocast on a
    GPU with ``mixed_precision="bf16"``)."""
    model.eval()
    with autocast(device, mixed_precision):
        return [model(to_device(batch.latents, device)).probs.float().cpu().numpy()
                for batch in class_batches]


def top_per_class(class_batches: Sequence[ClassBatch], probs: Sequence[np.ndarray],
                  n_select: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into X of the top-``n_select`` of each class by p_c (descending), and their p_c."""
    indices, scores = [], []
    for batch, p in zip(class_batches, probs):
        order = np.argsort(-p, kind="stable")[:n_select]
        indices.append(batch.indices[order])
        scores.append(p[order])
    return np.concatenate(indices).astype(np.int64), np.concatenate(scores)


def save_state(path: str | os.PathLike, model: VSTUNet, optimizer: torch.optim.Optimizer,
               epoch: int, history: list[dict], meta: dict | None = None) -> None:
    """Write model + optimizer state after ``epoch`` (0-based) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": list(history), "meta": meta or {}}
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_state(path: str | os.PathLike, model: VSTUNet,
               optimizer: torch.optim.Optimizer | None = None,
               map_location: str | torch.device = "cpu") -> tuple[int, list[dict], dict]:
    """Restore ``model`` (and ``optimizer``) from ``path``; returns (epoch, history, meta)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state["epoch"], state["history"], state["meta"]


class VSTCheckpoints(Protocol):
    """Where :meth:`VSTUNetSelector.train_model` keeps its state between epochs: a folder
    (:class:`FolderCheckpoint`, ``checkpoint_dir``), or Ray Train's reports
    (``pipeline/vst.py``)."""

    save_final: bool
    """Whether the state after the last epoch is saved too (not where the caller saves the
    finished model right after)."""

    def restore(self, model: VSTUNet, optimizer: torch.optim.Optimizer) -> list[dict]:
        """Load the saved state into the objects; returns the history of the epochs done
        ([] when there is none)."""

    def save(self, model: VSTUNet, optimizer: torch.optim.Optimizer,
             history: list[dict]) -> None:
        """Keep the state after epoch ``len(history)``."""


class FolderCheckpoint:
    """``checkpoint_dir/vst_unet_state.pt``, with the ``fingerprint`` of the selector and data
    it was written for (a checkpoint of another configuration is refused, not resumed); saved
    after every epoch, the last included."""

    save_final = True

    def __init__(self, folder: str | os.PathLike, fingerprint: dict, epochs: int,
                 device: str | torch.device = "cpu"):
        self.path = Path(folder) / STATE_FILE
        self.fingerprint, self.epochs, self.device = fingerprint, epochs, device

    def restore(self, model: VSTUNet, optimizer: torch.optim.Optimizer) -> list[dict]:
        """The saved history (its model and optimizer state loaded); ValueError naming the file
        for another configuration's checkpoint or one past ``epochs``."""
        if not self.path.exists():
            return []
        epoch, history, meta = load_state(self.path, model, optimizer, self.device)
        if meta != self.fingerprint:
            raise ValueError(f"checkpoint at {self.path} was written by a different "
                             "selector configuration or data; use another checkpoint_dir")
        if epoch + 1 > self.epochs:
            raise ValueError(f"checkpoint at {self.path} is after epoch {epoch + 1}, "
                             f"past epochs={self.epochs}")
        return list(history[: epoch + 1])

    def save(self, model: VSTUNet, optimizer: torch.optim.Optimizer,
             history: list[dict]) -> None:
        """Write the state after the last epoch of ``history``."""
        save_state(self.path, model, optimizer, len(history) - 1, history, self.fingerprint)


class VSTUNetSelector(BaseEstimator):
    """Select ``n_per_class`` videos per class by a VST-UNet trained on L_ce + λ_d·L_div + λ_r·L_rep.

    Parameters: ``lambda_div`` / ``lambda_rep`` None take the paper values for the VPC
    (``default_lambdas``); ``losses`` picks the Table-6 terms; ``width``, ``levels``,
    ``feature_dim``, ``norm_groups`` size the model (defaults: the paper preset);
    ``score_lr_scale`` multiplies ``lr`` for the score head (``make_optimizer``); ``n_samples``
    REINFORCE draws per step; ``reward_space`` what L_div / L_rep measure ("features": the model's
    penultimate features f_c, the paper; "latents": the flattened VAE latents); ``rep_distance``
    the distance in L_rep ("mse": mean square error, the paper; "l2": Euclidean distance of
    L2-normalised vectors); ``score_input`` what the score head reads ("layernorm": the
    LayerNorm'd features, the paper; "whitened": features whitened across the class, see
    ``vst_unet``). The defaults are not the paper's form but the one that selected better where
    they were compared: on the quickstart's synthetic pool (3 seeds) the paper's form gave 18.0 %
    at VPC 1 and 20.8 % at VPC 5, this one 15.7 % and 27.8 % (random 15.2 / 23.3 %), and on
    planted clusters the paper's form collapsed onto one cluster (benchmarks/BENCHMARKS.md);
    ``reward_space="features", rep_distance="mse", score_input="layernorm"`` is the paper's form.
    ``latent_shape`` (T, C, h, w) to unflatten an (n, D)
    ``X``. With ``checkpoint_dir`` the state is saved after every epoch and a refit resumes after
    the last saved one, reaching the weights of one uninterrupted run (``random_state`` None:
    unseeded, and a resumed run goes on with fresh randomness). ``mixed_precision="bf16"``
    trains and scores under bf16 autocast when ``device`` is a GPU (``"no"``: float32).

    Attributes after ``fit``: ``selected_indices_`` (m,) int64 rows of X, grouped by class in
    ascending label order, by descending p_c within a class, min(VPC, n_c) per class;
    ``selected_scores_`` (m,) their p_c; ``selected_labels_`` (m,); ``classes_`` (C,);
    ``model_`` the trained VSTUNet; ``loss_history_`` one dict of mean loss parts per epoch.
    Class attributes ``label``, ``report_order``, ``color``, ``proposed``: as
    :class:`~raydistill.selection.base.ClassSelector`'s.
    """

    label = "VST-UNet"
    report_order = 70
    color = "C9"
    proposed = True

    def __init__(self, n_per_class: int = 1, lambda_div: float | None = None,
                 lambda_rep: float | None = None, epochs: int = 100, lr: float = 3e-3,
                 score_lr_scale: float = 10.0,
                 width: int = 32, levels: int = 3, feature_dim: int = 256, norm_groups: int = 8,
                 n_samples: int = 16, reward_space: str = "latents", rep_distance: str = "l2",
                 score_input: str = "whitened", random_state: int = 0,
                 losses: tuple[str, ...] = LOSS_NAMES,
                 latent_shape: tuple[int, ...] | None = None, checkpoint_dir: str | None = None,
                 gradient_checkpointing: bool = False, device: str = "cpu",
                 mixed_precision: str = "bf16"):
        self.n_per_class = n_per_class
        self.lambda_div = lambda_div
        self.lambda_rep = lambda_rep
        self.epochs = epochs
        self.lr = lr
        self.score_lr_scale = score_lr_scale
        self.width = width
        self.levels = levels
        self.feature_dim = feature_dim
        self.norm_groups = norm_groups
        self.n_samples = n_samples
        self.reward_space = reward_space
        self.rep_distance = rep_distance
        self.score_input = score_input
        self.random_state = random_state
        self.losses = losses
        self.latent_shape = latent_shape
        self.checkpoint_dir = checkpoint_dir
        self.gradient_checkpointing = gradient_checkpointing
        self.device = device
        self.mixed_precision = mixed_precision

    def fit(self, X, y, scores=None) -> VSTUNetSelector:
        """Train on latents ``X`` with labels ``y`` and select; ``scores`` is ignored."""
        self._check_params()
        batches, classes = make_class_batches(X, y, self.latent_shape)
        checkpoints = None
        if self.checkpoint_dir is not None:
            config = self.model_config(batches[0].source.shape[2], len(classes))
            checkpoints = FolderCheckpoint(
                self.checkpoint_dir, self._fingerprint(config, batches[0].source, y),
                self.epochs, self.device)
        model, history = self.train_model(batches, len(classes), checkpoints)
        probs = score_classes(model, batches, self.device, self.mixed_precision)
        self.selected_indices_, self.selected_scores_ = top_per_class(
            batches, probs, self.n_per_class)
        self.selected_scores_ = self.selected_scores_.astype(np.float64)
        self.selected_labels_ = np.asarray(y)[self.selected_indices_]
        self.classes_ = classes
        self.model_ = model
        self.loss_history_ = history
        return self

    def train_model(self, batches: Sequence[ClassBatch], num_classes: int,
                    checkpoints: VSTCheckpoints | None = None, checkpoint_every: int = 1,
                    rank: int = 0, world: int = 1,
                    wrap: Callable[[VSTUNet], torch.nn.Module] | None = None,
                    on_epoch: Callable[[dict], None] | None = None
                    ) -> tuple[VSTUNet, list[dict]]:
        """Train a VST-UNet over ``batches`` (one per class, indexed among ``num_classes``);
        returns (the model, one dict of mean loss parts per epoch).

        ``checkpoints`` are restored first and saved every ``checkpoint_every`` epochs. The
        select stage's Ray Train workers run this same loop on their shares of the classes:
        ``rank`` of ``world`` draws epoch ``e``'s randomness from ``epoch_generator(seed,
        e · world + rank)``, and ``wrap(model)``, once the state is restored, gives the module
        that takes the steps (DistributedDataParallel). ``on_epoch`` gets each epoch's loss
        parts with its number (``{"epoch", "total", "ce", "div", "rep", "policy"}``) once it is
        saved (to log them).
        """
        self._check_params()
        lambda_div, lambda_rep = self.lambdas()
        config = self.model_config(batches[0].source.shape[2], num_classes)
        seed = self._seed()
        model = build_model(config, seed).to(self.device)
        optimizer = make_optimizer(model, self.lr, self.score_lr_scale)
        history = checkpoints.restore(model, optimizer) if checkpoints is not None else []
        stepped = wrap(model) if wrap is not None else model
        for epoch in range(len(history), self.epochs):
            history.append(train_epoch(
                stepped, optimizer, batches, n_select=self.n_per_class, lambda_div=lambda_div,
                lambda_rep=lambda_rep, generator=epoch_generator(seed, epoch * world + rank),
                losses=tuple(self.losses), n_samples=self.n_samples,
                reward_space=self.reward_space, rep_distance=self.rep_distance,
                device=self.device, mixed_precision=self.mixed_precision))
            done = epoch + 1
            if (checkpoints is not None and done % checkpoint_every == 0
                    and (done < self.epochs or checkpoints.save_final)):
                checkpoints.save(model, optimizer, history)
            if on_epoch is not None:
                on_epoch({"epoch": done, **history[-1]})
        return model, history

    def _check_params(self) -> None:
        check_count_and_seed(self.n_per_class, self.random_state)
        if self.epochs < 0 or self.lr <= 0 or self.score_lr_scale <= 0 or self.n_samples < 2:
            raise ValueError("need epochs >= 0, lr > 0, score_lr_scale > 0 and n_samples >= 2")
        for name in ("lambda_div", "lambda_rep"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")
        if not self.losses or not set(self.losses) <= set(LOSS_NAMES):
            raise ValueError(f"losses must be a non-empty subset of {LOSS_NAMES}, "
                             f"got {self.losses}")
        for name, choices in (("reward_space", REWARD_SPACES), ("score_input", SCORE_INPUTS),
                              ("rep_distance", REP_DISTANCES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, "
                                 f"got {getattr(self, name)!r}")

    def _seed(self) -> int:
        if self.random_state is None:  # unseeded: fresh entropy, not reproducible
            return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
        return int(self.random_state)

    def lambdas(self) -> tuple[float, float]:
        """(λ_d, λ_r): the given values, or the paper's for this VPC where None."""
        default_div, default_rep = default_lambdas(self.n_per_class)
        return (default_div if self.lambda_div is None else float(self.lambda_div),
                default_rep if self.lambda_rep is None else float(self.lambda_rep))

    def model_config(self, in_channels: int, num_classes: int) -> VSTUNetConfig:
        """The VST-UNet configuration these parameters describe."""
        return VSTUNetConfig(
            in_channels=in_channels, base_width=self.width,
            channel_mults=tuple(2 ** level for level in range(self.levels)),
            num_classes=num_classes, feature_dim=self.feature_dim, norm_groups=self.norm_groups,
            head_dim=min(32, self.width), checkpointing=self.gradient_checkpointing,
            score_input=self.score_input)

    def _fingerprint(self, config: VSTUNetConfig, source: torch.Tensor, y) -> dict:
        """What a checkpoint must match to be resumed: all that changes the weights."""
        ignored = ("epochs", "device", "checkpoint_dir", "gradient_checkpointing")
        params = {k: tuple(v) if isinstance(v, list) else v
                  for k, v in self.get_params().items() if k not in ignored}
        class_sizes = np.unique(np.asarray(y), return_counts=True)[1].tolist()
        return {"params": repr(sorted(params.items())),
                "config": repr(replace(config, checkpointing=False)),
                "data": repr((tuple(source.shape), class_sizes))}

