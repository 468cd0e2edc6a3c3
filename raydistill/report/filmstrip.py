"""Filmstrips: a grid of videos (rows) by sampled frames (columns), as PNG bytes."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import image as mpimg

from raydistill.video.decode import sample_indices


def filmstrip(videos: list[np.ndarray], frames_per_video: int = 8, gap: int = 2) -> np.ndarray:
    """Tile videos (each uint8 (T, H, W, 3), same H and W) into one uint8 image.

    Row ``i`` shows ``frames_per_video`` frames of video ``i`` sampled uniformly in time,
    separated by ``gap`` white pixels. Returns (rows·(H+gap)−gap, cols·(W+gap)−gap, 3).
    """
    if not videos:
        raise ValueError("no videos to draw")
    height, width = videos[0].shape[1:3]
    rows = len(videos)
    canvas = np.full((rows * (height + gap) - gap, frames_per_video * (width + gap) - gap, 3),
                     255, dtype=np.uint8)
    for row, video in enumerate(videos):
        for column, index in enumerate(sample_indices(len(video), frames_per_video)):
            top, left = row * (height + gap), column * (width + gap)
            canvas[top:top + height, left:left + width] = video[index]
    return canvas


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """Encode a uint8 (H, W, 3) image as PNG, each pixel repeated ``scale`` times per side."""
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    mpimg.imsave(buffer, image, format="png")
    return buffer.getvalue()
