"""How good a selection is, without training anything: coverage, diversity and class balance.

All functions take embeddings and selected row indices and return plain Python values (floats,
ints, bools, dicts) that ``json.dumps`` accepts.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics.pairwise import cosine_distances, pairwise_distances_argmin_min


def coverage(X_c, selected) -> float:
    """Mean over all rows of X_c (n, D) of the Euclidean distance to the nearest selected row.

    selected: row indices into X_c (at least one). Lower is better; 0 when everything is selected.
    """
    X_c, selected = np.asarray(X_c, dtype=np.float64), np.asarray(selected, dtype=np.int64)
    if selected.size == 0:
        raise ValueError("coverage needs at least one selected row")
    _, distances = pairwise_distances_argmin_min(X_c, X_c[selected])
    return float(distances.mean())


def diversity(X_c, selected) -> float:
    """Mean pairwise cosine distance (1 - cosine similarity) among the selected rows of X_c (n, D).

    selected: row indices into X_c. Higher is more diverse; NaN with fewer than 2 selected.
    """
    selected = np.asarray(selected, dtype=np.int64)
    if selected.size < 2:
        return float("nan")
    distances = cosine_distances(np.asarray(X_c, dtype=np.float64)[selected])
    upper = np.triu_indices(len(selected), k=1)
    return float(distances[upper].mean())


def class_balance(y, selected_indices, n_per_class: int) -> dict:
    """Per-class counts of a selection and whether it is balanced.

    y: (n,) int labels of the pool; selected_indices: rows of the pool. Returns
    ``{"counts": {label: picked}, "expected": {label: min(n_per_class, n_c)}, "duplicates": int,
    "balanced": bool}``; balanced means every class has exactly its expected count and no row is
    picked twice. Labels are Python ints (``json.dumps`` writes them as string keys).
    """
    y = np.asarray(y)
    selected_indices = np.asarray(selected_indices, dtype=np.int64)
    labels, sizes = np.unique(y, return_counts=True)
    picked = y[selected_indices]
    counts = {int(label): int(np.sum(picked == label)) for label in labels}
    expected = {int(label): int(min(n_per_class, size)) for label, size in zip(labels, sizes)}
    duplicates = int(len(selected_indices) - len(np.unique(selected_indices)))
    return {"counts": counts, "expected": expected, "duplicates": duplicates,
            "balanced": counts == expected and duplicates == 0}


def selection_quality(X, y, selected_indices, n_per_class: int) -> dict:
    """Class-averaged quality of a pool-level selection.

    X: (n, D) embeddings; y: (n,) int labels; selected_indices: rows of X. Coverage and diversity
    are computed within each class (pool = the class's rows, selection = its picks) and averaged
    over the classes where they are defined. Returns ``{"coverage": float | None, "diversity":
    float | None, "balanced": bool, "n_classes": int, "n_selected": int, "n_per_class": int}``;
    None marks an undefined average (no class with a pick, or fewer than 2 picks everywhere).
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    selected_indices = np.asarray(selected_indices, dtype=np.int64)
    coverages, diversities = [], []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        local = np.flatnonzero(np.isin(rows, selected_indices))
        if local.size:
            coverages.append(coverage(X[rows], local))
            diversities.append(diversity(X[rows], local))
    return {
        "coverage": _mean_or_none(coverages),
        "diversity": _mean_or_none(diversities),
        "balanced": class_balance(y, selected_indices, n_per_class)["balanced"],
        "n_classes": len(np.unique(y)),
        "n_selected": len(selected_indices),
        "n_per_class": int(n_per_class),
    }


def _mean_or_none(values: list[float]) -> float | None:
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else None
