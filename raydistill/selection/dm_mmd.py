"""``dm_mmd``: k-means groups, then the one-per-group selection of least MMD to the class.

The paper's DM-MMD baseline (Table 4, (d)) extends distribution matching with k-means and the
Maximum Mean Discrepancy; over a fixed pool of videos this becomes a selection that minimises the
MMD between the picked videos and the whole class.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics.pairwise import euclidean_distances

from raydistill.selection.base import ClassSelector, sklearn_seed


class DMMMDSelector(ClassSelector):
    """k-means + MMD: one video per k-means cluster, chosen to minimise MMD² to the class.

    Per class (n_c videos, k = VPC picks):

    1. ``KMeans(n_clusters=k, n_init=n_init)`` seeded from the class's random stream.
    2. Candidates: the ``n_candidates`` members of each cluster nearest its centroid.
    3. Start from each cluster's nearest member, then coordinate descent: for each cluster in turn,
       swap in the candidate that minimises ``MMD²(picks, class)`` with the Gaussian kernel
       ``exp(-|x - x'|² / (2 σ²))``, σ² = median of the non-zero pairwise squared distances of the
       class (median heuristic); repeat until a sweep changes nothing or ``max_sweeps``.
    4. Empty clusters (duplicate embeddings) are filled greedily: the video whose addition
       lowers MMD² most.

    Picks are ranked by the size of their cluster, largest first (ties: lower row index);
    ``selected_scores_`` is the fraction of the class in the pick's cluster (0 for a fill pick).
    A class with n_c <= VPC keeps every video.

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC) = k of k-means.
    random_state : int or None
        Seeds k-means through the class's random stream.
    n_init : int
        k-means restarts (default 4).
    n_candidates : int
        Candidates per cluster for the MMD search (default 5).
    max_sweeps : int
        Coordinate-descent sweeps at most (default 10).
    """

    label = "DM-MMD"
    report_order = 40
    color = "C4"

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0, n_init: int = 4,
                 n_candidates: int = 5, max_sweeps: int = 10):
        self.n_per_class = n_per_class
        self.random_state = random_state
        self.n_init = n_init
        self.n_candidates = n_candidates
        self.max_sweeps = max_sweeps

    def _select_class(self, X_c, k, rng, scores_c):
        if k >= len(X_c):
            return np.arange(len(X_c), dtype=np.int64), np.full(len(X_c), 1.0 / len(X_c))
        kernel = gaussian_kernel_median(X_c)
        kmeans = KMeans(n_clusters=k, n_init=int(self.n_init), random_state=sklearn_seed(rng))
        with warnings.catch_warnings():
            # Fewer distinct videos than k (duplicates): the empty clusters are filled below.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clusters = kmeans.fit_predict(X_c)
        candidates = _cluster_candidates(X_c, clusters, kmeans.cluster_centers_,
                                         int(self.n_candidates))
        picks = _coordinate_descent(kernel, candidates, int(self.max_sweeps))
        sizes = [int(np.sum(clusters == clusters[p])) for p in picks]
        filled = greedy_mmd_fill(kernel, picks, k)
        order = sorted(range(len(picks)), key=lambda i: (-sizes[i], picks[i]))
        indices = [picks[i] for i in order] + filled
        scores = [sizes[i] / len(X_c) for i in order] + [0.0] * len(filled)
        return np.asarray(indices, dtype=np.int64), np.asarray(scores)


def gaussian_kernel_median(X: np.ndarray) -> np.ndarray:
    """(n, n) Gaussian kernel matrix of the rows of X (n, D) with the median-heuristic bandwidth:
    σ² = median of the non-zero pairwise squared distances (1.0 if there are none)."""
    squared = euclidean_distances(X, squared=True)
    positive = squared[squared > 0]
    sigma2 = float(np.median(positive)) if positive.size else 1.0
    return np.exp(-squared / (2.0 * sigma2))


def mmd2(kernel: np.ndarray, picks) -> float:
    """Squared MMD between the rows ``picks`` and all rows, from the full (n, n) kernel matrix."""
    picks = np.asarray(picks, dtype=np.int64)
    return float(kernel[np.ix_(picks, picks)].mean() - 2.0 * kernel[picks].mean()
                 + kernel.mean())


def _cluster_candidates(X, clusters, centres, n_candidates) -> list[np.ndarray]:
    """Per non-empty cluster, its members nearest the centroid (nearest first)."""
    candidates = []
    for cluster, centre in enumerate(centres):
        members = np.flatnonzero(clusters == cluster)
        if len(members):
            distance = np.linalg.norm(X[members] - centre, axis=1)
            candidates.append(members[np.argsort(distance, kind="stable")[:n_candidates]])
    return candidates


def _coordinate_descent(kernel, candidates, max_sweeps) -> list[int]:
    """One pick per candidate list, each swap lowering MMD², until no swap helps."""
    picks = [int(c[0]) for c in candidates]
    for _ in range(max_sweeps):
        changed = False
        for slot, options in enumerate(candidates):
            trials = [picks[:slot] + [int(o)] + picks[slot + 1:] for o in options]
            best = int(options[int(np.argmin([mmd2(kernel, t) for t in trials]))])
            changed |= best != picks[slot]
            picks[slot] = best
        if not changed:
            break
    return picks


def greedy_mmd_fill(kernel: np.ndarray, picks: list[int], k: int) -> list[int]:
    """Rows added one at a time to ``picks`` (each the one that lowers MMD² most, ties to the
    lower index) until there are k; returns only the added rows."""
    picks = list(picks)
    added = []
    while len(picks) < k:
        rest = np.setdiff1d(np.arange(len(kernel)), picks)
        best = int(rest[int(np.argmin([mmd2(kernel, picks + [int(r)]) for r in rest]))])
        picks.append(best)
        added.append(best)
    return added
