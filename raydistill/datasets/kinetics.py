"""Kinetics-400 in its official layout::

    ROOT/annotations/{train,val,test}.csv    label,youtube_id,time_start,time_end,split
    ROOT/{split}/{youtube_id}_{start:06d}_{end:06d}.mp4                flat, or
    ROOT/{split}/{class name}/{youtube_id}_{start:06d}_{end:06d}.mp4   in class folders

Any of the three CSVs may be absent, but at least one must exist. The split comes from the CSV's
file name (not its ``split`` column). A video is found by its file name anywhere under its split's
folder, so class folders may be spelt with spaces or underscores. Labels index the sorted union of
the class names over the CSVs present. Many listed YouTube clips are gone: those are ``missing``.
"""

from __future__ import annotations

import csv
import io

from raydistill.datasets.common import (NOT_UTF8, Listing, ListingBuilder, find_files, read_lines,
                                         root_url)

ANNOTATIONS = "annotations"
SPLIT_CSVS = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}


def list_videos(root: str, split: int = 1) -> Listing:
    """List the Kinetics-400 videos under ``root`` (local path or URL); ``split`` is ignored.

    Returns a :class:`Listing` of the videos whose file exists (``video_id`` =
    ``{youtube_id}_{start:06d}_{end:06d}``, splits ``train``/``val``/``test``) and the rejects: a
    CSV row that cannot be read (not UTF-8, more fields than the header, an empty label or id, a
    time that is not whole seconds) is a ``bad_annotation`` naming its file and line. Raises
    FileNotFoundError when none of the annotation CSVs exists.
    """
    tables = _read_csvs(root)
    class_names = sorted({row["label"] for rows in tables.values() for _, row in rows
                          if isinstance(row, dict) and row.get("label")})
    builder = ListingBuilder(class_names)
    files_by_name = _files_by_split_and_name(find_files(root))
    for split_name, rows in tables.items():
        csv_path = f"{ANNOTATIONS}/{SPLIT_CSVS[split_name]}"
        for line_number, row in rows:
            try:
                video_id = _video_id(row)
            except ValueError as problem:
                youtube_id = row.get("youtube_id") if isinstance(row, dict) else None
                builder.reject(youtube_id or "", root_url(root, csv_path), split_name,
                               "bad_annotation", f"{csv_path} line {line_number}: {problem}")
                continue
            file_name = f"{video_id}.mp4"
            builder.add(video_id, files_by_name.get((split_name, file_name)), row["label"],
                        split_name, expected_path=root_url(root, f"{split_name}/{file_name}"))
    return builder.listing


def _read_csvs(root: str) -> dict[str, list[tuple[int, dict | str]]]:
    """``{split: [(line number, row), ...]}`` for each annotation CSV present (see
    :func:`_read_csv`)."""
    tables = {}
    for split_name, file_name in SPLIT_CSVS.items():
        try:
            tables[split_name] = _read_csv(root, f"{ANNOTATIONS}/{file_name}")
        except FileNotFoundError:
            continue
    if not tables:
        raise FileNotFoundError(f"no {', '.join(SPLIT_CSVS.values())} in "
                                f"{root_url(root, ANNOTATIONS)}")
    return tables


def _read_csv(root: str, relpath: str) -> list[tuple[int, dict | str]]:
    """``(line number, row)`` of each data row of an annotation CSV, in line order.

    A row that cannot be read is the text of its problem instead of a dict: a line that is not
    UTF-8, a row with more fields than the header, a line the CSV parser refuses.
    """
    lines = read_lines(root, relpath)
    rows: list[tuple[int, dict | str]] = [(number, NOT_UTF8) for number, line in lines
                                          if line is None]
    # An undecodable line stays as a blank one (skipped by the reader): line numbers hold.
    reader = csv.DictReader(io.StringIO("\n".join(line or "" for _, line in lines), newline=""))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            rows.append((reader.line_num, f"not a CSV row ({error})"))
            continue
        if None in row:  # DictReader keeps the fields beyond the header's under the key None
            header = len(reader.fieldnames or ())
            problem = f"{header + len(row[None])} fields, the header has {header}"
            rows.append((reader.line_num, problem))
        else:
            if isinstance(row.get("label"), str):  # "abseiling " is the class "abseiling"
                row["label"] = row["label"].strip()
            rows.append((reader.line_num, row))
    return sorted(rows, key=lambda numbered: numbered[0])


def _video_id(row: dict | str) -> str:
    """``{youtube_id}_{start:06d}_{end:06d}`` of a CSV row; ValueError if it cannot be formed
    (``row`` is the problem's text for a row that could not be read)."""
    if isinstance(row, str):
        raise ValueError(row)
    youtube_id = row.get("youtube_id")
    if not youtube_id or not row.get("label"):
        raise ValueError("empty label or youtube_id")
    start, end = _whole_seconds(row.get("time_start")), _whole_seconds(row.get("time_end"))
    return f"{youtube_id}_{start:06d}_{end:06d}"


def _whole_seconds(text: str | None) -> int:
    """A time written ``10`` or ``10.0`` as an int; ValueError for anything else."""
    try:
        seconds = float(text or "nan")
    except ValueError:
        seconds = float("nan")
    if not seconds.is_integer() or seconds < 0:
        raise ValueError(f"time {text!r} is not a whole number of seconds")
    return int(seconds)


def _files_by_split_and_name(files: dict[str, str]) -> dict[tuple[str, str], str]:
    """``{(split folder, file name): path}`` for the files under a split's folder, at any depth."""
    by_name = {}
    for relative in sorted(files):
        parts = relative.split("/")
        if len(parts) >= 2 and parts[0] in SPLIT_CSVS:
            by_name.setdefault((parts[0], parts[-1]), files[relative])
    return by_name
