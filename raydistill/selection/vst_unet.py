"""VST-UNet: a spatio-temporal U-Net over all latent videos of one class (paper Sec. 3.1).

``VSTUNet(config)(latents (N_c, T, C, h, w)) -> VSTUNetOutput`` with, per video, a selection
probability ``probs`` (N_c,), its logit ``score_logits`` (N_c,), penultimate ``features``
(N_c, F) and ``class_logits`` (N_c, num_classes).

Inside one video, every block is a residual (2+1)D convolution over (C, T, h, w): a (1, 3, 3)
spatial kernel, then a (3, 1, 1) temporal one, which costs far less memory than a full 3×3×3
kernel at 100 × 16 × 32 × 32. Across the videos of the class (the "4D" axis), every U-Net level
ends with an ``AcrossVideoMixing`` block: each video's map is pooled to a token, the N_c tokens
attend to each other, and the result modulates that video's map (per-channel scale and shift).
The videos of a class have no order, so there is no position encoding: permuting the input
videos permutes every output the same way, and any N_c >= 1 works. The features are global
means of every decoder level, so coarse and fine scales both reach the heads.

The score head reads the features through a LayerNorm (no affine part: the linear head that follows
absorbs it), so p_c is a function of the U-Net's own features of that video: two videos with the
same features get the same score, and the score moves smoothly with the features. (An earlier
version whitened the features across the videos of the class first; with ~100 videos and 256
feature dimensions the whitened rows form a regular simplex, every pair equally far apart, and the
head degenerated into a free per-video preference table learned by REINFORCE; it is kept only as
the opt-in ``score_input="whitened"``, to reproduce earlier results.) What makes the score of a
video depend on the rest of its class is the across-video mixing above.

A known cost of the default: on planted data of tight clusters of near-duplicates, a score that is
a smooth function of each video's features gives near-duplicates near-equal scores, so the top-VPC
tends to come from one cluster. On the planted clusters of tests/test_vst_unet.py (3 seeds, 80
epochs, VPC 3) the default selection's mean distance of a video to its nearest pick is 10.3, against
8.4 untrained and 6.8 for random picks; the whitened input, by the table-like behaviour above, gets
5.1. The paper's architecture leaves breaking such ties to the across-video mixing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


SCORE_INPUTS = ("layernorm", "whitened")


@dataclass(frozen=True)
class VSTUNetConfig:
    """Widths of a VST-UNet; level ``i`` has ``base_width * channel_mults[i]`` channels.

    ``score_input``: what the score head reads, "layernorm" (the features, LayerNorm'd; default)
    or "whitened" (whitened across the videos of the class; earlier versions, see the module
    docstring).
    """

    in_channels: int = 4
    base_width: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 4)
    num_classes: int = 101
    feature_dim: int = 256
    norm_groups: int = 8
    head_dim: int = 32
    checkpointing: bool = False
    score_input: str = "layernorm"

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.base_width < 1 or self.feature_dim < 1:
            raise ValueError("in_channels, base_width and feature_dim must be >= 1")
        if self.num_classes < 1:
            raise ValueError("num_classes must be >= 1")
        if self.score_input not in SCORE_INPUTS:
            raise ValueError(f"score_input must be one of {SCORE_INPUTS}, got {self.score_input!r}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError("channel_mults needs at least one level, each multiplier >= 1")
        for width in self.widths:
            if width % self.norm_groups:
                raise ValueError(f"width {width} is not divisible by "
                                 f"norm_groups={self.norm_groups}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_width * mult for mult in self.channel_mults)

    @classmethod
    def tiny(cls, num_classes: int = 2, **overrides) -> VSTUNetConfig:
        """About 20 k parameters: CPU tests and the quickstart."""
        params = {"base_width": 8, "channel_mults": (1, 2), "feature_dim": 16, "norm_groups": 4,
                  "head_dim": 8, "num_classes": num_classes}
        return cls(**{**params, **overrides})

    @classmethod
    def paper(cls, num_classes: int = 101, **overrides) -> VSTUNetConfig:
        """For 100 × 16 × 4 × 32 × 32 per class on one GPU (about 1.5 M parameters).

        Measured on CPU (float32, 2 cores): one class forward + backward takes ~110 s and peaks at
        ~9.7 GB; ``checkpointing=True`` recomputes each level in backward, ~5 GB (extrapolated).
        """
        params = {"base_width": 32, "channel_mults": (1, 2, 4), "feature_dim": 256,
                  "norm_groups": 8, "head_dim": 32, "num_classes": num_classes}
        return cls(**{**params, **overrides})


class VSTUNetOutput(NamedTuple):
    probs: torch.Tensor          # (N_c,) in (0, 1)
    score_logits: torch.Tensor   # (N_c,), probs = sigmoid(score_logits)
    features: torch.Tensor       # (N_c, F)
    class_logits: torch.Tensor   # (N_c, num_classes)


class SpatioTemporalBlock(nn.Module):
    """Residual (2+1)D block: (N, C_in, T, h, w) -> (N, C_out, T, h, w)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups_for(in_channels, groups), in_channels)
        self.spatial = nn.Conv3d(in_channels, out_channels, (1, 3, 3), padding=(0, 1, 1))
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.temporal = nn.Conv3d(out_channels, out_channels, (3, 1, 1), padding=(1, 0, 0))
        self.skip = (nn.Identity() if in_channels == out_channels
                     else nn.Conv3d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.spatial(F.silu(self.norm1(x)))
        h = self.temporal(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AcrossVideoMixing(nn.Module):
    """Self-attention over the pooled tokens of the N videos, fed back as a per-video FiLM.

    ``(N, C, T, h, w) -> (N, C, T, h, w)``; cost O(N² C), negligible beside the convolutions.
    The output projection starts at zero, so a fresh block is the identity.
    """

    def __init__(self, channels: int, head_dim: int):
        super().__init__()
        heads = channels // head_dim if channels % head_dim == 0 and channels >= head_dim else 1
        self.norm = nn.LayerNorm(channels)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)
        self.to_scale_shift = nn.Linear(channels, 2 * channels)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(x.mean(dim=(2, 3, 4))).unsqueeze(0)          # (1, N, C)
        context, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        scale, shift = self.to_scale_shift(context[0]).chunk(2, dim=-1)  # (N, C) each
        return x * (1 + scale[:, :, None, None, None]) + shift[:, :, None, None, None]


class Level(nn.Module):
    """One U-Net level: a spatio-temporal block, then mixing across the videos."""

    def __init__(self, in_channels: int, out_channels: int, config: VSTUNetConfig):
        super().__init__()
        self.block = SpatioTemporalBlock(in_channels, out_channels, config.norm_groups)
        self.mixing = AcrossVideoMixing(out_channels, config.head_dim)
        self.checkpointing = config.checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixing(self.block(x))


class VSTUNet(nn.Module):
    """Selection model over one class: see the module docstring for inputs and outputs."""

    def __init__(self, config: VSTUNetConfig | None = None):
        super().__init__()
        self.config = config = config or VSTUNetConfig()
        widths = config.widths
        self.stem = nn.Conv3d(config.in_channels, widths[0], (1, 3, 3), padding=(0, 1, 1))
        self.encoder = nn.ModuleList(
            Level(w_in, w_out, config) for w_in, w_out in zip((widths[0],) + widths[:-1], widths))
        self.downsample = nn.ModuleList(
            nn.Conv3d(w, w, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)) for w in widths[:-1])
        self.bottleneck = Level(widths[-1], widths[-1], config)
        self.decoder = nn.ModuleList(
            Level(w_below + w, w, config) for w_below, w in zip(widths[1:] + widths[-1:], widths))
        self.out_norms = nn.ModuleList(nn.GroupNorm(config.norm_groups, w) for w in widths)
        self.to_features = nn.Sequential(
            nn.Linear(sum(widths), config.feature_dim), nn.SiLU(),
            nn.Linear(config.feature_dim, config.feature_dim))
        self.score_norm = nn.LayerNorm(config.feature_dim, elementwise_affine=False)
        self.score_head = nn.Linear(config.feature_dim, 1)
        self.class_head = nn.Linear(config.feature_dim, config.num_classes)

    def forward(self, latents: torch.Tensor) -> VSTUNetOutput:
        """``latents`` (N_c, T, C, h, w) -> ``VSTUNetOutput`` (one row per video)."""
        self._check_input(latents)
        x = self.stem(latents.permute(0, 2, 1, 3, 4))                    # (N, C, T, h, w)
        skips = []
        for index, level in enumerate(self.encoder):
            x = level(x)
            skips.append(x)
            if index < len(self.downsample):
                x = self.downsample[index](x)
        x = self.bottleneck(x)
        pooled = []
        for index in reversed(range(len(self.decoder))):
            skip = skips[index]
            if x.shape[2:] != skip.shape[2:]:
                x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
            x = self.decoder[index](torch.cat([x, skip], dim=1))
            pooled.append(F.silu(self.out_norms[index](x)).mean(dim=(2, 3, 4)))
        features = self.to_features(torch.cat(pooled[::-1], dim=1))
        score_input = (whiten_over_videos(features) if self.config.score_input == "whitened"
                       else self.score_norm(features))
        score_logits = self.score_head(score_input).squeeze(-1)
        return VSTUNetOutput(torch.sigmoid(score_logits), score_logits, features,
                             self.class_head(features))

    def _check_input(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[2] != self.config.in_channels:
            raise ValueError(f"expected latents (N_c, T, {self.config.in_channels}, h, w), "
                             f"got {tuple(latents.shape)}")
        if latents.shape[0] < 1:
            raise ValueError("need at least one video")


def whiten_over_videos(features: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Whiten ``features`` (N, F) across the N videos of the class -> (N, F), float32.

    Only for ``score_input="whitened"``. Centred, then ``L⁻¹ x`` with ``L Lᵀ = Cov + ridge·mean
    variance·I`` (Cholesky: its gradient stays finite when N < F leaves the covariance singular).
    """
    # In float32 under autocast too: a bf16 covariance is not positive definite enough for the
    # Cholesky factorisation to succeed.
    with torch.autocast(features.device.type, enabled=False):
        centred = features.float() - features.float().mean(dim=0, keepdim=True)
        covariance = centred.T @ centred / centred.shape[0]
        scale = ridge * covariance.diagonal().mean().clamp_min(1e-12)
        identity = torch.eye(covariance.shape[0], device=features.device)
        cholesky = torch.linalg.cholesky(covariance + scale * identity)
        return torch.linalg.solve_triangular(cholesky, centred.T, upper=False).T


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _groups_for(channels: int, groups: int) -> int:
    # The decoder's concatenated input can have a width that ``groups`` does not divide.
    while channels % groups:
        groups -= 1
    return groups
