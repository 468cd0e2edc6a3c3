"""``tac_dt``: Temporal-Aware Cluster-based Distillation (paper §3.2), training-free.

Per class: the class's VideoMAE embeddings ``f_c`` (n_c, D) → (optional standardisation) → PCA →
isolated videos set aside → BIRCH subclusters → a global agglomerative step that merges the
subclusters into VPC groups (as TAC-SUM does through ``Birch(n_clusters=int)``) → one
representative per group: the member closest to its group's centre (the paper), or optionally
the best-scored member or one drawn at random (``representative``).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.cluster import AgglomerativeClustering, Birch
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from raydistill.selection.base import ClassSelector, sklearn_seed
from raydistill.selection.kcenter import extend_farthest_first


REPRESENTATIVES = ("centre", "sample", "score")
"""Which member of a group TAC-DT picks (see :class:`TACDTSelector`)."""


class TACDTSelector(ClassSelector):
    """TAC-DT: one representative video per BIRCH-derived group, VPC groups per class.

    Optimises representativeness with diversity: the class is partitioned into VPC groups of
    similar videos and each group contributes the video nearest its centre. Where the paper is
    silent, the choices below are parameters:

    - PCA to ``min(n_components, n_c - 1, D)`` dimensions (at least 1), after centring (and
      per-feature scaling when ``standardize``).
    - Isolated videos are not candidates: those whose distance to their
      ``outlier_neighbours``-th nearest neighbour lies above Tukey's upper fence (Q3 +
      ``outlier_fence`` × IQR) of those distances in the class. Without this, an isolated
      atypical or poor video forms a group of its own and, one pick per group, is picked
      (``outlier_fence=None`` keeps every video, the paper's reading; measured on a validation
      split of the toy in benchmarks/BENCHMARKS.md).
    - BIRCH's threshold is an absolute subcluster radius, so it is set from the data's spread:
      ``threshold_factor`` × the median nearest-neighbour distance in PCA space (ignoring exact
      duplicates). If BIRCH then finds fewer than VPC subclusters, the threshold is halved (at most
      ``max_halvings`` times).
    - The subcluster centres are merged by ``AgglomerativeClustering`` with ``linkage`` into VPC
      groups, or ``ceil(group_factor × VPC)`` groups of which the VPC largest give a
      representative (VPC > 1; see :func:`group_count`); each video belongs to the group of its
      nearest subcluster.
    - Each group gives the member nearest its centre (``representative="centre"``, the paper's
      representative), or a member drawn at random with the selector's seed
      (``representative="sample"``: cluster-stratified sampling, which keeps the spread within
      a group that a classifier trained on the picks needs; at VPC 1 it is a random
      non-isolated video), or the member with the highest own-class score
      (``representative="score"``; the centre's where there are no scores).
    - Representatives are ranked by group size, largest first (ties: lower row index).
      ``selected_scores_`` is the fraction of the candidates in the pick's group. If fewer than
      VPC non-empty groups exist (duplicate embeddings), the remaining picks are filled by
      farthest-first traversal in PCA space and score 0.
    - A class with n_c <= VPC keeps every video, ranked by distance to the class mean, each
      scoring 1/n_c.
    - With ``min_score`` and per-video scores (the embed stage's ``score``: the embedding
      classifier's probability for the video's own class), videos scoring below it are set
      aside first, unless fewer than VPC would remain (then the VPC best scored stay). On a
      generated pool these are the samples that do not look like their class; TAC-DT then
      groups what is left (PCA included). Without scores (an embedding model whose head does
      not name the run's classes) it does nothing.

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC).
    random_state : int or None
        Seeds PCA's randomized solver when scikit-learn picks it, and the draws of
        ``representative="sample"``.
    n_components : int
        PCA dimensions before capping (default 32).
    standardize : bool
        Scale every feature to unit variance before PCA (default False: centre only).
    threshold_factor : float
        BIRCH threshold as a multiple of the median nearest-neighbour distance (default 0.5).
    branching_factor : int
        BIRCH branching factor (default 50).
    linkage : str
        Linkage of the global agglomerative step: ``ward``, ``average``, ``complete``, ``single``.
    outlier_fence : float or None
        Videos whose distance (PCA space) to their ``outlier_neighbours``-th nearest neighbour
        in the class lies above Q3 + ``outlier_fence`` × IQR of those distances are not
        candidates (default 1.5, Tukey's; None: every video is a candidate).
    outlier_neighbours : int
        Which nearest neighbour measures isolation (default 3).
    group_factor : float
        Groups formed per video kept when VPC > 1 (>= 1, default 1: one group per pick): the
        class is split into ``ceil(group_factor × VPC)`` groups and the VPC largest give a
        representative; on the toy's validation split 2 did worse than outlier removal.
    max_halvings : int
        How often the threshold may be halved to reach VPC subclusters (default 8).
    min_score : float or None
        Videos whose own-class score is below this are not candidates (see above; None: no
        video is set aside for its score, though ``representative="score"`` still ranks by it).
    representative : str
        Which member of a group is picked: ``centre`` (nearest its centre; default) or
        ``sample`` (drawn at random with the seed) or ``score`` (the best scored).
    """

    label = "TAC-DT"
    report_order = 80
    color = "C3"
    proposed = True

    defaults_version = 2
    """2: isolated videos set aside by default (``outlier_fence`` 1.5); a run's selections made
    with version 1's defaults are not mixed with these (``pipeline/select.py``)."""

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0,
                 n_components: int = 32, standardize: bool = False,
                 threshold_factor: float = 0.5, branching_factor: int = 50,
                 linkage: str = "ward", max_halvings: int = 8, group_factor: float = 1.0,
                 outlier_fence: float | None = 1.5, outlier_neighbours: int = 3,
                 min_score: float | None = None, representative: str = "centre"):
        self.n_per_class = n_per_class
        self.random_state = random_state
        self.n_components = n_components
        self.standardize = standardize
        self.threshold_factor = threshold_factor
        self.branching_factor = branching_factor
        self.linkage = linkage
        self.max_halvings = max_halvings
        self.group_factor = group_factor
        self.outlier_fence = outlier_fence
        self.outlier_neighbours = outlier_neighbours
        self.min_score = min_score
        self.representative = representative

    def _select_class(self, X_c, k, rng, scores_c):
        self._check_tac_params()
        if k >= len(X_c):
            return _keep_all(X_c)
        recognised = self.recognised(scores_c, k)
        if recognised is not None:
            kept = X_c[recognised]
            picks, scores = (_keep_all(kept) if k >= len(kept) else
                             self._pick(kept, k, rng, np.asarray(scores_c)[recognised]))
            return recognised[picks], scores
        return self._pick(X_c, k, rng, scores_c)

    def _pick(self, X_c, k, rng, scores_c):
        Z = self.reduce(X_c, rng)
        candidates = self.candidates(Z, k)
        groups = self.group(Z[candidates],
                            group_count(k, len(candidates), float(self.group_factor)))
        draw = rng if self.representative == "sample" else None
        preference = (None if self.representative != "score" or scores_c is None
                      else np.asarray(scores_c, dtype=np.float64)[candidates])
        picks, scores = _representatives(Z[candidates], groups, k, draw, preference)
        return candidates[picks], scores

    def recognised(self, scores_c: np.ndarray | None, k: int) -> np.ndarray | None:
        """Rows (ascending) scoring at least ``min_score``, or the k best scored when fewer
        reach it; None when every row stays (no ``min_score``, no scores, or all pass)."""
        if self.min_score is None or scores_c is None:
            return None
        scores_c = np.asarray(scores_c, dtype=np.float64)
        passing = np.flatnonzero(scores_c >= float(self.min_score))
        if len(passing) == len(scores_c):
            return None
        if len(passing) < k:
            passing = np.sort(np.argsort(-scores_c, kind="stable")[:k])
        return passing

    def candidates(self, Z: np.ndarray, k: int) -> np.ndarray:
        """Rows of Z (n_c, d) that may be picked, ascending: those not isolated (see
        :func:`isolated_rows`); all of them without ``outlier_fence`` or when fewer than k
        would remain."""
        everyone = np.arange(len(Z))
        if self.outlier_fence is None:
            return everyone
        kept = everyone[~isolated_rows(Z, int(self.outlier_neighbours),
                                       float(self.outlier_fence))]
        return kept if len(kept) >= k else everyone

    def reduce(self, X_c: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n_c, D) embeddings → (n_c, d) PCA coordinates, d = min(n_components, n_c - 1, D)."""
        if self.standardize:
            X_c = StandardScaler().fit_transform(X_c)
        d = max(1, min(int(self.n_components), len(X_c) - 1, X_c.shape[1]))
        return PCA(n_components=d, random_state=sklearn_seed(rng)).fit_transform(X_c)

    def group(self, Z: np.ndarray, k: int) -> np.ndarray:
        """(n_c,) group id of every row of Z: BIRCH subclusters merged into at most k groups.
        Fewer when Z has fewer than k distinct rows or the halvings run out."""
        spread = median_nearest_neighbour_distance(Z)
        if spread == 0.0:
            return np.zeros(len(Z), dtype=np.int64)
        # Duplicates can never make more subclusters than distinct rows: stop halving there.
        wanted = min(k, len(np.unique(Z, axis=0)))
        threshold = float(self.threshold_factor) * spread
        for _ in range(int(self.max_halvings) + 1):
            birch = Birch(threshold=threshold, branching_factor=int(self.branching_factor),
                          n_clusters=None).fit(Z)
            if len(birch.subcluster_centers_) >= wanted:
                break
            threshold /= 2
        subcluster_of_row = birch.labels_
        if len(birch.subcluster_centers_) <= k:
            return subcluster_of_row
        merge = AgglomerativeClustering(n_clusters=k, linkage=self.linkage)
        group_of_subcluster = merge.fit_predict(birch.subcluster_centers_)
        return group_of_subcluster[subcluster_of_row]

    def _check_tac_params(self) -> None:
        if not self.threshold_factor > 0:
            raise ValueError(f"threshold_factor must be > 0, got {self.threshold_factor!r}")
        if int(self.n_components) < 1:
            raise ValueError(f"n_components must be >= 1, got {self.n_components!r}")
        if self.outlier_fence is not None and not float(self.outlier_fence) >= 0:
            raise ValueError(f"outlier_fence must be >= 0 or None, got {self.outlier_fence!r}")
        if int(self.outlier_neighbours) < 1:
            raise ValueError(f"outlier_neighbours must be >= 1, got {self.outlier_neighbours!r}")
        if not float(self.group_factor) >= 1:
            raise ValueError(f"group_factor must be >= 1, got {self.group_factor!r}")
        if self.min_score is not None and not 0 <= float(self.min_score) <= 1:
            raise ValueError(f"min_score must be in [0, 1] or None, got {self.min_score!r}")
        if self.representative not in REPRESENTATIVES:
            raise ValueError(f"representative must be one of {', '.join(REPRESENTATIVES)}, "
                             f"got {self.representative!r}")
        if int(self.max_halvings) < 0:
            raise ValueError(f"max_halvings must be >= 0, got {self.max_halvings!r}")


def isolated_rows(Z: np.ndarray, neighbours: int, fence: float) -> np.ndarray:
    """(n,) bool: rows of Z (n, d) whose distance to their ``neighbours``-th nearest other row
    lies above the upper Tukey fence of those distances, Q3 + ``fence`` × (Q3 − Q1); none when
    those distances have no spread (Q3 = Q1)."""
    m = min(neighbours, len(Z) - 1)
    if m < 1:
        return np.zeros(len(Z), dtype=bool)
    distances, _ = NearestNeighbors(n_neighbors=m + 1).fit(Z).kneighbors(Z)
    isolation = distances[:, -1]
    q1, q3 = np.percentile(isolation, [25, 75])
    if q3 - q1 <= 1e-9 * isolation.max():
        # Half the rows or more equally isolated (duplicates, a lattice): no spread to fence.
        return np.zeros(len(Z), dtype=bool)
    return isolation > q3 + fence * (q3 - q1)


def group_count(k: int, n_c: int, group_factor: float) -> int:
    """Groups a class of ``n_c`` videos is split into to keep ``k``: 1 for k = 1, else
    ``ceil(group_factor × k)``, at most n_c."""
    return 1 if k == 1 else min(n_c, math.ceil(group_factor * k))


def median_nearest_neighbour_distance(Z: np.ndarray) -> float:
    """Median over the rows of Z (n, d) of the distance to the nearest other row with a different
    position (exact duplicates ignored); 0.0 when all rows coincide or n == 1."""
    distinct = np.unique(Z, axis=0)
    if len(distinct) < 2:
        return 0.0
    distances, _ = NearestNeighbors(n_neighbors=2).fit(distinct).kneighbors(distinct)
    return float(np.median(distances[:, 1]))


def _representatives(Z: np.ndarray, groups: np.ndarray, k: int,
                     draw: np.random.Generator | None = None,
                     preference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One member per group (nearest its centre; drawn with ``draw``, or the highest
    ``preference`` (n,), when given), groups ranked by size, filled up to k picks."""
    picks, sizes = [], []
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        if draw is not None:
            pick = draw.choice(members)
        else:
            distance = np.linalg.norm(Z[members] - Z[members].mean(axis=0), axis=1)
            # lexsort: the last key sorts first (highest preference), ties go to the centre's.
            order = (np.argsort(distance, kind="stable") if preference is None
                     else np.lexsort((distance, -preference[members])))
            pick = members[order[0]]
        picks.append(int(pick))
        sizes.append(len(members))
    order = sorted(range(len(picks)), key=lambda i: (-sizes[i], picks[i]))[:k]
    picks = [picks[i] for i in order]
    scores = [sizes[i] / len(Z) for i in order]
    if len(picks) < k:
        extra, _ = extend_farthest_first(Z, picks, k)
        picks += extra.tolist()
        scores += [0.0] * len(extra)
    return np.asarray(picks, dtype=np.int64), np.asarray(scores)


def _keep_all(X_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(np.linalg.norm(X_c - X_c.mean(axis=0), axis=1), kind="stable")
    return order.astype(np.int64), np.full(len(X_c), 1.0 / len(X_c))
