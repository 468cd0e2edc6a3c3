"""Generation throughput: synthetic videos per minute per actor, and the 1 → 2 actor scaling.

Runs the generate stage's own code (``pipeline.generate.generate_videos``: Ray Data, one model
replica per actor, sampling + VAE decode + mp4/latent writes). Start-up (imports, model load) is
excluded by timing N and 2N videos and using the difference.

    python benchmarks/generate.py                          # tiny config on CPU, 1 vs 2 actors
    python benchmarks/generate.py --videos 64 --steps 50
    python benchmarks/generate.py --scale paper            # Latte-XL/2 + SD VAE, one actor
    python benchmarks/generate.py --scale paper --steps 25,50 --schedulers ddim,dpm

``--scale tiny`` (default): the quickstart's tiny Latte and tiny VAE on a fake two-node Ray
cluster (``ray.cluster_utils.Cluster``, ``--cpus-per-node`` CPUs each), once with 1 actor and
once with 2, on the same videos. ``--scale paper``: the paper's Latte-XL/2 (400 classes, 16×4×32²
latents) and the SD VAE architecture (256² frames), one actor on this machine's Ray, on its GPU
when it has one (where the stage samples the Latte in bf16 and decodes with the VAE in fp32;
attention is PyTorch's SDPA through diffusers' ``AttnProcessor2_0``), for every ``--schedulers`` ×
``--steps`` setting. On CPU a paper-scale video takes minutes per sampling step: use ``--videos 1
--batch-size 1 --steps 1`` there (≈ 15 min in all on 2 cores).

Weights are random: the cost of sampling and decoding does not depend on them. Prints Markdown
table rows for benchmarks/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

import ray
import torch
from diffusers import AutoencoderKL
from ray.cluster_utils import Cluster

from raydistill.config import GenerateConfig
from raydistill.generation.latte import LATTE_XL_2, TINY_LATTE, ClassConditionalLatte
from raydistill.generation.vae import SD_VAE_ARCHITECTURE, TINY_VAE
from raydistill.pipeline.generate import generate_videos, sampling_batches, work_items
from raydistill.runs import RunDir

SCALES = {
    "tiny": {"classes": 8, "latte": TINY_LATTE, "vae": TINY_VAE},
    "paper": {"classes": 400, "latte": LATTE_XL_2, "vae": SD_VAE_ARCHITECTURE},
}


def save_models(folder: str, scale: str) -> str:
    """Save the scale's untrained Latte and VAE once into ``folder/models``; returns that path."""
    models = os.path.join(folder, "models")
    spec = SCALES[scale]
    torch.manual_seed(0)
    ClassConditionalLatte(num_classes=spec["classes"], **spec["latte"]).save_pretrained(
        os.path.join(models, "model"))
    AutoencoderKL(**spec["vae"]).save_pretrained(os.path.join(models, "vae"))
    return models


def timed_generation(folder: str, models: str, classes: int, videos: int, actors: int,
                     settings: dict) -> float:
    """Seconds to generate ``videos`` into a fresh run under ``folder`` with ``actors`` actors.

    The run links the saved model and VAE (:func:`save_models`) where the generate stage looks.
    """
    root = os.path.join(folder, f"run-{len(os.listdir(folder))}")
    os.makedirs(root)
    os.symlink(os.path.join(models, "model"), os.path.join(root, "model"))
    items = work_items([f"class{i}" for i in range(classes)], -(-videos // classes),
                       run_seed=0)[:videos]
    generate = GenerateConfig(num_actors=actors, **settings)
    started = time.perf_counter()
    generate_videos(RunDir(root), sampling_batches(items, generate.batch_size), "model",
                    os.path.join(models, "vae"), generate)
    return time.perf_counter() - started


def steady_rate(folder: str, models: str, classes: int, videos: int, actors: int,
                settings: dict) -> float:
    """Videos per minute with ``actors`` actors, start-up excluded (N and 2N videos timed)."""
    single = timed_generation(folder, models, classes, videos, actors, settings)
    double = timed_generation(folder, models, classes, 2 * videos, actors, settings)
    return 60 * videos / (double - single)


def tiny_rows(args, folder: str, models: str) -> list[str]:
    """1 vs 2 actors on a fake two-node cluster, per sampler setting."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.cpus_per_node})
    cluster.add_node(num_cpus=args.cpus_per_node)
    ray.init(address=cluster.address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    machine = f"{os.cpu_count()} CPU ({platform.machine()}), fake 2-node Ray cluster"
    rows = []
    try:
        classes = SCALES["tiny"]["classes"]
        for scheduler, steps, settings in sampler_settings(args, gpus=0):
            timed_generation(folder, models, classes, args.batch_size, 1, settings)  # warm-up
            rates = {actors: steady_rate(folder, models, classes, args.videos, actors, settings)
                     for actors in (1, 2)}
            for actors, rate in rates.items():
                rows.append(f"| tiny Latte, {steps} {scheduler.upper()} steps, CFG, 8×32² | "
                            f"{machine} | {actors} actor(s) | {rate:.1f} videos/min | "
                            f"{rate / actors:.1f} videos/min/actor |")
            rows.append(f"| scaling 2 actors / 1 actor | | | {rates[2] / rates[1]:.2f}× | |")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return rows


def paper_rows(args, folder: str, models: str) -> list[str]:
    """One actor (on the GPU when there is one) per sampler setting, at the paper's scale."""
    gpus = torch.cuda.device_count()
    ray.init(num_gpus=gpus, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    machine = (f"{torch.cuda.get_device_name(0)}, bf16 Latte, fp32 VAE" if gpus else
               f"{os.cpu_count()} CPU ({platform.machine()}), fp32")
    classes = SCALES["paper"]["classes"]
    rows = []
    try:
        for scheduler, steps, settings in sampler_settings(args, gpus=min(gpus, 1)):
            if gpus:  # one-off costs (CUDA context, kernels) would shrink the N-video time
                timed_generation(folder, models, classes, args.batch_size, 1, settings)
            rate = steady_rate(folder, models, classes, args.videos, 1, settings)
            rows.append(f"| Latte-XL/2 + SD VAE, {steps} {scheduler.upper()} steps, CFG, "
                        f"16×256², batch {args.batch_size} | {machine} | 1 actor | "
                        f"{rate:.2f} videos/min | {60 / rate:.1f} s/video |")
    finally:
        ray.shutdown()
    return rows


def sampler_settings(args, gpus: int):
    """(scheduler, steps, GenerateConfig fields) for every ``--schedulers`` × ``--steps``."""
    for scheduler in args.schedulers.split(","):
        for steps in (int(value) for value in args.steps.split(",")):
            yield scheduler, steps, {"steps": steps, "batch_size": args.batch_size,
                                     "scheduler": scheduler, "guidance": 4.0,
                                     "gpus_per_actor": gpus}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    parser.add_argument("--videos", type=int, default=None,
                        help="N of the N/2N timing (default 192 tiny, 16 paper)")
    parser.add_argument("--steps", default="25", help="comma-separated sampling step counts")
    parser.add_argument("--schedulers", default="ddim", help="comma-separated: ddim,dpm,ddpm")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus-per-node", type=int, default=1, help="tiny scale only")
    args = parser.parse_args()
    if args.videos is None:
        args.videos = 192 if args.scale == "tiny" else 16
    folder = tempfile.mkdtemp(prefix="rd-bench-generate-")
    try:  # the paper-scale models alone take 3 GB
        models = save_models(folder, args.scale)
        rows = (tiny_rows if args.scale == "tiny" else paper_rows)(args, folder, models)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
