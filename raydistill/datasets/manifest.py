"""From a layout's listing to the manifest: probe each listed file, split passes from rejects.

Pure functions: the ingest stage runs :func:`probe_rows` in parallel Ray tasks and assembles
the results with :func:`build_tables`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import pyarrow as pa

from raydistill.layout import pool_manifest
from raydistill.runs import RunDir
from raydistill.schema import MANIFEST_SCHEMA, REJECTS_SCHEMA, reject, table_from_rows
from raydistill.video.probe import ProbeError, probe_video


def probe_rows(rows: list[dict], verify: bool = True,
               max_pixels: int | None = None) -> tuple[list[dict], list[dict]]:
    """Open every listed video of ``rows`` and read its header.

    Takes listing rows (``video_id, path, label, class_name, split``) and returns
    ``(manifest rows with num_frames, fps, width, height; reject rows)``. Never raises for a bad
    file: whatever goes wrong becomes a reject with its reason.
    """
    videos, rejects = [], []
    for row in rows:
        try:
            info = probe_video(row["path"], verify=verify, max_pixels=max_pixels)
        except ProbeError as error:
            rejects.append(reject(row["video_id"], row["path"], row["split"], error.reason,
                                  error.detail))
        except Exception as error:  # a decoder bug must not lose the other rows
            rejects.append(reject(row["video_id"], row["path"], row["split"], "corrupt",
                                  f"{type(error).__name__}: {error}"))
        else:
            videos.append({**row, **asdict(info)})
    return videos, rejects


def build_tables(videos: list[dict], rejects: list[dict]) -> tuple[pa.Table, pa.Table]:
    """Manifest and rejects tables, sorted (split, label, video_id) / (split, video_id).

    Sorting makes the files identical whatever order the parallel probes finished in.
    """
    videos = sorted(videos, key=lambda r: (r["split"], r["label"], r["video_id"]))
    rejects = sorted(rejects, key=lambda r: (r["split"], r["video_id"], r["reason"]))
    return table_from_rows(videos, MANIFEST_SCHEMA), table_from_rows(rejects, REJECTS_SCHEMA)


def summarize(manifest: pa.Table, rejects: pa.Table) -> dict:
    """Counts for the ingest summary: videos per split, classes, rejects by reason."""
    return {
        "videos": manifest.num_rows,
        "videos_per_split": dict(sorted(Counter(manifest.column("split").to_pylist()).items())),
        "classes": len(set(manifest.column("label").to_pylist())),
        "rejects": rejects.num_rows,
        "rejects_by_reason": dict(sorted(Counter(rejects.column("reason").to_pylist()).items())),
    }


def label_set_warnings(class_names: list[str], manifest: pa.Table) -> list[str]:
    """What is wrong with the label set once the videos are known: classes of the class list
    with no training video (selection could not pick from them) and classes with videos in no
    split but one (a class only in the test split cannot be learned; one without test videos is
    never measured). One sentence per problem, naming at most 5 classes."""
    splits_of: dict[str, Counter] = {name: Counter() for name in class_names}
    for name, split in zip(manifest.column("class_name").to_pylist(),
                           manifest.column("split").to_pylist()):
        splits_of.setdefault(name, Counter())[split] += 1
    has_held_out = any(split != "train" for split in manifest.column("split").to_pylist())
    problems = {
        "no training video": [n for n, c in splits_of.items() if not c["train"]],
        "training videos but none to test on": [
            n for n, c in splits_of.items() if c["train"] and has_held_out
            and not (c["test"] or c["val"])],
    }
    return [f"{len(names)} classes with {what}: {', '.join(repr(n) for n in names[:5])}"
            + (" …" if len(names) > 5 else "") for what, names in problems.items() if names]


def format_summary(summary: dict, dataset: str, run_url: str) -> str:
    """A one-screen text summary of an ingest."""
    lines = [f"ingest {dataset} → {run_url}",
             f"  videos: {summary['videos']} in {summary['classes']} classes"]
    lines += [f"    {split:<6} {count}" for split, count in summary["videos_per_split"].items()]
    lines.append(f"  rejects: {summary['rejects']}")
    lines += [f"    {reason:<16} {count}" for reason, count in summary["rejects_by_reason"].items()]
    lines += [f"  warning: {warning}" for warning in summary.get("warnings", [])]
    return "\n".join(lines)


PoolVideos = dict[str, tuple[str, str]]
"""video_id → (path as the pool's manifest stores it, class name)."""


def pool_videos(run: RunDir, pool: str) -> PoolVideos:
    """``{video_id: (path, class_name)}`` of every video of ``pool`` (its manifest's stored
    paths: run-relative for files inside the run); empty when the run has no such manifest (a
    run whose embeddings came from elsewhere selects all the same)."""
    manifest = pool_manifest(pool)
    if not run.exists(manifest):
        return {}
    table = run.read_table(manifest, columns=["video_id", "path", "class_name"])
    return {video_id: (path, name) for video_id, path, name in
            zip(*(table.column(column).to_pylist() for column in table.column_names))}
