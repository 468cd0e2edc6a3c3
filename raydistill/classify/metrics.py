"""The paper's test metrics from predicted probabilities: top-1, top-5, macro OvR AUC, macro F1.

Every metric is a plain float in [0, 1] (the report shows percent). The paper repeats selection
and classification 5 times and reports mean ± std; :func:`summarize_seeds` does that with the
population standard deviation (ddof=0, ``np.std``'s default, as the dataset-distillation
benchmarks the paper compares against compute it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score, top_k_accuracy_score

METRIC_NAMES = ("top1", "top5", "auc", "f1")


class MetricWarning(UserWarning):
    """A metric computed on less than it should be (e.g. AUC over the classes present only)."""


def _check_inputs(y_true: np.ndarray, probabilities: np.ndarray,
                  labels: np.ndarray) -> None:
    if probabilities.ndim != 2 or probabilities.shape != (len(y_true), len(labels)):
        raise ValueError(f"probabilities must be (N, C) = ({len(y_true)}, {len(labels)}), "
                         f"got {probabilities.shape}")
    if len(y_true) == 0:
        raise ValueError("no samples")
    if len(labels) < 2 or np.any(np.diff(labels) <= 0):
        raise ValueError("labels must be at least two distinct values in increasing order")
    if not np.isin(y_true, labels).all():
        raise ValueError(f"y_true holds labels outside {labels.tolist()}")
    if (probabilities < 0).any() or not np.isfinite(probabilities).all():
        raise ValueError("probabilities must be finite and non-negative")


def _as_distribution(probabilities: np.ndarray) -> np.ndarray:
    """Rows rescaled to sum to exactly 1 (softmax in float32 does not; sklearn's multiclass AUC
    insists). An all-zero row becomes uniform."""
    totals = probabilities.sum(axis=1, keepdims=True)
    uniform = np.full_like(probabilities, 1 / probabilities.shape[1])
    return np.where(totals > 0, probabilities / np.where(totals > 0, totals, 1), uniform)


def top_k_accuracy(y_true: np.ndarray, probabilities: np.ndarray, labels: np.ndarray,
                   k: int) -> float:
    """Fraction of samples whose label is among the ``k`` highest scores (k capped at C)."""
    if k >= len(labels):
        return 1.0
    if k == 1:
        return float(np.mean(labels[probabilities.argmax(axis=1)] == y_true))
    return float(top_k_accuracy_score(y_true, probabilities, k=k, labels=labels))


def macro_auc(y_true: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest ROC AUC.

    When a class of ``labels`` is absent from ``y_true`` its one-vs-rest AUC is undefined: the
    macro average is then taken over the classes present (each class's AUC on its own column,
    exactly as the full OvR average does) and a :class:`MetricWarning` names the others. NaN when
    fewer than two classes are present (no AUC is defined at all).
    """
    present = np.isin(labels, y_true)
    if present.all() and len(labels) == 2:  # sklearn's binary AUC takes one score column
        return float(roc_auc_score(y_true == labels[1], _as_distribution(probabilities)[:, 1]))
    if present.all():
        return float(roc_auc_score(y_true, _as_distribution(probabilities), multi_class="ovr",
                                   average="macro", labels=labels))
    warnings.warn(f"AUC over the {present.sum()} classes present in y_true; absent: "
                  f"{labels[~present].tolist()}", MetricWarning, stacklevel=3)
    if present.sum() < 2:
        return float("nan")
    scores = [roc_auc_score(y_true == label, probabilities[:, column])
              for column, label in enumerate(labels) if present[column]]
    return float(np.mean(scores))


def macro_f1(y_true: np.ndarray, probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Macro F1 of the arg-max predictions over every class of ``labels``; a class never
    predicted (or never true) scores 0 and still counts in the average."""
    predicted = labels[probabilities.argmax(axis=1)]
    return float(f1_score(y_true, predicted, labels=labels, average="macro", zero_division=0))


def classification_metrics(y_true: Sequence[int] | np.ndarray,
                           probabilities: np.ndarray,
                           labels: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
    """``top1``, ``top5``, ``auc`` and ``f1`` of class ``probabilities`` (N, C) against ``y_true``
    (N,).

    ``labels`` (C,), increasing, names the class of each column (default ``0 … C-1``); top-5 is
    capped at C classes; rows need not sum to exactly 1. See :func:`macro_auc` for classes absent
    from ``y_true``.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.arange(probabilities.shape[-1]) if labels is None else np.asarray(labels)
    y_true = np.asarray(y_true)
    _check_inputs(y_true, probabilities, labels)
    return {
        "top1": top_k_accuracy(y_true, probabilities, labels, 1),
        "top5": top_k_accuracy(y_true, probabilities, labels, 5),
        "auc": macro_auc(y_true, probabilities, labels),
        "f1": macro_f1(y_true, probabilities, labels),
    }


def summarize_seeds(runs: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """``{metric: (mean, std)}`` over runs (e.g. 5 seeds), std with ddof=0.

    Every run must report the same metrics. A NaN in a run makes that metric's summary NaN.
    """
    if not runs:
        raise ValueError("no runs to summarize")
    names = list(runs[0])
    if any(set(run) != set(names) for run in runs):
        raise ValueError("every run must report the same metrics")
    summary = {}
    for name in names:
        values = np.asarray([run[name] for run in runs], dtype=np.float64)
        summary[name] = (float(values.mean()), float(values.std(ddof=0)))
    return summary
