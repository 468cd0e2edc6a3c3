"""A Ray Train fit that failed with a controller error is fitted again, and the placement groups
its dead attempt left behind are freed first (otherwise the refit waits for their CPUs)."""

import pytest
import ray
import ray.train
from ray.util.placement_group import placement_group, placement_group_table

from raydistill.pipeline.cluster import fit_resuming, job_placement_groups


class TrainerWhoseControllerDies:
    """Stands in for a TorchTrainer: each failing ``fit`` reserves a placement group (as Ray
    Train's worker group does) and ends with the controller error Ray Train 2.60 raises when a
    worker dies under its controller; the next ``fit`` needs more than one of the node's 2 CPUs."""

    def __init__(self, failures: int):
        self.failures, self.groups = failures, []

    def fit(self):
        if len(self.groups) < self.failures:
            group = placement_group([{"CPU": 1}])
            ray.get(group.ready(), timeout=30)
            self.groups.append(group)
            raise ray.train.ControllerError(ray.exceptions.RayActorError())
        larger = placement_group([{"CPU": 1.5}])
        ray.get(larger.ready(), timeout=30)  # times out while a dead attempt holds a CPU
        ray.util.remove_placement_group(larger)
        return "fitted"


def _state(group) -> str:
    return placement_group_table(group)["state"]


def test_refit_after_controller_error_frees_the_dead_attempts_placement_groups(ray_cluster):
    kept = placement_group([{"CPU": 0.01}])  # made before the fit: not the fit's to free
    ray.get(kept.ready(), timeout=30)
    trainer = TrainerWhoseControllerDies(failures=2)
    try:
        assert fit_resuming(trainer, max_failures=3) == "fitted"
        assert [_state(group) for group in trainer.groups] == ["REMOVED", "REMOVED"]
        assert _state(kept) == "CREATED"
        assert kept.id.hex() in job_placement_groups()
    finally:
        ray.util.remove_placement_group(kept)


def test_refit_gives_up_after_max_failures_and_other_errors_are_not_retried(ray_cluster):
    trainer = TrainerWhoseControllerDies(failures=2)
    try:
        with pytest.raises(ray.train.ControllerError):
            fit_resuming(trainer, max_failures=1)
        assert len(trainer.groups) == 2
    finally:  # the last attempt's group is left to the job's end: free it for later tests
        for group in trainer.groups:
            ray.util.remove_placement_group(group)

    class BrokenTrainer:
        calls = 0

        def fit(self):
            self.calls += 1
            raise ray.train.ControllerError(ValueError("a bug, not a dead worker"))

    broken = BrokenTrainer()
    with pytest.raises(ray.train.ControllerError):
        fit_resuming(broken, max_failures=5)
    assert broken.calls == 1
