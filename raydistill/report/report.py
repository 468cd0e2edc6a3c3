"""One ``report/report.md`` per run: run info, results in the paper's layout, upper bounds,
selection quality, figures, wall time per stage; plain Markdown beside PNG files, no server.

Every section renders from whatever the run holds so far: a missing stage or file becomes a note
in the report, never an exception.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raydistill.dataset_info import dataset_info
from raydistill.datasets.common import folder_name
from raydistill.layout import (EVAL_FOLDER, REPORT_FOLDER, SELECTION_FOLDER, SelectionKey,
                               embeddings_folder, is_rejects_file, method_settings_path,
                               parse_eval_path, parse_selection_path, pool_manifest,
                               selection_folder)
from raydistill.report.html import link_target, report_html
from raydistill.report.per_class import per_class_section
from raydistill.report.plots import (accuracy_vs_vpc_png, filmstrip_png, pca_png,
                                     side_by_side_png)
from raydistill.report.tables import (METRIC_LABELS, ResultRow, compare_with_random,
                                      comparison_table, evaluated_pools, fidelity_table,
                                      format_percent, headline_table, method_label,
                                      method_sort_key, markdown_code, markdown_table,
                                      markdown_text, pools_table, quality_rows, quality_table,
                                      result_rows, results_table, seed_values, stage_markers,
                                      stage_time_table, upper_bound_rows)
from raydistill.runs import RunDir, open_fs
from raydistill.selection.mae_score import OUT_OF_FOLD_SCORER
from raydistill.video import decode_clip

FILMSTRIP_FRAMES, FILMSTRIP_SIZE = 8, 64
HOW_TO_READ = (
    "**How to read.** Values are mean ± std over seeds, in percent, of a classifier trained on "
    "the selected videos and tested on the real test split (top-1/top-5 accuracy, macro "
    "one-vs-rest AUC, macro F1). Bold marks the best selection method of each VPC block; "
    "*Full real* and *Full syn* train on every real or every synthetic video and bound what a "
    "selection can reach. Coverage is lower-is-better, diversity higher-is-better.")
Selections = dict[tuple[str, int, int], str]  # (method, vpc, seed) → run-relative path


def write_report(run: RunDir, *, pool: str | None = None, vpc_for_plots: int | None = None,
                 max_filmstrip_classes: int = 8) -> str:
    """Write ``report/report.md``, its PNG figures under ``report/`` of ``run`` and
    ``report/report.html`` (the same report, self-contained: figures inlined), replacing an
    earlier report; returns the Markdown report's URI.

    ``pool`` (``synthetic`` or ``real``) defaults to the select stage's pool; ``vpc_for_plots``
    picks the selections drawn in the PCA and filmstrip figures (default: the largest VPC, first
    seed); filmstrips show the rank-0 pick of the first ``max_filmstrip_classes`` classes.
    """
    markers = stage_markers(run)
    pool = pool or choose_pool(run, markers)
    class_names = _summary(markers, "ingest").get("class_names") or []
    dataset = _settings(markers, "ingest").get("dataset")
    metric = "top5" if dataset_info(dataset).reports_top5 else "top1"
    rows, bounds = result_rows(run, pool), upper_bound_rows(run)
    sections = [
        run_info_section(run, markers, pool, rows + bounds, dataset, class_names),
        results_section(rows, bounds, _settings(markers, "generate").get("per_class"), metric),
        comparison_section(run, pool, metric),
        pools_section(run, metric),
        bounds_section(bounds),
        per_class_section(run, pool, rows, metric, class_names),
        fidelity_section(run, markers, class_names, bounds),
        quality_section(run, pool),
        overlap_section(run, pool),
        figures_section(run, pool, rows, bounds, metric, class_names, markers, vpc_for_plots,
                        max_filmstrip_classes),
        "## Wall time per stage\n\n" + (stage_time_table(markers) if markers else
                                        "_No stage has finished yet._"),
        HOW_TO_READ,
    ]
    text = "\n\n".join(section for section in sections if section) + "\n"
    run.write_bytes(f"{REPORT_FOLDER}/report.md", text.encode())
    title = f"raydistill report: {run.url.rstrip('/').rsplit('/', 1)[-1]}"
    page = report_html(text, lambda name: (run.read_bytes(f"{REPORT_FOLDER}/{name}")
                                           if run.exists(f"{REPORT_FOLDER}/{name}") else None),
                       title)
    run.write_bytes(f"{REPORT_FOLDER}/report.html", page.encode())
    return run.uri(f"{REPORT_FOLDER}/report.md")


def _summary(markers: dict, stage: str) -> dict:
    return (markers.get(stage) or {}).get("summary") or {}


def _settings(markers: dict, stage: str) -> dict:
    return (markers.get(stage) or {}).get("settings") or {}


def choose_pool(run: RunDir, markers: dict) -> str:
    """The select stage's pool, else the first pool with evaluations or selections, else
    ``synthetic`` (the paper's)."""
    if _settings(markers, "select").get("pool"):
        return _settings(markers, "select")["pool"]
    parsers = ((EVAL_FOLDER, parse_eval_path), (SELECTION_FOLDER, parse_selection_path))
    for folder, parse in parsers:
        keys = [parsed[0] for parsed in map(parse, run.list(folder)) if parsed is not None]
        pools = {key.pool for key in keys if isinstance(key, SelectionKey)}
        if pools:
            return "synthetic" if "synthetic" in pools else min(pools)
    return "synthetic"


# -- text sections -----------------------------------------------------------------------------

def run_info_section(run: RunDir, markers: dict, pool: str, rows: list[ResultRow],
                     dataset: str | None, class_names: list[str]) -> str:
    """Title and a list of what the run is: dataset, classes, pool, classifier, embedding."""
    classifiers = sorted({row.classifier for row in rows if row.classifier})
    embedding = _summary(markers, "select").get("embedding")
    lines = [f"# raydistill report: {dataset or 'unknown dataset'}", "",
             f"- Run: `{run.url}`",
             f"- Dataset: {dataset or 'unknown (no ingest marker)'}",
             f"- Classes: {len(class_names) if class_names else 'unknown'}",
             f"- Selection pool: {pool}",
             f"- Classifier: {', '.join(classifiers) or 'no evaluation yet'}"]
    if embedding:
        lines.append(f"- Selection embedding: {embedding}")
    selected = {method for method, _, _ in selection_files(run, pool)}
    methods = {row.method for row in rows} | selected
    settings = selector_settings(run, pool, methods)
    if settings:
        lines.append(f"- Selector settings (others at their defaults): {settings}")
    if "mae_score" in methods:
        lines.append(f"- MAE-Score ranks by: {markdown_text(mae_score_scorer(run, pool, markers))}")
    lines.append(f"- Written: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return "\n".join(lines)


def selector_settings(run: RunDir, pool: str, methods: set[str]) -> str:
    """The parameters each of ``methods`` selected the pool with, beside its defaults, from
    the record the select stage keeps per method (``selection/{pool}/{method}/settings.json``),
    as one Markdown line ("TAC-DT: `min_score` 0.8, `representative` score; …"); "" when
    every method ran at its defaults."""
    parts = []
    for method in sorted(methods, key=method_sort_key):
        record = method_settings_path(pool, method)
        params = run.read_json(record).get("params") if run.exists(record) else None
        if isinstance(params, dict) and params:
            parts.append(f"{markdown_text(method_label(method))}: " + ", ".join(
                f"{markdown_code(key)} "
                f"{markdown_text(value if isinstance(value, str) else json.dumps(value))}"
                for key, value in sorted(params.items())))
    return "; ".join(parts)


def mae_score_scorer(run: RunDir, pool: str, markers: dict) -> str:
    """What ``mae_score`` ranked the pool's videos by: the record the embed stage wrote beside
    the embeddings the selections used (``scorer.json``); for embeddings written before that
    record, the embedding model's head when every video has a score, else the out-of-fold
    logistic regression (what the select stage does)."""
    folder = embedding_folder(run, pool, markers)
    if folder is None:
        return "unknown (no embeddings of the pool)"
    if run.exists(f"{folder}/scorer.json"):
        return str(run.read_json(f"{folder}/scorer.json").get("mae_score"))
    scores = [pq.read_table(run.path(path), filesystem=run.fs, columns=["score"])
              .column("score").to_numpy(zero_copy_only=False)
              for path in embedding_shards(run, folder)]
    if scores and np.isfinite(np.concatenate(scores)).all():
        return f"the classifier head of the embedding model ({folder.split('/')[-1]})"
    return OUT_OF_FOLD_SCORER


def results_section(rows: list[ResultRow], bounds: list[ResultRow], full_syn_vpc: int | None,
                    metric: str) -> str:
    """The Table 4 layout (every metric per VPC block) and the Table 2 layout (``metric`` per
    method × VPC); a note when nothing was evaluated yet."""
    if not rows:
        return ("## Results\n\n_No selection has been evaluated yet (no "
                "`eval/{pool}/{method}/vpc={k}/seed={s}/metrics.json`); the selection quality "
                "below needs no classifier._")
    return "\n\n".join([
        "## Results", results_table(rows, bounds, full_syn_vpc),
        f"### {METRIC_LABELS[metric]} accuracy per VPC", headline_table(rows, bounds, metric)])


def bounds_section(bounds: list[ResultRow]) -> str:
    """The upper bounds with the number of training videos each used."""
    if not bounds:
        return "## Upper bounds\n\n_No upper bound evaluated yet (`eval/full_real`, " \
               "`eval/full_synthetic`)._"
    lines = ["## Upper bounds", ""]
    for bound in bounds:
        scores = ", ".join(f"{METRIC_LABELS[m]} {format_percent(*value, bound.seeds)}"
                           for m, value in bound.summary.items())
        videos = f", {bound.train_videos} training videos" if bound.train_videos else ""
        lines.append(f"- **{method_label(bound.method)}**: {scores} "
                     f"({bound.seeds} seeds{videos})")
    return "\n".join(lines)


def comparison_section(run: RunDir, pool: str, metric: str) -> str:
    """Each method's difference from random per VPC with a 95 % interval over paired seeds, or a
    note when there is nothing to compare."""
    comparisons = compare_with_random(seed_values(run, pool, metric))
    if not comparisons:
        return ("## Difference from random\n\n_Needs evaluated `random` selections and another "
                "method at the same VPC._")
    return "\n\n".join([
        "## Difference from random", comparison_table(comparisons, metric),
        "Seed *s* of a method and of random share the classifier's training seed, so the "
        "differences are paired by seed; the interval is Student's t over them. *Beyond seed "
        "noise* means the interval excludes 0."])


def fidelity_section(run: RunDir, markers: dict, class_names: list[str],
                     bounds: list[ResultRow]) -> str:
    """How many generated videos a classifier of the real training clips files under the class
    they were generated for (per class and overall), beside full synthetic; or a note."""
    folder = embedding_folder(run, "synthetic", markers)
    title = "## Class fidelity of the synthetic pool"
    if folder is None:
        return f"{title}\n\n_No embeddings of the synthetic pool yet._"
    labels, predicted = [], []
    for path in embedding_shards(run, folder):
        table = pq.read_table(run.path(path), filesystem=run.fs)
        if "predicted" not in table.column_names:
            return (f"{title}\n\n_`{folder}` was written before the embed stage recorded "
                    "predictions; embed again into a new run to see it._")
        labels += table.column("label").to_pylist()
        predicted += table.column("predicted").to_pylist()
    if not predicted or min(predicted) < 0:
        return (f"{title}\n\n_The embedding model (`{folder}`) has no classifier head naming the "
                "run's classes; set `embed.model` to a classifier of these classes (or leave it "
                "unset to train one on the real training clips) to measure fidelity._")
    full_syn = next((b for b in bounds if b.method == "full_synthetic"), None)
    scorer = (run.read_json(f"{folder}/scorer.json").get("scorer")
              if run.exists(f"{folder}/scorer.json") else None)
    note = (f"Classifier: {markdown_text(scorer)}." if scorer else
            f"Classifier: the embedding model of `{folder}`, trained on the real training clips "
            "or a classifier whose labels name the run's classes.")
    if full_syn and "top1" in full_syn.summary:
        note += (f" Beside it, full synthetic (a classifier trained on the whole pool, tested on "
                 "the real test split): "
                 f"{format_percent(*full_syn.summary['top1'], full_syn.seeds)} % top-1.")
    names = class_names or [str(label) for label in range(max(labels) + 1)]
    return "\n\n".join([title, fidelity_table(names, labels, predicted), note])


def pools_section(run: RunDir, metric: str) -> str:
    """The real pool's selections (a coreset of the real training videos) beside the synthetic
    pool's (the distilled set), when the run evaluated both; else nothing."""
    pools = evaluated_pools(run)
    if len(pools) < 2:
        return ""
    table = pools_table({pool: result_rows(run, pool) for pool in pools}, metric)
    return ("## Pools side by side\n\nThe same selectors picking from the real training videos "
            "(a coreset) and from the generated ones (the distilled set), each classifier "
            f"tested on the real test split:\n\n{table}")


def quality_section(run: RunDir, pool: str) -> str:
    """Coverage, diversity and balance of every selection of ``pool``, or a note."""
    rows = quality_rows(run, pool)
    table = quality_table(rows) if rows else f"_No selections of the {pool} pool yet._"
    return f"## Selection quality\n\n{table}"


# -- figures -----------------------------------------------------------------------------------

def figures_section(run: RunDir, pool: str, rows: list[ResultRow], bounds: list[ResultRow],
                    metric: str, class_names: list[str], markers: dict,
                    vpc_for_plots: int | None, max_classes: int) -> str:
    """Accuracy vs VPC, the PCA of one class, one filmstrip per method; notes for what is
    skipped."""
    parts = ["## Figures"]
    if rows:
        chance = chance_level(len(class_names), metric)
        _save_png(run, "accuracy_vs_vpc.png", accuracy_vs_vpc_png(rows, bounds, metric, chance))
        parts.append(f"{METRIC_LABELS[metric]} accuracy against VPC (error bars: std over "
                     "seeds; dashed: upper bounds; dotted: chance)."
                     "\n\n![accuracy vs VPC](accuracy_vs_vpc.png)")
    else:
        parts.append("_Accuracy vs VPC: nothing evaluated yet._")
    parts += generation_figures(run, class_names, max_classes)
    selections = selection_files(run, pool)
    if not selections:
        parts.append(f"_No selections of the {pool} pool: no PCA or filmstrip figure._")
        return "\n\n".join(parts)
    vpc, seed = plot_choice(selections, vpc_for_plots)
    chosen = {m: path for (m, k, s), path in selections.items() if (k, s) == (vpc, seed)}
    parts.append(f"Selections drawn below: VPC={vpc}, seed {seed}"
                 + (f" (VPC={vpc_for_plots} has none)." if vpc_for_plots not in (None, vpc)
                    else "."))
    parts.append(pca_figure(run, pool, chosen, class_names, markers))
    parts.append(filmstrip_figures(run, pool, chosen, class_names, max_classes))
    return "\n\n".join(parts)


def chance_level(classes: int, metric: str) -> float | None:
    """What guessing scores on ``classes`` balanced classes: 1/C top-1, min(5, C)/C top-5;
    None when the classes are unknown."""
    if classes <= 0:
        return None
    return (min(5, classes) if metric == "top5" else 1) / classes


def generation_figures(run: RunDir, class_names: list[str], max_classes: int) -> list[str]:
    """Links to the figures the fine-tuning and generation stages drew into ``report/``: the
    loss curve and the first ``max_classes`` classes' filmstrips of generated videos."""
    parts = []
    if run.exists(f"{REPORT_FOLDER}/finetune_loss.png"):
        parts.append("Fine-tuning loss (`finetune/loss.csv`).\n\n"
                     "![fine-tuning loss](finetune_loss.png)")
    strips = [(name, f"filmstrips/{folder_name(name)}.png") for name in class_names
              if run.exists(f"{REPORT_FOLDER}/filmstrips/{folder_name(name)}.png")]
    if strips:
        lines = [f"Generated videos, one filmstrip per class (first {max_classes} classes of "
                 f"{len(strips)}):"]
        lines += [f"**{markdown_text(name)}**\n\n![{markdown_text(name)}]({link_target(path)})"
                  for name, path in strips[:max_classes]]
        parts.append("\n\n".join(lines))
    side_by_side = real_vs_generated_figure(run, class_names, max_classes)
    if side_by_side:
        parts.append(side_by_side)
    return parts


def first_video_per_class(run: RunDir, relpath: str, split: str | None = None
                          ) -> dict[int, tuple[str, str]]:
    """``{label: (video_id, path)}`` of the first video (by id) of each class in a manifest
    (only ``split``'s rows when given); empty when the manifest is missing."""
    if not run.exists(relpath):
        return {}
    table = run.read_manifest(relpath)
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    first: dict[int, tuple[str, str]] = {}
    for video_id, label, path in sorted(zip(table.column("video_id").to_pylist(),
                                            table.column("label").to_pylist(),
                                            table.column("path").to_pylist())):
        first.setdefault(label, (video_id, path))
    return first


def real_vs_generated_figure(run: RunDir, class_names: list[str], max_classes: int) -> str:
    """``report/real_vs_generated.png``: for each of the first ``max_classes`` classes with
    both, the first real training video beside the first generated one; empty without
    generated videos; videos that cannot be shown are left out and noted."""
    generated = first_video_per_class(run, pool_manifest("synthetic"))
    real = first_video_per_class(run, pool_manifest("real"), split="train")
    labels = sorted(set(generated) & set(real))[:max_classes]
    if not labels:
        return ""
    clips: dict[str, np.ndarray | None] = {}
    skipped: dict[str, str] = {}
    pairs, row_labels = [], []
    for label in labels:
        shown = [_clip(video_id, {video_id: path}, clips, skipped)
                 for video_id, path in (real[label], generated[label])]
        if all(clip is not None for clip in shown):
            pairs.append(tuple(shown))
            row_labels.append(f"{label}: {_figure_text(_class_name(class_names, label))}")
    parts = []
    if pairs:
        _save_png(run, "real_vs_generated.png", side_by_side_png(pairs, row_labels))
        parts.append(f"Real and generated videos side by side (the first training video and "
                     f"the first generated video of {len(pairs)} classes)."
                     "\n\n![real vs generated](real_vs_generated.png)")
    if skipped:
        parts.append("_Left out of the side-by-side figure: " + "; ".join(
            f"{markdown_code(v)} ({markdown_text(why)})" for v, why in skipped.items()) + "._")
    return "\n\n".join(parts)


def overlap_section(run: RunDir, pool: str) -> str:
    """How many of each method's videos another method also picked, at each VPC (same seeds,
    averaged over them); nothing when fewer than two methods selected."""
    selections = selection_files(run, pool)
    methods = sorted({method for method, _, _ in selections}, key=method_sort_key)
    if len(methods) < 2:
        return ""
    ids = {key: set(run.read_table(path, columns=["video_id"]).column("video_id").to_pylist())
           for key, path in selections.items()}
    blocks = []
    for vpc in sorted({k for _, k, _ in selections}):
        seeds = sorted({s for _, k, s in selections if k == vpc})
        shares = overlap_shares(ids, methods, vpc, seeds)
        blocks.append(f"VPC={vpc} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''}):\n\n"
                      + overlap_table(methods, shares))
    return ("## Selection overlap\n\nShare of the row method's videos that the column method "
            "also picked, in percent (same seed, mean over seeds): methods that pick the same "
            "videos cannot differ in accuracy.\n\n" + "\n\n".join(blocks))


def overlap_shares(ids: dict, methods: list[str], vpc: int, seeds: list[int]
                   ) -> dict[tuple[str, str], float | None]:
    """``{(row, column): mean share}`` of the row method's selected ids that the column
    method's selection of the same seed also holds; None where no seed has both."""
    shares = {}
    for row in methods:
        for column in methods:
            values = [len(ids[(row, vpc, s)] & ids[(column, vpc, s)]) / len(ids[(row, vpc, s)])
                      for s in seeds if (row, vpc, s) in ids and (column, vpc, s) in ids
                      and ids[(row, vpc, s)]]
            shares[(row, column)] = float(np.mean(values)) if values else None
    return shares


def overlap_table(methods: list[str], shares: dict[tuple[str, str], float | None]) -> str:
    """A methods × methods Markdown table of :func:`overlap_shares` in percent."""
    body = [[method_label(row)] + [("—" if shares[(row, column)] is None
                                    else f"{100 * shares[(row, column)]:.0f}")
                                   for column in methods] for row in methods]
    return markdown_table(["Method", *map(method_label, methods)], body)


def _save_png(run: RunDir, name: str, data: bytes) -> None:
    run.write_bytes(f"{REPORT_FOLDER}/{name}", data)


def selection_files(run: RunDir, pool: str) -> Selections:
    """Every selection file of ``pool``, keyed by (method, VPC, seed)."""
    found = {}
    for path in run.list(selection_folder(pool), ".parquet"):
        parsed = parse_selection_path(path)
        if parsed is not None and parsed[1] == "selection":
            key = parsed[0]
            found[(key.method, key.vpc, key.seed)] = path
    return found


def plot_choice(selections: Selections, vpc: int | None) -> tuple[int, int]:
    """(VPC, seed) drawn in the figures: ``vpc`` when selected, else the largest; first seed."""
    vpcs = {k for _, k, _ in selections}
    vpc = vpc if vpc in vpcs else max(vpcs)
    return vpc, min(s for _, k, s in selections if k == vpc)


def embedding_shards(run: RunDir, folder: str) -> list[str]:
    """Run-relative paths of the embeddings shards under ``folder`` (not their rejects)."""
    return [path for path in run.list(folder, ".parquet")
            if "/shard-" in path and not is_rejects_file(path)]


def embedding_folder(run: RunDir, pool: str, markers: dict) -> str | None:
    """The embeddings folder of ``pool`` the selections used (else the first one), or None."""
    models = {p.split("/")[2] for p in embedding_shards(run, embeddings_folder(pool))}
    if not models:
        return None
    preferred = _summary(markers, "select").get("embedding")
    return embeddings_folder(pool, preferred if preferred in models else min(models))


def class_embeddings(run: RunDir, folder: str, label: int) -> tuple[list[str], np.ndarray]:
    """(video ids, embeddings (n, D)) of class ``label`` from every shard of ``folder``."""
    ids, parts = [], []
    for path in embedding_shards(run, folder):
        table = pq.read_table(run.path(path), filesystem=run.fs,
                              columns=["video_id", "label", "embedding"])
        table = table.filter(pc.equal(table["label"], label))
        if table.num_rows:
            ids += table.column("video_id").to_pylist()
            parts.append(table.column("embedding").combine_chunks().to_numpy_ndarray())
    return ids, (np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))


def pca_figure(run: RunDir, pool: str, chosen: dict[str, str], class_names: list[str],
               markers: dict) -> str:
    """PCA of the first selected class's embeddings with each method's picks, or a note."""
    folder = embedding_folder(run, pool, markers)
    if folder is None:
        return f"_No embeddings of the {pool} pool: PCA figure skipped._"
    tables = {method: run.read_table(path) for method, path in chosen.items()}
    labels = sorted({int(x) for t in tables.values() for x in t.column("label").to_pylist()})
    if not labels:
        return "_The selections are empty: PCA figure skipped._"
    label = labels[0]
    ids, embeddings = class_embeddings(run, folder, label)
    if not ids:
        return f"_No embeddings of class {label} in `{folder}`: PCA figure skipped._"
    picks = {method: [v for v, y in zip(t.column("video_id").to_pylist(),
                                        t.column("label").to_pylist()) if y == label]
             for method, t in tables.items()}
    name = _class_name(class_names, label)
    _save_png(run, f"pca_class_{label}.png",
              pca_png(embeddings, ids, picks,
                      f"class {label} ({_figure_text(name)}), {folder.split('/')[-1]}"))
    return (f"Embeddings of class {label} ({markdown_text(name)}) on their first two principal "
            "components; "
            f"markers: the videos each method picked.\n\n![PCA of class {label}]"
            f"(pca_class_{label}.png)")


def _class_name(class_names: list[str], label: int) -> str:
    return class_names[label] if 0 <= label < len(class_names) else str(label)


def _figure_text(text: str) -> str:
    """A dataset's name as plain text in a matplotlib figure (``$`` would start math mode)."""
    return " ".join(text.split()).replace("$", r"\$")


def pool_videos(run: RunDir, pool: str) -> dict[str, str]:
    """``{video_id: path}`` of the pool's manifest (empty when it is missing)."""
    relpath = pool_manifest(pool)
    if not run.exists(relpath):
        return {}
    table = run.read_manifest(relpath)
    return dict(zip(table.column("video_id").to_pylist(), table.column("path").to_pylist()))


def video_exists(path: str) -> bool:
    """Whether a local path or URL names an existing file (False when it cannot be asked)."""
    try:
        fs, stripped = open_fs(path)
        return fs.isfile(stripped)
    except Exception:  # an unreachable bucket or bad URL is as good as missing here
        return False


def filmstrip_figures(run: RunDir, pool: str, chosen: dict[str, str], class_names: list[str],
                      max_classes: int) -> str:
    """One filmstrip per method: the rank-0 pick of each of its first ``max_classes`` classes;
    videos that are missing or do not decode are skipped and listed in a note."""
    paths = pool_videos(run, pool)
    if not paths:
        return f"_No manifest of the {pool} pool: filmstrips skipped._"
    clips: dict[str, np.ndarray | None] = {}  # several methods often pick the same video
    skipped: dict[str, str] = {}
    parts = []
    for method in sorted(chosen, key=method_sort_key):
        table = run.read_table(chosen[method]).sort_by([("label", "ascending"),
                                                        ("rank", "ascending")])
        first = {}
        for video_id, label in zip(table.column("video_id").to_pylist(),
                                   table.column("label").to_pylist()):
            first.setdefault(label, video_id)
        videos, row_labels = [], []
        for label, video_id in list(first.items())[:max_classes]:
            clip = _clip(video_id, paths, clips, skipped)
            if clip is not None:
                videos.append(clip)
                row_labels.append(f"{label}: {_figure_text(_class_name(class_names, label))}")
        if videos:
            _save_png(run, f"selected_{method}.png",
                      filmstrip_png(videos, row_labels, method_label(method), FILMSTRIP_FRAMES))
            parts.append(f"**{method_label(method)}**, first pick per class\n\n"
                         f"![{method_label(method)} picks](selected_{method}.png)")
        else:
            parts.append(f"_{method_label(method)}: no selected video could be shown._")
    if skipped:
        listed = "; ".join(f"{markdown_code(v)} ({markdown_text(why)})"
                           for v, why in list(skipped.items())[:10])
        more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        noun = "video" if len(skipped) == 1 else "videos"
        parts.append(f"_Skipped {len(skipped)} {noun}: {listed}{more}._")
    return "\n\n".join(parts)


def _clip(video_id: str, paths: dict[str, str], clips: dict, skipped: dict) -> np.ndarray | None:
    """The decoded clip of ``video_id`` (cached), or None with the reason in ``skipped``."""
    if video_id not in clips:
        path = paths.get(video_id)
        clips[video_id] = None
        if path is None:
            skipped[video_id] = "not in the manifest"
        elif not video_exists(path):
            skipped[video_id] = "file missing"
        else:
            try:
                clips[video_id] = decode_clip(path, FILMSTRIP_FRAMES, FILMSTRIP_SIZE)
            except Exception as error:  # any decoder failure at the file boundary: note it
                skipped[video_id] = f"does not decode: {str(error)[:80]}"
    return clips[video_id]
