"""Training-free video selectors (scikit-learn estimators) and selection-quality metrics.

``SELECTORS`` maps a method name to its selector class; ``make_selector(name, **params)`` builds
one. Every selector is fitted with ``fit(X, y, scores=None)`` on a pool (embeddings, or VAE latents
for ``vst_unet``) and keeps
``min(n_per_class, n_c)`` videos of each class in ``selected_indices_``; per-class fan-outs call
:func:`select_class` and join the pieces with :func:`merge_class_selections`.
"""

from __future__ import annotations

from raydistill.config import RENAMED_METHODS
from raydistill.selection.attention_topk import AttentionTopKSelector
from raydistill.selection.base import (
    ClassSelector,
    check_selection_input,
    class_rng,
    merge_class_selections,
    select_class,
)
from raydistill.selection.dm_mmd import DMMMDSelector
from raydistill.selection.herding import HerdingSelector
from raydistill.selection.kcenter import KCenterSelector
from raydistill.selection.mae_score import MAEScoreSelector, out_of_fold_confidence
from raydistill.selection.metrics import (
    class_balance,
    coverage,
    diversity,
    selection_quality,
)
from raydistill.selection.random_choice import RandomSelector
from raydistill.selection.tac_dt import TACDTSelector
from raydistill.selection.vst_selector import VSTUNetSelector

SELECTORS: dict[str, type[ClassSelector]] = {
    "random": RandomSelector,
    "tac_dt": TACDTSelector,
    "kcenter": KCenterSelector,
    "herding": HerdingSelector,
    "dm_mmd": DMMMDSelector,
    "mae_score": MAEScoreSelector,
    "attention_topk": AttentionTopKSelector,
    "vst_unet": VSTUNetSelector,
}
PER_CLASS_METHODS = tuple(name for name, cls in SELECTORS.items()
                          if issubclass(cls, ClassSelector))
"""The training-free selectors, whose classes can be selected independently (fanned out)."""


def make_selector(name: str, **params) -> ClassSelector:
    """The selector ``SELECTORS[name](**params)``; ValueError naming the valid methods otherwise
    (and the new name of a renamed method, ``config.RENAMED_METHODS``)."""
    if name in RENAMED_METHODS:
        new_name, why = RENAMED_METHODS[name]
        raise ValueError(f"selection method {name!r} was renamed to {new_name!r}: {why}")
    if name not in SELECTORS:
        raise ValueError(f"unknown selection method {name!r}; choose from "
                         f"{', '.join(sorted(SELECTORS))}")
    return SELECTORS[name](**params)


__all__ = [
    "SELECTORS",
    "AttentionTopKSelector",
    "ClassSelector",
    "DMMMDSelector",
    "HerdingSelector",
    "KCenterSelector",
    "MAEScoreSelector",
    "RandomSelector",
    "TACDTSelector",
    "VSTUNetSelector",
    "PER_CLASS_METHODS",
    "check_selection_input",
    "class_balance",
    "class_rng",
    "coverage",
    "diversity",
    "make_selector",
    "merge_class_selections",
    "out_of_fold_confidence",
    "select_class",
    "selection_quality",
]
