"""Arrow schemas of the tables passed between stages, and the reject reasons they may carry."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pyarrow as pa

SPLITS = ("train", "val", "test")

# Why a listed video did not make it into the manifest (or into the clips).
REJECT_REASONS = {
    "missing": "listed in the annotations but no file on disk",
    "empty": "the file has zero bytes",
    "not_a_video": "the file is not a container any decoder recognises",
    "corrupt": "a video container that cannot be opened or decoded (e.g. truncated)",
    "no_video_stream": "the container holds no video stream",
    "zero_frames": "the video stream holds no decodable frame",
    "too_large": "the frames hold more pixels than ingest.max_frame_pixels",
    "bad_annotation": "an annotation line that cannot be parsed",
    "unknown_class": "an annotation names a class outside the class list",
    "duplicate_id": "the same video id is listed twice",
    "outside_root": "the listed file is a link to a place outside the dataset root",
    "decode_error": "the file passed ingest but failed when decoded into a clip",
}

MANIFEST_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("label", pa.int32()),
    ("class_name", pa.string()),
    ("split", pa.string()),
    ("num_frames", pa.int32()),
    ("fps", pa.float32()),
    ("width", pa.int32()),
    ("height", pa.int32()),
])

REJECTS_SCHEMA = pa.schema([
    ("video_id", pa.string()),
    ("path", pa.string()),
    ("split", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
])


def clip_schema(num_frames: int, size: int) -> pa.Schema:
    """Schema of a clip-cache shard: one row per video, ``clip`` as a uint8 (T, H, W, 3) tensor."""
    return pa.schema([
        ("video_id", pa.string()),
        ("label", pa.int32()),
        ("split", pa.string()),
        ("clip", pa.fixed_shape_tensor(pa.uint8(), (num_frames, size, size, 3))),
    ])


def tensor_array(values: np.ndarray, value_type: pa.DataType) -> pa.ExtensionArray:
    """Arrow fixed-shape-tensor array of ``values`` (N, *shape); N may be 0."""
    shape = values.shape[1:]
    storage = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(values).reshape(-1), value_type), int(np.prod(shape)))
    return pa.ExtensionArray.from_storage(pa.fixed_shape_tensor(value_type, shape), storage)


def table_from_rows(rows: Iterable[Mapping], schema: pa.Schema) -> pa.Table:
    """Build a table of ``schema`` from dict rows; extra keys are ignored, missing ones are null."""
    rows = list(rows)
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.table(columns, schema=schema)


def reject(video_id: str, path: str, split: str, reason: str, detail: str = "") -> dict:
    """One rejects row; ``reason`` must be a key of :data:`REJECT_REASONS`."""
    if reason not in REJECT_REASONS:
        raise ValueError(f"unknown reject reason {reason!r}")
    return {"video_id": video_id, "path": path, "split": split, "reason": reason,
            "detail": detail}
