"""Something-Something-v2 in its official layout::

    ROOT/labels/labels.json        {"Holding something": "0", ...}   class name → label id
    ROOT/labels/train.json         [{"id": "78687", "template": "Holding [something] ...", ...}]
    ROOT/labels/validation.json    the same, for the "val" split
    ROOT/20bn-something-something-v2/{id}.webm

The class of an entry is its template with ``[`` and ``]`` removed; its label is the id that
``labels.json`` gives that class, so ``class_names`` are ordered by label id.
"""

from __future__ import annotations

import json

from raydistill.datasets.common import Listing, ListingBuilder, find_files, read_text, root_url

LABELS = "labels/labels.json"
SPLIT_FILES = {"train": "labels/train.json", "val": "labels/validation.json"}
VIDEOS = "20bn-something-something-v2"


def list_videos(root: str, split: int = 1) -> Listing:
    """List the SSv2 videos under ``root`` (local path or URL); ``split`` is ignored.

    Returns a :class:`Listing` of the ``train`` and ``val`` videos whose file exists
    (``video_id`` = the numeric id) and the rejects. Raises FileNotFoundError when a label file is
    absent and ValueError when ``labels.json`` is not a map of class names to ids 0..N-1.
    """
    builder = ListingBuilder(_class_names(root))
    existing = find_files(root, VIDEOS)
    for split_name, annotation in SPLIT_FILES.items():
        for position, entry in _entries(root, annotation, builder, split_name):
            try:
                video_id, class_name = _id_and_class(entry)
            except ValueError as problem:
                builder.reject("", root_url(root, annotation), split_name, "bad_annotation",
                               f"{annotation} entry {position}: {problem}")
                continue
            relative = f"{VIDEOS}/{video_id}.webm"
            builder.add(video_id, existing.get(relative), class_name, split_name,
                        expected_path=root_url(root, relative))
    return builder.listing


def _class_names(root: str) -> list[str]:
    """Class names of ``labels.json`` in label-id order (index == label)."""
    text = read_text(root, LABELS)
    try:
        labels = json.loads(text)
        by_id = {int(label_id): name for name, label_id in labels.items()}
    except (AttributeError, TypeError, ValueError) as problem:
        raise ValueError(f"{root_url(root, LABELS)}: not a map of class names to ids "
                         f"({problem})") from problem
    if sorted(by_id) != list(range(len(labels))):
        raise ValueError(f"{root_url(root, LABELS)}: label ids are not 0..{len(labels) - 1}")
    return [by_id[label_id] for label_id in range(len(by_id))]


def _id_and_class(entry: object) -> tuple[str, str]:
    """``(video id, class name)`` of a split-file entry; ValueError if it lacks either."""
    if not isinstance(entry, dict):
        raise ValueError(f"not an object: {entry!r:.80}")
    video_id, template = entry.get("id"), entry.get("template")
    if not isinstance(video_id, (str, int)) or not str(video_id) or not isinstance(template, str):
        raise ValueError(f"needs an 'id' and a 'template', got keys {sorted(entry)}")
    return str(video_id), template.replace("[", "").replace("]", "")


def _entries(root: str, annotation: str, builder: ListingBuilder,
             split_name: str) -> list[tuple[int, object]]:
    """``[(position from 1, entry), ...]`` of a split file; one reject if it is not a JSON list."""
    text = read_text(root, annotation)
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as problem:
        builder.reject("", root_url(root, annotation), split_name, "bad_annotation",
                       f"{annotation} line {problem.lineno}: {problem.msg}")
        return []
    if not isinstance(entries, list):
        builder.reject("", root_url(root, annotation), split_name, "bad_annotation",
                       f"{annotation} line 1: not a JSON list of entries")
        return []
    return list(enumerate(entries, 1))
