"""Sweep a selector's parameters by validation accuracy with Ray Tune (``jobs/tune_lambdas.py``).

One trial is one point of the search space: the selector (any of ``SELECTORS``, through its
scikit-learn parameters: VST-UNet's ``lambda_div`` / ``lambda_rep``, TAC-DT's ``n_components`` /
``threshold_factor``, …) picks ``vpc`` videos per class from the run's pool → the evaluation
classifier (``evaluate`` section: C3D, its preset and training settings) trains on them → top-1
on a **validation split carved from the real training set** (``val_per_class`` videos per class,
chosen by ``val_seed``; never the test split). The trial reports the validation accuracy every
``report_every`` epochs, so ASHA stops poor trials early.

Outputs under ``tune/{pool}/{method}/vpc={k}/``: ``trials.parquet`` (one row per trial: its
point, validation accuracy, epochs reached, status), ``best.json``, ``best.yaml`` (a config
fragment ``select.params.{method}`` to pass to a job with ``--config``), ``sweep.png`` (accuracy
over the first two swept parameters), ``settings.json`` and Tune's own experiment folder
``ray/``. Rerunning the same sweep resumes it (finished trials are kept, unfinished ones start
again); a different sweep in the same folder is refused.

When the pool is the real one, the validation videos are left out of the pool, so no trial
selects a video it is then validated on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raydistill.classify import build_classifier, classification_metrics, fit_classifier
from raydistill.classify.training import predict
from raydistill.config import SWEEP_SEARCHES, ConfigError, from_dict
from raydistill.config import RunConfig as RaydistillConfig
from raydistill.embedding.scorer import embeddings_name
from raydistill.layout import MANIFEST, sweep_folder
from raydistill.pipeline import vst
from raydistill.pipeline.cluster import ray_storage
from raydistill.pipeline.embed import read_embeddings
from raydistill.pipeline.evaluate import (classifier_settings, ensure_synthetic_clips, load_clips,
                                          settings_from_dict)
from raydistill.pipeline.select import pool_arrays
from raydistill.report.plots import sweep_png
from raydistill.runs import RunDir
from raydistill.selection import SELECTORS, make_selector
from raydistill.tracking import mlflow_uri, tracking_target

log = logging.getLogger(__name__)

METRIC = "val_accuracy"
DEFAULT_SPACES: dict[str, dict[str, list]] = {
    # The paper's values (0 / 0.1 at VPC 1; 0.1 / 1 at VPC 5 and 10) lie on this grid.
    "vst_unet": {"lambda_div": [0.0, 0.1, 0.5, 1.0], "lambda_rep": [0.0, 0.1, 0.5, 1.0]},
    "tac_dt": {"n_components": [8, 16, 32], "threshold_factor": [0.25, 0.5, 1.0]},
}


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep and how.

    ``space`` maps a selector parameter to its values: for ``search="grid"`` every listed value
    (the trials are the product); for ``random`` / ``optuna`` / ``hyperopt`` two numbers are a
    range (integers: ``randint``, inclusive), other lists a choice, and ``num_samples`` trials are
    drawn. ``params`` are fixed selector parameters, over the run's ``select.params[method]``.
    ``epochs`` None takes the evaluate section's. ``trial_cpus`` / ``trial_gpus``: resources of
    one trial (it selects and trains in-process on them).
    """

    method: str = "vst_unet"
    vpc: int = 1
    space: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    search: str = "grid"
    num_samples: int = 1
    val_per_class: int = 10
    val_seed: int = 0
    seed: int = 0
    epochs: int | None = None
    report_every: int = 1
    asha: bool = True
    grace_period: int = 1
    trial_cpus: float = 1.0
    trial_gpus: float = 0.0
    max_concurrent: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.method in SELECTORS, "method",
             f"unknown method {self.method!r}; choose from {', '.join(sorted(SELECTORS))}"),
            (self.vpc >= 1, "vpc", "must be >= 1"),
            (self.search in SWEEP_SEARCHES, "search",
             f"choose one of {', '.join(SWEEP_SEARCHES)}"),
            (self.num_samples >= 1, "num_samples", "must be >= 1"),
            (self.val_per_class >= 1, "val_per_class", "must be >= 1"),
            (self.epochs is None or self.epochs >= 1, "epochs", "must be >= 1"),
            (self.report_every >= 1 and self.grace_period >= 1, "report_every",
             "report_every and grace_period must be >= 1"),
            (self.trial_cpus > 0 and self.trial_gpus >= 0, "trial_cpus",
             "trial_cpus must be > 0 and trial_gpus >= 0"),
            (self.max_concurrent is None or self.max_concurrent >= 1, "max_concurrent",
             "must be >= 1"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise ConfigError(f"{name}: {message}")
        for name, values in self.swept().items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"space.{name}: expected a non-empty list of values")
            if self.search != "grid" and _is_range(values) is None and len(values) < 2:
                raise ConfigError(f"space.{name}: give [low, high] or at least two choices")

    def swept(self) -> dict[str, list]:
        """The space, or the method's default space when none is given."""
        return dict(self.space) or dict(DEFAULT_SPACES.get(self.method, {}))


def _is_range(values: list) -> tuple[float, float] | None:
    """``(low, high)`` when ``values`` is two increasing numbers, else None."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(values) == 2 and len(numbers) == 2 and numbers[0] < numbers[1]:
        return numbers[0], numbers[1]
    return None


def carve_validation(video_ids: list[str], labels: np.ndarray, per_class: int,
                     seed: int) -> np.ndarray:
    """Mask (n,) bool of the validation videos: ``per_class`` of each class (at most all but one,
    so every class keeps a training video), drawn by ``seed`` from the class's videos in id
    order — the same split whatever order the rows come in."""
    labels = np.asarray(labels)
    order = np.argsort(np.asarray(video_ids, dtype=object), kind="stable")
    mask = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        rows = order[labels[order] == label]
        take = min(per_class, len(rows) - 1)
        rng = np.random.default_rng([seed, int(label)])
        mask[rows[rng.permutation(len(rows))[:take]]] = True
    return mask


def search_space(config: SweepConfig) -> dict:
    """Tune's ``param_space`` of the sweep."""
    space = {}
    for name, values in config.swept().items():
        if config.search == "grid":
            space[name] = tune.grid_search(values)
        elif (bounds := _is_range(values)) is not None:
            ints = all(isinstance(v, int) for v in values)
            space[name] = (tune.randint(bounds[0], bounds[1] + 1) if ints
                           else tune.uniform(*bounds))
        else:
            space[name] = tune.choice(values)
    return space


def search_algorithm(config: SweepConfig):
    """Optuna's or HyperOpt's searcher (ConfigError naming the missing package), else None."""
    if config.search == "optuna":
        try:
            from ray.tune.search.optuna import OptunaSearch
            return OptunaSearch(seed=config.seed)
        except (ImportError, AssertionError):
            raise ConfigError("search: optuna is not installed (pip install optuna)") from None
    if config.search == "hyperopt":
        try:
            from ray.tune.search.hyperopt import HyperOptSearch
            return HyperOptSearch(random_state_seed=config.seed)
        except (ImportError, AssertionError):
            raise ConfigError("search: hyperopt is not installed (pip install hyperopt)") from None
    return None


def fixed_params(config: SweepConfig, run_config: RaydistillConfig) -> dict:
    """The selector parameters every trial shares: the run's ``select.params`` for the method,
    then the sweep's ``params``."""
    return {**run_config.select.params.get(config.method, {}), **config.params}


def check_sweep(config: SweepConfig, run_config: RaydistillConfig) -> None:
    """ConfigError naming a swept or fixed parameter the selector does not have, and a space
    that grids into nothing, before any work."""
    known = set(SELECTORS[config.method]().get_params()) - {"n_per_class", "random_state"}
    fixed = fixed_params(config, run_config)
    for group, names in (("space", config.swept()), ("params", fixed)):
        for name in names:
            if name not in known:
                raise ConfigError(f"{group}.{name}: not a parameter {config.method} can sweep "
                                  f"(it has {', '.join(sorted(known))})")
    if not config.swept():
        raise ConfigError(f"space: {config.method} has no default space; give one")


# -- the data every trial shares --------------------------------------------------------------

def sweep_data(run: RunDir, config: SweepConfig, run_config: RaydistillConfig) -> dict:
    """The pool (X, y, scores, ids, clip split) without the validation videos, and the validation
    clips and labels."""
    pool = run_config.select.pool
    manifest = run.read_table(MANIFEST, columns=["video_id", "label", "split"])
    train = manifest.filter(pc.equal(manifest["split"], "train"))
    train_ids = train.column("video_id").to_pylist()
    val_mask = carve_validation(train_ids, np.asarray(train.column("label").to_pylist()),
                                config.val_per_class, config.val_seed)
    val_ids = [video_id for video_id, held in zip(train_ids, val_mask) if held]
    if config.method == vst.METHOD:
        X, y, ids = vst.pool_latents(run, pool)
        scores = None
    else:
        model_name = run_config.select.embedding or embeddings_name(run_config.embed)
        table = read_embeddings(run, pool, model_name)
        X, y, scores = pool_arrays(table)
        ids = np.asarray(table.column("video_id").to_pylist(), dtype=object)
    if pool == "real":
        keep = ~np.isin(ids, np.asarray(val_ids, dtype=object))
        X, y, ids = X[keep], y[keep], ids[keep]
        scores = None if scores is None else scores[keep]
    else:
        ensure_synthetic_clips(run, run_config)
    val_clips, val_labels = load_clips(run, "train", val_ids)
    return {"X": X, "y": y, "scores": scores, "ids": ids, "val_clips": val_clips,
            "val_labels": val_labels, "clip_split": "train" if pool == "real" else "synthetic"}


# -- one trial ----------------------------------------------------------------------------------

def run_trial(point: dict, *, run_url: str, sweep: dict, fixed: dict, classifier: dict,
              training: dict, num_classes: int, data: dict) -> None:
    """Tune function trainable: select at ``point``, train the classifier, report
    ``val_accuracy`` (and ``epoch``, ``train_loss``) every ``report_every`` epochs."""
    config = from_dict(SweepConfig, sweep)
    device = "cuda" if config.trial_gpus > 0 and torch.cuda.is_available() else "cpu"
    params = {**fixed, **point}
    if config.method == vst.METHOD:
        params.setdefault("device", device)
    selector = make_selector(config.method, n_per_class=config.vpc, random_state=config.seed,
                             **params)
    selector.fit(data["X"], data["y"], data["scores"])
    chosen = [data["ids"][i] for i in selector.selected_indices_]
    clips, labels = load_clips(RunDir(run_url), data["clip_split"], chosen)
    settings = dataclasses.replace(settings_from_dict(training), seed=config.seed)
    if config.epochs is not None:
        settings = dataclasses.replace(settings, epochs=config.epochs)
    torch.manual_seed(config.seed)
    model = build_classifier(classifier["name"], num_classes, classifier["frames"],
                             classifier["size"], **classifier["options"]).to(device)

    def on_epoch(entry: dict) -> None:
        if entry["epoch"] % config.report_every and entry["epoch"] < settings.epochs:
            return
        probabilities = predict(model, data["val_clips"])
        accuracy = classification_metrics(data["val_labels"], probabilities,
                                          labels=np.arange(num_classes))["top1"]
        tune.report({METRIC: accuracy, "epoch": entry["epoch"], "train_loss": entry["loss"],
                     "selected": len(chosen)})
        model.train()

    fit_classifier(model, clips, labels, settings, on_epoch=on_epoch)


# -- the sweep ----------------------------------------------------------------------------------

def check_settings(run: RunDir, folder: str, settings: dict) -> None:
    """Record the sweep's settings; refuse a different sweep in the same folder."""
    path = f"{folder}/settings.json"
    if not run.exists(path):
        run.write_json(path, settings)
    elif run.read_json(path) != json.loads(json.dumps(settings)):
        raise ConfigError(f"{run.uri(folder)} holds a sweep with other settings "
                          f"({run.read_json(path)}); delete that folder or pass --fresh")


def tracking_callbacks(target: dict | None, folder: str) -> list:
    """Tune's logger callback for the run's tracker (:func:`raydistill.tracking.tracking_target`;
    none without one): TensorBoard event files in each trial's folder under ``folder/ray/``
    (Tune writes them by default too), one MLflow run per trial in the run's experiment, or one
    W&B run per trial grouped by the sweep's folder."""
    if target is None:
        return []
    if target["tracker"] == "tensorboard":
        from ray.tune.logger import TBXLoggerCallback
        return [TBXLoggerCallback()]
    if target["tracker"] == "mlflow":
        from ray.air.integrations.mlflow import MLflowLoggerCallback
        return [MLflowLoggerCallback(tracking_uri=mlflow_uri(target["uri"]),
                                     experiment_name=target["experiment"],
                                     tags={"raydistill.sweep": folder})]
    from ray.air.integrations.wandb import WandbLoggerCallback
    return [WandbLoggerCallback(project=target["experiment"], group=folder, dir=target["uri"])]


def make_tuner(run: RunDir, folder: str, trainable, config: SweepConfig,
               callbacks: list | None = None) -> tune.Tuner:
    """A new Tuner for the sweep (with Tune's logger ``callbacks``), or the interrupted one
    restored from ``folder/ray``."""
    path, filesystem = ray_storage(run, folder)
    experiment = f"{path.rstrip('/')}/ray"
    if tune.Tuner.can_restore(experiment, storage_filesystem=filesystem):
        if callbacks:
            log.warning("tune: an interrupted sweep resumes with the logger callbacks it was "
                        "started with; the tracker given now applies to new sweeps")
        return tune.Tuner.restore(experiment, trainable, resume_errored=True,
                                  storage_filesystem=filesystem)
    scheduler = None
    if config.asha:
        epochs_reported = math.ceil((config.epochs or 1) / config.report_every)
        scheduler = ASHAScheduler(time_attr="training_iteration",
                                  max_t=max(epochs_reported, config.grace_period),
                                  grace_period=config.grace_period)
    return tune.Tuner(
        trainable, param_space=search_space(config),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", scheduler=scheduler, search_alg=search_algorithm(config),
            num_samples=1 if config.search == "grid" else config.num_samples,
            max_concurrent_trials=config.max_concurrent),
        run_config=tune.RunConfig(name="ray", storage_path=path, storage_filesystem=filesystem,
                                  verbose=0, callbacks=callbacks))


def trial_rows(results, names: list[str]) -> list[dict]:
    """One row per trial, ordered by point: its point, last validation accuracy, epochs reached,
    status."""
    rows = []
    for result in results:
        metrics = result.metrics or {}
        row = {name: result.config.get(name) for name in names}
        row.update({METRIC: metrics.get(METRIC), "epoch": metrics.get("epoch"),
                    "status": "error" if result.error else "ok",
                    "error": (str(result.error).splitlines() or [""])[0][:300]
                    if result.error else ""})
        rows.append(row)
    # In point order, so that among equally good trials the best is the same on every rerun.
    return sorted(rows, key=lambda row: [_order_key(row[name]) for name in names])


def _order_key(value) -> tuple:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if numeric else (1, 0, repr(value))


def run_sweep(run: RunDir, run_config: RaydistillConfig, config: SweepConfig) -> dict:
    """Run (or resume) the sweep and write its outputs; returns the best trial's summary
    (``params``, ``val_accuracy``, paths)."""
    started = time.time()
    check_sweep(config, run_config)
    pool = run_config.select.pool
    folder = sweep_folder(pool, config.method, config.vpc)
    spec, training = classifier_settings(run_config.evaluate)
    epochs = config.epochs or training.epochs
    config = dataclasses.replace(config, epochs=epochs)
    sweep = dataclasses.asdict(config)
    embedding = run_config.select.embedding or embeddings_name(run_config.embed)
    check_settings(run, folder, {"sweep": sweep, "classifier": spec,
                                 "training": dataclasses.asdict(training),
                                 "fixed": fixed_params(config, run_config),
                                 "embedding": None if config.method == vst.METHOD else embedding})
    data = sweep_data(run, config, run_config)
    num_classes = len(run.stage_summary("ingest")["class_names"])
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, run_url=run.url, sweep=sweep,
                             fixed=fixed_params(config, run_config), classifier=spec,
                             training=dataclasses.asdict(training), num_classes=num_classes,
                             data=data),
        {"cpu": config.trial_cpus, "gpu": config.trial_gpus})
    callbacks = tracking_callbacks(tracking_target(run_config), folder)
    results = make_tuner(run, folder, trainable, config, callbacks).fit()
    names = list(config.swept())
    rows = trial_rows(results, names)
    finished = [row for row in rows if row["status"] == "ok" and row[METRIC] is not None]
    if not finished:
        raise RuntimeError(f"tune: every trial failed; first error: {rows[0]['error']}")
    # A trial ASHA stopped early competes with its accuracy at an earlier epoch: those that
    # trained longest come first.
    best = max(finished, key=lambda row: (row["epoch"] or 0, row[METRIC]))
    params = {name: best[name] for name in names}
    summary = {"method": config.method, "vpc": config.vpc, "pool": pool, "params": params,
               METRIC: best[METRIC], "epochs": best["epoch"], "trials": len(rows),
               "failed": len(rows) - len(finished),
               "validation_videos": len(data["val_labels"]),
               "seconds": round(time.time() - started, 2)}
    write_outputs(run, folder, rows, summary, {**fixed_params(config, run_config), **params})
    return {**summary, "folder": run.uri(folder)}


def write_outputs(run: RunDir, folder: str, rows: list[dict], summary: dict,
                  best_params: dict) -> None:
    """``trials.parquet``, ``best.json``, ``best.yaml`` and ``sweep.png`` of a sweep."""
    run.write_table(f"{folder}/trials.parquet", pa.Table.from_pylist(rows))
    run.write_json(f"{folder}/best.json", summary)
    fragment = {"select": {"params": {summary["method"]: best_params}}}
    run.write_bytes(f"{folder}/best.yaml", yaml.safe_dump(fragment, sort_keys=False).encode())
    names = list(summary["params"])
    title = (f"{summary['method']}, VPC {summary['vpc']}: best validation top-1 "
             f"{100 * summary[METRIC]:.1f} %")
    run.write_bytes(f"{folder}/sweep.png",
                    sweep_png(rows, names[0], names[1] if len(names) > 1 else None, METRIC,
                              title))
