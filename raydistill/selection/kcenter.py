"""``kcenter``: greedy k-center (farthest-first traversal) within each class."""

from __future__ import annotations

import numpy as np

from raydistill.selection.base import ClassSelector


class KCenterSelector(ClassSelector):
    """Greedy k-center coreset: minimise the largest distance from a video to its nearest pick.

    Per class, start from the video nearest the class mean, then repeatedly add the video farthest
    (Euclidean, in embedding space) from everything picked so far — the 2-approximation of the
    k-center objective (Gonzalez 1985; Sener & Savarese 2018). Ties go to the lower row index.
    It reaches outliers early: with few picks it favours the extremes of a class over its bulk.

    ``selected_scores_``: the distance from the pick to the already selected set at the moment it
    was picked (for the first pick, its distance to the class mean); non-increasing within a class.

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC).
    random_state : int or None
        Unused (the traversal is deterministic); kept for the common selector interface.
    """

    label = "k-Center"
    report_order = 50
    color = "C6"

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0):
        self.n_per_class = n_per_class
        self.random_state = random_state

    def _select_class(self, X_c, k, rng, scores_c):
        return farthest_first(X_c, k)


def farthest_first(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Farthest-first traversal of the rows of X (n, D) from the row nearest their mean: ``k``
    distinct row indices in pick order and each pick's distance to the rows picked before it (the
    first pick's: its distance to the mean)."""
    to_mean = np.linalg.norm(X - X.mean(axis=0), axis=1)
    first = int(np.argmin(to_mean))
    more, gaps = extend_farthest_first(X, [first], k)
    return np.concatenate([[first], more]).astype(np.int64), np.concatenate([[to_mean[first]], gaps])


def extend_farthest_first(X: np.ndarray, picks, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Continue a farthest-first traversal of X (n, D) from the rows ``picks`` (non-empty) until
    there are ``k`` picks: the ``k - len(picks)`` new row indices and their distances to the set
    picked before each. Ties go to the lower row index."""
    picks = [int(i) for i in picks]
    nearest = np.min([np.linalg.norm(X - X[i], axis=1) for i in picks], axis=0)
    nearest[picks] = -np.inf
    new, gaps = [], []
    for _ in range(k - len(picks)):
        pick = int(np.argmax(nearest))
        new.append(pick)
        gaps.append(float(nearest[pick]))
        nearest = np.minimum(nearest, np.linalg.norm(X - X[pick], axis=1))
        nearest[picks + new] = -np.inf
    return np.asarray(new, dtype=np.int64), np.asarray(gaps, dtype=np.float64)
