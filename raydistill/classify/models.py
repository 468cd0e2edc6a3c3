"""Action classifiers for the evaluation stage: C3D (the paper's), ConvNet3D, a tiny VideoMAE.

Every classifier maps float clips (B, 3, T, H, W), normalised as in
:func:`raydistill.classify.augment.to_model_input`, to logits (B, num_classes), and records the
input geometry it was built for in ``frames``, ``size`` and ``num_classes`` so that batching code
can shape clips for it. All train from scratch: no network, no pretrained weights unless a local
VideoMAE path is given.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

NORMS = ("instancenorm", "batchnorm", "none")

# C3D (Tran et al. 2015): conv channels per block, and each block's pool kernel / padding.
C3D_BLOCKS = ((64,), (128,), (256, 256), (512, 512), (512, 512))
C3D_POOLS = (((1, 2, 2), (0, 0, 0)), ((2, 2, 2), (0, 0, 0)), ((2, 2, 2), (0, 0, 0)),
             ((2, 2, 2), (0, 0, 0)), ((2, 2, 2), (0, 1, 1)))
C3D_FC = 4096


def pool_plan(shape: tuple[int, int, int], kernel: tuple[int, int, int],
              padding: tuple[int, int, int]) -> tuple[tuple, tuple, tuple[int, int, int]]:
    """Kernel, padding and output (T, H, W) of a stride-equals-kernel 3-D pool over ``shape``.

    A dimension too short for the kernel is left unpooled (kernel 1, no padding) instead of
    collapsing to zero, so short toy clips (e.g. 8 frames through C3D's four temporal pools) work.
    """
    kernels, paddings, out = [], [], []
    for size, k, p in zip(shape, kernel, padding):
        if size + 2 * p < k:
            k, p = 1, 0
        kernels.append(k)
        paddings.append(p)
        out.append((size + 2 * p - k) // k + 1)
    return tuple(kernels), tuple(paddings), tuple(out)


def _check_geometry(num_classes: int, frames: int, size: int) -> None:
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if frames < 1 or size < 1:
        raise ValueError(f"frames and size must be positive, got frames={frames}, size={size}")


class C3D(nn.Module):
    """C3D: 8 conv3d (3×3×3) layers in 5 max-pooled blocks, then fc6, fc7 (dropout) and fc8.

    ``width`` scales every conv channel count and the fc width (4096 × width unless ``fc_dim``);
    the fc6 input size follows from ``frames`` × ``size``² (8192 at the original 16×112²).
    ``batch_norm`` adds BatchNorm3d after each conv; off by default, as in the original.
    """

    def __init__(self, num_classes: int, frames: int = 16, size: int = 112, width: float = 1.0,
                 batch_norm: bool = False, dropout: float = 0.5, fc_dim: int | None = None):
        super().__init__()
        _check_geometry(num_classes, frames, size)
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")
        self.num_classes, self.frames, self.size = num_classes, frames, size
        layers: list[nn.Module] = []
        channels, shape = 3, (frames, size, size)
        for block, (kernel, padding) in zip(C3D_BLOCKS, C3D_POOLS):
            for base in block:
                out = max(1, round(base * width))
                layers.append(nn.Conv3d(channels, out, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm3d(out))
                layers.append(nn.ReLU(inplace=True))
                channels = out
            kernel, padding, shape = pool_plan(shape, kernel, padding)
            layers.append(nn.MaxPool3d(kernel, kernel, padding))
        self.features = nn.Sequential(*layers)
        hidden = fc_dim or max(1, round(C3D_FC * width))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * math.prod(shape), hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes))
        for module in self.features:
            if isinstance(module, nn.Conv3d):  # eight plain ReLU convs need He init to train
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, frames, size, size) → logits (B, num_classes)."""
        return self.classifier(self.features(x))


def _norm(norm: str, channels: int) -> nn.Module:
    if norm == "instancenorm":  # per-sample, per-channel over T×H×W, with affine, as in DC/VD
        return nn.GroupNorm(channels, channels, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm3d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


class ConvNet3D(nn.Module):
    """ConvNet3D, the evaluator of the video-distillation benchmarks: the network of Wang et al.,
    CVPR 2024 ("Dancing with Still Images: Video Distillation via Static-Dynamic
    Disentanglement"; ``networks.py`` and ``utils.get_network`` of github.com/yuz1wan/
    video_distillation), whose DM and MTT rows the paper's Table 2 copies.

    ``depth`` blocks of Conv3d, kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3) → ``norm``
    → ReLU → MaxPool3d, (1, 2, 2) in the first block (time kept) and 2×2×2 after; the first
    block has ``stem_width`` channels, the others ``width``. ``get_network`` builds it with depth
    3, width 128, ReLU, no norm and max pooling (the first block's 64 channels are fixed there).
    Head: AvgPool3d of stride 1 over (2, 2, 2) for frames wider than 64 pixels, else (2, 1, 1);
    Dropout ``dropout``; a 1×1×1 Conv3d to the classes; the max over the time steps left. At
    16×112² the features are 128×4×2×2, pooled to 128×3×1×1: 3.65 M parameters at 50 classes.

    The original squeezes the two spatial dimensions, so it only runs where they end at 1×1
    (112², 128², 64²). Here a pool that would empty a dimension is skipped (:func:`pool_plan`)
    so smaller toy clips (32²) run too; a geometry that leaves more than 1×1 is refused.
    Evaluated as those benchmarks do (``utils.evaluate_synset``): SGD lr 0.01, momentum 0.9,
    weight decay 5e-4, 500 epochs, lr × 0.1 after half, batch 256, no augmentation; their
    clips are ImageNet-normalised, then standardised per batch.
    """

    def __init__(self, num_classes: int, frames: int = 16, size: int = 112, depth: int = 3,
                 width: int = 128, stem_width: int = 64, norm: str = "none",
                 dropout: float = 0.5):
        super().__init__()
        _check_geometry(num_classes, frames, size)
        if depth < 1 or width < 1 or stem_width < 1:
            raise ValueError(f"depth, width and stem_width must be >= 1, got depth={depth}, "
                             f"width={width}, stem_width={stem_width}")
        self.num_classes, self.frames, self.size = num_classes, frames, size
        layers: list[nn.Module] = []
        channels, shape = 3, (frames, size, size)
        for block in range(depth):
            out = stem_width if block == 0 else width
            shape = (shape[0], (shape[1] - 1) // 2 + 1, (shape[2] - 1) // 2 + 1)  # the stride 2
            kernel, _, shape = pool_plan(shape, (1, 2, 2) if block == 0 else (2, 2, 2),
                                         (0, 0, 0))
            layers.append(nn.Conv3d(channels, out, (3, 7, 7), stride=(1, 2, 2),
                                    padding=(1, 3, 3)))
            norm_layer = _norm(norm, out)
            if not isinstance(norm_layer, nn.Identity):  # "none": no layer at all
                layers.append(norm_layer)
            layers += [nn.ReLU(inplace=True), nn.MaxPool3d(kernel, kernel)]
            channels = out
        self.features = nn.Sequential(*layers)
        head = (2, 2, 2) if size > 64 else (2, 1, 1)
        head = tuple(min(k, dim) for k, dim in zip(head, shape))
        left = tuple(dim - k + 1 for k, dim in zip(head, shape))
        if left[1:] != (1, 1):
            raise ValueError(f"ConvNet3D classifies a 1×1 map; {size}² frames leave "
                             f"{left[1]}×{left[2]} after depth {depth} (the original runs at "
                             "112², 128² and 64²)")
        self.avg_pool = nn.AvgPool3d(head, stride=1)
        self.dropout = nn.Dropout(dropout)
        self.logit = nn.Conv3d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, frames, size, size) → logits (B, num_classes)."""
        out = self.logit(self.dropout(self.avg_pool(self.features(x))))  # (B, classes, T', 1, 1)
        return out.flatten(2).amax(dim=2)


class VideoTransformer(nn.Module):
    """A VideoMAE encoder with a classification head (mean-pooled tokens → linear), trained from
    scratch from a config built in code, or loaded from a local ``pretrained`` path."""

    def __init__(self, num_classes: int, frames: int = 16, size: int = 112, patch_size: int = 16,
                 tubelet_size: int = 2, hidden_size: int = 64, num_layers: int = 2,
                 num_heads: int = 2, mlp_ratio: int = 2, dropout: float = 0.0,
                 pretrained: str | None = None):
        super().__init__()
        from transformers import VideoMAEConfig, VideoMAEForVideoClassification

        _check_geometry(num_classes, frames, size)
        if size % patch_size or frames % tubelet_size:
            raise ValueError(f"size {size} must be a multiple of patch_size {patch_size} and "
                             f"frames {frames} a multiple of tubelet_size {tubelet_size}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be a multiple of num_heads "
                             f"{num_heads}")
        self.num_classes, self.frames, self.size = num_classes, frames, size
        if pretrained:
            self.videomae = VideoMAEForVideoClassification.from_pretrained(
                pretrained, num_labels=num_classes, ignore_mismatched_sizes=True)
            config = self.videomae.config
            if (config.num_frames, config.image_size) != (frames, size):
                raise ValueError(f"{pretrained} takes {config.num_frames}×{config.image_size}² "
                                 f"clips, not {frames}×{size}²")
            return
        config = VideoMAEConfig(
            image_size=size, patch_size=patch_size, num_frames=frames, tubelet_size=tubelet_size,
            hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
            intermediate_size=mlp_ratio * hidden_size, hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout, use_mean_pooling=True, num_labels=num_classes)
        self.videomae = VideoMAEForVideoClassification(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, frames, size, size) → logits (B, num_classes)."""
        return self.videomae(pixel_values=x.transpose(1, 2)).logits  # VideoMAE: (B, T, 3, H, W)


CLASSIFIERS: dict[str, Callable[..., nn.Module]] = {
    "c3d": C3D,
    "convnet3d": ConvNet3D,
    "transformer": VideoTransformer,
}


def build_classifier(name: str, num_classes: int, frames: int, size: int,
                     **options) -> nn.Module:
    """The classifier ``name`` (a key of :data:`CLASSIFIERS`) for (B, 3, frames, size, size) input.

    ``options`` go to its constructor (e.g. ``width`` for C3D, ``norm`` for ConvNet3D). Raises
    ValueError for an unknown name, an invalid size or an unknown option.
    """
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(CLASSIFIERS)}")
    accepted = set(inspect.signature(CLASSIFIERS[name]).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"bad options for classifier {name!r}: {', '.join(unknown)}; it takes "
                         f"{', '.join(sorted(accepted - {'num_classes', 'frames', 'size'}))}")
    return CLASSIFIERS[name](num_classes, frames=frames, size=size, **options)


@dataclass(frozen=True)
class ClassifierPreset:
    """Input geometry and architecture options of every classifier, for one kind of run.

    :data:`PAPER_CLASSIFIERS` is the paper's setting for GPU runs: C3D at its original 16×112²,
    full width, no BatchNorm; ConvNet3D as in the video-distillation benchmarks (depth 3, width
    128 after a 64-channel first block, no norm); a small VideoMAE (ViT-S width, 6 layers)
    standing in for the paper's Swin.
    :data:`TOY_CLASSIFIERS` is small enough to train in seconds on a laptop CPU.
    """

    frames: int = 16
    size: int = 112
    c3d_width: float = 1.0
    c3d_batch_norm: bool = False
    convnet_depth: int = 3
    convnet_width: int = 128
    convnet_stem_width: int = 64
    convnet_norm: str = "none"
    transformer_patch_size: int = 16
    transformer_hidden_size: int = 384
    transformer_layers: int = 6
    transformer_heads: int = 6

    def options(self, name: str) -> dict:
        """Constructor options of classifier ``name`` in this preset."""
        options = {
            "c3d": {"width": self.c3d_width, "batch_norm": self.c3d_batch_norm},
            "convnet3d": {"depth": self.convnet_depth, "width": self.convnet_width,
                          "stem_width": self.convnet_stem_width, "norm": self.convnet_norm},
            "transformer": {"patch_size": self.transformer_patch_size,
                            "hidden_size": self.transformer_hidden_size,
                            "num_layers": self.transformer_layers,
                            "num_heads": self.transformer_heads},
        }
        if name not in options:
            raise ValueError(f"unknown classifier {name!r}; choose one of {', '.join(options)}")
        return options[name]

    def spec(self, name: str, options: dict | None = None) -> dict:
        """Classifier ``name``'s spec in this preset (``name, frames, size, options``, what the
        stages pass around), with ``options`` overriding the preset's."""
        return {"name": name, "frames": self.frames, "size": self.size,
                "options": {**self.options(name), **(options or {})}}

    def build(self, name: str, num_classes: int) -> nn.Module:
        """:func:`build_classifier` with this preset's geometry and options."""
        return build_classifier(name, num_classes, self.frames, self.size, **self.options(name))


PAPER_CLASSIFIERS = ClassifierPreset()
# BatchNorm in the toy C3D to help a from-scratch, 30-epoch run (not compared with the plain net;
# the paper preset keeps C3D's original, BatchNorm-free layers).
TOY_CLASSIFIERS = ClassifierPreset(
    frames=8, size=32, c3d_width=1 / 16, c3d_batch_norm=True, convnet_width=16,
    convnet_stem_width=16,
    transformer_patch_size=8, transformer_hidden_size=64, transformer_layers=2,
    transformer_heads=2)
