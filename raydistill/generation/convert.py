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

Label-table rows are matched by class name when the source's class order is known: a run class
found among the source's classes keeps its row, the others start new, and the null-class row
(class-agnostic) always carries over. The order is known

* for a model saved by this project with ``class_names`` (every run's fine-tuned model);
* from a ``finetune.model_classes`` file (one class name per line, in row order);
* built in for Latte's public class-conditional UCF101 model (``ucf101.pt``): its training code
  labels videos by the *case-sensitively sorted* class folder names
  (:data:`LATTE_UCF101_CLASSES`), not by ``classInd.txt``, so ``HammerThrow`` comes before
  ``Hammering`` and ``JumpRope`` before ``JumpingJack``. An original checkpoint with 101 classes
  (102 rows) is read in that order unless ``model_classes`` says otherwise.

Otherwise a table of another class count is new except its null row, and one of the same count is
taken row for row.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file

from raydistill.datasets.ucf101 import UCF101_CLASSES
from raydistill.generation.latte import ClassConditionalLatte

LATTE_UCF101_CLASSES = tuple(sorted(UCF101_CLASSES))
"""Row order of the label table of Latte's public class-conditional UCF101 model: its dataset
class indexes ``sorted()`` of the class folder names (case-sensitive)."""
TABLE_KEY = "class_embedding.embedding_table.weight"

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
    class_rows_by_name: int | None = None
    class_rows_new: int | None = None
    classes_without_row: list[str] = field(default_factory=list)
    null_row_from_source: bool = False

    def summary(self) -> dict:
        """Counts for a stage summary: tensors loaded / skipped / missing, label rows by name."""
        return {"tensors_loaded": len(self.loaded),
                "tensors_skipped_shape": len(self.skipped_shape),
                "tensors_not_in_source": len(self.not_in_source),
                "class_rows_by_name": self.class_rows_by_name,
                "class_rows_new": self.class_rows_new}


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


def load_matching(model: ClassConditionalLatte, state: dict[str, torch.Tensor],
                  source_classes: list[str] | None = None) -> LoadReport:
    """Copy every entry of ``state`` whose key and shape match ``model``; returns what happened.

    The label table: with ``source_classes`` (the source's row names, null row excluded) and the
    model's ``config.class_names``, each model class found in the source gets its row, the
    others keep their fresh initialisation, and the null-class (last) row is copied. Without
    names, a table of another class count keeps its fresh initialisation except the null row.
    """
    report = LoadReport()
    own = model.state_dict()
    names = model.config.class_names
    by_name = (source_classes is not None and names is not None and TABLE_KEY in state
               and state[TABLE_KEY].shape[1] == own[TABLE_KEY].shape[1])
    accepted = {}
    for key, target in own.items():
        if key not in state:
            report.not_in_source.append(key)
        elif key == TABLE_KEY and by_name:
            accepted[key] = _table_by_name(target, state[key], names, list(source_classes),
                                           report)
            report.loaded.append(key)
        elif state[key].shape == target.shape:
            accepted[key] = state[key]
            report.loaded.append(key)
            report.null_row_from_source |= key == TABLE_KEY  # every row, by position
        else:
            report.skipped_shape.append(key)
    if TABLE_KEY in report.skipped_shape and state[TABLE_KEY].shape[1] == own[TABLE_KEY].shape[1]:
        accepted[TABLE_KEY] = own[TABLE_KEY].clone()
        accepted[TABLE_KEY][-1] = state[TABLE_KEY][-1]
        report.null_row_from_source = True
    model.load_state_dict(accepted, strict=False)
    return report


def _table_by_name(own: torch.Tensor, source: torch.Tensor, names: list[str],
                   source_classes: list[str], report: LoadReport) -> torch.Tensor:
    """The model's label table (C or C + 1 rows, D) with the rows of the classes the source
    names; the null row (the row after the classes) is copied when both tables have one."""
    row_of = {name: row for row, name in enumerate(source_classes)}
    table = own.clone()
    matched = 0
    for row, name in enumerate(names):
        if name in row_of:
            table[row] = source[row_of[name]]
            matched += 1
        else:
            report.classes_without_row.append(name)
    if len(own) == len(names) + 1 and len(source) == len(source_classes) + 1:
        table[-1] = source[-1]
        report.null_row_from_source = True
    report.class_rows_by_name, report.class_rows_new = matched, len(names) - matched
    return table


def read_class_names(path: str) -> list[str]:
    """Class names, one per line in row order (blank lines ignored), from a text file; raises
    ValueError naming the file when it holds none or a name twice."""
    with open(path, encoding="utf-8") as handle:
        names = [line.strip() for line in handle if line.strip()]
    if not names:
        raise ValueError(f"finetune.model_classes: {path} names no class")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"finetune.model_classes: {path} names {repeated[0]!r} twice")
    return names


def source_class_names(source: str, state: dict[str, torch.Tensor],
                       model_classes: str | None = None) -> list[str] | None:
    """The row names of ``source``'s label table (null row excluded), or None when unknown:
    ``model_classes`` (``ucf101`` or a file), else a saved model's own ``class_names``, else
    Latte's UCF101 order for an original checkpoint of 101 classes. Raises ValueError when the
    names do not fit the table."""
    rows = state[TABLE_KEY].shape[0] if TABLE_KEY in state else None  # classes (+ null row)
    saved = own_saved_config(source)
    if model_classes == "ucf101":
        names = list(LATTE_UCF101_CLASSES)
    elif model_classes:
        names = read_class_names(model_classes)
    elif saved is not None:
        return saved.get("class_names")
    elif _is_original_checkpoint(source) and rows == len(LATTE_UCF101_CLASSES) + 1:
        return list(LATTE_UCF101_CLASSES)
    else:
        return None
    if rows is not None and rows not in (len(names), len(names) + 1):
        raise ValueError(f"finetune.model_classes: {len(names)} class names for a label table "
                         f"of {rows} rows in {source}")
    return names


def _is_original_checkpoint(source: str) -> bool:
    return not os.path.isdir(source) and not source.endswith(".safetensors")


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


def load_latte(source: str | None, num_classes: int, class_names: list[str] | None = None,
               model_classes: str | None = None, **config
               ) -> tuple[ClassConditionalLatte, LoadReport]:
    """A :class:`ClassConditionalLatte` for ``num_classes`` classes (named ``class_names``, in
    label order, when given), initialised from ``source``.

    ``source`` None builds a fresh model from ``config``. A directory saved by this class loads
    its own config (``config`` entries override it); any other source needs ``config`` to give
    the architecture (e.g. ``LATTE_XL_2``) and contributes the weights that match. Label rows
    are matched by name where the source's class order is known (``model_classes``: ``ucf101``
    or a file of names; see the module docstring).
    """
    names = None if class_names is None else list(class_names)
    if source is None:
        return (ClassConditionalLatte(num_classes=num_classes, class_names=names, **config),
                LoadReport())
    config = {**(own_saved_config(source) or {}), **config}
    model = ClassConditionalLatte(**{**config, "num_classes": num_classes, "class_names": names})
    state = read_state_dict(source)
    return model, load_matching(model, state, source_class_names(source, state, model_classes))
