"""Starting or joining Ray, the same way on a laptop, in a test and under ``ray job submit``."""

from __future__ import annotations

import os

import pyarrow.fs
import ray
import ray.train

from raydistill.runs import RunDir, is_local


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray at ``address`` (or ``$RAY_ADDRESS``, as ``ray job submit`` sets), else start
    a new local one (never silently attach to another Ray running on the machine).

    Does nothing when Ray is already initialised in this process (a test session, a job driver).
    ``num_cpus`` only applies when a new local Ray is started.
    """
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)


def cluster_cpus() -> float:
    """CPUs the connected Ray cluster advertises now."""
    return float(ray.cluster_resources().get("CPU", 0))


def failure_config(max_failures: int) -> ray.train.FailureConfig:
    """Ray Train's failure handling: ``max_failures`` restarts from the last checkpoint."""
    return ray.train.FailureConfig(max_failures=max_failures)


def fit_resuming(trainer, max_failures: int):
    """``trainer.fit()``, fitted again (resuming from its last checkpoint, as a rerun would)
    when Ray Train gives up because a worker died while its controller was starting or polling
    it: Ray Train 2.60 counts that as a controller error and does not retry it, whatever the
    ``FailureConfig`` (seen in benchmarks/chaos.py). At most ``max_failures`` times."""
    for attempt in range(max_failures + 1):
        try:
            return trainer.fit()
        except ray.train.ControllerError as error:
            died = isinstance(getattr(error, "controller_failure", None),
                              ray.exceptions.RayActorError)
            if not died or attempt == max_failures:
                raise
            print(f"a Ray Train worker died while its controller was talking to it; resuming "
                  f"from the last checkpoint ({attempt + 1} of {max_failures})", flush=True)


def arrow_filesystem(run: RunDir) -> pyarrow.fs.FileSystem | None:
    """The run's fsspec filesystem as pyarrow sees it (None for a local run: pyarrow's own),
    so Ray Data and Ray Train reach an S3 run with the run's retry settings."""
    return None if is_local(run.fs) else pyarrow.fs.PyFileSystem(
        pyarrow.fs.FSSpecHandler(run.fs))


def ray_storage(run: RunDir, *parts: str) -> tuple[str, pyarrow.fs.FileSystem | None]:
    """Ray Train / Tune ``(storage_path, storage_filesystem)`` for the run folder ``parts``
    (an absolute path for a local run: Ray workers run elsewhere)."""
    path = run.path(*parts)
    return (os.path.abspath(path) if is_local(run.fs) else path), arrow_filesystem(run)
