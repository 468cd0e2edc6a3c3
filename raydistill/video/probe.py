"""Reading a video's header (frames, fps, size) and checking that it decodes, with PyAV.

PyAV raises Python exceptions on damaged input where decord may abort the process, so ingest
probes with PyAV; decode then reads the files that passed with decord first.
"""

from __future__ import annotations

from dataclasses import dataclass

import av

from raydistill.video.io import Source, looks_like_container, open_source, read_head


@dataclass(frozen=True)
class VideoInfo:
    """What ingest records of a readable video."""

    num_frames: int
    fps: float
    width: int
    height: int


class ProbeError(Exception):
    """A file that is not a usable video; ``reason`` is a key of ``schema.REJECT_REASONS``."""

    def __init__(self, path: str, reason: str, detail: str = ""):
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))
        self.path, self.reason, self.detail = path, reason, detail


def _demux(container: av.container.InputContainer,
           stream: av.video.VideoStream) -> tuple[int, float | None]:
    """(non-empty packets of ``stream``, one per frame for video; the seconds from the start to
    the end of the last packet of any stream, None without timestamps), by demuxing only. Every
    stream counts for the end: the container's duration covers its audio too."""
    count, end = 0, None
    for packet in container.demux():
        if packet.size <= 0:
            continue
        count += packet.stream.index == stream.index
        if packet.pts is not None and packet.time_base is not None:
            finish = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            end = finish if end is None else max(end, finish)
    start = container.start_time / av.time_base if container.start_time else 0.0
    return count, (None if end is None else end - start)


def _first_frame(container: av.container.InputContainer) -> av.VideoFrame | None:
    """The first decodable frame of the first video stream, or None."""
    container.seek(0)
    for frame in container.decode(video=0):
        return frame
    return None


def quarter_turns(frame: av.VideoFrame) -> int:
    """How many quarter turns counter-clockwise (``np.rot90``'s ``k``) the frame's display matrix
    asks for: phone videos store upright frames sideways with a rotation flag, which decord
    applies and the frame's pixels do not."""
    return int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4


def _verify(path: str, container, stream, declared: int) -> tuple[int, int]:
    """Demux every packet and decode the first frame; returns the frames actually held and the
    first frame's :func:`quarter_turns`.

    Where the header counts its frames (mp4, avi), a file holding fewer is truncated, reason
    ``corrupt``. Where it only announces a duration (WebM, Matroska), duration × rate is an
    estimate that a variable-frame-rate file does not meet, so the evidence is the timestamps
    instead: a file whose packets end more than a frame and 5 % before the announced duration
    is truncated. A file that holds nothing decodable is ``zero_frames`` (or truncated, when its
    header announced frames).
    """
    try:
        counted, covered = _demux(container, stream)
        first = _first_frame(container) if counted > 0 else None
        decodes = first is not None
    except Exception as error:
        raise ProbeError(path, "corrupt", f"demux/decode failed: {error}") from None
    if stream.frames and (not decodes or counted < stream.frames):
        raise ProbeError(path, "corrupt", f"truncated: header announces {stream.frames} frames, "
                                          f"{counted if decodes else 0} decode")
    announced = container.duration / av.time_base if container.duration else None
    rate = float(stream.average_rate or stream.guessed_rate or 0) or None
    if not stream.frames and declared and not decodes:
        raise ProbeError(path, "corrupt", f"truncated: header announces {announced:.2f} s, "
                                          "no frame decodes")
    if not stream.frames and decodes and announced and covered is not None:
        slack = (1 / rate if rate else 0) + 0.05 * announced
        if covered < announced - slack:
            raise ProbeError(path, "corrupt", f"truncated: header announces {announced:.2f} s, "
                                              f"the frames end at {covered:.2f} s")
    if not decodes:
        raise ProbeError(path, "zero_frames")
    return counted, quarter_turns(first)


def probe_video(path: str, verify: bool = True, max_pixels: int | None = None) -> VideoInfo:
    """Read ``path``'s header (local path or fsspec URL) and return its :class:`VideoInfo`.

    With ``verify``, also demux the whole file (a truncated file holds fewer packets than its
    header announces) and decode the first frame. ``num_frames`` is the counted packets when
    verified, else the header's count (or duration × fps when the container stores none, as
    WebM does); ``width`` and ``height`` are the displayed size (a video stored sideways with a
    rotation flag reports its upright size). Raises :class:`ProbeError` with reason ``empty``, ``not_a_video``, ``corrupt``,
    ``no_video_stream``, ``zero_frames`` or, for frames of more than ``max_pixels`` pixels (read
    from the header, before anything is decoded), ``too_large``.
    """
    try:
        source = open_source(path)
        head = read_head(source)
    except FileNotFoundError:
        raise ProbeError(path, "missing") from None
    except OSError as error:
        raise ProbeError(path, "corrupt", f"cannot read: {error}") from None
    if not head:
        raise ProbeError(path, "empty")
    return _probe_source(path, source, head, verify, max_pixels)


def _probe_source(path: str, source: Source, head: bytes, verify: bool,
                  max_pixels: int | None = None) -> VideoInfo:
    try:
        container = av.open(source)
    except Exception as error:  # PyAV raises many FFmpeg error types; all mean unreadable.
        reason = "corrupt" if looks_like_container(head) else "not_a_video"
        raise ProbeError(path, reason, str(error)) from None
    with container:
        if not container.streams.video:
            raise ProbeError(path, "no_video_stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if max_pixels is not None and width * height > max_pixels:
            raise ProbeError(path, "too_large", f"{width}x{height} frames "
                             f"({width * height / 1e6:.1f} M pixels) exceed "
                             f"ingest.max_frame_pixels ({max_pixels})")
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        declared = stream.frames
        if not declared and container.duration and fps:
            declared = int(round(container.duration / av.time_base * fps))
        num_frames, turns = declared, 0
        if verify:
            num_frames, turns = _verify(path, container, stream, declared)
        else:
            try:
                first = _first_frame(container)
                turns = quarter_turns(first) if first is not None else 0
            except Exception:  # unverified: a frame that does not decode is decode's problem
                pass
        if turns % 2:  # stored sideways: the displayed size, as decode will return the frames
            width, height = height, width
    if num_frames <= 0:
        raise ProbeError(path, "zero_frames")
    if width <= 0 or height <= 0:
        raise ProbeError(path, "corrupt", f"invalid frame size {width}x{height}")
    return VideoInfo(num_frames=int(num_frames), fps=fps, width=int(width), height=int(height))
