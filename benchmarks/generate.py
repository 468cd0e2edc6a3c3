"""Generation throughput: synthetic videos per minute per actor, and the 1 → 2 actor scaling.

Runs the generate stage's own code (``pipeline.generate.generate_videos``: Ray Data, one model
replica per actor, sampling + VAE decode + mp4/latent writes) on a fake two-node Ray cluster
(``ray.cluster_utils.Cluster``, ``--cpus-per-node`` CPUs each), once with 1 actor and once with 2,
on the same videos. Start-up is excluded by timing N and 2N videos and using the difference:

    python benchmarks/generate.py                          # tiny config on CPU
    python benchmarks/generate.py --videos 64 --steps 50

The model is the quickstart's tiny Latte (random weights: the cost of sampling does not depend
on them) and the tiny VAE. Prints Markdown table rows for benchmarks/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import ray
from ray.cluster_utils import Cluster

from raydistill.config import GenerateConfig
from raydistill.generation.latte import TINY_LATTE, ClassConditionalLatte
from raydistill.generation.vae import load_vae
from raydistill.pipeline.generate import generate_videos, sampling_batches, work_items
from raydistill.runs import RunDir


def timed_generation(folder: str, videos: int, actors: int, settings: dict) -> float:
    """Seconds to generate ``videos`` into a fresh run under ``folder`` with ``actors`` actors.

    The run gets the tiny model and VAE where the generate stage looks for them.
    """
    run = RunDir(os.path.join(folder, f"run-{actors}-{videos}"))
    ClassConditionalLatte(num_classes=8, **TINY_LATTE).save_pretrained(run.path("model"))
    load_vae(None).save_pretrained(run.path("vae"))
    items = work_items([f"class{i}" for i in range(8)], -(-videos // 8), run_seed=0)[:videos]
    generate = GenerateConfig(num_actors=actors, gpus_per_actor=0, **settings)
    started = time.perf_counter()
    generate_videos(run, sampling_batches(items, generate.batch_size), "model", None, generate)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=192)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus-per-node", type=int, default=1)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="rd-bench-generate-")

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node})
    cluster.add_node(num_cpus=args.cpus_per_node)
    ray.init(address=cluster.address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    settings = {"steps": args.steps, "batch_size": args.batch_size, "scheduler": "ddim",
                "guidance": 4.0}
    timed_generation(folder, args.batch_size, 1, settings)  # warm-up: imports, worker start
    # Actor start-up (imports, model load) is paid once per run: time N and 2N videos and take
    # the difference, so the rate is the steady-state one.
    rates = {}
    for actors in (1, 2):
        single = timed_generation(folder, args.videos, actors, settings)
        double = timed_generation(folder, 2 * args.videos, actors, settings)
        rates[actors] = 60 * args.videos / (double - single)
    machine = f"{os.cpu_count()} CPU ({platform.machine()}), fake 2-node Ray cluster"
    for actors, rate in rates.items():
        print(f"| tiny Latte, {args.steps} DDIM steps, CFG, 8×32² | {machine} | {actors} "
              f"actor(s) | {rate:.1f} videos/min | {rate / actors:.1f} videos/min/actor |")
    print(f"| scaling 2 actors / 1 actor | | | {rates[2] / rates[1]:.2f}× | |")
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
