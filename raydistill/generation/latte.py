"""Class-conditional Latte: a latent video diffusion transformer, built from diffusers' blocks.

diffusers' own ``LatteTransformer3DModel`` is text-conditioned (T5 caption projection, PixArt
adaLN-single, cross-attention); the paper fine-tunes the class-conditional Latte, whose blocks are
DiT blocks: adaLN-Zero modulation from ``c = embed(t) + embed(class)``, shared by every block.
This model has that structure, made of diffusers parts — ``PatchEmbed`` (2-D sin-cos positions),
``Timesteps`` + ``TimestepEmbedding``, ``LabelEmbedding`` (null class + label dropout for
classifier-free guidance), ``AdaLayerNormZero`` fed the shared ``c``, ``Attention`` (SDPA) and
``FeedForward`` — so that it saves and loads with ``save_pretrained`` / ``from_pretrained``.

Blocks alternate: a spatial block attends over the patches of each frame, the next temporal block
over the frames at each patch position (Latte's "variant 1"); a fixed 1-D sin-cos temporal
embedding is added before the first temporal block. Module names follow diffusers' Latte
(``transformer_blocks``, ``temporal_transformer_blocks``, ``attn1``, ``ff``) and DiT
(``proj_out_1``, ``proj_out_2``), so weights of either load where shapes match
(:mod:`raydistill.generation.convert`).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import (LabelEmbedding, PatchEmbed, TimestepEmbedding, Timesteps,
                                         get_1d_sincos_pos_embed_from_grid)
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormZero
from torch import nn

from raydistill.config import PREDICTION_TYPES


class LatteBlock(nn.Module):
    """One adaLN-Zero transformer block; ``forward(x (B, N, D), c (B, D)) -> (B, N, D)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim)  # no embedder of its own: fed the shared ``c``
        self.attn1 = Attention(query_dim=dim, heads=num_heads, dim_head=dim // num_heads,
                               bias=True, out_bias=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, mult=mlp_ratio, activation_fn="gelu-approximate", bias=True)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        normed, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x, emb=c)
        x = x + gate_msa[:, None] * self.attn1(normed)
        normed = self.norm2(x) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return x + gate_mlp[:, None] * self.ff(normed)


class ClassConditionalLatte(ModelMixin, ConfigMixin):
    """Latent video diffusion transformer conditioned on (timestep, class).

    ``forward(sample (B, F, C, H, W), timestep (B,), class_labels (B,)) -> (B, F, C_out, H, W)``
    with ``C_out = 2·C`` when ``learn_sigma`` (noise or velocity, and variance), else ``C``.
    Class id ``num_classes`` is the null class used for the unconditional branch of guidance.
    ``prediction_type`` (``epsilon`` or ``v_prediction``) says what the first ``C`` output
    channels are; it is not used by ``forward`` but saved with the model for its samplers.
    ``class_embedding_std``: the class table's initial spread (DiT's 0.02). The timestep
    embedding it is added to grows to norms of 5–30 in training, so a small model trained briefly
    from a 0.02 table hardly reads the class; the ``small`` preset starts it at 1.
    ``class_names`` (optional) names the label table's rows, saved with the model so that a later
    fine-tuning on other classes keeps the rows of the classes both share (generation/convert.py).
    Paper scale (Latte-XL/2): ``sample_size=32, num_frames=16, patch_size=2, hidden_size=1152,
    depth=28, num_heads=16`` on 16×4×32×32 SD-VAE latents.
    """

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(self, sample_size: int = 32, num_frames: int = 16, patch_size: int = 2,
                 in_channels: int = 4, hidden_size: int = 1152, depth: int = 28,
                 num_heads: int = 16, mlp_ratio: float = 4.0, num_classes: int = 101,
                 class_dropout_prob: float = 0.1, learn_sigma: bool = True,
                 prediction_type: str = "epsilon", class_embedding_std: float = 0.02,
                 class_names: list[str] | None = None):
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names names {len(class_names)} classes, num_classes is "
                             f"{num_classes}")
        if depth % 2:
            raise ValueError(f"depth must be even (spatial + temporal pairs), got {depth}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, "
                             f"got {prediction_type!r}")
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.pos_embed = PatchEmbed(height=sample_size, width=sample_size, patch_size=patch_size,
                                    in_channels=in_channels, embed_dim=hidden_size)
        temporal = get_1d_sincos_pos_embed_from_grid(hidden_size, torch.arange(num_frames).float())
        self.register_buffer("temp_pos_embed", temporal.float()[None], persistent=False)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(256, hidden_size)
        self.class_embedding = LabelEmbedding(num_classes, hidden_size, class_dropout_prob)
        pairs = depth // 2
        self.transformer_blocks = nn.ModuleList(
            LatteBlock(hidden_size, num_heads, mlp_ratio) for _ in range(pairs))
        self.temporal_transformer_blocks = nn.ModuleList(
            LatteBlock(hidden_size, num_heads, mlp_ratio) for _ in range(pairs))
        self.norm_out = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.proj_out_1 = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj_out_2 = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT initialisation: xavier linears, zero adaLN and output, so blocks start as identity."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        weight = self.pos_embed.proj.weight.data
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.class_embedding.embedding_table.weight,
                        std=self.config.class_embedding_std)
        nn.init.normal_(self.time_embedding.linear_1.weight, std=0.02)
        nn.init.normal_(self.time_embedding.linear_2.weight, std=0.02)
        for block in [*self.transformer_blocks, *self.temporal_transformer_blocks]:
            nn.init.zeros_(block.norm1.linear.weight)
            nn.init.zeros_(block.norm1.linear.bias)
        for layer in (self.proj_out_1, self.proj_out_2):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def conditioning(self, timestep: torch.Tensor, class_labels: torch.Tensor,
                     dtype: torch.dtype) -> torch.Tensor:
        """``c = embed(t) + embed(class)`` (B, D); label dropout applies in training mode."""
        t_emb = self.time_embedding(self.time_proj(timestep).to(dtype))
        return t_emb + self.class_embedding(class_labels).to(dtype)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor,
                return_dict: bool = False):
        """Predict noise or velocity (and variance) for ``sample`` (B, F, C, H, W); see the class
        docstring."""
        batch, frames, channels, height, width = sample.shape
        if frames != self.config.num_frames:
            raise ValueError(f"sample has {frames} frames; this model was built for "
                             f"{self.config.num_frames} (config num_frames)")
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        c = self.conditioning(timestep, class_labels, sample.dtype)
        x = self.pos_embed(sample.reshape(batch * frames, channels, height, width))
        patches = x.shape[1]
        c_spatial = c.repeat_interleave(frames, dim=0)
        c_temporal = c.repeat_interleave(patches, dim=0)
        for index, (spatial, temporal) in enumerate(zip(self.transformer_blocks,
                                                        self.temporal_transformer_blocks)):
            x = spatial(x, c_spatial)
            # (B·F, N, D) → (B·N, F, D): attend over time at each patch position.
            x = x.reshape(batch, frames, patches, -1).transpose(1, 2).reshape(
                batch * patches, frames, -1)
            if index == 0:
                x = x + self.temp_pos_embed.to(x.dtype)
            x = temporal(x, c_temporal)
            x = x.reshape(batch, patches, frames, -1).transpose(1, 2).reshape(
                batch * frames, patches, -1)
        shift, scale = self.proj_out_1(nn.functional.silu(c_spatial)).chunk(2, dim=1)
        x = self.proj_out_2(self.norm_out(x) * (1 + scale[:, None]) + shift[:, None])
        out = self._unpatchify(x, height, width).reshape(batch, frames, self.out_channels,
                                                         height, width)
        return {"sample": out} if return_dict else out

    def _unpatchify(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B·F, N, p·p·C) patch tokens → (B·F, C, H, W)."""
        p, c = self.config.patch_size, self.out_channels
        rows, cols = height // p, width // p
        x = x.reshape(x.shape[0], rows, cols, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, rows * p, cols * p)


TINY_LATTE = dict(sample_size=8, num_frames=8, patch_size=2, in_channels=4, hidden_size=32,
                  depth=2, num_heads=2, mlp_ratio=2.0, class_dropout_prob=0.1, learn_sigma=False)
"""A tiny config (≈ 40 k parameters) for the quickstart and tests: 8 frames of 4×8×8 latents."""

SMALL_LATTE = dict(sample_size=8, num_frames=8, patch_size=2, in_channels=4, hidden_size=64,
                   depth=4, num_heads=4, mlp_ratio=2.0, class_dropout_prob=0.1, learn_sigma=False,
                   class_embedding_std=1.0)
"""A small config (≈ 260 k parameters) for toy runs: deep enough (two spatial + temporal pairs) to
move an object the way its class says, which the tiny one hardly learns; use it with
``v_prediction`` (tests/test_generation_quality.py, benchmarks/BENCHMARKS.md)."""

LATTE_XL_2 = dict(sample_size=32, num_frames=16, patch_size=2, in_channels=4, hidden_size=1152,
                  depth=28, num_heads=16, mlp_ratio=4.0, class_dropout_prob=0.1, learn_sigma=True)
"""The paper's scale: Latte-XL/2 on 16×4×32×32 latents of 256² videos (SD VAE, scale 0.18215)."""
