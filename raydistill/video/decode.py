"""Fixed-length clips from video files: uniform temporal sampling, short-side resize, centre crop.

decord is tried first (fast, random access); PyAV decodes when decord is not installed (it is
x86-only) or fails on the file. Either way the result is the same clip up to codec rounding.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from raydistill.video.io import Source, open_source

try:  # decord has wheels for x86_64 only.
    import decord
except ImportError:  # pragma: no cover - exercised on non-x86 machines
    decord = None

import av


class DecodeError(Exception):
    """A video that cannot be decoded; the message names the file and what each decoder said."""

    def __init__(self, path: str, detail: str):
        super().__init__(f"cannot decode {path}: {detail}")
        self.path, self.detail = path, detail


def sample_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """Indices of ``num_frames`` frames spread uniformly over ``total_frames``.

    Each index is the centre of one of ``num_frames`` equal segments, so the whole video is
    covered; when the video is shorter than the clip, frames repeat. Returns int64 (num_frames,).
    """
    if total_frames <= 0:
        raise ValueError("total_frames must be positive")
    centres = (np.arange(num_frames) + 0.5) * total_frames / num_frames
    return np.minimum(centres.astype(np.int64), total_frames - 1)


def resize_center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Short-side resize to ``size`` then centre crop to ``size``×``size``.

    Takes (T, H, W, 3) uint8 and returns (T, size, size, 3) uint8. The centre square is cut at
    full resolution first and then resized, which gives the same picture with fewer pixels to
    interpolate.
    """
    _, height, width, _ = frames.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frames[:, top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    tensor = torch.from_numpy(np.ascontiguousarray(square)).permute(0, 3, 1, 2).float()
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=side > size)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _decode_with_decord(source: Source, num_frames: int) -> np.ndarray:
    if hasattr(source, "seek"):
        source.seek(0)
    reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=1)
    total = len(reader)
    if total == 0:
        raise ValueError("no frames")
    return reader.get_batch(sample_indices(total, num_frames).tolist()).asnumpy()


def _decode_with_pyav(source: Source, num_frames: int) -> np.ndarray:
    if hasattr(source, "seek"):
        source.seek(0)
    with av.open(source) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # Decoding every frame to RGB would be wasteful: keep the raw frames, convert the chosen.
        decoded = list(container.decode(stream))
    if not decoded:
        raise ValueError("no frames")
    chosen = sample_indices(len(decoded), num_frames)
    return np.stack([decoded[i].to_ndarray(format="rgb24") for i in chosen])


def decode_clip(path: str, num_frames: int = 16, size: int = 112) -> np.ndarray:
    """Decode a clip of ``num_frames`` frames of ``size``×``size`` RGB from ``path``.

    ``path`` is a local path or an fsspec URL. Returns uint8 (num_frames, size, size, 3).
    Raises :class:`DecodeError` naming the file when neither decoder can read it.
    """
    try:
        source = open_source(path)
    except Exception as error:
        raise DecodeError(path, f"cannot open: {error}") from None
    failures = []
    backends = [("decord", _decode_with_decord)] if decord is not None else []
    backends.append(("pyav", _decode_with_pyav))
    for name, decode in backends:
        try:
            frames = decode(source, num_frames)
        except Exception as error:  # decord's DECORDError is not a RuntimeError: catch broadly.
            failures.append(f"{name}: {error}".strip())
            continue
        return resize_center_crop(frames, size)
    raise DecodeError(path, "; ".join(failures))
