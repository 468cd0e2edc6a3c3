"""Starting or joining Ray, the same way on a laptop, in a test and under ``ray job submit``."""

from __future__ import annotations

import logging
import os

import pyarrow.fs
import ray
import ray.train
from ray.core.generated import gcs_pb2
from ray.util.placement_group import PlacementGroup

from raydistill.pipeline.resources import workers_use_gpu
from raydistill.runs import RunDir, is_local

log = logging.getLogger(__name__)


TRAIN_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
LOCAL_TRAIN_POLL_S = "0.2"
"""Seconds between Ray Train's checks of its workers on a local Ray this module starts (a
cluster keeps its own setting)."""


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
        # Ray Train's controller looks at its workers every 2 s by default, so every training
        # ended waits up to 2 s more, and a small run trains many times (10 s → 5.4 s per
        # one-step fit measured). The local Ray's processes inherit this environment.
        os.environ.setdefault(TRAIN_POLL_ENV, LOCAL_TRAIN_POLL_S)
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 runtime_env={"worker_process_setup_hook":
                              "raydistill.quiet_logs.quiet_without_dashboard"})


def cluster_cpus() -> float:
    """CPUs the connected Ray cluster advertises now."""
    return float(ray.cluster_resources().get("CPU", 0))


def train_on_gpu(use_gpu: bool | None) -> bool:
    """:func:`~raydistill.pipeline.resources.workers_use_gpu` of the connected cluster."""
    return workers_use_gpu(use_gpu, ray.cluster_resources().get("GPU", 0))


def failure_config(max_failures: int) -> ray.train.FailureConfig:
    """Ray Train's failure handling: ``max_failures`` restarts from the last checkpoint."""
    return ray.train.FailureConfig(max_failures=max_failures)


def fit_resuming(trainer, max_failures: int):
    """``trainer.fit()``, fitted again (resuming from its last checkpoint, as a rerun would)
    when Ray Train gives up because a worker died while its controller was starting or polling
    it: Ray Train 2.60 counts that as a controller error and does not retry it, whatever the
    ``FailureConfig`` (seen in benchmarks/chaos.py). At most ``max_failures`` times.

    Before fitting again, the placement groups the failed attempt left behind are removed:
    Ray frees a group when its creator job ends, and this driver's job goes on, so on a small
    cluster the refit would otherwise wait forever for the CPUs the dead attempt still holds
    (seen in benchmarks/chaos.py: a 2-CPU node, both CPUs reserved, training stuck 80 min)."""
    for attempt in range(max_failures + 1):
        before = job_placement_groups()
        try:
            return trainer.fit()
        except ray.train.ControllerError as error:
            died = isinstance(getattr(error, "controller_failure", None),
                              ray.exceptions.RayActorError)
            if not died or attempt == max_failures:
                raise
            released = remove_placement_groups(job_placement_groups() - before)
            log.info(f"a Ray Train worker died while its controller was talking to it; resuming "
                     f"from the last checkpoint ({attempt + 1} of {max_failures}; "
                     f"{released} placement groups of the failed attempt removed)")


def job_placement_groups() -> set[str]:
    """Hex ids of the placement groups this driver's job (or an actor of it, such as a Ray
    Train controller) created and Ray has not removed. Reads the GCS table directly: the public
    ``placement_group_table`` does not say which job created a group."""
    job = ray.get_runtime_context().get_job_id()
    accessor = ray._private.state.state._connect_and_get_accessor()
    groups = set()
    for raw in accessor.get_placement_group_table():
        entry = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if (entry.creator_job_id.hex() == job and not entry.is_detached
                and entry.state != gcs_pb2.PlacementGroupTableData.REMOVED):
            groups.add(entry.placement_group_id.hex())
    return groups


def remove_placement_groups(group_ids: set[str]) -> int:
    """Remove the placement groups ``group_ids`` (hex ids); returns how many were removed."""
    for group_id in group_ids:
        ray.util.remove_placement_group(
            PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_id))))
    return len(group_ids)


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
