"""Manifest rows → clips, a batch at a time, with per-row errors instead of exceptions."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa

from raydistill.schema import clip_schema, tensor_array
from raydistill.video.decode import DecodeError, decode_clip


def decode_batch(batch: Mapping[str, Sequence], num_frames: int, size: int,
                 frame_interval: int | None = None, frame_start: str = "center") -> dict:
    """Decode a batch of manifest rows (columns ``video_id, path, label, split`` at least), each
    clip sampled as :func:`~raydistill.video.decode.decode_clip` says.

    Returns columns ``video_id, label, split`` (as given), ``clip`` uint8
    (B, num_frames, size, size, 3) and ``error`` (B,) strings, empty where the row decoded. A
    failed row keeps a zero clip so the batch stays one tensor; consumers drop rows with an
    error.
    """
    paths = list(batch["path"])
    clips = np.zeros((len(paths), num_frames, size, size, 3), dtype=np.uint8)
    errors = []
    for i, path in enumerate(paths):
        try:
            clips[i] = decode_clip(str(path), num_frames, size, frame_interval, frame_start)
            errors.append("")
        except DecodeError as error:
            errors.append(str(error))
        except Exception as error:  # anything else from a decoder: record it, keep going
            errors.append(f"cannot decode {path}: {type(error).__name__}: {error}")
    return {
        "video_id": np.asarray(batch["video_id"], dtype=object),
        "label": np.asarray(batch["label"], dtype=np.int32),
        "split": np.asarray(batch["split"], dtype=object),
        "clip": clips,
        "error": np.asarray(errors, dtype=object),
    }


def clips_table(decoded: Mapping[str, np.ndarray]) -> pa.Table:
    """The rows of a :func:`decode_batch` result that decoded, as a clip-cache table."""
    keep = np.flatnonzero(np.asarray([e == "" for e in decoded["error"]], dtype=bool))
    clips = decoded["clip"][keep]
    return pa.table({
        "video_id": pa.array([decoded["video_id"][i] for i in keep], pa.string()),
        "label": pa.array(decoded["label"][keep], pa.int32()),
        "split": pa.array([decoded["split"][i] for i in keep], pa.string()),
        "clip": tensor_array(clips, pa.uint8()),
    }, schema=clip_schema(clips.shape[1], clips.shape[2]))


def clips_from_table(table: pa.Table) -> np.ndarray:
    """The ``clip`` column of a clip-cache table as uint8 (N, T, H, W, 3)."""
    return table.column("clip").combine_chunks().to_numpy_ndarray()
