"""Chaos run: the toy pipeline under random worker kills, injected S3 errors and driver kills
must finish with the same results as a clean run. Prints the kills survived and the time cost.

Three runs of the same small quickstart config (every stage, every selector):

1. **clean**: in-process, on a local run directory — the reference and the baseline time;
2. **workers + storage**: in-process, with the run directory on S3 (a moto server on loopback)
   behind a proxy that answers a share ``--io-error-rate`` of the requests with 503 SlowDown /
   500 InternalError, while a monkey SIGKILLs a random Ray worker process of this session (Ray
   Train workers, Ray Data map workers and actors, selection tasks) every ``--kill-every``
   seconds on average (30 by default: evaluate checkpoints every classifier epoch and needs
   time between kills to advance);
3. **driver kills**: ``jobs/quickstart.py`` as a subprocess, SIGKILLed with the local Ray it
   started at every stage boundary and in the middle of every stage, rerun each time until it
   finishes.

Each chaotic run's results (manifest, clips, latents, models, videos, embeddings, selections,
metrics) are compared file by file with the clean run's (``tests/fingerprint.py``).

    python benchmarks/chaos.py                          # all three
    python benchmarks/chaos.py --skip-driver --kill-every 15 --io-error-rate 0.1
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "jobs"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fingerprint import differences, fingerprint, unreadable_files  # noqa: E402
from killing import ray_workers, run_until, session_raylet_pid  # noqa: E402

SIZE = {"classes": 4, "train_per_class": 8, "test_per_class": 4, "steps": 60, "per_class": 6,
        "seeds": 1, "eval_epochs": 4}
KILLABLE = ("RayTrainWorker", "MapWorker", "MapBatches", "select_classes", "train_alone")
STAGES = ("ingest", "decode", "latents", "finetune", "generate", "embed", "select", "evaluate",
          "report")


def chaos_config(run_dir: str):
    """The quickstart's smoke config at SIZE (every stage and selector, short auxiliary
    trainings), with checkpoints every step / epoch and room for many worker restarts."""
    from quickstart import quickstart_config

    from raydistill.config import with_overrides

    config = quickstart_config(run_dir, SIZE["classes"], SIZE["train_per_class"],
                               SIZE["test_per_class"], SIZE["steps"], SIZE["per_class"],
                               SIZE["seeds"], SIZE["eval_epochs"], smoke=True)
    return with_overrides(config, {
        "finetune": {"max_failures": 50, "checkpoint_every": 5},
        "select": {"max_failures": 50, "checkpoint_every": 1},
        "evaluate": {"max_failures": 50, "checkpoint_every": 1}})


class Monkey(threading.Thread):
    """SIGKILLs a random killable worker of this Ray session at exponential intervals of mean
    ``every`` seconds; ``kills`` counts them by worker role."""

    def __init__(self, every: float, seed: int = 0):
        super().__init__(daemon=True)
        self.every, self.random = every, random.Random(seed)
        self.raylet = session_raylet_pid()
        self.kills: Counter = Counter()
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.random.expovariate(1 / self.every)):
            candidates = [(role, p) for role in KILLABLE for p in ray_workers(self.raylet, role)]
            if not candidates:
                continue
            role, process = self.random.choice(candidates)
            try:
                process.kill()
                self.kills[role] += 1
            except Exception:  # noqa: BLE001 - it ended by itself meanwhile
                pass


def run_in_process(run_dir: str) -> float:
    """Seconds to run every stage of the chaos config in this process's Ray."""
    from raydistill.pipeline.run import run_stages

    started = time.perf_counter()
    run_stages(chaos_config(run_dir))
    return time.perf_counter() - started


def s3_copy(url: str, local: str) -> None:
    """Download an S3 run directory (to fingerprint it)."""
    from raydistill.runs import RunDir

    run = RunDir(url)
    run.fs.invalidate_cache()
    run.fs.get(run.root + "/", local + "/", recursive=True)


def start_s3():
    """A moto server behind a fault-injecting proxy (no faults yet), with bucket ``chaos``; the
    AWS_* variables point this process and the Ray started after it at the proxy."""
    import boto3
    from faulty_s3 import FaultyS3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto = f"http://{host}:{port}"
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    boto3.client("s3", endpoint_url=moto).create_bucket(Bucket="chaos")
    proxy = FaultyS3(moto, rate=0.0, seed=1).start()
    os.environ["AWS_ENDPOINT_URL"] = proxy.endpoint
    return server, proxy


def workers_and_storage(folder: str, reference: dict, proxy, kill_every: float,
                        io_error_rate: float, clean_seconds: float) -> dict:
    """Run 2; returns its figures."""
    proxy.rate = io_error_rate
    monkey = Monkey(kill_every)
    monkey.start()
    try:
        seconds = run_in_process("s3://chaos/run")
    finally:
        monkey.stop_event.set()
        monkey.join()
        proxy.rate = 0.0
    local = os.path.join(folder, "chaos-s3-copy")
    s3_copy("s3://chaos/run", local)
    diff = differences(reference, fingerprint(local, aliases=("s3://chaos/run",)))
    return {"seconds": seconds, "overhead": seconds / clean_seconds - 1,
            "kills": dict(monkey.kills), "io_errors": proxy.injected,
            "requests": proxy.requests, "differences": diff}


def driver_kills(folder: str, reference: dict, clean_seconds: float) -> dict:
    """Run 3: SIGKILL the quickstart driver at every boundary and in the middle of every stage."""
    run = Path(folder) / "driver-kills"
    flags = ["--classes", str(SIZE["classes"]), "--train-per-class",
             str(SIZE["train_per_class"]), "--test-per-class", str(SIZE["test_per_class"]),
             "--steps", str(SIZE["steps"]), "--per-class", str(SIZE["per_class"]),
             "--seeds", str(SIZE["seeds"]), "--eval-epochs", str(SIZE["eval_epochs"]), "--smoke"]
    command = [sys.executable, str(ROOT / "jobs" / "quickstart.py"), "--run", str(run), *flags]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="rd-chaos-ray-", dir="/tmp")
    points = []
    for stage in STAGES:
        points.append((f"mid {stage}", lambda s=stage: _started(run, s) and not _done(run, s)))
        points.append((f"after {stage}", lambda s=stage: _done(run, s)))
    kills, partial = [], []
    started = time.perf_counter()
    for name, condition in points:
        killed, code = run_until(command, condition, env=env,
                                 log_path=os.path.join(folder, "driver.log"))
        if not killed:
            if code != 0:
                raise RuntimeError(f"the driver failed (exit {code}); see {folder}/driver.log")
            break
        kills.append(name)
        partial += unreadable_files(str(run))
    finished, code = run_until(command, lambda: False, env=env,
                               log_path=os.path.join(folder, "driver.log"))
    if code != 0:
        raise RuntimeError(f"the last rerun failed (exit {code}); see {folder}/driver.log")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "overhead": seconds / clean_seconds - 1, "kills": kills,
            "partial_files": partial, "differences": differences(reference,
                                                                  fingerprint(str(run)))}


def _done(run: Path, stage: str) -> bool:
    return (run / "_stages" / f"{stage}.json").exists()


STARTED = {"ingest": "source/toy/*/*", "decode": "clips/*/shard-*",
           "latents": "vae/*", "finetune": "finetune/ray/latte/checkpoint_*",
           "generate": "synthetic/videos/*/*.mp4", "embed": "embed/videomae-run/*",
           "select": "selection/synthetic/*/vpc=*/seed=*.parquet",
           "evaluate": "eval/*/**/metrics.json", "report": "report/*.png"}


def _started(run: Path, stage: str) -> bool:
    """Whether stage ``stage`` has written its first output."""
    return next(run.glob(STARTED[stage]), None) is not None


def main() -> int:
    """Run the clean run and the chaotic runs; print their figures. Exit status 1 when a
    chaotic run's results differ from the clean run's."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kill-every", type=float, default=30.0,
                        help="mean seconds between worker kills (run 2)")
    parser.add_argument("--io-error-rate", type=float, default=0.05,
                        help="share of S3 requests answered with 5xx (run 2)")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--skip-driver", action="store_true")
    args = parser.parse_args()
    import ray

    folder = tempfile.mkdtemp(prefix="rd-chaos-", dir="/tmp")
    os.environ["RAY_TMPDIR"] = os.path.join(folder, "ray")
    os.makedirs(os.environ["RAY_TMPDIR"])
    server, proxy = start_s3()  # before Ray starts, so that its workers see the endpoint
    ray.init(address="local", num_cpus=2, object_store_memory=1_000_000_000,
             include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    failed = False
    clean_seconds = run_in_process(os.path.join(folder, "clean"))
    reference = fingerprint(os.path.join(folder, "clean"))
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}")
    print(f"clean run: {clean_seconds:.1f} s, {len(reference)} result files")
    if not args.skip_workers:
        result = workers_and_storage(folder, reference, proxy, args.kill_every,
                                     args.io_error_rate, clean_seconds)
        failed = failed or bool(result["differences"])
        print(f"worker kills + S3 errors: {result['seconds']:.1f} s "
              f"(+{100 * result['overhead']:.0f} %), kills {result['kills']}, "
              f"{result['io_errors']} injected S3 errors in {result['requests']} requests, "
              f"{len(result['differences'])} differing files {result['differences'][:5]}")
    ray.shutdown()
    proxy.stop()
    server.stop()
    if not args.skip_driver:
        result = driver_kills(folder, reference, clean_seconds)
        failed = failed or bool(result["differences"] or result["partial_files"])
        print(f"driver kills: {len(result['kills'])} ({', '.join(result['kills'])}); "
              f"{result['seconds']:.1f} s in all (+{100 * result['overhead']:.0f} %), "
              f"{len(result['partial_files'])} partial files, "
              f"{len(result['differences'])} differing files {result['differences'][:5]}")
    print(f"work folder (delete when done): {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
