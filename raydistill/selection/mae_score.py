"""``mae_score``: keep the videos the embedding classifier is most confident about (Table 4, (b))."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raydistill.selection.base import ClassSelector

OUT_OF_FOLD_SCORER = ("logistic regression on the embeddings, out-of-fold (no classifier head "
                      "names the run's classes)")
"""What ``mae_score`` ranks by when the pool has no classifier scores (said in the report)."""


class MAEScoreSelector(ClassSelector):
    """Rank each class's videos by the classifier's probability of their true class; keep the top.

    Maximises per-video confidence and ignores diversity. The probabilities come from ``scores``
    in ``fit(X, y, scores)`` (e.g. the VideoMAE action classifier's softmax for the true class).
    Without them, :meth:`prepare_scores` computes out-of-fold probabilities of a logistic
    regression on the embeddings over the whole pool (:func:`out_of_fold_confidence`). That needs
    every class, so then a class's result depends on the whole pool: a per-class fan-out must call
    ``prepare_scores(X, y, None)`` once and pass each class its slice to ``select_class``, which
    refuses to run without scores.

    Ties go to the lower row index. ``selected_scores_``: the confidence of each pick.

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC).
    random_state : int or None
        Seeds the fold split of the out-of-fold probabilities.
    cv : int
        Folds for the out-of-fold probabilities (default 5; capped by the largest class size).
    C : float
        Inverse L2 regularisation strength of the logistic regression (default 1.0).
    max_iter : int
        Solver iterations of the logistic regression (default 1000).
    """

    label = "MAE-Score"
    report_order = 20
    color = "C1"

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0, cv: int = 5,
                 C: float = 1.0, max_iter: int = 1000):
        self.n_per_class = n_per_class
        self.random_state = random_state
        self.cv = cv
        self.C = C
        self.max_iter = max_iter

    def prepare_scores(self, X, y, scores):
        """The given ``scores`` (n,), or out-of-fold true-class probabilities over the pool."""
        if scores is not None:
            return scores
        return out_of_fold_confidence(X, y, cv=self.cv, C=self.C, max_iter=self.max_iter,
                                      random_state=self.random_state)

    def _select_class(self, X_c, k, rng, scores_c):
        if scores_c is None:
            raise ValueError("mae_score needs the classifier's confidence of every video: pass "
                             "scores, or compute them once with prepare_scores(X, y, None) over "
                             "the whole pool")
        order = np.argsort(-scores_c, kind="stable")[:k]
        return order, scores_c[order]


def out_of_fold_confidence(X, y, cv: int = 5, C: float = 1.0, max_iter: int = 1000,
                           random_state: int | None = 0) -> np.ndarray:
    """Out-of-fold probability of each video's true class.

    X: (n, D) embeddings; y: (n,) int labels. A standardised logistic regression is fitted on the
    other folds of a stratified ``cv``-fold split (folds capped by the largest class) and predicts
    each video's class probabilities. Returns (n,) floats in [0, 1]. A single-class pool returns
    ones; a video whose class is absent from its training folds gets 0.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        return np.ones(len(y))
    folds = StratifiedKFold(n_splits=max(2, min(int(cv), int(counts.max()))), shuffle=True,
                            random_state=random_state)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=int(max_iter)))
    with warnings.catch_warnings():
        # Tiny classes miss some folds; their videos are scored as documented above.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        warnings.filterwarnings("ignore", message=".*Number of classes in training fold.*")
        proba = cross_val_predict(model, X, y, cv=folds, method="predict_proba")
    return proba[np.arange(len(y)), np.searchsorted(classes, y)]
