"""``csta``: attention-based importance of each video, then a 0/1 knapsack (Table 4, (c)).

The paper feeds a class's VideoMAE embeddings (n_c, D), as if they were the frames of one video,
into the pretrained CSTA video-summarisation model and runs the knapsack step of video
summarisation on its scores. This is the training-free counterpart: the importance of a video is
the self-attention it receives from the other videos of its class.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import normalize

from raydistill.selection.base import ClassSelector


class CSTASelector(ClassSelector):
    """Attention importance with a redundancy penalty, selected by a 0/1 knapsack of budget VPC.

    Per class (n_c videos):

    1. Centre the embeddings on the class mean (so similarity reflects the structure within the
       class, not the direction every video of the class shares) and L2-normalise them: ``Z``.
    2. Scaled dot-product self-attention ``A = softmax_rows(Z Zᵀ / temperature)``; the importance
       of video j is the attention it receives, the column mean of ``A``, divided by its maximum.
    3. Redundancy: a video's largest cosine similarity (clipped at 0) to any more important video
       (0 for the most important). ``value = importance - redundancy * that similarity``, so a
       near-duplicate of a better video loses its place to the centre of another mode.
    4. 0/1 knapsack (:func:`knapsack`) over the values, each video of weight 1, capacity VPC.

    Picks are ranked by value, highest first (ties: lower row index); ``selected_scores_`` is
    that value.

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC) = the knapsack's capacity.
    random_state : int or None
        Unused (deterministic); kept for the common selector interface.
    temperature : float
        Softmax temperature of the attention over cosine similarities (default 0.1).
    redundancy : float
        Weight of the redundancy penalty (default 0.5; 0 ranks by attention alone).
    """

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0,
                 temperature: float = 0.1, redundancy: float = 0.5):
        self.n_per_class = n_per_class
        self.random_state = random_state
        self.temperature = temperature
        self.redundancy = redundancy

    def _select_class(self, X_c, k, rng, scores_c):
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        Z = normalize(X_c - X_c.mean(axis=0))
        importance = attention_importance(Z, float(self.temperature))
        values = importance - float(self.redundancy) * redundancy_to_better(Z, importance)
        # Positive values fill the budget: with unit weights the knapsack takes exactly k videos.
        chosen = knapsack(values - values.min() + 1.0, np.ones(len(values), dtype=np.int64), k)
        order = chosen[np.argsort(-values[chosen], kind="stable")]
        return order, values[order]


def attention_importance(Z: np.ndarray, temperature: float) -> np.ndarray:
    """Attention received by each row of Z (n, d), unit rows: the column mean of
    ``softmax_rows(Z Zᵀ / temperature)``, scaled so the largest is 1. Returns (n,) floats."""
    logits = Z @ Z.T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    attention = np.exp(logits)
    attention /= attention.sum(axis=1, keepdims=True)
    received = attention.mean(axis=0)
    return received / received.max()


def redundancy_to_better(Z: np.ndarray, importance: np.ndarray) -> np.ndarray:
    """For each row of Z (n, d), unit rows: its largest cosine similarity, clipped at 0, to a row of
    higher importance (ties: the lower index counts as higher). Returns (n,) floats in [0, 1]."""
    rank = np.argsort(-importance, kind="stable")
    similarity = np.clip(Z @ Z.T, 0.0, 1.0)
    penalty = np.zeros(len(Z))
    for position in range(1, len(rank)):
        penalty[rank[position]] = similarity[rank[position], rank[:position]].max()
    return penalty


def knapsack(values, weights, capacity: int) -> np.ndarray:
    """Exact 0/1 knapsack by dynamic programming over integer capacities.

    values: (n,) finite floats; weights: (n,) non-negative ints; capacity: int >= 0. Returns the
    ascending int64 indices of a subset of total weight <= capacity and maximum total value.
    Among equally valuable subsets it prefers earlier items. O(n · capacity) time and memory.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights)
    if values.shape != weights.shape or values.ndim != 1:
        raise ValueError(f"values and weights must be 1-D of one length, got {values.shape} "
                         f"and {weights.shape}")
    if weights.size and (weights.dtype.kind not in "iu" or weights.min() < 0):
        raise ValueError("weights must be non-negative integers")
    if int(capacity) < 0 or not np.all(np.isfinite(values)):
        raise ValueError("capacity must be >= 0 and values finite")
    capacity = int(capacity)
    best = np.zeros(capacity + 1)
    taken = np.zeros((len(values), capacity + 1), dtype=bool)
    for item, (value, weight) in enumerate(zip(values, weights.astype(np.int64))):
        if weight > capacity:
            continue
        with_item = best[:capacity + 1 - weight] + value
        improves = with_item > best[weight:]
        taken[item, weight:] = improves
        best[weight:] = np.where(improves, with_item, best[weight:])
    return _backtrack(taken, weights, capacity)


def _backtrack(taken: np.ndarray, weights: np.ndarray, capacity: int) -> np.ndarray:
    chosen, room = [], capacity
    for item in range(len(taken) - 1, -1, -1):
        if taken[item, room]:
            chosen.append(item)
            room -= int(weights[item])
    return np.asarray(sorted(chosen), dtype=np.int64)
