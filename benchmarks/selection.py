"""Selection benchmark: TAC-DT on a Kinetics-sized pool, fan-out over Ray tasks vs a loop.

    python benchmarks/selection.py [--classes 400] [--per-class 100] [--dim 1408] [--repeats 3]

The pool is random but clustered (each class: a few Gaussian modes of unequal size in 1408-d,
the size of VideoMAE-V2-g embeddings, plus outliers). Times, median of ``--repeats``:
- the sequential per-class loop in this process (``select_classes`` over every class), with
  BLAS at one thread (as each Ray task runs) and at the library default;
- the fan-out (``fan_out``: the pool put once in the object store, classes grouped into tasks),
  on a local Ray with every CPU, Ray start-up excluded;
and checks that both give identical selections. Prints a Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import ray
from threadpoolctl import threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from raydistill.pipeline.select import fan_out, prepared_scores, select_classes  # noqa: E402


def clustered_pool(classes: int, per_class: int, dim: int, seed: int = 0):
    """(X (classes·per_class, dim) float32, y) with 2-6 modes per class and 3 % outliers."""
    rng = np.random.default_rng(seed)
    X = np.empty((classes * per_class, dim), np.float32)
    for c in range(classes):
        modes = rng.normal(0, 1, (rng.integers(2, 7), dim)) * 3
        weights = rng.dirichlet(np.ones(len(modes)))
        which = rng.choice(len(modes), per_class, p=weights)
        block = modes[which] + rng.normal(0, 1, (per_class, dim))
        outliers = rng.random(per_class) < 0.03
        block[outliers] = rng.normal(0, 6, (outliers.sum(), dim))
        X[c * per_class:(c + 1) * per_class] = block
    return X, np.repeat(np.arange(classes), per_class)


def timed(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def same(a: dict, b: dict) -> bool:
    return all(np.array_equal(a[job][label][0], b[job][label][0])
               for job in a for label in a[job])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1408)
    parser.add_argument("--vpc", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    X, y = clustered_pool(args.classes, args.per_class, args.dim)
    jobs = [("tac_dt", k, 0) for k in args.vpc]
    prepared = prepared_scores(jobs, {}, X, y, None)
    labels = list(range(args.classes))

    def sequential():
        return select_classes(X, y, prepared, labels, jobs, {})

    with threadpool_limits(1):
        loop_one_thread, reference = timed(sequential, args.repeats)
    loop_default, _ = timed(sequential, args.repeats)

    temp_dir = tempfile.mkdtemp(prefix="rdbench", dir="/tmp")
    ray.init(address="local", include_dashboard=False, _temp_dir=temp_dir,
             log_to_driver=False, object_store_memory=1_500_000_000)
    cpus = int(ray.cluster_resources()["CPU"])
    fan_out(X[:args.per_class * 2], y[:args.per_class * 2], {job: None for job in jobs}, jobs,
            {})  # warm the workers up
    fanned_time, fanned = timed(lambda: fan_out(X, y, prepared, jobs, {}), args.repeats)
    ray.shutdown()

    identical = same(reference, fanned)
    print(f"pool {args.classes} classes × {args.per_class} videos × {args.dim}-d; "
          f"tac_dt at VPC {args.vpc}; {cpus} CPUs ({platform.processor() or platform.machine()})")
    print(f"sequential loop, 1 BLAS thread : {loop_one_thread:.2f} s")
    print(f"sequential loop, default BLAS  : {loop_default:.2f} s")
    print(f"Ray fan-out ({cpus} CPUs)         : {fanned_time:.2f} s "
          f"(speed-up {loop_one_thread / fanned_time:.2f}× over the 1-thread loop, "
          f"{loop_default / fanned_time:.2f}× over the default loop)")
    print(f"identical selections: {identical}")
    print(f"| {time.strftime('%Y-%m-%d')} | {args.classes}×{args.per_class}×{args.dim} | "
          f"{len(jobs)} | {loop_one_thread:.2f} | {loop_default:.2f} | {fanned_time:.2f} | "
          f"{loop_one_thread / fanned_time:.2f}× | {identical} |")
    if not identical:
        sys.exit(1)


if __name__ == "__main__":
    main()
