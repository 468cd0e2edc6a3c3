"""Quickstart: every stage that exists, end to end, on the generated toy dataset.

    python jobs/quickstart.py                      # local Ray, writes runs/quickstart/
    ray job submit --working-dir . -- python jobs/quickstart.py --run s3://bucket/quick

Starts a local Ray (or joins the one at --address / $RAY_ADDRESS). Rerunning skips finished
stages; --fresh deletes the run directory first.
"""

from __future__ import annotations

import argparse
import sys

from raydistill.config import RunConfig, from_dict
from raydistill.pipeline.run import run_command
from raydistill.runs import RunDir


def quickstart_config(run_dir: str, classes: int, train_per_class: int,
                      test_per_class: int) -> RunConfig:
    """The toy preset: 64² toy videos, 16-frame clips of 64² pixels."""
    return from_dict(RunConfig, {
        "run_dir": run_dir,
        "ingest": {"dataset": "toy", "toy": {"num_classes": classes,
                                             "train_per_class": train_per_class,
                                             "test_per_class": test_per_class}},
        "decode": {"num_frames": 16, "size": 64, "shard_size": 64},
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/quickstart", help="run directory, local or s3://")
    parser.add_argument("--classes", type=int, default=8, help="toy classes (2-8)")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--address", help="Ray address to join")
    parser.add_argument("--fresh", action="store_true", help="delete the run directory first")
    args = parser.parse_args(argv)

    def build():
        config = quickstart_config(args.run, args.classes, args.train_per_class,
                                   args.test_per_class)
        if args.fresh:
            run = RunDir(args.run)
            if run.fs.exists(run.root):
                run.fs.rm(run.root, recursive=True)
        return config, None

    code, run = run_command("quickstart", build, address=args.address)
    if run is not None:
        print(f"quickstart finished: {run.url}")
    return code

if __name__ == "__main__":
    sys.exit(main())
