"""Ray Data's gap between an actor's calls, by the number of inputs queued at each actor.

    python benchmarks/actor_gap.py

One actor (0.5 CPU) whose UDF sleeps 10 ms, over 20 one-row blocks, under a local Ray of 2 CPUs,
for ``max_tasks_in_flight_per_actor`` 2 (Ray Data's default), 4, 8 and 16: the median gap between
one call's end and the next call's start, and the actor's busy share. Behind
``shards.ACTOR_TASKS_IN_FLIGHT`` (benchmarks/BENCHMARKS.md, "Ray Data actors' busy share").
"""

from __future__ import annotations

import time

import numpy as np
import ray
from ray.data import ActorPoolStrategy

SLEEP_S = 0.01
BLOCKS = 20


class Sleeper:
    """An actor UDF that sleeps and returns when it started and ended."""

    def __call__(self, batch: dict) -> dict:
        started = time.time()
        time.sleep(SLEEP_S)
        return {"started": [started], "ended": [time.time()]}


def measure(in_flight: int) -> tuple[float, float]:
    """(median gap between calls in ms, busy share) with ``in_flight`` inputs per actor."""
    items = [{"x": np.zeros((8, 8, 32, 32, 3), np.uint8)} for _ in range(BLOCKS)]
    dataset = ray.data.from_items(items, override_num_blocks=BLOCKS)
    dataset.context.op_resource_reservation_enabled = False
    rows = dataset.map_batches(Sleeper, batch_size=1, num_cpus=0.5, compute=ActorPoolStrategy(
        min_size=1, max_size=1, initial_size=1, max_tasks_in_flight_per_actor=in_flight),
    ).take_all()
    started = np.sort([row["started"] for row in rows])
    ended = np.sort([row["ended"] for row in rows])
    busy = float((ended - started).sum() / (ended[-1] - started[0]))
    return 1000 * float(np.median(started[1:] - ended[:-1])), busy


def main() -> None:
    """Print one line per in-flight setting."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    for in_flight in (2, 4, 8, 16):
        gap_ms, busy = measure(in_flight)
        print(f"in flight {in_flight:2d}: median gap {gap_ms:.1f} ms, busy {busy:.2f}")


if __name__ == "__main__":
    main()
