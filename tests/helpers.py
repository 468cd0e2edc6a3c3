"""Small real video files and dataset trees for tests (real codecs, a few frames each)."""

from __future__ import annotations

import os

import numpy as np

from raydistill.video import encode_video
from raydistill.video.io import CODEC_BY_EXTENSION


def moving_square_frames(num_frames: int = 8, height: int = 32, width: int = 48,
                         seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 frames of a bright square moving right over a random background."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    frames = np.repeat(background[None], num_frames, axis=0)
    side = max(4, height // 4)
    for t in range(num_frames):
        left = (t * 3) % max(1, width - side)
        frames[t, height // 2 - side // 2: height // 2 + side // 2, left:left + side] = 230
    return frames


def write_test_video(path: str, num_frames: int = 8, height: int = 32, width: int = 48,
                     fps: int = 8, seed: int = 0) -> str:
    """Write a real video at local ``path`` (codec by extension: mp4 H.264, webm VP9, avi MPEG-4)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    extension = path.rsplit(".", 1)[-1]
    data = encode_video(moving_square_frames(num_frames, height, width, seed), fps, extension)
    with open(path, "wb") as handle:
        handle.write(data)
    return path


def write_truncated_video(path: str) -> str:
    """A real video cut to a third of its bytes (header or index lost)."""
    write_test_video(path, num_frames=12)
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: len(data) // 3])
    return path


def write_random_bytes(path: str, size: int = 4096, seed: int = 1) -> str:
    """A file of random bytes with a video extension."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(np.random.default_rng(seed).bytes(size))
    return path


def write_empty(path: str) -> str:
    """A zero-byte file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    open(path, "wb").close()
    return path


def ids_by_split(listing):
    """{split: {video_id, ...}} of a listing's videos."""
    splits = {video["split"] for video in listing.videos}
    return {split: {v["video_id"] for v in listing.videos if v["split"] == split}
            for split in splits}


def write_flat_video(path: str, num_frames: int, height: int, width: int,
                     colour: tuple[int, int, int] = (30, 120, 200), fps: int = 8) -> str:
    """A real video of one flat colour (codec by extension): tiny on disk at any resolution,
    e.g. 3 frames of 4000×3000 make a ~150 kB .avi."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    frames[:] = colour
    with open(path, "wb") as handle:
        handle.write(encode_video(frames, fps, path.rsplit(".", 1)[-1]))
    return path


def write_zero_frame_video(path: str, height: int = 32, width: int = 48) -> str:
    """A well-formed container (codec by extension) whose video stream holds no frame: the
    header is written, no packet is. (An .mp4 muxer drops the empty track: no video stream.)"""
    import av

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    container_format, codec = CODEC_BY_EXTENSION[path.rsplit(".", 1)[-1]]
    with av.open(path, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.start_encoding()
    return path


def write_bytes(path: str, data: bytes) -> str:
    """A file holding ``data`` (a text page saved under a video's name, a damaged list…)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return path
