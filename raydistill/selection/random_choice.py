"""``random``: the naive baseline, uniform sampling without replacement within each class."""

from __future__ import annotations

import numpy as np

from raydistill.selection.base import ClassSelector


class RandomSelector(ClassSelector):
    """Keep ``n_per_class`` videos of each class drawn uniformly without replacement.

    Optimises nothing; it is the reference every other selector has to beat (Table 4, (a)).
    Rank order is the draw order; ``selected_scores_`` is NaN (there is no score).

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC).
    random_state : int or None
        Seed; the draw of a class depends on (random_state, label) only.
    """

    label = "Random"
    report_order = 10
    color = "C0"

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0):
        self.n_per_class = n_per_class
        self.random_state = random_state

    def _select_class(self, X_c, k, rng, scores_c):
        indices = rng.permutation(len(X_c))[:k]
        return indices, np.full(k, np.nan)
