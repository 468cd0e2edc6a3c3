"""The driver of ``jobs/tune_lambdas.py``: check the run and every sweep before any work, then
run one sweep per VPC (:func:`raydistill.pipeline.tune.run_sweep`) holding the run's lease."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.compute as pc

from raydistill.config import ConfigError, from_dict, with_overrides
from raydistill.config import RunConfig as RaydistillConfig
from raydistill.embedding.scorer import embeddings_name
from raydistill.layout import MANIFEST, SYNTHETIC_MANIFEST, embeddings_folder, sweep_folder
from raydistill.pipeline import vst
from raydistill.pipeline.cluster import init_ray
from raydistill.pipeline.shards import shard_files
from raydistill.pipeline.stages import requirements
from raydistill.pipeline.tune import SweepConfig, carve_validation, check_sweep, run_sweep
from raydistill.runs import RunDir
from raydistill.tracking import tracking_target


def sweep_run_config(run: RunDir, method: str, pool: str | None) -> RaydistillConfig:
    """The run's saved config (with ``select.pool`` = ``pool`` when given); ConfigError when
    the run lacks a stage or the embeddings the sweep's selector needs."""
    if not run.exists("config.yaml"):
        raise ConfigError(f"run: {run.url} holds no run (no config.yaml); run the pipeline "
                          "up to the embed stage first")
    run_config = run.load_config()
    overrides = {"select": {"methods": [method], **({"pool": pool} if pool else {})}}
    run_config = with_overrides(run_config, overrides)
    for stage in requirements("select", run_config):
        if not run.is_done(stage):
            raise ConfigError(f"run: the sweep of {method} needs the {stage} stage of {run.url} "
                              f"first (`raydistill run --run {run.url} --stages {stage}`)")
    if method != vst.METHOD:
        pool = run_config.select.pool
        model = run_config.select.embedding or embeddings_name(run_config.embed)
        if not shard_files(run, embeddings_folder(pool, model)):
            raise ConfigError(f"pool: {run.url} holds no {model} embeddings of the {pool} pool; "
                              f"run `raydistill embed --run {run.url} --pool {pool}` first")
    return run_config


def pool_class_counts(run: RunDir, run_config: RaydistillConfig,
                      val_per_class: int, val_seed: int) -> dict[int, int]:
    """Videos per class of the pool a sweep selects from (the real pool without its
    validation videos), from the manifests alone."""
    if run_config.select.pool == "synthetic":
        labels = run.read_table(SYNTHETIC_MANIFEST, columns=["label"]).column("label").to_pylist()
    else:
        manifest = run.read_table(MANIFEST, columns=["video_id", "label", "split"])
        train = manifest.filter(pc.equal(manifest["split"], "train"))
        labels = np.asarray(train.column("label").to_pylist())
        held = carve_validation(train.column("video_id").to_pylist(), labels, val_per_class,
                                val_seed)
        labels = labels[~held].tolist()
    return {label: labels.count(label) for label in set(labels)}


def check_pool(counts: dict[int, int], config: SweepConfig, pool: str) -> None:
    """ConfigError when the pool is empty or its smallest class has fewer videos than VPC."""
    if not counts:
        raise ConfigError(f"pool: the {pool} pool is empty")
    if config.vpc > min(counts.values()):
        raise ConfigError(f"vpc: {config.vpc} is more than the {min(counts.values())} videos "
                          f"of the smallest class of the {pool} pool (after the validation "
                          "split)")


def tune_command(run_url: str, sweep: dict, vpcs: list[int], pool: str | None = None,
                 address: str | None = None, fresh: bool = False,
                 dry_run: bool = False, tracker: str | None = None) -> list[dict]:
    """Check the run and every sweep, then run one sweep per VPC (``sweep`` holds the
    :class:`SweepConfig` fields but ``vpc``) holding the run's lease; returns each sweep's
    best-trial summary, or the planned sweeps for ``dry_run`` (nothing written, no Ray).
    ``tracker`` overrides the run's ``tracking.tracker`` for the sweeps' logger callbacks."""
    run = RunDir(run_url)
    configs = [from_dict(SweepConfig, {**sweep, "vpc": vpc}) for vpc in vpcs]
    run_config = sweep_run_config(run, configs[0].method, pool)
    if tracker:
        run_config = with_overrides(run_config, {"tracking": {"tracker": tracker}})
    tracking_target(run_config)  # a missing package or location stops here
    counts = pool_class_counts(run, run_config, configs[0].val_per_class, configs[0].val_seed)
    for config in configs:
        check_sweep(config, run_config)
        check_pool(counts, config, run_config.select.pool)
    folders = [sweep_folder(run_config.select.pool, c.method, c.vpc) for c in configs]
    if dry_run:
        return [{"folder": run.uri(folder), "method": c.method, "vpc": c.vpc,
                 "space": c.swept(), "search": c.search, "trials": _planned_trials(c)}
                for folder, c in zip(folders, configs)]
    init_ray(address)
    with run.lease():
        if fresh:
            for folder in folders:
                if run.exists(folder):
                    run.fs.rm(run.path(folder), recursive=True)
        return [run_sweep(run, run_config, config) for config in configs]


def _planned_trials(config: SweepConfig) -> int:
    if config.search != "grid":
        return config.num_samples
    return math.prod(len(values) for values in config.swept().values())
