"""``herding``: greedy mean herding within each class (Welling 2009; iCaRL, Rebuffi et al. 2017)."""

from __future__ import annotations

import numpy as np

from raydistill.selection.base import ClassSelector


class HerdingSelector(ClassSelector):
    """Herding: pick videos so that the mean of the picks tracks the class mean.

    Per class, step t adds the not-yet-picked video x that minimises
    ``|| mu - (x_1 + ... + x_{t-1} + x) / t ||`` where ``mu`` is the class mean embedding (the
    greedy selection of iCaRL's exemplar sets, i.e. kernel herding with a linear kernel). Ties go
    to the lower row index. Early picks are therefore the most representative of the class mean.

    ``selected_scores_``: the distance between the class mean and the mean of the picks right
    after this pick (lower is better; it need not decrease monotonically).

    Parameters
    ----------
    n_per_class : int
        Videos per class (VPC).
    random_state : int or None
        Unused (herding is deterministic); kept for the common selector interface.
    """

    label = "Herding"
    report_order = 60
    color = "C8"

    def __init__(self, n_per_class: int = 1, random_state: int | None = 0):
        self.n_per_class = n_per_class
        self.random_state = random_state

    def _select_class(self, X_c, k, rng, scores_c):
        return herd(X_c, k)


def herd(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy mean herding over the rows of X (n, D): ``k`` distinct row indices in pick order and
    the distance from the mean of X to the mean of the picks after each pick."""
    target = X.mean(axis=0)
    running_sum = np.zeros(X.shape[1])
    available = np.ones(len(X), dtype=bool)
    picks, gaps = [], []
    for step in range(1, k + 1):
        gap = np.linalg.norm(target - (running_sum + X) / step, axis=1)
        gap[~available] = np.inf
        pick = int(np.argmin(gap))
        picks.append(pick)
        gaps.append(float(gap[pick]))
        running_sum += X[pick]
        available[pick] = False
    return np.asarray(picks, dtype=np.int64), np.asarray(gaps)
