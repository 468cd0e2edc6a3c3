"""Fine-tuning state of the class-conditional Latte: build, step, checkpoint, restore.

Pure torch (no Ray): the Ray Train loop in ``pipeline/finetune.py`` calls these, and tests call
them directly. A checkpoint is a folder::

    model/        save_pretrained of the trained weights
    ema/          save_pretrained of the EMA weights (what generation samples with)
    state.pt      optimizer state, EMA state, step, loss history
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers.training_utils import EMAModel

from raydistill.config import FinetuneConfig
from raydistill.generation.convert import load_latte, own_saved_config
from raydistill.generation.diffusion import diffusion_loss, training_scheduler
from raydistill.generation.latte import (LATTE_XL_2, SMALL_LATTE, TINY_LATTE,
                                         ClassConditionalLatte)

ARCHITECTURE_PRESETS = {"tiny": TINY_LATTE, "small": SMALL_LATTE, "xl": LATTE_XL_2}


def build_model(finetune: FinetuneConfig, num_classes: int,
                latent_shape: tuple[int, int, int, int], class_names: list[str] | None = None
                ) -> ClassConditionalLatte:
    """The model to fine-tune for latents of ``latent_shape`` (T, C, h, w) and ``num_classes``
    (named ``class_names`` in label order, when given).

    Architecture from ``finetune.architecture``, frames / channels / size from the latents,
    initialised from ``finetune.model`` where shapes match (label rows by class name where
    known: ``finetune.model_classes``). ``model.load_report`` says what was taken. Raises
    ValueError when that model was saved by this project with another ``prediction_type`` (its
    training would be undone).
    """
    frames, channels, height, width = latent_shape
    if height != width:
        raise ValueError(f"latents must be square, got {height}×{width}")
    saved = own_saved_config(finetune.model)
    source_type = saved.get("prediction_type", "epsilon") if saved else finetune.prediction_type
    if source_type != finetune.prediction_type:
        raise ValueError(f"finetune.prediction_type: {finetune.model} was trained with "
                         f"{source_type}; fine-tune it with the same prediction_type")
    config = {**ARCHITECTURE_PRESETS[finetune.architecture], "num_frames": frames,
              "in_channels": channels, "sample_size": height,
              "class_dropout_prob": finetune.class_dropout_prob,
              "prediction_type": finetune.prediction_type}
    model, report = load_latte(finetune.model, num_classes, class_names,
                               finetune.model_classes, **config)
    model.load_report = report
    return model


@dataclass
class TrainState:
    """Everything a resumed run needs: model, optimizer, EMA, step and loss history."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMAModel
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)


def new_state(model: torch.nn.Module, finetune: FinetuneConfig) -> TrainState:
    """Optimizer (AdamW, no weight decay, as Latte) and EMA for ``model`` (maybe DDP-wrapped)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=finetune.learning_rate, weight_decay=0)
    ema = EMAModel(model.parameters(), decay=finetune.ema_decay)
    return TrainState(model=model, optimizer=optimizer, ema=ema)


def unwrap(model: torch.nn.Module) -> ClassConditionalLatte:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return getattr(model, "module", model)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one worker's randomness at one step."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def train_step(state: TrainState, latents: torch.Tensor, labels: torch.Tensor,
               finetune: FinetuneConfig, seed: int, rank: int = 0,
               mixed_precision: bool = False) -> float:
    """One optimisation step on a batch of latents (B, T, C, h, w); returns the loss.

    Timesteps, noise and label dropout are seeded by (seed, rank, step), so a resumed run draws
    what the uninterrupted one would have. Gradients are clipped to ``grad_clip``; the
    EMA follows every step.
    """
    model = state.model
    model.train()
    generator = torch.Generator().manual_seed(step_seed(seed, rank, state.step))
    config = unwrap(model).config
    scheduler = training_scheduler(config.learn_sigma, config.prediction_type)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if mixed_precision
                else contextlib.nullcontext())
    # Label dropout draws from the global RNG: seed it per step too (without leaking the seed
    # outside), so a resumed run drops the labels the uninterrupted one would have.
    with torch.random.fork_rng(devices=[]), autocast:
        torch.manual_seed(step_seed(seed, rank, state.step))
        loss = diffusion_loss(model, latents, labels, scheduler, generator=generator)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), finetune.grad_clip)
    state.optimizer.step()
    state.ema.step(model.parameters())
    state.step += 1
    return loss.item()


def ema_model(state: TrainState) -> ClassConditionalLatte:
    """A copy of the model carrying the EMA weights (for sampling and saving)."""
    model = unwrap(state.model)
    copy = ClassConditionalLatte.from_config(model.config)
    copy.load_state_dict(model.state_dict())
    state.ema.copy_to(copy.parameters())
    return copy.eval()


def save_checkpoint(state: TrainState, folder: str) -> None:
    """Write the checkpoint folder (see the module docstring)."""
    unwrap(state.model).save_pretrained(os.path.join(folder, "model"))
    ema_model(state).save_pretrained(os.path.join(folder, "ema"))
    torch.save({"optimizer": state.optimizer.state_dict(), "ema": state.ema.state_dict(),
                "step": state.step, "losses": state.losses}, os.path.join(folder, "state.pt"))


def restore_checkpoint(state: TrainState, folder: str) -> None:
    """Load a checkpoint folder into ``state`` (whose model has the same architecture and
    prediction type; ValueError when the prediction type differs)."""
    trained = ClassConditionalLatte.from_pretrained(os.path.join(folder, "model"))
    wanted = unwrap(state.model).config.prediction_type
    if trained.config.prediction_type != wanted:
        raise ValueError(f"finetune.prediction_type: the checkpoint {folder} was trained with "
                         f"{trained.config.prediction_type}, not {wanted}; use a new run "
                         "directory (or the checkpoint's prediction_type)")
    unwrap(state.model).load_state_dict(trained.state_dict())
    saved = torch.load(os.path.join(folder, "state.pt"), map_location="cpu", weights_only=True)
    state.optimizer.load_state_dict(saved["optimizer"])
    state.ema.load_state_dict(saved["ema"])
    state.step, state.losses = saved["step"], [tuple(x) for x in saved["losses"]]
