"""Markdown tables of a run in the paper's layout: results (Tables 2 and 4), selection quality,
wall time per stage.

Results are read from ``eval/{pool}/{method}/vpc={k}/seed={s}/metrics.json`` and the upper
bounds from ``eval/full_{real,synthetic}/seed={s}/metrics.json`` (parsed by
:mod:`raydistill.layout`); every value is shown in percent
as ``mean ± std`` over seeds (:func:`raydistill.classify.metrics.summarize_seeds`).
"""

from __future__ import annotations

import html
import math
import re
import time
from dataclasses import dataclass

from raydistill.classify.metrics import METRIC_NAMES, summarize_seeds
from raydistill.config import STAGE_NAMES
from raydistill.layout import (BOUNDS, EVAL_FOLDER, BoundKey, SelectionKey, parse_eval_path,
                               parse_selection_path, selection_folder)
from raydistill.runs import RunDir
from raydistill.selection import SELECTORS

BOUND_LABELS = {"full_real": "Full real", "full_synthetic": "Full syn"}
METRIC_LABELS = {"top1": "Top-1", "top5": "Top-5", "auc": "AUC", "f1": "F1"}


@dataclass(frozen=True)
class ResultRow:
    """One table row: a method at one VPC (``vpc`` None for an upper bound), metrics as
    fractions ``{metric: (mean, std)}`` over ``seeds`` runs, plus what the runs recorded."""

    method: str
    vpc: int | None
    summary: dict[str, tuple[float, float]]
    seeds: int
    train_videos: int | None = None
    classifier: str | None = None


@dataclass(frozen=True)
class QualityRow:
    """Selection quality of a method at one VPC, averaged over ``seeds`` selections."""

    method: str
    vpc: int
    coverage: float | None
    diversity: float | None
    balanced: int
    seeds: int


def method_label(method: str) -> str:
    """The paper's name of a method, its selector's ``label`` (``tac_dt`` → ``TAC-DT``), or of an
    upper bound (``full_real`` → ``Full real``); unknown names pass through."""
    if method in SELECTORS:
        return SELECTORS[method].label
    return BOUND_LABELS.get(method, method)


def method_sort_key(method: str) -> tuple[float, str]:
    """Paper order, the selectors' ``report_order`` (baselines first, the paper's methods last);
    other names (upper bounds, unknown methods) after, by name."""
    selector = SELECTORS.get(method)
    return (selector.report_order if selector else math.inf, method)


# -- gathering ---------------------------------------------------------------------------------

def _numeric_metrics(metrics: dict) -> dict[str, float]:
    """The metrics of :data:`METRIC_NAMES` a run recorded, a missing value as NaN."""
    return {name: (math.nan if metrics[name] is None else float(metrics[name]))
            for name in METRIC_NAMES if name in metrics}


def summarize_runs(method: str, vpc: int | None, runs: list[dict]) -> ResultRow:
    """The row of ``runs`` (metrics.json dicts of one method/VPC, one per seed); metrics that
    some seed lacks are left out rather than failing the whole row."""
    metrics = [_numeric_metrics(run) for run in runs]
    shared = [name for name in METRIC_NAMES if all(name in m for m in metrics)]
    summary = summarize_seeds([{k: m[k] for k in shared} for m in metrics]) if shared else {}
    train = [run["train_videos"] for run in runs if isinstance(run.get("train_videos"), int)]
    classifier = next((run["classifier"] for run in runs if run.get("classifier")), None)
    return ResultRow(method, vpc, summary, len(runs), max(train) if train else None, classifier)


def evaluated_metrics(run: RunDir) -> list[tuple[SelectionKey | BoundKey, str]]:
    """``(key, run-relative path)`` of every test metrics file under ``eval/``, of a selection or
    an upper bound (see :mod:`raydistill.layout`)."""
    found = []
    for path in run.list(EVAL_FOLDER, "metrics.json"):
        parsed = parse_eval_path(path)
        if parsed is not None and parsed[1] == "metrics.json":
            found.append((parsed[0], path))
    return found


def result_rows(run: RunDir, pool: str) -> list[ResultRow]:
    """Rows of every evaluated (method, VPC) of ``pool``, by VPC then in paper order."""
    grouped: dict[tuple[str, int], list[dict]] = {}
    for key, path in evaluated_metrics(run):
        if isinstance(key, SelectionKey) and key.pool == pool:
            grouped.setdefault((key.method, key.vpc), []).append(run.read_json(path))
    keys = sorted(grouped, key=lambda k: (k[1], method_sort_key(k[0])))
    return [summarize_runs(method, vpc, grouped[(method, vpc)]) for method, vpc in keys]


def upper_bound_rows(run: RunDir) -> list[ResultRow]:
    """Rows of the upper bounds present: full real, then full synthetic."""
    grouped: dict[str, list[dict]] = {}
    for key, path in evaluated_metrics(run):
        if isinstance(key, BoundKey):
            grouped.setdefault(key.bound, []).append(run.read_json(path))
    return [summarize_runs(bound, None, grouped[bound]) for bound in BOUNDS if bound in grouped]


def quality_rows(run: RunDir, pool: str) -> list[QualityRow]:
    """Selection quality of every (method, VPC) of ``pool``: coverage and diversity averaged over
    seeds (undefined values skipped), ``balanced`` = how many seeds were balanced."""
    grouped: dict[tuple[str, int], list[dict]] = {}
    for path in run.list(selection_folder(pool), ".quality.json"):
        parsed = parse_selection_path(path)
        if parsed is not None and parsed[1] == "quality":
            key = (parsed[0].method, parsed[0].vpc)
            grouped.setdefault(key, []).append(run.read_json(path))
    rows = []
    for method, vpc in sorted(grouped, key=lambda k: (k[1], method_sort_key(k[0]))):
        seeds = grouped[(method, vpc)]
        rows.append(QualityRow(method, vpc, _mean_defined(q.get("coverage") for q in seeds),
                               _mean_defined(q.get("diversity") for q in seeds),
                               sum(bool(q.get("balanced")) for q in seeds), len(seeds)))
    return rows


@dataclass(frozen=True)
class Comparison:
    """A method against random at one VPC: the mean over shared seeds of the paired differences
    (method − random, fractions) of a metric and its two-sided confidence interval (NaN with
    fewer than two shared seeds)."""

    method: str
    vpc: int
    difference: float
    low: float
    high: float
    seeds: int


def seed_values(run: RunDir, pool: str, metric: str = "top1") -> dict[tuple[str, int],
                                                                     dict[int, float]]:
    """``{(method, vpc): {seed: value}}`` of ``metric`` over every evaluated selection of
    ``pool`` (a seed whose metric is missing or null is left out)."""
    values: dict[tuple[str, int], dict[int, float]] = {}
    for key, path in evaluated_metrics(run):
        if not isinstance(key, SelectionKey) or key.pool != pool:
            continue
        value = run.read_json(path).get(metric)
        if value is not None and not math.isnan(float(value)):
            values.setdefault((key.method, key.vpc), {})[key.seed] = float(value)
    return values


def compare_with_random(values: dict[tuple[str, int], dict[int, float]],
                        confidence: float = 0.95) -> list[Comparison]:
    """Every method against ``random`` at the same VPC, paired by seed: seed ``s`` of both trained
    its classifier with training seed ``s``, so the pairing removes that part of the noise. The
    interval is Student's t over the paired differences."""
    from scipy.stats import t as student_t

    comparisons = []
    for method, vpc in sorted(values, key=lambda k: (k[1], method_sort_key(k[0]))):
        base = values.get(("random", vpc))
        if method == "random" or not base:
            continue
        seeds = sorted(set(values[(method, vpc)]) & set(base))
        if not seeds:
            continue
        differences = [values[(method, vpc)][s] - base[s] for s in seeds]
        mean = sum(differences) / len(differences)
        low = high = math.nan
        if len(differences) >= 2:
            spread = math.sqrt(sum((d - mean) ** 2 for d in differences) / (len(differences) - 1))
            half = student_t.ppf(0.5 + confidence / 2, len(differences) - 1) * spread / math.sqrt(
                len(differences))
            low, high = mean - half, mean + half
        comparisons.append(Comparison(method, vpc, mean, low, high, len(seeds)))
    return comparisons


def _mean_defined(values) -> float | None:
    defined = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(defined) / len(defined) if defined else None


# -- rendering ---------------------------------------------------------------------------------

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*\[\]|!#~]|(?<!\w)_|_(?!\w))")


def markdown_text(value: object) -> str:
    """``value`` as literal Markdown text, safe in a table cell or a caption: line breaks and
    other whitespace runs become one space, HTML is escaped (``<script>`` shows as text) and
    Markdown's punctuation is backslash-escaped, so a name taken from a dataset (a class, a video
    id) cannot add rows, links, images or markup to the report. Underscores inside a word
    (``move_right``) are left as they are."""
    text = html.escape(" ".join(str(value).split()), quote=False)
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def markdown_code(value: object) -> str:
    """``value`` as a Markdown code span on one line (backticks inside become quotes)."""
    return "`" + " ".join(str(value).split()).replace("`", "'") + "`"


def markdown_table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """A Markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def format_percent(mean: float, std: float, seeds: int | None = None) -> str:
    """A fraction's mean ± std in percent with 2 decimals: ``25.20 ± 0.41`` (NaN → ``n/a``;
    one seed has no spread: ``25.20 ± —``)."""
    if math.isnan(mean):
        return "n/a"
    spread = "—" if seeds == 1 else f"{100 * std:.2f}"
    return f"{100 * mean:.2f} ± {spread}"


def metrics_present(rows: list[ResultRow]) -> list[str]:
    """The metrics of :data:`METRIC_NAMES` that at least one row has, in that order."""
    return [name for name in METRIC_NAMES if any(name in row.summary for row in rows)]


def _best_means(rows: list[ResultRow], metric: str) -> set[str]:
    """Methods whose mean of ``metric`` is the best of ``rows`` as displayed (ties all win);
    none when fewer than two methods compete."""
    shown = {row.method: round(100 * row.summary[metric][0], 2) for row in rows
             if metric in row.summary and not math.isnan(row.summary[metric][0])}
    if len(rows) < 2 or not shown:
        return set()
    best = max(shown.values())
    return {method for method, value in shown.items() if value == best}


def _cells(row: ResultRow, metrics: list[str], bold: dict[str, set[str]]) -> list[str]:
    cells = []
    for metric in metrics:
        if metric not in row.summary:
            cells.append("—")
            continue
        text = format_percent(*row.summary[metric], row.seeds)
        cells.append(f"**{text}**" if row.method in bold.get(metric, ()) else text)
    return cells


def results_table(rows: list[ResultRow], bounds: list[ResultRow],
                  full_syn_vpc: int | None = None) -> str:
    """The paper's Table 4 layout: upper bounds first, then one block per VPC with a row per
    method and a column per metric (``mean ± std`` %), the best of each block in bold, and the
    number of seeds. ``full_syn_vpc`` (videos generated per class) labels the full-synthetic row.
    """
    metrics = metrics_present(rows + bounds)
    header = ["VPC", "Method", *(f"{METRIC_LABELS[m]} (%)" for m in metrics), "Seeds"]
    body = []
    for bound in bounds:
        vpc = str(full_syn_vpc) if bound.method == "full_synthetic" and full_syn_vpc else "all"
        body.append([vpc, method_label(bound.method), *_cells(bound, metrics, {}),
                     str(bound.seeds)])
    for vpc in sorted({row.vpc for row in rows}):
        block = [row for row in rows if row.vpc == vpc]
        bold = {metric: _best_means(block, metric) for metric in metrics}
        for row in block:
            body.append([str(vpc), method_label(row.method), *_cells(row, metrics, bold),
                         str(row.seeds)])
    return markdown_table(header, body, numeric_from=2)


def headline_table(rows: list[ResultRow], bounds: list[ResultRow], metric: str = "top1") -> str:
    """The paper's Table 2 layout for one metric: a row per method (upper bounds first), a column
    per VPC, the best of each VPC column in bold."""
    vpcs = sorted({row.vpc for row in rows})
    header = ["Method", *(f"VPC={vpc}" for vpc in vpcs)]
    body = []
    for bound in bounds:
        value = bound.summary.get(metric)
        body.append([method_label(bound.method),
                     *([format_percent(*value, bound.seeds) if value else "—"] * len(vpcs))])
    best = {vpc: _best_means([r for r in rows if r.vpc == vpc], metric) for vpc in vpcs}
    by_key = {(row.method, row.vpc): row for row in rows}
    for method in sorted({row.method for row in rows}, key=method_sort_key):
        cells = []
        for vpc in vpcs:
            row = by_key.get((method, vpc))
            cells.append(_cells(row, [metric], {metric: best[vpc]})[0] if row else "—")
        body.append([method_label(method), *cells])
    return markdown_table(header, body)


def pools_table(rows_by_pool: dict[str, list[ResultRow]], metric: str = "top1") -> str:
    """The pools side by side for one metric: a row per (VPC, method) that some pool has, a
    column per pool (``mean ± std`` %, ``—`` where that pool lacks it)."""
    pools = sorted(rows_by_pool)
    by_key = {(pool, row.method, row.vpc): row for pool in pools for row in rows_by_pool[pool]}
    keys = sorted({(row.vpc, row.method) for rows in rows_by_pool.values() for row in rows},
                  key=lambda key: (key[0], method_sort_key(key[1])))
    body = []
    for vpc, method in keys:
        cells = []
        for pool in pools:
            row = by_key.get((pool, method, vpc))
            value = row.summary.get(metric) if row else None
            cells.append(format_percent(*value, row.seeds) if value else "—")
        body.append([str(vpc), method_label(method), *cells])
    header = ["VPC", "Method", *(f"{pool} pool {METRIC_LABELS[metric]} (%)" for pool in pools)]
    return markdown_table(header, body, numeric_from=2)


def evaluated_pools(run: RunDir) -> list[str]:
    """The pools with at least one evaluated selection, by name."""
    return sorted({key.pool for key, _ in evaluated_metrics(run) if isinstance(key, SelectionKey)})


def quality_table(rows: list[QualityRow]) -> str:
    """Selection quality per VPC block and method: coverage (mean distance of a class's videos
    to the nearest selected one, lower is better), diversity (mean pairwise cosine distance of
    the selected videos, higher is better), balanced seeds out of all."""
    header = ["VPC", "Method", "Coverage ↓", "Diversity ↑", "Balanced", "Seeds"]
    body = [[str(row.vpc), method_label(row.method),
             "—" if row.coverage is None else f"{row.coverage:.3f}",
             "—" if row.diversity is None else f"{row.diversity:.3f}",
             "yes" if row.balanced == row.seeds else f"no ({row.balanced}/{row.seeds})",
             str(row.seeds)] for row in rows]
    return markdown_table(header, body, numeric_from=2)


def comparison_table(comparisons: list[Comparison], metric: str = "top1") -> str:
    """Per VPC and method: the difference from random in points, its 95 % interval, the seeds
    paired, and whether the interval excludes 0 (the difference is larger than the seed noise)."""
    header = ["VPC", "Method", f"Δ {METRIC_LABELS[metric]} vs Random (points)", "95 % CI",
              "Seeds", "Beyond seed noise?"]
    body = []
    for row in comparisons:
        if math.isnan(row.low):
            interval, verdict = "n/a", "n/a (one seed)"
        else:
            interval = f"[{_points(row.low)}, {_points(row.high)}]"
            verdict = ("yes, better" if row.low > 0 else "yes, worse" if row.high < 0
                       else "no")
        body.append([str(row.vpc), method_label(row.method), _points(row.difference),
                     interval, str(row.seeds), verdict])
    return markdown_table(header, body, numeric_from=2)


def _points(fraction: float) -> str:
    """A signed difference of fractions in points, 2 decimals, never ``-0.00``."""
    return f"{round(100 * fraction, 2) + 0.0:+.2f}"


def fidelity_table(class_names: list[str], labels, predicted) -> str:
    """Per class and overall: the generated videos, and the share that a classifier trained on
    the real training clips assigns to the class they were generated for."""
    body = []
    total = hits = 0
    for label, name in enumerate(class_names):
        own = [p for l, p in zip(labels, predicted) if l == label]
        right = sum(p == label for p in own)
        total, hits = total + len(own), hits + right
        share = f"{100 * right / len(own):.1f}" if own else "—"
        body.append([markdown_text(name), str(len(own)), share])
    body.append(["**all**", str(total), f"**{100 * hits / total:.1f}**" if total else "—"])
    return markdown_table(["Class", "Generated", "Recognised as their class (%)"], body)


def format_duration(seconds: float) -> str:
    """``42.0 s``, ``3 min 05 s`` or ``2 h 07 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def stage_markers(run: RunDir) -> dict[str, dict]:
    """``{stage: marker}`` of every finished stage, in pipeline order then by name."""
    names = [path.rsplit("/", 1)[1][:-len(".json")] for path in run.list("_stages", ".json")]
    names.sort(key=lambda n: (STAGE_NAMES.index(n) if n in STAGE_NAMES else len(STAGE_NAMES), n))
    return {name: run.read_json(f"_stages/{name}.json") for name in names}


def stage_time_table(markers: dict[str, dict]) -> str:
    """Wall time and finishing time (UTC) of each finished stage, and their total."""
    body, total = [], 0.0
    for name, marker in markers.items():
        summary = marker.get("summary") or {}
        seconds = summary.get("wall_seconds", summary.get("seconds"))
        finished = marker.get("finished_at")
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(finished)) if finished else "—"
        body.append([name, "—" if seconds is None else format_duration(seconds), when])
        total += seconds or 0.0
    body.append(["**total**", f"**{format_duration(total)}**", ""])
    return markdown_table(["Stage", "Wall time", "Finished (UTC)"], body)
