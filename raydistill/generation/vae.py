"""The video VAE side of latent diffusion: frames ↔ scaled latents, with diffusers' AutoencoderKL.

At paper scale the VAE is Stable Diffusion's (``stabilityai/sd-vae-ft-ema`` or a local copy),
8× downsampling, latents scaled by 0.18215: 16×256² videos ↔ 16×4×32×32 latents. For the toy
dataset no pretrained VAE exists offline, so :func:`train_tiny_vae` fits a small AutoencoderKL
(4× downsampling: 32² frames → 8² latents) to the toy frames and sets its scaling factor from the
latents' spread, as SD did. Its step count bounds everything downstream: a C3D trained on the real
toy clips classifies the VAE's reconstructions of them at 32 % after 600 steps and 72 % after 2000
(88 % on the clips themselves; benchmarks/BENCHMARKS.md), so the toy preset trains 2000.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3,
                block_out_channels=(8, 16, 16), norm_num_groups=4,
                mid_block_add_attention=False, scaling_factor=1.0)
"""A small AutoencoderKL (≈ 60 k parameters, 4× downsampling): 32² toy frames ↔ 4×8×8 latents,
about 0.1 s per training step of 32 frames on 2 CPU cores."""

SD_VAE = "stabilityai/sd-vae-ft-ema"
"""The VAE the paper's Latte uses; pass a local path to it on clusters without hub access."""

SD_VAE_ARCHITECTURE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                           down_block_types=("DownEncoderBlock2D",) * 4,
                           up_block_types=("UpDecoderBlock2D",) * 4,
                           block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
                           sample_size=256, scaling_factor=0.18215)
"""The architecture of :data:`SD_VAE` (≈ 84 M parameters, 8× downsampling): what a run loads
from its weights, and what ``benchmarks/generate.py --scale paper`` builds untrained, since the
cost of encoding and decoding does not depend on the weights."""


def load_vae(source: str | None) -> AutoencoderKL:
    """``AutoencoderKL.from_pretrained(source)``, or an untrained tiny one when ``source`` is None."""
    if source is None:
        return AutoencoderKL(**TINY_VAE)
    return AutoencoderKL.from_pretrained(source)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) → float (..., 3, H, W) in [-1, 1]."""
    # astype copies: frames from Ray's object store are read-only, which torch warns about.
    tensor = torch.from_numpy(frames.astype(np.float32)).div_(127.5).sub_(1.0)
    return tensor.movedim(-1, -3)


def tensor_to_frames(tensor: torch.Tensor) -> np.ndarray:
    """float (..., 3, H, W) in [-1, 1] → uint8 (..., H, W, 3)."""
    scaled = ((tensor.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.movedim(-3, -1).cpu().numpy()


@torch.no_grad()
def encode_clips(vae: AutoencoderKL, clips: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Encode uint8 clips (B, T, H, W, 3) to scaled latents float32 (B, T, C, h, w).

    Uses the posterior mean (a deterministic cache), times ``vae.config.scaling_factor``.
    """
    batch, frames = clips.shape[:2]
    images = frames_to_tensor(clips.reshape(batch * frames, *clips.shape[2:]))
    device, dtype = vae.device, vae.dtype
    parts = [vae.encode(images[i:i + chunk].to(device, dtype)).latent_dist.mean
             for i in range(0, len(images), chunk)]
    latents = torch.cat(parts).float() * vae.config.scaling_factor
    return latents.reshape(batch, frames, *latents.shape[1:]).cpu().numpy()


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor, chunk: int = 64) -> np.ndarray:
    """Decode scaled latents (B, T, C, h, w) to uint8 frames (B, T, H, W, 3)."""
    batch, frames = latents.shape[:2]
    flat = latents.reshape(batch * frames, *latents.shape[2:]) / vae.config.scaling_factor
    device, dtype = vae.device, vae.dtype
    images = torch.cat([vae.decode(flat[i:i + chunk].to(device, dtype)).sample
                        for i in range(0, len(flat), chunk)])
    pixels = tensor_to_frames(images)
    return pixels.reshape(batch, frames, *pixels.shape[1:])


def train_tiny_vae(frames: np.ndarray, steps: int = 2000, batch_size: int = 16, lr: float = 3e-3,
                   kl_weight: float = 1e-6, seed: int = 0) -> tuple[AutoencoderKL, list[float]]:
    """Fit :data:`TINY_VAE` to uint8 frames (N, H, W, 3); returns the VAE and its loss curve.

    Loss: MSE of the reconstruction from the posterior mean + ``kl_weight`` · KL. Decoding the
    mean rather than a posterior sample matters at this budget: with a few hundred steps the
    sampling noise was measured to wash colours out (mean absolute error 24 vs 17 on toy test
    frames), and latents are cached and decoded from the mean anyway. Afterwards the scaling
    factor is set to 1 / std of the latents, so diffusion sees unit-variance latents.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vae = AutoencoderKL(**TINY_VAE)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    images = frames_to_tensor(frames)
    losses = []
    vae.train()
    for _ in range(steps):
        index = torch.randint(len(images), (batch_size,), generator=generator)
        batch = images[index]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.mode()).sample
        loss = F.mse_loss(reconstruction, batch) + kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    vae.eval()
    with torch.no_grad():
        sample = images[torch.randperm(len(images), generator=generator)[:256]]
        spread = vae.encode(sample).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=1.0 / max(spread, 1e-6))
    return vae, losses
