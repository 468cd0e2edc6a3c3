"""What a finished run computed, as comparable digests: two runs with the same seeds must agree
file by file, whatever interruptions one of them survived.

Left out: what records when or where rather than what (stage markers, config.yaml, the report's
text, the run's log files and tracked metrics, Ray Train / Tune storage, leases, timings inside
JSON and model files), and the run directory's own path inside tables and JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import av
import pyarrow.parquet as pq
import torch

VOLATILE_KEYS = {"seconds", "wall_seconds", "started", "finished", "time", "report"}
SKIPPED_TOP = ("_stages", "report", "config.yaml", "logs", "tracking")


def _skipped(relative: str) -> bool:
    parts = relative.split(os.sep)
    return parts[0] in SKIPPED_TOP or "ray" in parts[:-1] or parts[-1].startswith(".")


def _scrub(value, roots: tuple[str, ...]):
    if isinstance(value, dict):
        return {k: _scrub(v, roots) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_scrub(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "RUN")
        return value
    return value


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def file_digest(path: str, roots: tuple[str, ...]) -> str:
    """Digest of one run file's meaning: table rows, JSON without timings, tensors of a torch
    file, bytes otherwise (videos, npy, safetensors). ``roots``: the run's addresses, replaced
    by ``RUN`` inside tables and JSON."""
    if path.endswith(".parquet"):
        return _hash(repr(_scrub(pq.read_table(path).to_pylist(), roots)).encode())
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        return _hash(json.dumps(_scrub(data, roots), sort_keys=True).encode())
    if path.endswith(".pt"):
        state = torch.load(path, map_location="cpu", weights_only=False)
        weights = state.get("model", state) if isinstance(state, dict) else state
        buffer = io.BytesIO()
        for name in sorted(weights):
            buffer.write(name.encode())
            buffer.write(weights[name].numpy().tobytes())
        return _hash(buffer.getvalue())
    with open(path, "rb") as handle:
        return _hash(handle.read())


def fingerprint(root: str, aliases: tuple[str, ...] = ()) -> dict[str, str]:
    """{run-relative path: digest} of every visible result file of a local run (``aliases``:
    other addresses the run had, e.g. the ``s3://`` URL of a run copied from a bucket)."""
    root = os.path.abspath(root)
    digests = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            if _skipped(relative):
                continue
            digests[relative] = file_digest(path, (*aliases, root))
    return digests


def differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Readable list of files only in one fingerprint or differing between the two."""
    return ([f"only in first: {p}" for p in sorted(set(a) - set(b))]
            + [f"only in second: {p}" for p in sorted(set(b) - set(a))]
            + [f"differs: {p}" for p in sorted(set(a) & set(b)) if a[p] != b[p]])


def unreadable_files(root: str) -> list[str]:
    """Visible files of a run that are not complete: Parquet without a footer, JSON that does
    not parse, mp4 that does not decode (what a kill in mid-write would leave, were writes not
    atomic). Hidden temporary files are not visible and not checked."""
    bad = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            try:
                if name.endswith(".parquet"):
                    pq.read_metadata(path)
                elif name.endswith(".json"):
                    with open(path, encoding="utf-8") as handle:
                        json.load(handle)
                elif name.endswith(".mp4"):
                    with av.open(path) as container:
                        next(container.decode(video=0))
            except Exception as error:  # noqa: BLE001 - any failure means an incomplete file
                bad.append(f"{os.path.relpath(path, root)}: {error}")
    return bad
