"""What every dataset layout returns, and the helpers they share.

A layout reader turns an official on-disk tree into a :class:`Listing`: the videos its
annotations list whose file exists (``video_id, path, label, class_name, split``) and the rejects
found without opening any video (``missing``, ``bad_annotation``, ``unknown_class``,
``duplicate_id``). Opening the files is the ingest stage's job.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterable

from raydistill.runs import as_url, has_hidden_part, is_local, join, open_fs
from raydistill.schema import reject

_UNSAFE_IN_FOLDER_NAMES = re.compile(r"[/\\\x00-\x1f\x7f]+")
MAX_FOLDER_NAME = 120


class DatasetError(Exception):
    """A dataset tree that cannot be listed (malformed class list, label ids, …)."""


@dataclass
class Listing:
    """Videos found by a layout reader, and what it rejected."""

    videos: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)


def folder_name(class_name: str) -> str:
    """The form of a class name used in run paths (``synthetic/videos/{class}/``,
    ``report/filmstrips/{class}.png``): path separators and control characters become ``_``,
    leading dots and surrounding spaces go, at most 120 bytes of UTF-8. Ordinary names (UCF101's
    ``ApplyEyeMakeup``, Kinetics' ``passing American football (in game)``) stay as they are;
    ``../../x`` becomes ``_.._x``, which cannot leave its folder. ValueError for a name with
    nothing left."""
    safe = _UNSAFE_IN_FOLDER_NAMES.sub("_", class_name).strip().lstrip(".").strip()
    if not safe:
        raise ValueError(f"class name {class_name!r} has no characters usable in a folder name")
    # File systems count a name's bytes (255 at most), not its characters.
    return safe.encode()[:MAX_FOLDER_NAME].decode(errors="ignore")


def check_class_names(class_names: list[str]) -> None:
    """ValueError naming the class when a name cannot be a folder name or two names share one
    (they would write into each other's folders)."""
    seen: dict[str, str] = {}
    for name in class_names:
        safe = folder_name(name)
        if safe in seen:
            raise ValueError(f"class names {seen[safe]!r} and {name!r} share the folder name "
                             f"{safe!r}; rename one in the class list")
        seen[safe] = name


class OutsideRoot(str):
    """A listed file (its URL) that is a link to ``target``, outside the dataset root."""

    target: str

    def __new__(cls, url: str, target: str) -> OutsideRoot:
        made = super().__new__(cls, url)
        made.target = target
        return made


class ListingBuilder:
    """Collects listed videos, rejecting duplicates and files absent from ``existing``.

    ``existing`` maps a key (a relative path or a file name, as the layout chooses) to the full
    path of a file that exists.
    """

    def __init__(self, class_names: Iterable[str]):
        self.listing = Listing(class_names=list(class_names))
        self._label = {name: i for i, name in enumerate(self.listing.class_names)}
        self._seen: set[str] = set()

    def add(self, video_id: str, path: str | None, class_name: str, split: str,
            expected_path: str = "") -> None:
        """List one video; ``path`` is None when its file does not exist (→ ``missing``)."""
        where = path or expected_path
        if video_id in self._seen:
            self.reject(video_id, where, split, "duplicate_id", f"{video_id} listed again")
        elif class_name not in self._label:
            self.reject(video_id, where, split, "unknown_class", f"class {class_name!r}")
        elif path is None:
            self.reject(video_id, where, split, "missing")
        elif isinstance(path, OutsideRoot):
            self.reject(video_id, where, split, "outside_root",
                        f"a link to {path.target}, outside the dataset root")
        else:
            self._seen.add(video_id)
            self.listing.videos.append({"video_id": video_id, "path": path,
                                        "label": self._label[class_name],
                                        "class_name": class_name, "split": split})

    def reject(self, video_id: str, path: str, split: str, reason: str, detail: str = "") -> None:
        """Record a reject row (see ``schema.REJECT_REASONS``)."""
        self.listing.rejects.append(reject(video_id, path, split, reason, detail))


def find_files(root: str, subdir: str = "") -> dict[str, str]:
    """Every file under ``root/subdir``, as ``{path relative to root: openable path or URL}``.

    One recursive listing, so that checking which of 250 k listed videos exist costs one call
    rather than one request per video on S3. Hidden files (``.name``) are skipped. On a local
    disk, a file that resolves (through a symbolic link) to a place outside the root is listed
    as an :class:`OutsideRoot`, which the listing rejects (``outside_root``) instead of reading.
    """
    fs, base = open_fs(root)
    start = join(base, subdir) if subdir else base
    if not fs.exists(start):
        return {}
    prefix = base.rstrip("/") + "/"
    real_root = os.path.realpath(base) + os.sep if is_local(fs) else None
    found = {}
    for path in fs.find(start):
        relative = path[len(prefix):] if path.startswith(prefix) else path
        if has_hidden_part(relative):
            continue
        found[relative] = as_url(fs, path)
        if real_root and not os.path.realpath(path).startswith(real_root):
            found[relative] = OutsideRoot(found[relative], os.path.realpath(path))
    return found


def _read_bytes(root: str, relpath: str) -> tuple[bytes, str]:
    """Bytes and URL of an annotation file under ``root``; FileNotFoundError naming its path."""
    fs, base = open_fs(root)
    path = join(base, relpath)
    if not fs.exists(path):
        raise FileNotFoundError(f"annotation file not found: {as_url(fs, path)}")
    return fs.cat_file(path), as_url(fs, path)


def read_text(root: str, relpath: str) -> str:
    """Text of an annotation file under ``root`` (UTF-8, BOM dropped).

    Raises FileNotFoundError naming its path, and ValueError naming it when the file is not UTF-8
    (a JSON file cannot be read in part; line-based files use :func:`read_lines`).
    """
    data, url = _read_bytes(root, relpath)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{url}: not UTF-8 text at byte {error.start}") from None


NOT_UTF8 = "not UTF-8 text"
"""The problem :func:`read_lines` reports for a line it cannot decode."""


def read_lines(root: str, relpath: str) -> list[tuple[int, str | None]]:
    """``(line number from 1, text)`` of every line of an annotation file under ``root``
    (LF or CRLF endings, BOM dropped, line ends removed).

    A line that is not UTF-8 has text None, so that one damaged line rejects only itself (the
    caller records it as a ``bad_annotation``, :data:`NOT_UTF8`). Raises FileNotFoundError
    naming the file's path when it does not exist.
    """
    data, _ = _read_bytes(root, relpath)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = []
    for number, raw in enumerate(data.splitlines(), 1):
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError:
            lines.append((number, None))
    return lines


def root_url(root: str, relpath: str) -> str:
    """Openable path or URL of ``relpath`` under ``root`` (for files that may not exist)."""
    fs, base = open_fs(root)
    return as_url(fs, join(base, relpath))
