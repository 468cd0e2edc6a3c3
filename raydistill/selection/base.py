"""The per-class selection loop that every training-free selector shares.

A selector picks ``n_per_class`` videos of each class from an embedding pool. Its result for a class
depends only on that class's rows (in their original order), on ``random_state`` and on the label,
so a Ray fan-out that runs :func:`select_class` on subsets of classes and joins the pieces with
:func:`merge_class_selections` gets exactly what one :meth:`ClassSelector.fit` over the whole pool
gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_limits


class ClassSelector(BaseEstimator):
    """Base class: ``fit(X, y, scores=None)`` selects ``min(n_per_class, n_c)`` rows of each class.

    Subclasses store their parameters in ``__init__`` (scikit-learn rules) and implement
    ``_select_class(X_c, k, rng, scores_c) -> (local_indices, pick_scores)``: ``k`` distinct row
    indices into ``X_c`` in rank order (most important first) and one float per pick.

    Parameters
    ----------
    n_per_class : int
        Videos to keep per class (VPC); a class with fewer videos keeps all of them.
    random_state : int or None
        Seed; each class draws from ``np.random.default_rng`` keyed by (random_state, label).
        None gives unseeded, non-reproducible results.

    Attributes (after ``fit``)
    --------------------------
    classes_ : (C,) the distinct labels, ascending.
    selected_indices_ : (m,) int64 rows of X, grouped by class in ascending label order, in rank
        order within a class.
    selected_scores_ : (m,) float64, the method's score of each pick (see the subclass).
    selected_labels_ : (m,) the label of each pick.

    Class attributes
    ----------------
    Every selector of ``SELECTORS`` sets them; the report and the jobs read them from the class.

    label : str
        The paper's name of the method, shown in the report (``TAC-DT``).
    report_order : int
        Its place in the report's tables and figures, lowest first: the baselines, then the
        paper's own methods. Spaced by 10, so that a new selector slots in without renumbering.
    color : str
        Its matplotlib colour in every figure; the paper's own methods take the strongest ones.
        It must resolve to an RGB no other selector uses, nor the upper bounds' (black, tab10's
        gray C7) nor C5 (a method without a selector). tab10 is used up: a new selector takes
        any other matplotlib colour (``"xkcd:teal"``, ``"#2ca7a0"``), not ``C10`` (= C0).
    proposed : bool
        True for the paper's own methods (TAC-DT, VST-UNet), which the jobs list first.
    """

    proposed = False

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0):
        self.n_per_class = n_per_class
        self.random_state = random_state

    def fit(self, X, y, scores=None) -> ClassSelector:
        """Select per class. X: (n, D) embeddings; y: (n,) int labels; scores: optional (n,) floats
        (the embedding classifier's probability of each video's true class). Returns self."""
        X, y, scores = check_selection_input(X, y, scores)
        self._check_params()
        scores = self.prepare_scores(X, y, scores)
        per_class = {}
        # Per-class matrices are small: threaded BLAS only adds contention (6× slower on 2 cores,
        # benchmarks/BENCHMARKS.md).
        with threadpool_limits(limits=1):
            for label in np.unique(y):
                rows = np.flatnonzero(y == label)
                scores_c = None if scores is None else scores[rows]
                per_class[label] = self.select_class(X[rows], label, scores_c)
        self.classes_ = np.unique(y)
        (self.selected_indices_, self.selected_scores_,
         self.selected_labels_) = merge_class_selections(y, per_class)
        return self

    def prepare_scores(self, X: np.ndarray, y: np.ndarray, scores: np.ndarray | None):
        """Pool-level scores the per-class step needs, computed once over the whole pool.

        The default passes ``scores`` through; a selector that needs all classes (``mae_score``)
        overrides this. A fan-out calls it once and hands each class its slice."""
        return scores

    def select_class(self, X_c, label, scores_c=None) -> tuple[np.ndarray, np.ndarray]:
        """Select within one class; see :func:`select_class`."""
        return select_class(self, X_c, label, scores_c)

    def _check_params(self) -> None:
        check_count_and_seed(self.n_per_class, self.random_state)

    def _select_class(self, X_c: np.ndarray, k: int, rng: np.random.Generator,
                      scores_c: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


def check_count_and_seed(n_per_class, random_state) -> None:
    """ValueError unless ``n_per_class`` is an int >= 1 and ``random_state`` None or an int >= 0
    (the parameters every selector shares)."""
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, Integral) or n_per_class < 1:
        raise ValueError(f"n_per_class must be an integer >= 1, got {n_per_class!r}")
    if random_state is not None and (isinstance(random_state, bool)
                                     or not isinstance(random_state, Integral)
                                     or random_state < 0):
        raise ValueError(f"random_state must be None or an integer >= 0, got {random_state!r}")


def select_class(selector: ClassSelector, X_c, label, scores_c=None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Run ``selector`` on the rows of one class, the entry point of a per-class fan-out.

    X_c: (n_c, D) embeddings of the class in their pool order; label: the class's int label (it
    keys the class's random stream); scores_c: optional (n_c,) pool-level scores of these rows
    (from ``selector.prepare_scores`` over the whole pool). Returns ``(local_indices, scores)``:
    ``min(n_per_class, n_c)`` distinct int64 row indices into X_c in rank order and their float64
    scores. Equal to the class's part of ``selector.fit`` over any pool that holds these rows.
    """
    selector._check_params()
    X_c, label_array, scores_c = check_selection_input(X_c, np.full(len(X_c), label), scores_c)
    label = label_array[0]
    k = min(int(selector.n_per_class), len(X_c))
    rng = class_rng(selector.random_state, label)
    indices, pick_scores = selector._select_class(X_c, k, rng, scores_c)
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) != k or len(np.unique(indices)) != k:
        raise RuntimeError(f"{type(selector).__name__} picked {len(indices)} rows "
                           f"({len(np.unique(indices))} distinct) of class {label}, expected {k}")
    return indices, np.asarray(pick_scores, dtype=np.float64)


def class_rng(random_state: int | None, label) -> np.random.Generator:
    """The random stream of one class: keyed by (random_state, label) alone, never by the order in
    which classes are processed. Negative labels get their own keys (the sign is part of the key)."""
    if random_state is None:
        return np.random.default_rng()
    label = int(label)
    return np.random.default_rng([int(random_state), abs(label), int(label < 0)])


def sklearn_seed(rng: np.random.Generator) -> int:
    """An int seed for a scikit-learn estimator, drawn from a class's stream."""
    return int(rng.integers(0, 2**31 - 1))


def merge_class_selections(y, per_class: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join per-class results into pool-level arrays.

    y: (n,) labels of the pool; per_class: label -> (local_indices, scores) as returned by
    :func:`select_class` for the rows ``np.flatnonzero(y == label)``. Returns
    ``(indices, scores, labels)``: (m,) int64 rows of the pool grouped by ascending label, (m,)
    float64 scores and (m,) labels.
    """
    y = np.asarray(y)
    indices, scores, labels = [], [], []
    for label in sorted(per_class):
        local, pick_scores = per_class[label]
        rows = np.flatnonzero(y == label)
        indices.append(rows[np.asarray(local, dtype=np.int64)])
        scores.append(np.asarray(pick_scores, dtype=np.float64))
        labels.append(np.full(len(local), label, dtype=y.dtype))
    if not indices:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, y.dtype)
    return np.concatenate(indices), np.concatenate(scores), np.concatenate(labels)


def check_selection_input(X, y, scores=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate a pool: X (n, D) finite floats, y (n,) integer labels, scores None or (n,) floats.

    Returns them as float64 / int64 / float64 arrays; raises ValueError with the reason."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D (n_videos, n_features) array, got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty (shape {X.shape})")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinite values")
    y = _as_int_labels(y)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(X),):
            raise ValueError(f"scores must have shape ({len(X)},), got {scores.shape}")
        if np.any(np.isnan(scores)):
            raise ValueError("scores contain NaN")
    return X, y, scores


def _as_int_labels(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels, got shape {y.shape}")
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
