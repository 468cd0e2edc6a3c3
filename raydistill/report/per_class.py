"""The report's per-class view: top-1 per class and a confusion matrix for full real, full
synthetic and the best selection, from the test predictions the evaluate stage saves
(``eval/{key}/predictions.parquet``), pooled over seeds."""

from __future__ import annotations

import math

import numpy as np

from raydistill.layout import (EVAL_FOLDER, REPORT_FOLDER, BoundKey, eval_predictions_path,
                               parse_eval_path)
from raydistill.report.plots import confusion_png
from raydistill.report.tables import (ResultRow, markdown_table, markdown_text, method_label,
                                      method_sort_key)
from raydistill.runs import RunDir

SHOWN_CLASSES = 20
"""Up to this many classes the table lists every class; beyond, the hardest and the easiest
``SHOWN_CLASSES // 2`` for full real (else the first column)."""


def prediction_keys(run: RunDir) -> dict[tuple, list[str]]:
    """Evaluation keys with saved predictions, grouped by what varies only by seed:
    ``(bound,)`` for an upper bound, ``(pool, method, vpc)`` for a selection → key names in
    seed order."""
    groups: dict[tuple, list[tuple[int, str]]] = {}
    for path in run.list(EVAL_FOLDER, ".parquet"):
        parsed = parse_eval_path(path)
        if parsed is None or path != eval_predictions_path(parsed[0].name):
            continue
        key = parsed[0]
        group = ((key.bound,) if isinstance(key, BoundKey)
                 else (key.pool, key.method, key.vpc))
        groups.setdefault(group, []).append((key.seed, key.name))
    return {group: [name for _, name in sorted(items)] for group, items in groups.items()}


def best_selection(rows: list[ResultRow], metric: str) -> ResultRow | None:
    """The selection row (method at a VPC) with the highest mean ``metric``; ties go to the
    smaller VPC, then the method's report order. None without rows."""
    scored = [row for row in rows if metric in row.summary
              and not math.isnan(row.summary[metric][0])]
    if not scored:
        return None
    return min(scored, key=lambda row: (-row.summary[metric][0], row.vpc,
                                        method_sort_key(row.method)))


def confusion_counts(run: RunDir, keys: list[str], num_classes: int) -> np.ndarray:
    """Counts (C, C) of (true class, predicted class) over the test predictions of ``keys``
    (several seeds pooled)."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    for key in keys:
        table = run.read_table(eval_predictions_path(key), columns=["label", "predicted"])
        np.add.at(counts, (np.asarray(table.column("label").to_pylist()),
                           np.asarray(table.column("predicted").to_pylist())), 1)
    return counts


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Top-1 per class (C,) of confusion counts (C, C); NaN for a class without test videos."""
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(counts) / np.maximum(totals, 1), np.nan)


def normalised(counts: np.ndarray) -> np.ndarray:
    """Each row of confusion counts (C, C) as shares of its true class (zeros stay zeros)."""
    totals = counts.sum(axis=1, keepdims=True)
    return counts / np.maximum(totals, 1)


def compared_groups(run: RunDir, pool: str, rows: list[ResultRow], metric: str
                    ) -> list[tuple[str, str, list[str]]]:
    """``(title, file stem, keys)`` for full real, full synthetic and the best selection of
    ``pool`` (by mean ``metric``), each one that has saved predictions."""
    groups = prediction_keys(run)
    compared = []
    for bound in ("full_real", "full_synthetic"):
        if (bound,) in groups:
            compared.append((method_label(bound), bound, groups[(bound,)]))
    best = best_selection(rows, metric)
    if best is not None and (pool, best.method, best.vpc) in groups:
        compared.append((f"{method_label(best.method)}, VPC {best.vpc} (best selection)",
                         f"{best.method}_vpc{best.vpc}", groups[(pool, best.method, best.vpc)]))
    return compared


def shown_classes(accuracy: np.ndarray) -> list[int]:
    """Every class up to :data:`SHOWN_CLASSES`, else the hardest and easiest half of that many
    by ``accuracy`` (C,) (NaN last)."""
    if len(accuracy) <= SHOWN_CLASSES:
        return list(range(len(accuracy)))
    order = sorted(range(len(accuracy)), key=lambda c: (math.isnan(accuracy[c]), accuracy[c]))
    valid = [c for c in order if not math.isnan(accuracy[c])]
    half = SHOWN_CLASSES // 2
    return valid[:half] + [c for c in valid[-half:] if c not in valid[:half]]


def per_class_section(run: RunDir, pool: str, rows: list[ResultRow], metric: str,
                      class_names: list[str]) -> str:
    """The "Per-class accuracy" section: a table of top-1 per class and one confusion-matrix
    PNG per compared group (``report/confusion_{stem}.png``); a note when no predictions were
    saved; empty when nothing was evaluated."""
    if not run.list(EVAL_FOLDER, "metrics.json"):
        return ""
    compared = compared_groups(run, pool, rows, metric)
    if not compared or not class_names:
        return ("## Per-class accuracy\n\n_No test predictions saved (evaluations made before "
                "the evaluate stage kept them)._")
    num_classes = len(class_names)
    counts = [confusion_counts(run, keys, num_classes) for _, _, keys in compared]
    accuracy = [per_class_accuracy(count) for count in counts]
    classes = shown_classes(accuracy[0])
    header = ["Class", *(f"{markdown_text(title)} (%)" for title, _, _ in compared)]
    table = markdown_table(header, [
        [markdown_text(class_names[c]),
         *("n/a" if math.isnan(values[c]) else f"{100 * values[c]:.1f}" for values in accuracy)]
        for c in classes])
    which = ("every class" if len(classes) == num_classes else
             f"the {SHOWN_CLASSES // 2} hardest and easiest of {num_classes} classes for "
             f"{markdown_text(compared[0][0])}")
    seeds = ", ".join(f"{markdown_text(title)}: {len(keys)} seed{'s' if len(keys) > 1 else ''}"
                      for title, _, keys in compared)
    parts = ["## Per-class accuracy",
             f"Top-1 per class on the real test split ({which}), test predictions pooled over "
             f"seeds ({seeds}); from `eval/…/predictions.parquet`.", table]
    for (title, stem, _), count in zip(compared, counts):
        name = f"confusion_{stem}.png"
        run.write_bytes(f"{REPORT_FOLDER}/{name}",
                        confusion_png(normalised(count), class_names, f"Confusion: {title}"))
        parts.append(f"**{markdown_text(title)}**\n\n![confusion {markdown_text(title)}]({name})")
    return "\n\n".join(parts)

