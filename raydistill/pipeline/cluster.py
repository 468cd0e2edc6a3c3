"""Starting or joining Ray, the same way on a laptop, in a test and under ``ray job submit``."""

from __future__ import annotations

import os

import ray
import ray.train


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
    """Ray Train's failure handling for ``max_failures`` restarts from the last checkpoint.

    A worker that dies while its group is starting is reported as a controller error, which
    Ray Train 2.60 does not retry by default (seen in benchmarks/chaos.py: a worker killed right
    after a restart ended the run); the same budget covers both.
    """
    return ray.train.FailureConfig(max_failures=max_failures,
                                   controller_failure_limit=max_failures)
