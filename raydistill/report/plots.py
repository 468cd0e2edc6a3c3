"""Figures of a run as PNG bytes: accuracy vs VPC, a PCA of one class's embeddings with each
method's picks, filmstrips of selected videos.

Figures are built on :class:`matplotlib.figure.Figure` directly (Agg canvas), never through
``pyplot``: no global figure state, no GUI backend, safe in workers and threads.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator
from sklearn.decomposition import PCA

from raydistill.report.filmstrip import filmstrip
from raydistill.report.tables import METRIC_LABELS, ResultRow, method_label, method_sort_key
from raydistill.selection import SELECTORS

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
BOUND_COLORS = {"full_real": "black", "full_synthetic": "tab:gray"}


def method_color(method: str) -> str:
    """A fixed colour per method, its selector's ``color``, the same in every figure (gray is
    kept for the bounds); C5 for an unknown method."""
    selector = SELECTORS.get(method)
    return selector.color if selector else "C5"


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """Render ``figure`` as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _set_vpc_axis(axis, vpcs: list[int]) -> None:
    """VPCs such as 1, 5, 10, 50 spread evenly on a log axis; ticks at the VPCs only."""
    if vpcs and max(vpcs) / min(vpcs) >= 10:
        axis.set_xscale("log")
    axis.xaxis.set_major_locator(FixedLocator(vpcs))
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticklabels([str(v) for v in vpcs])
    axis.set_xlabel("videos per class (VPC)")


def accuracy_vs_vpc_png(rows: list[ResultRow], bounds: list[ResultRow],
                        metric: str = "top1", chance: float | None = None) -> bytes:
    """Line plot of ``metric`` (percent) against VPC, one line per method with std error bars,
    each upper bound as a horizontal line with a ±std band, and ``chance`` (a fraction: what
    guessing scores) as a dotted line. Returns PNG bytes."""
    figure = Figure(figsize=(6.4, 4.2))
    axis = figure.add_subplot()
    vpcs = sorted({row.vpc for row in rows if metric in row.summary})
    for method in sorted({row.method for row in rows}, key=method_sort_key):
        points = sorted((row.vpc, *row.summary[metric]) for row in rows
                        if row.method == method and metric in row.summary)
        if points:
            x, mean, std = (np.asarray(column, float) for column in zip(*points))
            axis.errorbar(x, 100 * mean, yerr=100 * std, marker="o", capsize=3,
                          color=method_color(method), label=method_label(method))
    for bound in bounds:
        if metric in bound.summary and not math.isnan(bound.summary[metric][0]):
            mean, std = (100 * v for v in bound.summary[metric])
            color = BOUND_COLORS.get(bound.method, "tab:gray")
            axis.axhline(mean, color=color, linestyle="--", linewidth=1,
                         label=f"{method_label(bound.method)} ({mean:.2f})")
            axis.axhspan(mean - std, mean + std, color=color, alpha=0.12, linewidth=0)
    if chance is not None:
        axis.axhline(100 * chance, color="black", linestyle=":", linewidth=1,
                     label=f"chance ({100 * chance:.2f})")
    if vpcs:
        _set_vpc_axis(axis, vpcs)
    axis.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    return figure_png(figure)


def project_2d(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PCA of ``embeddings`` (n, D) onto two axes: ``(coordinates (n, 2), explained variance
    ratio (2,))``; axes that the data cannot span (n < 3 or D < 2) are zeros."""
    embeddings = np.asarray(embeddings, np.float64)
    components = min(2, embeddings.shape[0] - 1, embeddings.shape[1])
    coordinates, ratio = np.zeros((len(embeddings), 2)), np.zeros(2)
    if components >= 1:
        pca = PCA(n_components=components).fit(embeddings)
        coordinates[:, :components] = pca.transform(embeddings)
        ratio[:components] = np.nan_to_num(pca.explained_variance_ratio_)
    return coordinates, ratio


def pca_png(embeddings: np.ndarray, video_ids: list[str], picks: dict[str, list[str]],
            title: str) -> bytes:
    """Scatter of one class's videos (``embeddings`` (n, D), ``video_ids`` (n,)) on their first
    two principal components, with the videos each method picked (``picks``: method → video
    ids) marked on top. Returns PNG bytes."""
    coordinates, ratio = project_2d(embeddings)
    row_of = {video_id: i for i, video_id in enumerate(video_ids)}
    figure = Figure(figsize=(6.0, 5.0))
    axis = figure.add_subplot()
    axis.scatter(coordinates[:, 0], coordinates[:, 1], s=12, color="lightgray",
                 label=f"all videos ({len(video_ids)})")
    methods = sorted(picks, key=method_sort_key)
    for method, marker, size in zip(methods, itertools.cycle(MARKERS),
                                    itertools.count(110, -10)):
        rows = [row_of[v] for v in picks[method] if v in row_of]
        if rows:
            axis.scatter(coordinates[rows, 0], coordinates[rows, 1], marker=marker,
                         s=max(size, 30), facecolors="none", edgecolors=method_color(method),
                         linewidths=1.5,
                         label=f"{method_label(method)} ({len(rows)})")
    axis.set_xlabel(f"PC1 ({100 * ratio[0]:.1f} % of variance)")
    axis.set_ylabel(f"PC2 ({100 * ratio[1]:.1f} % of variance)")
    axis.set_title(title)
    axis.legend(fontsize=8, loc="best")
    return figure_png(figure)


def filmstrip_png(videos: list[np.ndarray], row_labels: list[str], title: str,
                  frames_per_video: int = 8, gap: int = 2) -> bytes:
    """Filmstrip of ``videos`` (each uint8 (T, H, W, 3), same H and W), one row per video
    labelled with ``row_labels``, frames sampled uniformly in time. Returns PNG bytes."""
    image = filmstrip(videos, frames_per_video=frames_per_video, gap=gap)
    height = videos[0].shape[1]
    # About one screen pixel per video pixel (at least 48 px a frame), plus room for the labels.
    zoom = max(1.0, 48 / height)
    figure = Figure(figsize=(image.shape[1] * zoom / 100 + 1.5,
                             image.shape[0] * zoom / 100 + 0.4))
    axis = figure.add_subplot()
    axis.imshow(image, interpolation="nearest")
    axis.set_yticks([row * (height + gap) + height / 2 for row in range(len(videos))])
    axis.set_yticklabels(row_labels, fontsize=8)
    axis.set_xticks([])
    axis.set_title(title, fontsize=10)
    for side in axis.spines.values():
        side.set_visible(False)
    return figure_png(figure, dpi=100)


def sweep_png(trials: list[dict], x: str, y: str | None, metric: str = "val_accuracy",
              title: str = "") -> bytes:
    """Accuracy over a parameter sweep: a heatmap with each cell's value when the trials form a
    grid over (``x``, ``y``), else a scatter coloured by ``metric``; a line for one parameter
    (``y`` None). ``trials`` are dicts holding ``x``, ``y`` and ``metric`` (a fraction, shown in
    percent; trials without it are left out). The best trial is circled. Returns PNG bytes."""
    done = [{**t, x: _axis_value(t.get(x)), **({y: _axis_value(t.get(y))} if y else {})}
            for t in trials if t.get(metric) is not None]
    figure = Figure(figsize=(5.6, 4.4))
    axis = figure.add_subplot()
    if not done:
        axis.text(0.5, 0.5, "no finished trial", ha="center", va="center")
        return figure_png(figure)
    best = max(done, key=lambda t: t[metric])
    if y is None:
        values = sorted({t[x] for t in done}, key=_sort_key)
        points = sorted((values.index(t[x]), 100 * t[metric]) for t in done)
        axis.plot([p[0] for p in points], [p[1] for p in points], "o-", color="C3")
        axis.plot([values.index(best[x])], [100 * best[metric]], "o", ms=14, mfc="none",
                  mec="black")
        axis.set_xticks(range(len(values)), [_tick(v) for v in values])
        axis.set_ylabel(f"{metric} (%)")
    else:
        xs = sorted({t[x] for t in done}, key=_sort_key)
        ys = sorted({t[y] for t in done}, key=_sort_key)
        cells = {(t[x], t[y]): 100 * t[metric] for t in done}
        if len(cells) == len(xs) * len(ys) == len(done):
            grid = np.array([[cells[(a, b)] for a in xs] for b in ys])
            image = axis.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
            for (row, col), value in np.ndenumerate(grid):
                axis.text(col, row, f"{value:.1f}", ha="center", va="center", color="white"
                          if value < grid.min() + 0.6 * (np.ptp(grid) or 1) else "black")
            axis.set_xticks(range(len(xs)), [_tick(v) for v in xs])
            axis.set_yticks(range(len(ys)), [_tick(v) for v in ys])
            axis.plot([xs.index(best[x])], [ys.index(best[y])], "o", ms=22, mfc="none",
                      mec="red", mew=2)
        elif all(isinstance(v, (int, float)) for v in xs + ys):
            image = axis.scatter([t[x] for t in done], [t[y] for t in done],
                                 c=[100 * t[metric] for t in done], cmap="viridis", s=60)
            axis.plot([best[x]], [best[y]], "o", ms=16, mfc="none", mec="red", mew=2)
        else:  # a random search over a text parameter: points on category positions
            image = axis.scatter([xs.index(t[x]) for t in done], [ys.index(t[y]) for t in done],
                                 c=[100 * t[metric] for t in done], cmap="viridis", s=60)
            axis.set_xticks(range(len(xs)), [_tick(v) for v in xs])
            axis.set_yticks(range(len(ys)), [_tick(v) for v in ys])
        figure.colorbar(image, ax=axis, label=f"{metric} (%)")
        axis.set_ylabel(y)
    axis.set_xlabel(x)
    axis.set_title(title or f"best {metric}: {100 * best[metric]:.1f} %")
    return figure_png(figure)


def _axis_value(value):
    """A swept value as a plot coordinate: numbers stay, lists and other values become text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return str(value)


def _sort_key(value) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _tick(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def confusion_png(matrix: np.ndarray, class_names: list[str], title: str) -> bytes:
    """Row-normalised confusion matrix (C, C) (rows: true class, columns: predicted; each row
    sums to 1, or 0 for a class without test videos) as a heatmap; class names on the axes up to
    30 classes. Returns PNG bytes."""
    classes = len(matrix)
    side = min(9.0, 2.5 + 0.22 * classes)
    figure = Figure(figsize=(side + 1.2, side))
    axis = figure.add_subplot()
    shown = axis.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04, label="share of the true class")
    if classes <= 30:
        names = [name if len(name) <= 18 else name[:17] + "…" for name in class_names]
        axis.set_xticks(range(classes), names, rotation=90, fontsize=7)
        axis.set_yticks(range(classes), names, fontsize=7)
    else:
        axis.set_xticks([])
        axis.set_yticks([])
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title, fontsize=10)
    return figure_png(figure)


def side_by_side_png(pairs: list[tuple[np.ndarray, np.ndarray]], row_labels: list[str],
                     frames: int = 4, gap: int = 2, middle: int = 12) -> bytes:
    """One row per class: ``frames`` frames of a real video, a white band, ``frames`` frames of
    a generated one (each uint8 (T, H, W, 3), all the same H and W), labelled ``row_labels``.
    Returns PNG bytes."""
    real = filmstrip([pair[0] for pair in pairs], frames_per_video=frames, gap=gap)
    generated = filmstrip([pair[1] for pair in pairs], frames_per_video=frames, gap=gap)
    band = np.full((real.shape[0], middle, 3), 255, np.uint8)
    image = np.concatenate([real, band, generated], axis=1)
    height = pairs[0][0].shape[1]
    zoom = max(1.0, 48 / height)
    figure = Figure(figsize=(image.shape[1] * zoom / 100 + 1.5, image.shape[0] * zoom / 100 + 0.5))
    axis = figure.add_subplot()
    axis.imshow(image, interpolation="nearest")
    axis.set_yticks([row * (height + gap) + height / 2 for row in range(len(pairs))])
    axis.set_yticklabels(row_labels, fontsize=8)
    axis.set_xticks([real.shape[1] / 2, real.shape[1] + middle + generated.shape[1] / 2],
                    ["real", "generated"], fontsize=9)
    axis.xaxis.tick_top()
    for side in axis.spines.values():
        side.set_visible(False)
    return figure_png(figure, dpi=100)
