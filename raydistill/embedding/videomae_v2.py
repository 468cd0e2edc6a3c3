"""Original VideoMAE V2 checkpoints (the OpenGVLab release) as transformers VideoMAE classifiers.

The paper's embedding model is VideoMAE V2 ViT-g (``vit_giant_patch14_224``: patch 14, width 1408,
40 blocks, 16 heads, MLP 6144, tubelets of 2 frames, 16×224² clips), fine-tuned on Kinetics;
its features are the ``fc_norm`` output after mean pooling over the tokens. transformers does not
ship it, but its fine-tuning model (``models/modeling_finetune.py`` of OpenGVLab/VideoMAEv2) is
the same network as transformers' ``VideoMAEForVideoClassification`` with mean pooling, so the
``.pth`` weights load into one under new names:

=====================================  ======================================================
original key                           ``VideoMAEForVideoClassification`` key
=====================================  ======================================================
``patch_embed.proj.{weight,bias}``     ``videomae.embeddings.patch_embeddings.projection.*``
``blocks.i.norm1.*``                   ``videomae.encoder.layer.i.layernorm_before.*``
``blocks.i.attn.qkv.weight`` (3A, D)   rows 0:A, A:2A, 2A:3A → ``….attention.attention.``
                                       ``query.weight``, ``key.weight``, ``value.weight``
``blocks.i.attn.q_bias`` / ``v_bias``  ``….attention.attention.query.bias`` / ``value.bias``
                                       (the key has no bias in either model)
``blocks.i.attn.proj.*``               ``….attention.output.dense.*``
``blocks.i.norm2.*``                   ``….layernorm_after.*``
``blocks.i.mlp.fc1.*`` / ``fc2.*``     ``….intermediate.dense.*`` / ``….output.dense.*``
``fc_norm.*``                          ``fc_norm.*``
``head.*`` (or ``cls_head.fc_cls.*``)  ``classifier.*``
=====================================  ======================================================

Checkpoints wrapped as ``{"module": …}``, ``{"model": …}`` or ``{"state_dict": …}`` and keys
prefixed ``module.`` or ``backbone.`` are unwrapped first. The position table is not in the file
in either model: both use the same fixed sin-cos table. Everything but the number of heads, the
clip length and the frame size is read from tensor shapes; heads come from the ViT size of the
width (:data:`VIT_HEADS`) unless given; clips are 16×224² (every released V2 model) unless given.
Every LayerNorm of the original uses eps 1e-6; transformers builds ``fc_norm`` with its default
1e-5, so the converted config carries ``fc_norm_eps`` and :func:`set_fc_norm_eps` restores it
(``load_videomae`` does so for a converted folder too).

The file names no classes: pass the class names in head order (:func:`read_class_names`; the
VideoMAEv2 repository's ``misc/label_map_k710.txt`` / ``label_map_k400.txt`` are such files) to
name the head's outputs; without them they are ``LABEL_0…``, which name no run class.

Convert once into a ``save_pretrained`` folder::

    python -m raydistill.embedding.videomae_v2 vit_g_hybrid_pt_1200e_k710_ft.pth OUT_DIR \\
        --classes label_map_k710.txt
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

VIT_HEADS = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}
"""Attention heads of the VideoMAE V2 ViT sizes by width (S, B, L, H, g): not in any shape."""
LAYER_NORM_EPS = 1e-6
DEFAULT_FRAMES = 16
DEFAULT_SIZE = 224
CHECKPOINT_SUFFIXES = (".pth", ".pt")
WRAPPER_KEYS = ("module", "model", "state_dict")
KEY_PREFIXES = ("module.", "backbone.")
TOP_KEYS = {
    "patch_embed.proj.weight": "videomae.embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "videomae.embeddings.patch_embeddings.projection.bias",
    "fc_norm.weight": "fc_norm.weight",
    "fc_norm.bias": "fc_norm.bias",
    "head.weight": "classifier.weight",
    "head.bias": "classifier.bias",
}
BLOCK_KEYS = {
    "norm1.weight": "layernorm_before.weight",
    "norm1.bias": "layernorm_before.bias",
    "attn.q_bias": "attention.attention.query.bias",
    "attn.v_bias": "attention.attention.value.bias",
    "attn.proj.weight": "attention.output.dense.weight",
    "attn.proj.bias": "attention.output.dense.bias",
    "norm2.weight": "layernorm_after.weight",
    "norm2.bias": "layernorm_after.bias",
    "mlp.fc1.weight": "intermediate.dense.weight",
    "mlp.fc1.bias": "intermediate.dense.bias",
    "mlp.fc2.weight": "output.dense.weight",
    "mlp.fc2.bias": "output.dense.bias",
}
"""Per block ``blocks.i.{key}`` → ``videomae.encoder.layer.i.{value}``; ``attn.qkv.weight`` is
split in three (:func:`convert_state_dict`)."""
HINTS = {
    "pos_embed": "a learned position table (V2 fine-tuned models use a fixed sin-cos one)",
    "norm.weight": "a final norm without mean pooling (V2 fine-tuned models pool, then fc_norm)",
    "attn.scale": "cosine attention (cos_attn), which transformers' VideoMAE lacks",
    "gamma_1": "layer scale (init_values > 0), which transformers' VideoMAE lacks",
    "decoder.": "a pre-training checkpoint (encoder + decoder); use a fine-tuned one",
    "encoder.": "a pre-training checkpoint (encoder + decoder); use a fine-tuned one",
}
"""Key fragments of related formats that cannot be converted, and what they mean."""


def is_original_checkpoint(source: str) -> bool:
    """Whether ``embed.model`` names an original checkpoint file (an existing file, or a path
    ending in ``.pth`` / ``.pt``) rather than a transformers folder or hub id."""
    path = os.path.expanduser(source)
    return os.path.isfile(path) or path.lower().endswith(CHECKPOINT_SUFFIXES)


def read_class_names(path: str) -> list[str]:
    """Class names in head order from a text file, one per line (blank lines skipped)."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            names = [line.strip() for line in handle if line.strip()]
    except OSError as error:
        raise ValueError(f"{path}: cannot read class names ({error.strerror or error})") from None
    if not names:
        raise ValueError(f"{path}: holds no class names (expected one per line)")
    return names


def read_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """The state dict of an original checkpoint file, unwrapped (:func:`original_state_dict`).

    Read with ``torch.load(weights_only=True)`` on the CPU; the training script's pickled
    ``argparse.Namespace`` of options is allowed, nothing else beyond tensors and containers.
    Raises ``ValueError`` naming the file when it is missing or not such a checkpoint.
    """
    local = os.path.expanduser(path)
    if not os.path.isfile(local):
        raise ValueError(f"{path}: no such file (an original VideoMAE V2 checkpoint .pth)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(local, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 — torch raises many types for a foreign file
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"{path}: cannot be read with torch.load(weights_only=True): {first_line}. It is not "
            "a weights-only PyTorch checkpoint; if you trust it, load it with weights_only=False "
            "once and torch.save its state dict (content['module'] or content['model'])"
        ) from None
    return original_state_dict(content, path)


def original_state_dict(content, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint under original key names: ``content`` unwrapped from
    ``{"module"|"model"|"state_dict": …}``, ``module.`` / ``backbone.`` prefixes dropped and an
    mmaction-style ``cls_head.fc_cls.`` head renamed ``head.``. ``source`` names it in errors."""
    while isinstance(content, dict):
        inner = next((content[key] for key in WRAPPER_KEYS if isinstance(content.get(key), dict)),
                     None)
        if inner is None:
            break
        content = inner
    if not isinstance(content, dict) or not content:
        raise ValueError(f"{source}: not a VideoMAE V2 checkpoint (no state dict of tensors)")
    state = {}
    for key, value in content.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{source}: not a VideoMAE V2 checkpoint ({key!r} is a "
                             f"{type(value).__name__}, not a tensor)")
        name = str(key)
        for prefix in KEY_PREFIXES:
            while name.startswith(prefix):
                name = name[len(prefix):]
        if name.startswith("cls_head.fc_cls."):
            name = "head." + name[len("cls_head.fc_cls."):]
        state[name] = value
    return state


def _depth(state: dict[str, torch.Tensor], source: str) -> int:
    """Number of transformer blocks: one past the largest ``blocks.i.`` index."""
    indices = [int(match.group(1)) for key in state
               if (match := re.match(r"blocks\.(\d+)\.", key))]
    if not indices:
        sample = ", ".join(sorted(state)[:3])
        hint = next(filter(None, map(_hint, sorted(state))), None)
        raise ValueError(f"{source}: not a VideoMAE V2 checkpoint: no blocks.N.* keys "
                         f"(it has {sample}, …){': ' + hint if hint else ''}")
    return max(indices) + 1


def _hint(key: str) -> str | None:
    """What a key of a related, unconvertible format means (:data:`HINTS`), if it is one."""
    return next((meaning for fragment, meaning in HINTS.items()
                 if key == fragment or (fragment.endswith(".") and key.startswith(fragment))
                 or (not fragment.endswith(".") and key.endswith("." + fragment))), None)


def expected_keys(depth: int, qkv_bias: bool) -> list[str]:
    """The original keys of a ``depth``-block V2 classifier with mean pooling (``qkv_bias``:
    with ``q_bias`` / ``v_bias``)."""
    block = ["attn.qkv.weight"] + [key for key in BLOCK_KEYS
                                   if qkv_bias or key not in ("attn.q_bias", "attn.v_bias")]
    return list(TOP_KEYS) + [f"blocks.{i}.{key}" for i in range(depth) for key in block]


def check_keys(state: dict[str, torch.Tensor], source: str) -> int:
    """Check that ``state`` holds exactly an original V2 classifier's keys; returns its depth.

    Raises ``ValueError`` naming ``source`` and the first missing or unexpected key (with what
    an unexpected key means, for the related formats of :data:`HINTS`).
    """
    depth = _depth(state, source)
    expected = expected_keys(depth, qkv_bias="blocks.0.attn.q_bias" in state)
    missing = [key for key in expected if key not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(f"{source}: missing key {missing[0]}{more}: not a VideoMAE V2 "
                         "fine-tuned classifier with mean pooling")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        key = unexpected[0]
        hint = _hint(key)
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise ValueError(f"{source}: unexpected key {key}{more}"
                         + (f": {hint}" if hint else ": not part of a VideoMAE V2 fine-tuned "
                            "classifier with mean pooling"))
    return depth


def original_config(state: dict[str, torch.Tensor], source: str = "state dict",
                    class_names: list[str] | None = None, num_heads: int | None = None,
                    num_frames: int = DEFAULT_FRAMES,
                    image_size: int = DEFAULT_SIZE) -> VideoMAEConfig:
    """The ``VideoMAEConfig`` of an original V2 state dict (checked by :func:`check_keys`).

    Width D, channels, tubelet and patch from ``patch_embed.proj.weight`` (D, C, t, p, p), depth
    from the block indices, MLP width from ``mlp.fc1.weight``, classes K from ``head.weight``
    (K, D); heads from :data:`VIT_HEADS` unless ``num_heads``; ``class_names`` (K names in head
    order) become ``id2label``. Raises ``ValueError`` naming ``source`` on shapes it cannot map.
    """
    from transformers import VideoMAEConfig

    depth = check_keys(state, source)
    patch = state["patch_embed.proj.weight"]
    if patch.ndim != 5 or patch.shape[3] != patch.shape[4]:
        raise ValueError(f"{source}: patch_embed.proj.weight has shape {tuple(patch.shape)}; "
                         "expected (D, C, tubelet, p, p)")
    hidden, channels, tubelet, side = (int(size) for size in patch.shape[:4])
    qkv = state["blocks.0.attn.qkv.weight"]
    if tuple(qkv.shape) != (3 * hidden, hidden):
        raise ValueError(f"{source}: blocks.0.attn.qkv.weight has shape {tuple(qkv.shape)}, not "
                         f"{(3 * hidden, hidden)}: attention heads of another width "
                         "(attn_head_dim) have no transformers equivalent")
    heads = num_heads or VIT_HEADS.get(hidden)
    if heads is None:
        raise ValueError(f"{source}: width {hidden} is none of the ViT sizes "
                         f"{sorted(VIT_HEADS)}; give the number of attention heads")
    if hidden % heads:
        raise ValueError(f"{source}: width {hidden} does not split into {heads} heads")
    classes = int(state["head.weight"].shape[0])
    if class_names is not None and len(class_names) != classes:
        raise ValueError(f"{source}: its head has {classes} classes but {len(class_names)} "
                         "class names were given")
    names = class_names or [f"LABEL_{i}" for i in range(classes)]
    return VideoMAEConfig(
        image_size=image_size, patch_size=side, num_channels=channels, num_frames=num_frames,
        tubelet_size=tubelet, hidden_size=hidden, num_hidden_layers=depth,
        num_attention_heads=heads, intermediate_size=int(state["blocks.0.mlp.fc1.weight"].shape[0]),
        hidden_act="gelu", qv_bias="blocks.0.attn.q_bias" in state, layer_norm_eps=LAYER_NORM_EPS,
        use_mean_pooling=True, num_labels=classes, id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)}, fc_norm_eps=LAYER_NORM_EPS,
        architectures=["VideoMAEForVideoClassification"])


def converted_keys(key: str) -> list[str]:
    """The ``VideoMAEForVideoClassification`` key(s) of an original key (the module docstring's
    table): three for ``blocks.i.attn.qkv.weight`` (query, key, value), else one."""
    if key in TOP_KEYS:
        return [TOP_KEYS[key]]
    index, rest = re.match(r"blocks\.(\d+)\.(.+)", key).groups()
    layer = f"videomae.encoder.layer.{index}."
    if rest == "attn.qkv.weight":
        return [f"{layer}attention.attention.{name}.weight" for name in ("query", "key", "value")]
    return [layer + BLOCK_KEYS[rest]]


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original V2 state dict (checked by :func:`check_keys`) → ``VideoMAEForVideoClassification``
    state dict; ``blocks.i.attn.qkv.weight`` (3D, D) becomes three (D, D) tensors, copied so that
    none shares memory (``save_pretrained`` would take shared ones for tied weights)."""
    converted = {}
    for key, value in state.items():
        names = converted_keys(key)
        parts = value.chunk(3, dim=0) if len(names) == 3 else (value,)
        for name, part in zip(names, parts):
            converted[name] = part.clone() if len(names) == 3 else part
    return converted


def check_shapes(state: dict[str, torch.Tensor], model, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` and the original key whose shape does not fit the
    (meta-device) ``model`` built from the inferred config."""
    wanted = model.state_dict()
    for key, value in state.items():
        names = converted_keys(key)
        shape = tuple(wanted[names[0]].shape)
        shape = (shape[0] * len(names), *shape[1:])
        if tuple(value.shape) != shape:
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, but a VideoMAE V2 "
                             f"classifier of width {model.config.hidden_size} (as "
                             f"patch_embed.proj.weight says) needs {shape}")


def set_fc_norm_eps(model: VideoMAEForVideoClassification) -> VideoMAEForVideoClassification:
    """Give ``model.fc_norm`` the eps its config records (``fc_norm_eps``; transformers builds
    it with 1e-5 whatever the config says); returns the model."""
    eps = getattr(model.config, "fc_norm_eps", None)
    if eps is not None and getattr(model, "fc_norm", None) is not None:
        model.fc_norm.eps = float(eps)
    return model


def videomae_from_original(state: dict[str, torch.Tensor], source: str = "state dict",
                           class_names: list[str] | None = None, num_heads: int | None = None,
                           num_frames: int = DEFAULT_FRAMES,
                           image_size: int = DEFAULT_SIZE) -> VideoMAEForVideoClassification:
    """A float32 ``VideoMAEForVideoClassification`` (eval mode) holding an original V2 state dict.

    Arguments as :func:`original_config`. The model is built without initialising its weights
    and loaded with strict checking (every key, every shape), so a ViT-g costs no second copy
    beyond the split ``qkv`` weights; float32 tensors of ``state`` are used, not copied.
    """
    from transformers import VideoMAEForVideoClassification

    config = original_config(state, source, class_names, num_heads, num_frames, image_size)
    with torch.device("meta"):
        model = VideoMAEForVideoClassification(config)
    check_shapes(state, model, source)
    model.load_state_dict(convert_state_dict(state), strict=True, assign=True)
    return set_fc_norm_eps(model.float()).eval()


def load_original_videomae(path: str, class_names: list[str] | None = None,
                           num_heads: int | None = None, num_frames: int = DEFAULT_FRAMES,
                           image_size: int = DEFAULT_SIZE) -> VideoMAEForVideoClassification:
    """:func:`videomae_from_original` of the checkpoint file ``path`` (:func:`read_checkpoint`)."""
    return videomae_from_original(read_checkpoint(path), path, class_names, num_heads,
                                  num_frames, image_size)


def write_pretrained(path: str, folder: str, classes_file: str | None = None,
                     num_heads: int | None = None, num_frames: int = DEFAULT_FRAMES,
                     image_size: int = DEFAULT_SIZE) -> VideoMAEForVideoClassification:
    """Convert the checkpoint ``path`` into a ``save_pretrained`` folder (``embed.model`` can
    name it); ``classes_file``: its class names (:func:`read_class_names`). Returns the model."""
    names = read_class_names(classes_file) if classes_file else None
    state = read_checkpoint(path)
    head = state.get("head.weight")
    if names is not None and head is not None and len(names) != head.shape[0]:
        raise ValueError(f"{classes_file}: {len(names)} class names, but the head of {path} has "
                         f"{head.shape[0]} classes")
    model = videomae_from_original(state, path, names, num_heads, num_frames, image_size)
    model.save_pretrained(folder)
    return model


def main(argv: list[str] | None = None) -> int:
    """``python -m raydistill.embedding.videomae_v2 SRC.pth DEST_DIR [--classes FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m raydistill.embedding.videomae_v2",
        description="Convert an original VideoMAE V2 fine-tuned checkpoint (.pth, OpenGVLab "
                    "release) into a transformers VideoMAEForVideoClassification folder.")
    parser.add_argument("source", help="the original checkpoint, e.g. "
                        "vit_g_hybrid_pt_1200e_k710_ft.pth")
    parser.add_argument("dest", help="folder to write (save_pretrained)")
    parser.add_argument("--classes", metavar="FILE", help="class names in head order, one per "
                        "line (e.g. the VideoMAEv2 repository's misc/label_map_k710.txt)")
    parser.add_argument("--num-heads", type=int, help="attention heads (default: from the "
                        f"width, {VIT_HEADS})")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                        help=f"frames per clip (default {DEFAULT_FRAMES})")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"frame side in pixels (default {DEFAULT_SIZE})")
    args = parser.parse_args(argv)
    try:
        model = write_pretrained(args.source, args.dest, args.classes, args.num_heads,
                                 args.frames, args.size)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    c = model.config
    print(f"{args.dest}: VideoMAE V2 width {c.hidden_size}, {c.num_hidden_layers} blocks, "
          f"{c.num_attention_heads} heads, {c.num_labels} classes, "
          f"{c.num_frames}×{c.image_size}² clips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
