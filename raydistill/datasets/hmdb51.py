"""HMDB51 in its official layout::

    ROOT/{class}/{name}.avi
    ROOT/testTrainMulti_7030_splits/{class}_test_split{N}.txt    lines "name.avi 1"

N is the official split (1-3). In a split file, 1 = train, 2 = test and 0 = not used by this
split (skipped, not a reject). Class names come from the split files' names; labels index their
sorted list. Many downloads extract one folder deeper (``ROOT/hmdb51/{class}/…``): a listed
video is found by its ``{class}/{name}`` anywhere under the root, and the split folder likewise.
"""

from __future__ import annotations

import logging
import re

from raydistill.datasets.common import (NOT_UTF8, Listing, ListingBuilder, find_files, read_lines,
                                         root_url)

log = logging.getLogger(__name__)

SPLITS_DIR = "testTrainMulti_7030_splits"
SPLIT_BY_CODE = {"1": "train", "2": "test"}
UNUSED_CODE = "0"


def list_videos(root: str, split: int = 1) -> Listing:
    """List the HMDB51 videos of official split ``split`` (1-3) under ``root`` (path or URL).

    Returns a :class:`Listing` of the ``train`` and ``test`` videos whose file exists
    (``video_id`` = file stem) and the rejects. Raises FileNotFoundError when there is no
    ``*_test_split{split}.txt`` and ValueError for a bad ``split``.
    """
    if split not in (1, 2, 3):
        raise ValueError(f"HMDB51 split must be 1, 2 or 3, got {split!r}")
    files = find_files(root)
    located = _by_class_and_name(files)
    split_files = _split_files(files, split)
    if not split_files:
        raise FileNotFoundError(f"no *_test_split{split}.txt in {root_url(root, SPLITS_DIR)}")
    builder = ListingBuilder(sorted(split_files))
    for class_name, split_file in sorted(split_files.items()):
        for line_number, line in read_lines(root, split_file):
            if line is None:
                builder.reject("", root_url(root, split_file), "", "bad_annotation",
                               f"{split_file} line {line_number}: {NOT_UTF8}")
                continue
            parts = line.strip().rsplit(None, 1)
            if not parts:
                continue
            if len(parts) != 2 or "/" in parts[0] or parts[1] not in (UNUSED_CODE, *SPLIT_BY_CODE):
                builder.reject("", root_url(root, split_file), "", "bad_annotation",
                               f"{split_file} line {line_number}: expected 'name.avi 0|1|2', "
                               f"got {line.strip()!r}")
            elif parts[1] != UNUSED_CODE:
                name, relative = parts[0], f"{class_name}/{parts[0]}"
                builder.add(name.rsplit(".", 1)[0], located.get(relative), class_name,
                            SPLIT_BY_CODE[parts[1]], expected_path=root_url(root, relative))
    _say_where_missing_videos_were_looked_for(builder.listing, root)
    return builder.listing


def _by_class_and_name(files: dict[str, str]) -> dict[str, str]:
    """``{"{class}/{name}": path}`` of every file under the root, at any depth (the shallowest
    wins when two share those last two parts)."""
    found: dict[str, str] = {}
    for relative in sorted(files, key=lambda path: (path.count("/"), path)):
        parts = relative.split("/")
        if len(parts) >= 2:
            found.setdefault("/".join(parts[-2:]), files[relative])
    return found


def _say_where_missing_videos_were_looked_for(listing: Listing, root: str) -> None:
    """One line on stderr when most listed videos are missing (a tree in an unexpected shape)."""
    missing = [r for r in listing.rejects if r["reason"] == "missing"]
    listed = len(missing) + len(listing.videos)
    if listed and 2 * len(missing) > listed:
        log.warning(f"hmdb51: {len(missing)} of {listed} listed videos are missing; each was "
                    f"looked for as {{class}}/{{name}}.avi anywhere under {root_url(root, '')} "
                    f"(the first: {missing[0]['path']})")


def _split_files(files: dict[str, str], split: int) -> dict[str, str]:
    """``{class name: relative path}`` of the split files for ``split`` among ``files``."""
    pattern = re.compile(rf"(?:.*/)?{SPLITS_DIR}/([^/]+)_test_split{split}\.txt")
    matches = (pattern.fullmatch(relative) for relative in files)
    return {match.group(1): match.group(0) for match in matches if match}
