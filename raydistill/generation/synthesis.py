"""Synthetic videos: per-video seeds, ids, and sampling + VAE decoding of a batch."""

from __future__ import annotations

import numpy as np
import torch

from raydistill.generation.diffusion import sample_latents
from raydistill.generation.vae import decode_latents


def video_seed(run_seed: int, label: int, index: int) -> int:
    """The seed of synthetic video ``index`` of class ``label``: it depends on nothing else, so
    a video can be regenerated alone and a rerun reproduces the missing ones exactly."""
    return int(np.random.SeedSequence([run_seed, label, index]).generate_state(1)[0])


def synthetic_id(label: int, index: int) -> str:
    """Stable id of synthetic video ``index`` of class ``label``."""
    return f"syn_{label:04d}_{index:05d}"


@torch.no_grad()
def synthesize(model, vae, labels: list[int], seeds: list[int], scheduler: str, steps: int,
               guidance: float) -> tuple[np.ndarray, np.ndarray]:
    """Sample one video per (label, seed) and decode it.

    Returns ``(latents float32 (B, T, C, h, w), frames uint8 (B, T, H, W, 3))``.
    """
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    latents = sample_latents(model, torch.tensor(labels), generators, scheduler, steps,
                             guidance)
    frames = decode_latents(vae, latents)
    return latents.float().cpu().numpy(), frames
