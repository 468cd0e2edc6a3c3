"""uint8 clip batches → normalised classifier input, with random training augmentation.

Clips come from the decode stage as uint8 (B, T, H, W, 3) (numpy or torch); classifiers take
float (B, 3, frames, size, size). :func:`to_model_input` is the deterministic (test-time) path:
uniform temporal sampling, centre square, resize. :func:`augment_clips` is the training path:
temporal jitter, random crop, horizontal flip, each drawn from a ``torch.Generator`` so that a
seed fixes the result.

Horizontal flip mirrors motion: it turns "move left" into "move right" and clockwise into
counter-clockwise. It suits UCF101 / HMDB51 / Kinetics, whose classes keep their meaning when
mirrored, but not the toy dataset (its classes *are* such motions) nor SSv2 (templates like
"pushing something from left to right"): turn ``flip`` off for those.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from raydistill.accel import to_device
from raydistill.video.decode import sample_indices

# Kinetics-400 RGB statistics on [0, 1] pixels (as used for video models trained from scratch).
MEAN = (0.43216, 0.394666, 0.37645)
STD = (0.22803, 0.22145, 0.216989)
CROPS = ("resized", "pad", "none")


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation of a clip batch.

    ``crop``: ``"resized"`` takes a random square covering a fraction in [``min_scale``, 1] of the
    frame's area and resizes it (C3D's random 112² crop of 128-pixel frames is ≈ 0.77);
    ``"pad"`` resizes, zero-pads ``pad`` pixels per side and crops back (a random translation, as
    in the distillation benchmarks' DSA); ``"none"`` only resizes. ``flip`` mirrors half the clips
    left-right (see the module doc for when not to). ``temporal_jitter`` samples the model's
    frames at a random stride and offset within the clip instead of uniformly.
    """

    crop: str = "resized"
    min_scale: float = 0.75
    pad: int = 4
    flip: bool = True
    temporal_jitter: bool = True

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r}; choose one of {', '.join(CROPS)}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {self.min_scale}")
        if self.pad < 0:
            raise ValueError(f"pad must be >= 0, got {self.pad}")


NO_AUGMENTATION = Augmentation(crop="none", flip=False, temporal_jitter=False)


def as_clip_tensor(clips: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) numpy or torch → a uint8 torch tensor of the same shape."""
    if isinstance(clips, torch.Tensor):
        tensor = clips
    else:
        clips = np.asarray(clips)
        # Arrow-backed arrays are read-only; torch wants writable memory.
        tensor = torch.from_numpy(clips if clips.flags.writeable and clips.flags.c_contiguous
                                  else np.array(clips))
    check_clips(tuple(tensor.shape), tensor.dtype)
    return tensor


def check_clips(shape: tuple, dtype: torch.dtype | np.dtype) -> None:
    """Raise ValueError unless ``shape`` is (B, T, H, W, 3) and ``dtype`` (torch's or numpy's)
    is uint8."""
    name = str(dtype).removeprefix("torch.")
    if len(shape) != 5 or shape[-1] != 3 or name != "uint8":
        raise ValueError(f"expected uint8 clips of shape (B, T, H, W, 3), got {name} {shape}")


def pinned_copy(clips: np.ndarray, pin: bool = True) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) copied once into a new host tensor, page-locked when ``pin``
    (from there a GPU copy need not wait). Read-only (Arrow) memory is read directly, not first
    copied to make it writable."""
    array = np.asarray(clips)
    check_clips(tuple(array.shape), array.dtype)
    tensor = torch.empty(array.shape, dtype=torch.uint8, pin_memory=pin)
    tensor.numpy()[...] = array
    return tensor


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """A uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def jitter_indices(total: int, frames: int, generator: torch.Generator) -> np.ndarray:
    """``frames`` indices into a clip of ``total`` frames at a random stride and offset.

    The stride is drawn from 1 up to the largest that still fits, the offset from every start that
    fits; a clip shorter than ``frames`` falls back to uniform sampling (frames repeat).
    """
    if frames > total:
        return sample_indices(total, frames)
    stride = _randint(1, (total - 1) // (frames - 1) if frames > 1 else 1, generator)
    start = _randint(0, total - 1 - (frames - 1) * stride, generator)
    return start + stride * np.arange(frames)


def _normalise(clip: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 (T, H, W, 3) → float (T, 3, H, W) with per-channel mean / std on [0, 1] pixels."""
    frames = clip.permute(0, 3, 1, 2).float().div_(255)
    mean_t = torch.tensor(mean, device=clip.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=clip.device).view(1, 3, 1, 1)
    return frames.sub_(mean_t).div_(std_t)


def _resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, h, w) → (T, 3, size, size), antialiased when shrinking."""
    if frames.shape[-2:] == (size, size):
        return frames
    shrink = min(frames.shape[-2:]) > size
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=shrink)


def _centre_square(frames: torch.Tensor) -> torch.Tensor:
    height, width = frames.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return frames[..., top:top + side, left:left + side]


def _random_crop(frames: torch.Tensor, size: int, augmentation: Augmentation,
                 generator: torch.Generator) -> torch.Tensor:
    """(T, 3, H, W) → (T, 3, size, size) per ``augmentation.crop``."""
    if augmentation.crop == "none":
        return _resize(_centre_square(frames), size)
    if augmentation.crop == "pad":
        pad = augmentation.pad
        padded = F.pad(_resize(_centre_square(frames), size), (pad, pad, pad, pad))
        top, left = _randint(0, 2 * pad, generator), _randint(0, 2 * pad, generator)
        return padded[..., top:top + size, left:left + size]
    height, width = frames.shape[-2:]
    scale = augmentation.min_scale + (1 - augmentation.min_scale) * float(
        torch.rand((1,), generator=generator).item())
    side = max(1, round(min(height, width) * scale ** 0.5))
    top, left = _randint(0, height - side, generator), _randint(0, width - side, generator)
    return _resize(frames[..., top:top + side, left:left + side], size)


def clips_on(clips: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) as a uint8 tensor on ``device``: a GPU receives bytes, not
    four times as many float bytes, and converts them itself (:func:`to_device`). Host clips
    for a GPU are copied once, into pinned memory (:func:`pinned_copy`)."""
    if torch.device(device).type == "cuda" and not isinstance(clips, torch.Tensor):
        return pinned_copy(clips).to(device, non_blocking=True)
    return to_device(as_clip_tensor(clips), device)


def to_model_input(clips: np.ndarray | torch.Tensor, frames: int, size: int,
                   mean: tuple = MEAN, std: tuple = STD) -> torch.Tensor:
    """Deterministic test-time input: uint8 (B, T, H, W, 3) → float (B, 3, frames, size, size).

    Frames are sampled uniformly over the clip (the decode stage's rule), the centre square is
    resized to ``size``, pixels normalised with ``mean`` / ``std``.
    """
    tensor = as_clip_tensor(clips)
    indices = torch.from_numpy(sample_indices(tensor.shape[1], frames)).to(tensor.device)
    out = [_resize(_centre_square(_normalise(clip[indices], mean, std)), size) for clip in tensor]
    return torch.stack(out).transpose(1, 2).contiguous()


def augment_clips(clips: np.ndarray | torch.Tensor, frames: int, size: int,
                  augmentation: Augmentation, generator: torch.Generator,
                  mean: tuple = MEAN, std: tuple = STD) -> torch.Tensor:
    """Random training input: uint8 (B, T, H, W, 3) → float (B, 3, frames, size, size).

    Every random draw comes from ``generator`` (CPU), clip by clip, so the same generator state
    gives the same batch. Clips already on a GPU are augmented there.
    """
    tensor = as_clip_tensor(clips)
    out = []
    for clip in tensor:
        if augmentation.temporal_jitter:
            indices = jitter_indices(clip.shape[0], frames, generator)
        else:
            indices = sample_indices(clip.shape[0], frames)
        picked = _normalise(clip[torch.from_numpy(indices).to(clip.device)], mean, std)
        cropped = _random_crop(picked, size, augmentation, generator)
        if augmentation.flip and bool(torch.rand((1,), generator=generator).item() < 0.5):
            cropped = cropped.flip(-1)
        out.append(cropped)
    return torch.stack(out).transpose(1, 2).contiguous()
