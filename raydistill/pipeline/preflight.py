"""The checks a run makes before it writes anything; the dry run makes the same ones.

:func:`preflight` raises :class:`~raydistill.config.ConfigError` naming the field (or the
stage, or the path) for the first problem; the cluster's resources are judged afterwards, once
Ray is up (:mod:`raydistill.pipeline.resources`).
"""

from __future__ import annotations

from raydistill.config import ConfigError, RunConfig
from raydistill.pipeline.stages import STAGES, named, requirements
from raydistill.runs import RunDir, is_local, open_fs


def preflight(config: RunConfig, names: list[str] | tuple[str, ...]) -> RunDir:
    """Every check before stages ``names`` of ``config``'s run start; returns the run directory
    (nothing written).

    In order: the dataset root and the run directory's bucket exist; every stage's own
    validation (whichever stages run now: a bad setting of a later stage stops the run before
    the first); each stage of ``names`` has its required stages finished or run before it; no
    frozen field of ``config.yaml`` changes (:meth:`RunDir.check_unfrozen`); and each stage of
    ``names`` accepts what the run holds now (``Stage.check_inputs``).
    """
    stages = named(names)
    validate_paths(config)
    for stage in STAGES:
        if stage.validate is not None:
            stage.validate(config)
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


def validate_paths(config: RunConfig) -> None:
    """Check that the dataset root exists, and the bucket of a remote run directory.

    Raises :class:`ConfigError` naming the field, before any work starts.
    """
    root = config.ingest.root
    if root is not None and config.ingest.dataset != "toy":  # toy: where it will be generated
        fs, path = _open(root, "ingest.root")
        if not _exists(fs, path, "ingest.root", root):
            raise ConfigError(f"ingest.root: {root} does not exist")
    fs, path = _open(config.run_dir, "run_dir")
    if not is_local(fs):  # a local run directory is created; a bucket must exist already
        bucket = path.split("/")[0]
        if not _exists(fs, bucket, "run_dir", config.run_dir):
            raise ConfigError(f"run_dir: bucket {bucket!r} of {config.run_dir} does not exist")
    elif fs.exists(path) and not fs.isdir(path):
        raise ConfigError(f"run_dir: {config.run_dir} is a file, not a directory")


def _exists(fs, path: str, field_name: str, url: str) -> bool:
    """``fs.exists(path)``; ConfigError naming the field when the storage cannot be asked (wrong
    credentials, an endpoint that does not answer)."""
    try:
        return fs.exists(path)
    except Exception as error:  # s3fs / botocore raise many types; each means "cannot reach"
        raise ConfigError(f"{field_name}: cannot reach {url}: {type(error).__name__}: "
                          f"{error}") from None


def _open(url: str, field: str):
    try:
        return open_fs(url)
    except (ValueError, ImportError) as error:
        raise ConfigError(f"{field}: cannot open {url} ({error})") from None
