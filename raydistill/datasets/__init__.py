"""Dataset layouts: each module reads one official on-disk tree into a :class:`Listing`."""

from __future__ import annotations

from typing import Callable

from raydistill.datasets import hmdb51, kinetics, ssv2, toy, ucf101
from raydistill.datasets.common import Listing

# dataset name → reader(root, split) -> Listing. ``split`` is the official split number (1-3)
# where a dataset has several (UCF101, MiniUCF, HMDB51) and ignored elsewhere.
LAYOUTS: dict[str, Callable[[str, int], Listing]] = {
    "toy": toy.list_videos,
    "kinetics400": kinetics.list_videos,
    "ssv2": ssv2.list_videos,
    "ucf101": ucf101.list_videos,
    "miniucf": ucf101.list_mini_videos,
    "hmdb51": hmdb51.list_videos,
}

__all__ = ["LAYOUTS", "Listing"]
