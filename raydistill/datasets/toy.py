"""The toy action dataset: real mp4 files whose classes differ only by motion.

Every video shows one bar with a dot at one end over a noisy gradient background. Colour, size,
position, orientation, speed, background and noise vary per video and are drawn from the same
distributions for every class, so no single frame tells the class; only the motion over time
does (translation in one of four directions, rotation either way, pulsing, shaking).

Layout written by :func:`generate` and read by :func:`list_videos`::

    ROOT/toy.json                              class names and the generating config
    ROOT/{train,test}/{class_name}/{video_id}.mp4

Generation is deterministic: video ``i`` of class ``c`` in split ``s`` comes from the seed
``(config.seed, s, c, i)`` alone, so a rerun rewrites nothing and fills only missing files.
"""

from __future__ import annotations

import json

import numpy as np

from raydistill.config import ToyConfig, from_dict, to_dict
from raydistill.datasets.common import (Listing, ListingBuilder, find_files, read_text,
                                         root_url)
from raydistill.runs import join, open_fs, write_bytes_atomic
from raydistill.video.io import encode_video

CLASS_NAMES = ("move_right", "move_left", "move_up", "move_down",
               "rotate_clockwise", "rotate_counterclockwise", "pulse", "shake")
TOY_SPLITS = ("train", "test")


def class_names(config: ToyConfig) -> list[str]:
    """The first ``config.num_classes`` motion classes; label = position in this list."""
    return list(CLASS_NAMES[: config.num_classes])


def video_id(class_name: str, split: str, index: int) -> str:
    """Stable id of the ``index``-th video of a class in a split."""
    return f"{class_name}_{split}_{index:04d}"


def _motion(label: int, num_frames: int, size: int, rng: np.random.Generator) -> dict:
    """Per-frame centre (cx, cy), angle and scale arrays, each (T,), for a class's motion."""
    t = np.arange(num_frames, dtype=np.float64)
    margin = size * 0.22
    cx, cy = rng.uniform(margin, size - margin, size=2)
    angle = np.full(num_frames, rng.uniform(0, 2 * np.pi))
    scale = np.ones(num_frames)
    x, y = np.full(num_frames, cx), np.full(num_frames, cy)
    name = CLASS_NAMES[label]
    if name.startswith("move_"):
        travel = min(rng.uniform(0.3, 0.5) * size, size - 2 * margin)
        start = rng.uniform(margin, size - margin - travel)
        path = start + travel * t / (num_frames - 1)
        if name == "move_right":
            x = path
        elif name == "move_left":
            x = size - path
        elif name == "move_down":
            y = path
        else:
            y = size - path
    elif name.startswith("rotate_"):
        step = rng.uniform(np.pi / 18, np.pi / 8) * (1 if name == "rotate_clockwise" else -1)
        angle = angle + step * t
    elif name == "pulse":
        period = rng.uniform(0.5, 0.9) * num_frames
        scale = 1 + rng.uniform(0.3, 0.5) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))
    else:  # shake: fast horizontal oscillation around a fixed centre
        period = rng.uniform(0.2, 0.35) * num_frames
        x = cx + rng.uniform(0.08, 0.14) * size * np.sin(2 * np.pi * t / period
                                                       + rng.uniform(0, 6.3))
    return {"x": x, "y": y, "angle": angle, "scale": scale}


def render_video(label: int, num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one toy video of class ``label``; returns uint8 (num_frames, size, size, 3)."""
    motion = _motion(label, num_frames, size, rng)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    # Background: a two-colour gradient at a random angle.
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * cols + np.sin(direction) * rows) / size
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    low, high = rng.uniform(0, 140, size=3), rng.uniform(60, 200, size=3)
    background = low + (high - low) * ramp[..., None]
    colour = rng.uniform(0, 255, size=3)
    for _ in range(20):  # keep the object visible against the background's mean colour
        if np.linalg.norm(colour - background.mean(axis=(0, 1))) >= 90:
            break
        colour = rng.uniform(0, 255, size=3)
    dot_colour = 255 - colour
    length, width = rng.uniform(0.28, 0.42) * size, rng.uniform(0.08, 0.14) * size
    noise_level = rng.uniform(3, 12)

    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for f in range(num_frames):
        dx, dy = cols - motion["x"][f], rows - motion["y"][f]
        cos, sin = np.cos(motion["angle"][f]), np.sin(motion["angle"][f])
        along, across = cos * dx + sin * dy, -sin * dx + cos * dy
        half = 0.5 * length * motion["scale"][f]
        bar = (np.abs(along) <= half) & (np.abs(across) <= 0.5 * width * motion["scale"][f])
        dot = (along - 0.75 * half) ** 2 + across ** 2 <= (0.45 * width * motion["scale"][f]) ** 2
        image = background.copy()
        image[bar] = colour
        image[dot] = dot_colour
        image += rng.normal(0, noise_level, size=image.shape)
        frames[f] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def video_seed(config: ToyConfig, split: str, label: int, index: int) -> list[int]:
    """The seed of one video: it depends on nothing else, so any video can be regenerated alone."""
    return [config.seed, TOY_SPLITS.index(split), label, index]


def generate_class(root: str, config: ToyConfig, label: int) -> int:
    """Write every missing video of class ``label`` (both splits) under ``root``.

    Returns the number of files written (0 when all exist already).
    """
    fs, base = open_fs(root)
    name = CLASS_NAMES[label]
    written = 0
    for split, count in (("train", config.train_per_class), ("test", config.test_per_class)):
        folder = join(base, split, name)
        existing = set(fs.ls(folder, detail=False)) if fs.exists(folder) else set()
        for index in range(count):
            path = join(folder, f"{video_id(name, split, index)}.mp4")
            if path in existing:
                continue
            rng = np.random.default_rng(video_seed(config, split, label, index))
            frames = render_video(label, config.num_frames, config.size, rng)
            write_bytes_atomic(fs, path, encode_video(frames, config.fps, "mp4"))
            written += 1
    return written


def _read_metadata(root: str) -> dict | None:
    fs, base = open_fs(root)
    path = join(base, "toy.json")
    return json.loads(fs.cat_file(path)) if fs.exists(path) else None


def write_metadata(root: str, config: ToyConfig, complete: bool) -> None:
    """Write ``toy.json`` (class names, config, whether every video is written)."""
    fs, base = open_fs(root)
    document = {"class_names": class_names(config), "config": to_dict(config),
                "complete": complete}
    write_bytes_atomic(fs, join(base, "toy.json"), json.dumps(document, indent=2).encode())


def start_generation(root: str, config: ToyConfig) -> None:
    """Claim ``root`` for ``config`` before writing videos, so a later run with another config
    cannot mix its videos with these. Raises :class:`ToyRootInUse` if it holds another toy set."""
    metadata = _read_metadata(root)
    if metadata is not None and metadata["config"] != to_dict(config):
        raise ToyRootInUse(f"{root} holds a toy dataset generated with another config")
    if metadata is None:
        write_metadata(root, config, complete=False)


class ToyRootInUse(ValueError):
    """The folder already holds a toy dataset of a different config."""


def is_generated(root: str, config: ToyConfig) -> bool:
    """Whether ``root`` already holds the complete toy dataset of ``config``."""
    metadata = _read_metadata(root)
    return bool(metadata and metadata.get("complete") and
                metadata["config"] == to_dict(config))


def generate(root: str, config: ToyConfig = ToyConfig()) -> int:
    """Write the whole toy dataset under ``root`` (local or URL); returns files written."""
    if is_generated(root, config):
        return 0
    start_generation(root, config)
    written = sum(generate_class(root, config, label) for label in range(config.num_classes))
    write_metadata(root, config, complete=True)
    return written


def expected_videos(config: ToyConfig) -> list[tuple[str, str, str]]:
    """``(split, class_name, video_id)`` of every video ``config`` generates."""
    sizes = {"train": config.train_per_class, "test": config.test_per_class}
    return [(split, name, video_id(name, split, index)) for split in TOY_SPLITS
            for name in class_names(config) for index in range(sizes[split])]


def list_videos(root: str, split: int = 1) -> Listing:
    """List a generated toy tree (``split`` is ignored: the toy data has one train/test split).

    Lists exactly the videos its ``toy.json`` config implies (a missing one is ``missing``;
    stray files are ignored). Raises FileNotFoundError when ``root`` holds no ``toy.json``.
    """
    document = json.loads(read_text(root, "toy.json"))
    config = from_dict(ToyConfig, document["config"])  # a hand-edited toy.json fails here
    builder = ListingBuilder(document["class_names"])
    files = find_files(root)
    for split_name, class_name, vid in expected_videos(config):
        relative = f"{split_name}/{class_name}/{vid}.mp4"
        builder.add(vid, files.get(relative), class_name, split_name,
                    expected_path=root_url(root, relative))
    return builder.listing
