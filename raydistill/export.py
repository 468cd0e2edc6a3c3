"""Export one selection of a run as a dataset of its own: the product of a run, ready to train on.

``raydistill export --run RUN --method tac_dt --vpc 5 --seed 0 --to DIR`` writes, local or
``s3://``::

    DIR/{class}/{video_id}.mp4   the selected videos, one folder per class
    DIR/metadata.csv             file_name, label, video_id, rank, score, seed, source (the
                                 path or URL it was copied from)
    DIR/README.md                the dataset card: source dataset, method, VPC, seed, pool,
                                 the models that made it, the accuracy ``evaluate`` measured

``datasets.load_dataset("videofolder", data_dir=DIR)`` reads it (``label`` a class-name column,
one row per video). Pure I/O, no Ray: it runs on a laptop against a run on S3.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

from raydistill.classify.metrics import METRIC_NAMES
from raydistill.config import ConfigError, RunConfig
from raydistill.datasets.common import folder_name
from raydistill.datasets.manifest import pool_videos
from raydistill.layout import (SelectionKey, eval_metrics_path, parse_selection_path,
                               pool_manifest, selection_folder, selection_path)
from raydistill.report.tables import (METRIC_LABELS, format_percent, method_label,
                                      result_rows, upper_bound_rows)
from raydistill.runs import RunDir, open_fs, write_bytes_atomic

METADATA_FIELDS = ("file_name", "label", "video_id", "rank", "score", "seed", "source")


@dataclass(frozen=True)
class Exported:
    """What an export wrote: where, how many videos in how many classes."""

    url: str
    videos: int
    classes: int


def export_selection(run: RunDir, key: SelectionKey, to: str) -> Exported:
    """Copy the videos of selection ``key`` of ``run`` into ``to`` (a folder that does not exist
    or is empty, local or ``s3://``) in class folders, with ``metadata.csv`` and ``README.md``.

    Raises :class:`ConfigError` naming the flag: no such selection (the run's selections are
    listed), a destination that holds files or cannot be opened. A video that cannot be read
    (``OSError``) stops the export and removes what it had written.
    """
    config = run.load_config()  # ConfigError naming the run when there is none
    rows = selected_videos(run, key)
    fs, root = destination(to)
    written: list[str] = []
    try:
        metadata = []
        for row in rows:
            name = f"{folder_name(row['class_name'])}/{row['video_id']}{_suffix(row['path'])}"
            source_fs, source_path = open_fs(row["path"])
            write_bytes_atomic(fs, f"{root}/{name}", source_fs.cat_file(source_path))
            written.append(f"{root}/{name}")
            metadata.append({"file_name": name, "label": row["class_name"],
                             "video_id": row["video_id"], "rank": row["rank"],
                             "score": row["score"], "seed": key.seed, "source": row["path"]})
        write_bytes_atomic(fs, f"{root}/metadata.csv", metadata_csv(metadata))
        written.append(f"{root}/metadata.csv")
        card = dataset_card(run, config, key, len(rows), len({row["class_name"] for row in rows}))
        write_bytes_atomic(fs, f"{root}/README.md", card.encode())
    except BaseException:  # a video that cannot be read: leave the folder as it was, empty
        for path in written:
            fs.rm_file(path)
        raise
    return Exported(to, len(rows), len({row["class_name"] for row in rows}))


def selected_videos(run: RunDir, key: SelectionKey) -> list[dict]:
    """The rows of selection ``key`` (``video_id, label, rank, score``) with ``class_name``
    and the ``path`` to open, by class then rank. ConfigError when the run has no such
    selection, or it selects a video the pool's manifest does not list."""
    relpath = selection_path(key.pool, key.method, key.vpc, key.seed)
    if not run.exists(relpath):
        held = sorted(parsed[0] for parsed in map(parse_selection_path,
                                                  run.list(selection_folder(key.pool)))
                      if parsed is not None and parsed[1] == "selection")
        listing = ", ".join(f"{k.method} --vpc {k.vpc} --seed {k.seed}" for k in held[:12])
        raise ConfigError(f"--method/--vpc/--seed: no selection {run.uri(relpath)}; the "
                          f"{key.pool} pool holds: {listing or 'none'}")
    selection = run.read_table(relpath, columns=["video_id", "label", "rank", "score"])
    by_id = pool_videos(run, key.pool)
    rows = []
    for row in selection.to_pylist():
        if row["video_id"] not in by_id:
            raise ConfigError(f"--method/--vpc/--seed: {run.uri(relpath)} selects "
                              f"{row['video_id']!r}, which {run.uri(pool_manifest(key.pool))} "
                              "does not list")
        path, name = by_id[row["video_id"]]
        rows.append({**row, "class_name": name, "path": run.resolve(path)})
    return sorted(rows, key=lambda row: (row["label"], row["rank"]))


def destination(to: str):
    """``(filesystem, path)`` of export folder ``to``; ConfigError naming ``--to`` when it
    cannot be opened or already holds files (an export never overwrites)."""
    try:
        fs, root = open_fs(to)
        taken = fs.exists(root) and bool(fs.find(root))
    except (ValueError, ImportError, OSError) as error:
        raise ConfigError(f"--to: cannot open {to} ({error})") from None
    if taken:
        raise ConfigError(f"--to: {to} already holds files; export into a new or empty folder")
    return fs, root


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1] or ".mp4"


def metadata_csv(rows: list[dict]) -> bytes:
    """``metadata.csv`` of an export: :data:`METADATA_FIELDS`, one row per video."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=METADATA_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue().encode()


def dataset_card(run: RunDir, config: RunConfig, key: SelectionKey, videos: int,
                 classes: int) -> str:
    """The export's ``README.md`` for selection ``key`` of ``run`` (made with ``config``):
    Hugging Face card metadata, then what the set is, how it was made and how well a
    classifier trained on it did."""
    source = config.ingest.dataset
    pool_words = ("generated by the run's fine-tuned Latte" if key.pool == "synthetic"
                  else "real training videos (a coreset)")
    lines = ["---", "task_categories:", "- video-classification", "tags:",
             "- dataset-distillation", "- raydistill", f"- {source}", "---", "",
             f"# {method_label(key.method)} selection of {source}, {key.vpc} video(s) per class",
             "",
             f"{videos} videos in {classes} classes: {pool_words}, {key.vpc} per class, picked "
             f"by {method_label(key.method)} (seed {key.seed}) from the {key.pool} pool of the "
             f"raydistill run `{run.url}`.", "", "## How it was made", "",
             *made_with(config, key), "", "## How well it trains a classifier", "",
             *accuracy_lines(run, key), "", "## Files", "",
             "- `{class}/{video_id}.mp4`: the videos, one folder per class",
             "- `metadata.csv`: `file_name`, `label` (class name), `video_id`, `rank` (0 = the "
             "method's first pick in its class), `score`, `seed`, `source` (where the video was "
             "copied from)", "",
             "Load it with `datasets.load_dataset(\"videofolder\", data_dir=...)`."]
    return "\n".join(lines) + "\n"


def made_with(config: RunConfig, key: SelectionKey) -> list[str]:
    """The card's list of what made the selection: dataset, generator, embedding, selector."""
    lines = [f"- Source dataset: {config.ingest.dataset}"
             + (f" (split {config.ingest.split})" if config.ingest.split else "")]
    if key.pool == "synthetic":
        finetune, generate = config.finetune, config.generate
        lines += [f"- Generator: class-conditional Latte ({finetune.architecture}), fine-tuned "
                  f"{finetune.steps} steps from {finetune.model or 'scratch'}; VAE "
                  f"{config.latents.vae or 'trained in the run'}",
                  f"- Sampling: {generate.scheduler}, {generate.steps} steps, guidance "
                  f"{generate.guidance:g}, {generate.per_class} videos per class generated"]
    embedding = config.select.embedding or config.embed.model or (
        f"the run's own {config.embed.run_classifier} classifier")
    params = config.select.params.get(key.method) or {}
    lines += [f"- Embedding: {embedding}",
              f"- Selector: {method_label(key.method)} (`{key.method}`)"
              + (f" with {params}" if params else " with its defaults")]
    return lines


def accuracy_lines(run: RunDir, key: SelectionKey) -> list[str]:
    """The card's accuracy: this seed's classifier, the mean over the run's seeds of the
    method at this VPC, and the upper bounds; a note when ``evaluate`` has not run."""
    metrics_path = eval_metrics_path(key.name)
    if not run.exists(metrics_path):
        return ["Not measured yet: run `raydistill evaluate` on the run "
                f"(`{metrics_path}` is missing)."]
    metrics = run.read_json(metrics_path)
    classifier = metrics.get("classifier") or "classifier"
    shown = [name for name in METRIC_NAMES if metrics.get(name) is not None]
    lines = [f"A {classifier} trained on these videos alone, tested on the real test split: "
             + ", ".join(f"{METRIC_LABELS[name]} {100 * metrics[name]:.2f} %" for name in shown)
             + "."]
    same = [row for row in result_rows(run, key.pool)
            if row.method == key.method and row.vpc == key.vpc]
    rows = same + upper_bound_rows(run)
    if rows:
        lines += ["", "| Trained on | Seeds | "
                  + " | ".join(f"{METRIC_LABELS[m]} (%)" for m in shown) + " |",
                  "|---|---:|" + "---:|" * len(shown)]
        for row in rows:
            label = (f"{method_label(row.method)}, VPC {row.vpc}" if row.vpc else
                     method_label(row.method))
            cells = [format_percent(*row.summary[m], row.seeds) if m in row.summary else "—"
                     for m in shown]
            lines.append(f"| {label} | {row.seeds} | " + " | ".join(cells) + " |")
    return lines
