"""The GPU fast paths every stage's model shares: bf16 autocast, ``torch.compile`` and
asynchronous host-to-device copies, each a no-op where it does not apply (on a CPU device;
``mixed_precision: no``; ``compile: false``), so one code path serves a laptop and a GPU node
and a CPU run computes exactly what it computed before.

Fused attention needs nothing here: diffusers' attention processors (the Latte, the SD VAE),
transformers' VideoMAE (``attn_implementation="sdpa"``) and ``nn.MultiheadAttention`` (VST-UNet)
call ``torch.nn.functional.scaled_dot_product_attention`` by default.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from raydistill.config import MIXED_PRECISION

__all__ = ["MIXED_PRECISION", "FastPaths", "autocast", "compiled", "to_device"]


def autocast(device: torch.device | str, mixed_precision: str = "bf16"):
    """A context running its ops in bf16 where autocast allows (``mixed_precision == "bf16"``
    on a CUDA device), else one that changes nothing. Outputs may be bf16: callers that keep
    them convert with ``.float()``."""
    if torch.device(device).type == "cuda" and mixed_precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``; to a CUDA device from pinned host memory without waiting, so the
    copy overlaps the GPU's work (the caller's next op on the device waits for it as usual)."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def compiled(model, enabled: bool, device: torch.device | str):
    """``model`` through ``torch.compile`` when ``enabled`` and ``device`` is a GPU (on a CPU
    compiling costs more than it saves), else unchanged: a module is
    compiled in place (``Module.compile``: its ``state_dict`` keeps its names, checkpoints and
    saved models are unaffected) and returned, a function (such as a bound forward) is
    returned compiled."""
    if not enabled or torch.device(device).type != "cuda":
        return model
    if isinstance(model, torch.nn.Module):
        model.compile()
        return model
    return torch.compile(model)


@dataclass(frozen=True)
class FastPaths:
    """A stage's fast-path settings for one model, each applied on a GPU only:
    ``mixed_precision`` (``bf16``: autocast), ``compile`` (``torch.compile``) and
    ``channels_last`` (3-D convolutions in channels-last memory order). The defaults change
    nothing."""

    mixed_precision: str = "no"
    compile: bool = False
    channels_last: bool = False

    def autocast(self, device: torch.device | str):
        """:func:`autocast` of these settings on ``device``."""
        return autocast(device, self.mixed_precision)

    def model(self, module: torch.nn.Module, device: torch.device | str,
              wrap=None) -> torch.nn.Module:
        """The module that takes the steps: ``module`` in channels-last order (in place: its
        parameters stay those saved), then ``wrap``-ped (DistributedDataParallel registers the
        parameters as they are by then), then compiled, as set."""
        on_gpu = torch.device(device).type == "cuda"
        if self.channels_last and on_gpu:
            module.to(memory_format=torch.channels_last_3d)
        stepped = wrap(module) if wrap is not None else module
        return compiled(stepped, self.compile, device)

    def inputs(self, tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """``tensor`` (N, C, T, H, W) on ``device`` (:func:`to_device`), channels-last as set."""
        moved = to_device(tensor, device)
        if self.channels_last and moved.device.type == "cuda" and moved.dim() == 5:
            return moved.contiguous(memory_format=torch.channels_last_3d)
        return moved
