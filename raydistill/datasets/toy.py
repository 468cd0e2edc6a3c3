"""The toy action dataset: real mp4 files whose classes differ only by motion.

Every video shows one bar with a dot at one end over a noisy gradient background, moving the way
its class says (translation in one of four directions, rotation either way, pulsing, shaking).
Like a real action dataset, each class is made of a few recurring ways of performing the action
(*modes*, :data:`MODE_SHARES` of its typical clips: an actor and scene, a speed, an extent) plus a
share of atypical or poor clips (:data:`ATYPICAL_SHARE`: an unusual appearance, heavy noise and
low contrast, or an object that hardly moves). Clips of one mode are alike: they differ by small
changes of colour, size, place and speed. Mode ``m`` has the same appearance in every class and
every motion passes the mode's middle state at the middle frame, so no single frame tells the
class (a linear classifier on single frames stays near chance); only the motion over time does.
That is what lets a few well-chosen videos per class teach a classifier, and lets a selector
that finds the typical, varied clips beat a random pick (benchmarks/BENCHMARKS.md).

Layout written by :func:`generate` and read by :func:`list_videos`::

    ROOT/toy.json                              class names and the generating config
    ROOT/{train,test}/{class_name}/{video_id}.mp4

Generation is deterministic: video ``i`` of class ``c`` in split ``s`` comes from the seed
``(config.seed, s, c, i)`` alone, so a rerun rewrites nothing and fills only missing files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from raydistill.config import ToyConfig, from_dict, to_dict
from raydistill.datasets.common import (Listing, ListingBuilder, find_files, read_text,
                                         root_url)
from raydistill.runs import join, open_fs, write_bytes_atomic
from raydistill.video.io import encode_video

CLASS_NAMES = ("move_right", "move_left", "move_up", "move_down",
               "rotate_clockwise", "rotate_counterclockwise", "pulse", "shake")
TOY_SPLITS = ("train", "test")

MODE_SHARES = (0.5, 0.3, 0.2)
"""How often each of a class's ways of performing its action occurs, among its typical clips.
Mode ``m`` of every class shares one appearance (actor and scene), so the mode tells nothing
about the class; the classes differ in how that appearance moves."""

ATYPICAL_SHARE = 0.1
"""Share of atypical or poor clips in every class and split (see :data:`ATYPICAL_KINDS`)."""

ATYPICAL_KINDS = ("unusual", "poor", "hesitant")
"""``unusual``: an appearance of its own, drawn for this clip alone; ``poor``: a mode's clip under
heavy noise and low contrast; ``hesitant``: a mode's clip whose object hardly moves."""


@dataclass(frozen=True)
class Style:
    """The appearance of one clip or mode; lengths are fractions of the frame size."""

    colour: np.ndarray          # (3,) RGB of the bar; its dot is the complement
    low: np.ndarray             # (3,) background colour at one end of the gradient
    high: np.ndarray            # (3,) ... and at the other
    gradient_angle: float
    length: float
    width: float
    centre: np.ndarray          # (2,) x, y of the object at the middle frame
    angle: float                # the bar's angle at the middle frame


def draw_style(rng: np.random.Generator) -> Style:
    """One appearance, every attribute drawn from the same distribution for every class."""
    low, high = rng.uniform(0, 140, size=3), rng.uniform(60, 200, size=3)
    colour = rng.uniform(0, 255, size=3)
    for _ in range(20):  # keep the object visible against the background's mean colour
        if np.linalg.norm(colour - (low + high) / 2) >= 90:
            break
        colour = rng.uniform(0, 255, size=3)
    return Style(colour=colour, low=low, high=high, gradient_angle=rng.uniform(0, 2 * np.pi),
                 length=rng.uniform(0.28, 0.42), width=rng.uniform(0.08, 0.14),
                 centre=rng.uniform(0.38, 0.62, size=2), angle=rng.uniform(0, 2 * np.pi))


def draw_motion(rng: np.random.Generator) -> dict:
    """Motion parameters (travel, rotation step, pulse and shake period and amplitude), as
    fractions of the frame size or clip length, the same distributions for every class."""
    return {"travel": rng.uniform(0.3, 0.45), "turn": rng.uniform(np.pi / 18, np.pi / 8),
            "pulse_period": rng.uniform(0.5, 0.9), "pulse_amplitude": rng.uniform(0.3, 0.5),
            "shake_period": rng.uniform(0.2, 0.35), "shake_amplitude": rng.uniform(0.08, 0.14)}


def mode_style(dataset_seed: int, mode: int) -> Style:
    """The appearance of mode ``mode``, shared by every class of the dataset."""
    return draw_style(np.random.default_rng([dataset_seed, 7919, mode]))


def mode_motion(dataset_seed: int, label: int, mode: int) -> dict:
    """How class ``label`` performs its action in mode ``mode``."""
    return draw_motion(np.random.default_rng([dataset_seed, 7907, label, mode]))


def draw_kind(rng: np.random.Generator) -> str:
    """A clip's kind: ``mode0`` … ``modeM`` (typical) or one of :data:`ATYPICAL_KINDS`.
    Always the first draw from a video's generator, so :func:`clip_kind` can repeat it."""
    u = rng.random()
    if u < ATYPICAL_SHARE:
        return ATYPICAL_KINDS[min(int(u / ATYPICAL_SHARE * len(ATYPICAL_KINDS)),
                                  len(ATYPICAL_KINDS) - 1)]
    shares = np.cumsum(MODE_SHARES) / sum(MODE_SHARES)
    return f"mode{int(np.searchsorted(shares, (u - ATYPICAL_SHARE) / (1 - ATYPICAL_SHARE)))}"


def jitter_style(style: Style, rng: np.random.Generator) -> Style:
    """A mode's appearance as one clip shows it: small changes of colour, size, place, angle."""
    return Style(colour=np.clip(style.colour + rng.normal(0, 8, 3), 0, 255),
                 low=np.clip(style.low + rng.normal(0, 6, 3), 0, 255),
                 high=np.clip(style.high + rng.normal(0, 6, 3), 0, 255),
                 gradient_angle=style.gradient_angle + rng.normal(0, 0.1),
                 length=style.length * rng.uniform(0.92, 1.08),
                 width=style.width * rng.uniform(0.92, 1.08),
                 centre=style.centre + rng.uniform(-0.07, 0.07, 2),
                 angle=style.angle + rng.normal(0, 0.1))


def trajectory(label: int, motion: dict, style: Style, num_frames: int, size: int) -> dict:
    """Per-frame centre (x, y), angle and scale arrays, each (T,), of class ``label``'s motion.
    Every motion is centred on the middle frame, where the object is at ``style.centre`` with
    angle ``style.angle`` and scale 1 whatever the class."""
    s = np.arange(num_frames, dtype=np.float64) - (num_frames - 1) / 2
    fraction = s / max(num_frames - 1, 1)
    x = np.full(num_frames, style.centre[0] * size)
    y = np.full(num_frames, style.centre[1] * size)
    angle, scale = np.full(num_frames, style.angle), np.ones(num_frames)
    name = CLASS_NAMES[label]
    travel = motion["travel"] * size * fraction
    if name == "move_right":
        x = x + travel
    elif name == "move_left":
        x = x - travel
    elif name == "move_down":
        y = y + travel
    elif name == "move_up":
        y = y - travel
    elif name.startswith("rotate_"):
        angle = angle + motion["turn"] * s * (1 if name == "rotate_clockwise" else -1)
    elif name == "pulse":
        scale = 1 + motion["pulse_amplitude"] * np.sin(
            2 * np.pi * s / (motion["pulse_period"] * num_frames))
    else:  # shake: fast horizontal oscillation around the centre
        x = x + motion["shake_amplitude"] * size * np.sin(
            2 * np.pi * s / (motion["shake_period"] * num_frames))
    return {"x": x, "y": y, "angle": angle, "scale": scale}


def clip_plan(label: int, rng: np.random.Generator, dataset_seed: int = 0) -> dict:
    """What one clip of class ``label`` shows: ``kind``, ``style``, ``motion`` (its class's
    motion, scaled down for a hesitant clip), ``noise`` (σ of the pixel noise) and ``contrast``
    (1: the bar's own colour; less: blended towards the background)."""
    kind = draw_kind(rng)
    if kind == "unusual":
        return {"kind": kind, "style": draw_style(rng), "motion": draw_motion(rng),
                "noise": rng.uniform(3, 12), "contrast": 1.0}
    mode = int(rng.integers(len(MODE_SHARES))) if kind in ATYPICAL_KINDS else int(kind[4:])
    style = jitter_style(mode_style(dataset_seed, mode), rng)
    motion = {key: value * rng.uniform(0.9, 1.1)
              for key, value in mode_motion(dataset_seed, label, mode).items()}
    plan = {"kind": kind, "style": style, "motion": motion, "noise": rng.uniform(2, 5),
            "contrast": 1.0}
    if kind == "poor":
        plan.update(noise=rng.uniform(30, 45), contrast=rng.uniform(0.35, 0.55))
    elif kind == "hesitant":
        for key in ("travel", "turn", "pulse_amplitude", "shake_amplitude"):
            motion[key] *= 0.2
    return plan


def render_video(label: int, num_frames: int, size: int, rng: np.random.Generator,
                 dataset_seed: int = 0) -> np.ndarray:
    """Draw one toy video of class ``label``; returns uint8 (num_frames, size, size, 3)."""
    plan = clip_plan(label, rng, dataset_seed)
    style = plan["style"]
    motion = trajectory(label, plan["motion"], style, num_frames, size)
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    ramp = (np.cos(style.gradient_angle) * cols + np.sin(style.gradient_angle) * rows) / size
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    background = style.low + (style.high - style.low) * ramp[..., None]
    mean_background = background.mean(axis=(0, 1))
    colour = mean_background + plan["contrast"] * (style.colour - mean_background)
    dot_colour = mean_background + plan["contrast"] * (255 - style.colour - mean_background)
    length, width = style.length * size, style.width * size

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
        image += rng.normal(0, plan["noise"], size=image.shape)
        frames[f] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def class_names(config: ToyConfig) -> list[str]:
    """The first ``config.num_classes`` motion classes; label = position in this list."""
    return list(CLASS_NAMES[: config.num_classes])


def video_id(class_name: str, split: str, index: int) -> str:
    """Stable id of the ``index``-th video of a class in a split."""
    return f"{class_name}_{split}_{index:04d}"


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
            frames = render_video(label, config.num_frames, config.size, rng, config.seed)
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
