"""``attention_topk``: a training-free attention score per video, the top VPC kept.

What it is not: the paper's CSTA baseline (Table 4, (c)). There, a class's VideoMAE embeddings
(n_c, D), read as if they were the frames of one video, go through the pretrained CSTA model
(Son et al., CVPR 2024: a 2-D CNN over the N×D map, trained for video summarisation), and a 0/1
knapsack picks videos from its scores. No CSTA weights exist offline and nothing here trains one,
so this module does not claim the name: it used to be called ``csta``, and that name is now
refused (``config.RENAMED_METHODS``). The paper's CSTA row has no counterpart in this project.

Nor is there a knapsack: every video weighs 1 (a video is one "frame"), and a 0/1 knapsack with
unit weights, positive values and capacity VPC takes exactly the VPC highest values, which is a
top-k (``tests/test_selection.py`` checks the picks against the best subset found by brute
force). The same holds for the paper's step, whatever CSTA's scores are.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import normalize

from raydistill.selection.base import ClassSelector


class AttentionTopKSelector(ClassSelector):
    """Attention importance with a redundancy penalty; the VPC highest values of a class.

    Per class (n_c videos):

    1. Centre the embeddings on the class mean (so similarity reflects the structure within the
       class, not the direction every video of the class shares) and L2-normalise them: ``Z``.
    2. Scaled dot-product self-attention ``A = softmax_rows(Z Zᵀ / temperature)``; the importance
       of video j is the attention it receives, the column mean of ``A``, divided by its maximum.
    3. Redundancy: a video's largest cosine similarity (clipped at 0) to any more important video
       (0 for the most important). ``value = importance - redundancy * that similarity``, so a
       near-duplicate of a better video loses its place to the centre of another mode.
    4. Keep the VPC highest values (ties: the lower row index).

    Picks are ranked by value, highest first; ``selected_scores_`` is that value.

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC).
    random_state : int or None
        Unused (deterministic); kept for the common selector interface.
    temperature : float
        Softmax temperature of the attention over cosine similarities (default 0.1).
    redundancy : float
        Weight of the redundancy penalty (default 0.5; 0 ranks by attention alone).
    """

    label = "Attention top-k"
    report_order = 30
    color = "C2"

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
        values = attention_values(Z, float(self.temperature), float(self.redundancy))
        order = np.argsort(-values, kind="stable")[:k]
        return order, values[order]


def attention_values(Z: np.ndarray, temperature: float, redundancy: float) -> np.ndarray:
    """The value of each row of Z (n, d), unit rows: its attention importance minus
    ``redundancy`` × its similarity to a more important row. Returns (n,) floats."""
    importance = attention_importance(Z, temperature)
    return importance - redundancy * redundancy_to_better(Z, importance)


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
