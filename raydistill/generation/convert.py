"""Initialising the class-conditional Latte from public weights, where shapes match.

Three sources are understood, all local (no download at run time):

* a directory saved by :class:`ClassConditionalLatte` ``save_pretrained`` (our own format);
* a diffusers-format Latte directory (``LatteTransformer3DModel``, e.g. ``maxin-cn/Latte-1``'s
  ``transformer/`` folder): its patch embedding and the self-attention / feed-forward weights of
  its spatial and temporal blocks load by name; text parts (caption projection, cross-attention,
  adaLN-single) have no counterpart and are skipped;
* an original Latte checkpoint (``.pt``, e.g. the class-conditional UCF101 ``ucf101.pt`` of the
  Latte repository; its ``ema`` weights when present), mapped key by key:

  ==========================================  ============================================
  original                                    ClassConditionalLatte
  ==========================================  ============================================
  ``x_embedder.proj``                         ``pos_embed.proj``
  ``t_embedder.mlp.0`` / ``.mlp.2``           ``time_embedding.linear_1`` / ``.linear_2``
  ``y_embedder.embedding_table``              ``class_embedding.embedding_table``
  ``blocks.{2k}.*`` / ``blocks.{2k+1}.*``     ``transformer_blocks.{k}.*`` / ``temporal_…``
  ``…attn.qkv`` (q, k, v stacked)             ``…attn1.to_q``, ``.to_k``, ``.to_v``
  ``…attn.proj``                              ``…attn1.to_out.0``
  ``…mlp.fc1`` / ``…mlp.fc2``                 ``…ff.net.0.proj`` / ``…ff.net.2``
  ``…adaLN_modulation.1``                     ``…norm1.linear``
  ``final_layer.adaLN_modulation.1``          ``proj_out_1``
  ``final_layer.linear``                      ``proj_out_2``
  ``pos_embed``, ``temp_embed``               (fixed sin-cos, recomputed)
  ==========================================  ============================================

When the class count differs (a UCF101 checkpoint fine-tuned on Kinetics-400), the label
embedding is new, except its null-class row, which is class-agnostic and is kept.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file

from raydistill.generation.latte import ClassConditionalLatte

_ORIGINAL_RENAMES = [
    (r"^x_embedder\.proj\.", "pos_embed.proj."),
    (r"^t_embedder\.mlp\.0\.", "time_embedding.linear_1."),
    (r"^t_embedder\.mlp\.2\.", "time_embedding.linear_2."),
    (r"^y_embedder\.embedding_table\.", "class_embedding.embedding_table."),
    (r"^final_layer\.adaLN_modulation\.1\.", "proj_out_1."),
    (r"^final_layer\.linear\.", "proj_out_2."),
]
_BLOCK_PARTS = {"attn.proj.": "attn1.to_out.0.", "mlp.fc1.": "ff.net.0.proj.",
                "mlp.fc2.": "ff.net.2.", "adaLN_modulation.1.": "norm1.linear."}


@dataclass
class LoadReport:
    """What an initialisation took from the source: key lists of the model's state dict."""

    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)
    not_in_source: list[str] = field(default_factory=list)


def original_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an original-format Latte state dict to :class:`ClassConditionalLatte` keys."""
    mapped = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        block = re.match(r"^blocks\.(\d+)\.(.*)$", key)
        if block:
            index, rest = int(block.group(1)), block.group(2)
            kind = "transformer_blocks" if index % 2 == 0 else "temporal_transformer_blocks"
            prefix = f"{kind}.{index // 2}."
            if rest.startswith("attn.qkv."):
                for name, part in zip(("to_q", "to_k", "to_v"), value.chunk(3, dim=0)):
                    mapped[f"{prefix}attn1.{name}.{rest.rsplit('.', 1)[1]}"] = part.clone()
                continue
            for old, new in _BLOCK_PARTS.items():
                if rest.startswith(old):
                    mapped[prefix + new + rest[len(old):]] = value
            continue
        for pattern, replacement in _ORIGINAL_RENAMES:
            if re.match(pattern, key):
                mapped[re.sub(pattern, replacement, key)] = value
    return mapped


def read_state_dict(source: str) -> dict[str, torch.Tensor]:
    """The weights at ``source``: a ``.pt``/``.pth`` original checkpoint (mapped to our keys), a
    ``.safetensors`` file, or a diffusers model directory (``transformer/`` subfolder accepted)."""
    if os.path.isdir(source):
        for folder in (source, os.path.join(source, "transformer")):
            path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
            if os.path.exists(path):
                return load_file(path)
        raise FileNotFoundError(f"no diffusion_pytorch_model.safetensors in {source}")
    if source.endswith(".safetensors"):
        return load_file(source)
    checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    for key in ("ema", "model", "state_dict"):
        if isinstance(checkpoint, dict) and key in checkpoint:
            checkpoint = checkpoint[key]
            break
    return original_to_diffusers(checkpoint)


def load_matching(model: ClassConditionalLatte, state: dict[str, torch.Tensor]) -> LoadReport:
    """Copy every entry of ``state`` whose key and shape match ``model``; returns what happened.

    A label table of another class count keeps its fresh initialisation except the null-class
    (last) row, copied from the source.
    """
    report = LoadReport()
    own = model.state_dict()
    accepted = {}
    for key, target in own.items():
        if key not in state:
            report.not_in_source.append(key)
        elif state[key].shape == target.shape:
            accepted[key] = state[key]
            report.loaded.append(key)
        else:
            report.skipped_shape.append(key)
    table = "class_embedding.embedding_table.weight"
    if table in report.skipped_shape and state[table].shape[1] == own[table].shape[1]:
        accepted[table] = own[table].clone()
        accepted[table][-1] = state[table][-1]
    model.load_state_dict(accepted, strict=False)
    return report


def own_saved_config(source: str | None) -> dict | None:
    """The config of a folder saved by :class:`ClassConditionalLatte` (without diffusers' ``_``
    keys), or None for any other source."""
    if not source or not os.path.isfile(os.path.join(source, "config.json")):
        return None
    with open(os.path.join(source, "config.json"), encoding="utf-8") as handle:
        saved_config = json.load(handle)
    if saved_config.get("_class_name") != ClassConditionalLatte.__name__:
        return None
    return {k: v for k, v in saved_config.items() if not k.startswith("_")}


def load_latte(source: str | None, num_classes: int, **config) -> tuple[ClassConditionalLatte,
                                                                         LoadReport]:
    """A :class:`ClassConditionalLatte` for ``num_classes`` classes, initialised from ``source``.

    ``source`` None builds a fresh model from ``config``. A directory saved by this class loads
    its own config (``config`` entries override it); any other source needs ``config`` to give
    the architecture (e.g. ``LATTE_XL_2``) and contributes the weights that match.
    """
    if source is None:
        return ClassConditionalLatte(num_classes=num_classes, **config), LoadReport()
    config = {**(own_saved_config(source) or {}), **config}
    model = ClassConditionalLatte(**{**config, "num_classes": num_classes})
    return model, load_matching(model, read_state_dict(source))
