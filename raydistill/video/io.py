"""Opening video sources (local paths or fsspec URLs) and writing videos with real codecs."""

from __future__ import annotations

import io
from typing import BinaryIO, Union

import av
import numpy as np

from raydistill.runs import open_fs, write_bytes_atomic

Source = Union[str, BinaryIO]

# Container → codec used when writing (the codecs of the official datasets' files).
CODEC_BY_EXTENSION = {
    "mp4": ("mp4", "libx264"),   # Kinetics-400, toy: H.264
    "mkv": ("matroska", "libx264"),
    "webm": ("webm", "libvpx-vp9"),  # Something-Something-v2: VP9
    "avi": ("avi", "mpeg4"),     # UCF101 / HMDB51: MPEG-4 part 2 (xvid-like)
}

X264_OPTIONS = {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
"""H.264 settings. ``mbtree=0``: on CPUs with AVX but not AVX2 (seen on a cloud AMD EPYC), the
bundled x264's macroblock-tree rate control gave different bytes for the same frames from one
call to the next (3 to 12 of 16 toy videos, 80 encodes each); without it, none did."""

# First bytes of the containers we read; a file that starts otherwise is "not a video".
_MAGIC_AT_0 = (b"\x1a\x45\xdf\xa3", b"RIFF", b"FLV", b"OggS", b"\x00\x00\x01\xba")
_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
# MPEG-TS: 188-byte packets, each starting with the sync byte 0x47 ("G"). One sync byte alone is
# not enough: a text file starting with "G" ("Gone", "GET ...") is not a stream.
_TS_SYNC, _TS_PACKET = 0x47, 188
HEAD_SIZE = 2 * _TS_PACKET + 1
"""Bytes :func:`read_head` reads: enough to see three MPEG-TS sync bytes."""


def is_remote(path: str) -> bool:
    """Whether ``path`` is a URL of a non-local fsspec filesystem (``s3://`` …)."""
    return "://" in path and not path.startswith("file://")


def open_source(path: str) -> Source:
    """Something decord and PyAV can read: the path itself if local, else the bytes in memory.

    Remote videos are read whole, since both decoders seek and a clip file is a few MB at most.
    """
    if not is_remote(path):
        return path[len("file://"):] if path.startswith("file://") else path
    fs, stripped = open_fs(path)
    return io.BytesIO(fs.cat_file(stripped))


def read_head(source: Source, size: int = HEAD_SIZE) -> bytes:
    """The first ``size`` bytes of a source (the file position is restored)."""
    if isinstance(source, str):
        with open(source, "rb") as handle:
            return handle.read(size)
    position = source.tell()
    source.seek(0)
    head = source.read(size)
    source.seek(position)
    return head


def looks_like_container(head: bytes) -> bool:
    """Whether the first bytes of a file (:data:`HEAD_SIZE` of them, or the whole file if
    shorter) are those of a known video container."""
    return (head.startswith(_MAGIC_AT_0) or head[4:8] in _MP4_BOXES
            or _looks_like_transport_stream(head))


def _looks_like_transport_stream(head: bytes) -> bool:
    """Sync bytes at the start of every 188-byte packet the head holds (at least two)."""
    starts = range(0, len(head), _TS_PACKET)
    return len(starts) >= 2 and all(head[i] == _TS_SYNC for i in starts)


def encode_video(frames: np.ndarray, fps: float, extension: str = "mp4") -> bytes:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB with the container/codec of ``extension``.

    Returns the file's bytes. H and W must be even (yuv420p).
    """
    if extension not in CODEC_BY_EXTENSION:
        raise ValueError(f"cannot write .{extension}; known: {', '.join(CODEC_BY_EXTENSION)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    container_format, codec = CODEC_BY_EXTENSION[extension]
    buffer = io.BytesIO()
    # Bit-exact muxing: no random Matroska/WebM UIDs, no library version string, so the same
    # frames give the same bytes (runs are compared file by file, and resumes rely on it).
    with av.open(buffer, "w", format=container_format,
                 options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        # One encoder thread: writers run in Ray tasks/actors that were given a CPU share, and
        # x264's own threads would take the cores other workers were promised.
        stream.thread_count = 1
        if codec == "libx264":
            stream.options = X264_OPTIONS
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 and write them atomically to ``path`` (local or URL).

    The container and codec follow the extension: .mp4 H.264, .webm VP9, .avi MPEG-4.
    """
    extension = path.rsplit(".", 1)[-1].lower()
    data = encode_video(frames, fps, extension)
    fs, stripped = open_fs(path)
    write_bytes_atomic(fs, stripped, data)
