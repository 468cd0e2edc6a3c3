"""Fixed-length clips from video files: uniform temporal sampling, short-side resize, centre crop.

decord is tried first (fast, random access); PyAV decodes when decord is not installed (it is
x86-only) or fails on the file. Either way the result is the same clip up to codec rounding.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from raydistill.config import FRAME_STARTS
from raydistill.video.io import Source, open_source
from raydistill.video.probe import quarter_turns

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


def sample_indices(total_frames: int, num_frames: int, frame_interval: int | None = None,
                   frame_start: str = "center", key: str = "") -> np.ndarray:
    """Indices of the ``num_frames`` frames of a clip out of ``total_frames``.

    ``frame_interval`` None: spread uniformly, each index the centre of one of ``num_frames``
    equal segments, so the whole video is covered (frames repeat in a video shorter than the
    clip). ``frame_interval`` k: consecutive frames k apart (how C3D, k = 1, and Latte's UCF101
    model, k = 3, were trained), the span centred in the video or, ``frame_start="random"``,
    starting at an offset drawn from ``key`` (the same every time for the same key); a video
    shorter than the span takes the largest stride that fits, and one shorter than the clip is
    sampled uniformly. Returns int64 (num_frames,).
    """
    if total_frames <= 0:
        raise ValueError("total_frames must be positive")
    if frame_start not in FRAME_STARTS:
        raise ValueError(f"frame_start must be one of {', '.join(FRAME_STARTS)}")
    stride = frame_interval
    if stride is not None and num_frames > 1:
        stride = min(stride, (total_frames - 1) // (num_frames - 1))
    if stride is None or stride < 1:
        centres = (np.arange(num_frames) + 0.5) * total_frames / num_frames
        return np.minimum(centres.astype(np.int64), total_frames - 1)
    slack = total_frames - ((num_frames - 1) * stride + 1)
    if frame_start == "random":
        offset = int(np.random.default_rng(zlib.crc32(key.encode())).integers(0, slack + 1))
    else:
        offset = slack // 2
    return offset + stride * np.arange(num_frames, dtype=np.int64)


FRAME_BYTES_BUDGET = 32 * 2**20
"""Bytes of full-resolution frames (and their float copies) held at once while decoding a clip.

Frames are read, cropped and resized a chunk at a time under this budget, so a clip of a
4000×3000 video costs a few full frames of memory instead of T of them (16 × 36 MB of RGB, and
four times that as floats); videos of ordinary resolution fit in one chunk.
"""


def resize_center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Short-side resize to ``size`` then centre crop to ``size``×``size``.

    Takes (T, H, W, 3) uint8 and returns (T, size, size, 3) uint8. The centre square is cut at
    full resolution first and then resized, which gives the same picture with fewer pixels to
    interpolate; frames are resized a chunk at a time (:data:`FRAME_BYTES_BUDGET`).
    """
    count, height, width, _ = frames.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = frames[:, top:top + side, left:left + side]
    if side == size:
        return np.ascontiguousarray(square)
    float_bytes_per_frame = side * side * 3 * 4
    chunk = max(1, FRAME_BYTES_BUDGET // float_bytes_per_frame)
    out = np.empty((count, size, size, 3), dtype=np.uint8)
    for start in range(0, count, chunk):
        part = torch.from_numpy(np.ascontiguousarray(square[start:start + chunk]))
        resized = F.interpolate(part.permute(0, 3, 1, 2).float(), size=(size, size),
                                mode="bilinear", align_corners=False, antialias=side > size)
        out[start:start + chunk] = (resized.round_().clamp_(0, 255).to(torch.uint8)
                                    .permute(0, 2, 3, 1).numpy())
    return out


def _resize_in_batches(chunks: Iterable[np.ndarray], size: int) -> np.ndarray:
    """Resize full-resolution frames arriving in chunks ((n, H, W, 3) uint8 each) to
    (N, size, size, 3), gathering chunks into batches of about :data:`FRAME_BYTES_BUDGET`
    (one batch for a clip of ordinary resolution: each resize call has a fixed cost)."""
    resized, pending, pending_bytes = [], [], 0
    for chunk in chunks:
        pending.append(chunk)
        pending_bytes += chunk.nbytes
        if pending_bytes >= FRAME_BYTES_BUDGET:
            resized.append(resize_center_crop(np.concatenate(pending), size))
            pending, pending_bytes = [], 0
    if pending:
        resized.append(resize_center_crop(np.concatenate(pending), size))
    return np.concatenate(resized) if resized else np.empty((0, size, size, 3), np.uint8)


def _decode_with_decord(source: Source, num_frames: int, size: int,
                        sampling: dict | None = None) -> np.ndarray:
    sampling = sampling or {}
    if hasattr(source, "seek"):
        source.seek(0)
    reader = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=1)
    total = len(reader)
    if total == 0:
        raise ValueError("no frames")
    # Each distinct frame is read once (a short video repeats frames: copies are made after
    # resizing), the first alone to learn the frame size, then chunks under the budget.
    distinct, positions = np.unique(sample_indices(total, num_frames, **sampling),
                                    return_inverse=True)

    def chunks():
        start, chunk = 0, 1
        while start < len(distinct):
            frames = reader.get_batch(distinct[start:start + chunk].tolist()).asnumpy()
            yield frames
            start += chunk
            chunk = max(1, FRAME_BYTES_BUDGET // max(1, frames[0].nbytes))

    return _resize_in_batches(chunks(), size)[positions.reshape(-1)]


def _open_container(source: Source) -> av.container.InputContainer:
    if hasattr(source, "seek"):
        source.seek(0)
    return av.open(source)


def _count_video_packets(source: Source) -> int:
    """Frames of the first video stream, counted by demuxing only (one packet per frame)."""
    with _open_container(source) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)


def _pyav_frames_at(source: Source, wanted: set[int], size: int) -> tuple[dict, int]:
    """Decode the first video stream once, keeping only the frames numbered in ``wanted``
    (converted to RGB, resized to ``size``² in batches under the budget).

    Returns ``({frame number: (size, size, 3) uint8}, frames decoded)``.
    """
    kept, decoded = [], 0

    def chunks():
        nonlocal decoded
        with _open_container(source) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for decoded, frame in enumerate(container.decode(stream), 1):
                if decoded - 1 in wanted:
                    kept.append(decoded - 1)
                    # Upright, as decord returns it (the display matrix of phone videos).
                    upright = np.rot90(frame.to_ndarray(format="rgb24"), quarter_turns(frame))
                    yield np.ascontiguousarray(upright)[None]

    frames = _resize_in_batches(chunks(), size)
    return dict(zip(kept, frames)), decoded


def _decode_with_pyav(source: Source, num_frames: int, size: int,
                      sampling: dict | None = None) -> np.ndarray:
    sampling = sampling or {}
    total = _count_video_packets(source)
    for _ in range(2):  # again with the true count, if the decoder gave fewer frames than packets
        if total == 0:
            raise ValueError("no frames")
        indices = sample_indices(total, num_frames, **sampling).tolist()
        kept, decoded = _pyav_frames_at(source, set(indices), size)
        if all(index in kept for index in indices):
            return np.stack([kept[index] for index in indices])
        total = decoded
    raise ValueError(f"decoded {len(kept)} of the {len(set(indices))} frames sampled")


def decode_clip(path: str, num_frames: int = 16, size: int = 112,
                frame_interval: int | None = None, frame_start: str = "center") -> np.ndarray:
    """Decode a clip of ``num_frames`` frames of ``size``×``size`` RGB from ``path``.

    ``path`` is a local path or an fsspec URL. Returns uint8 (num_frames, size, size, 3). Frames
    are spread over the whole video, or ``frame_interval`` apart from a centred or random start
    (:func:`sample_indices`; a random start is drawn from the file's name, so a moved run
    decodes the same clip). A video shorter than the clip (down to a single frame) repeats its
    frames; a video of any resolution is decoded under :data:`FRAME_BYTES_BUDGET` of full-size
    frames. Raises :class:`DecodeError` naming the file when neither decoder can read it.
    """
    sampling = {"frame_interval": frame_interval, "frame_start": frame_start,
                "key": os.path.basename(path)}
    try:
        source = open_source(path)
    except Exception as error:
        raise DecodeError(path, f"cannot open: {error}") from None
    failures = []
    backends = [("decord", _decode_with_decord)] if decord is not None else []
    backends.append(("pyav", _decode_with_pyav))
    for name, decode in backends:
        try:
            return decode(source, num_frames, size, sampling)
        except Exception as error:  # decord's DECORDError is not a RuntimeError: catch broadly.
            failures.append(f"{name}: {error}".strip())
    raise DecodeError(path, "; ".join(failures))
