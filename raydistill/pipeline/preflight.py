"""The checks a run makes before it writes anything; the dry run makes the same ones.

:func:`preflight` raises :class:`~raydistill.config.ConfigError` naming the field (or the
stage, or the path) for the first problem; the cluster's resources are judged afterwards, once
Ray is up (:mod:`raydistill.pipeline.resources`).
"""

from __future__ import annotations

from raydistill.config import ConfigError, RunConfig
from raydistill.pipeline.stage import open_url, url_exists
from raydistill.pipeline.stages import STAGES, named, requirements
from raydistill.runs import RunDir, is_local
from raydistill.tracking import tracking_target


def preflight(config: RunConfig, names: list[str] | tuple[str, ...]) -> RunDir:
    """Every check before stages ``names`` of ``config``'s run start; returns the run directory
    (nothing written).

    In order: every stage's own validation (``Stage.validate``, whichever stages run now: a bad
    setting of a later stage stops the run before the first; the dataset root exists); the
    tracker's package and location (:func:`~raydistill.tracking.tracking_target`); the run
    directory can be one (a local folder, or an existing bucket); each stage of ``names`` has
    its required stages finished or run before it; no frozen field of ``config.yaml`` changes
    (:meth:`RunDir.check_unfrozen`); and each stage of ``names`` accepts what the run holds now
    (``Stage.check_inputs``).
    """
    stages = named(names)
    for stage in STAGES:
        if stage.validate is not None:
            stage.validate(config)
    tracking_target(config)
    validate_run_dir(config)
    run = RunDir(config.run_dir)
    check_order(run, config, list(names))
    run.check_unfrozen(config)
    for stage in stages:
        if stage.check_inputs is not None:
            stage.check_inputs(run, config)
    return run


def check_order(run: RunDir, config: RunConfig, names: list[str]) -> None:
    """Refuse a stage whose required stages are neither finished nor run before it now."""
    for position, name in enumerate(names):
        for earlier in requirements(name, config):
            if earlier not in names[:position] and not run.is_done(earlier):
                raise ConfigError(f"stages: {name} needs the {earlier} stage of {run.url} "
                                  f"first (`raydistill run --run {run.url}` runs what is "
                                  "missing)")


def validate_run_dir(config: RunConfig) -> None:
    """Check that the run directory can be one: a local path that is not a file, or a bucket
    that exists (a local run directory is created; a bucket must exist already). Raises
    :class:`ConfigError` naming ``run_dir``."""
    fs, path = open_url(config.run_dir, "run_dir")
    if not is_local(fs):
        bucket = path.split("/")[0]
        if not url_exists(fs, bucket, "run_dir", config.run_dir):
            raise ConfigError(f"run_dir: bucket {bucket!r} of {config.run_dir} does not exist")
    elif fs.exists(path) and not fs.isdir(path):
        raise ConfigError(f"run_dir: {config.run_dir} is a file, not a directory")
