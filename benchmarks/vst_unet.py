"""VST-UNet benchmark: time per training step (= one class, Algorithm 1) and peak memory.

    python benchmarks/vst_unet.py [--videos 100] [--frames 16] [--size 32] [--repeats 2]
                                  [--checkpointing] [--device cpu|cuda]

Shape of the paper: one class of 100 latent videos of 16×4×32×32, the paper preset of
``VSTUNetSelector`` (width 32, 3 levels, feature 256) at VPC 5 (λ_d 0.1, λ_r 1, 16 REINFORCE
draws). Times ``train_epoch`` over one class batch (forward, losses, backward, Adam step),
after one warm-up step, and reports the median; peak memory is the process's peak resident set
(CPU) or ``torch.cuda.max_memory_allocated`` (GPU). Prints a Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from raydistill.selection.vst_selector import (  # noqa: E402
    VSTUNetSelector, build_model, epoch_generator, make_class_batches, make_optimizer,
    train_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--vpc", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true",
                        help="gradient checkpointing in the U-Net blocks")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    latents = np.random.default_rng(0).normal(
        size=(args.videos, args.frames, 4, args.size, args.size)).astype(np.float32)
    batches, _ = make_class_batches(latents, np.zeros(args.videos, np.int64))
    selector = VSTUNetSelector(n_per_class=args.vpc, gradient_checkpointing=args.checkpointing)
    lambda_div, lambda_rep = selector.lambdas()
    model = build_model(selector.model_config(4, 101), 0).to(args.device)
    optimizer = make_optimizer(model, selector.lr, selector.score_lr_scale)

    def step(epoch: int) -> float:
        started = time.perf_counter()
        train_epoch(model, optimizer, batches, n_select=args.vpc, lambda_div=lambda_div,
                    lambda_rep=lambda_rep, generator=epoch_generator(0, epoch),
                    device=args.device)
        if args.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    warm_up = step(0)
    seconds = statistics.median(step(epoch) for epoch in range(1, args.repeats + 1))
    if args.device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
        where = torch.cuda.get_device_name()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
        where = f"{os.cpu_count()} CPU ({platform.machine()}, torch {torch.__version__})"
    parameters = sum(p.numel() for p in model.parameters())
    shape = f"{args.videos}×{args.frames}×4×{args.size}×{args.size}"
    print(f"VST-UNet ({parameters / 1e6:.2f} M parameters), one class {shape}, VPC {args.vpc}, "
          f"checkpointing {'on' if args.checkpointing else 'off'} on {where}: "
          f"{seconds:.2f} s per class step (warm-up {warm_up:.2f} s), peak {peak:.2f} GiB")
    print(f"| {time.strftime('%Y-%m-%d')} | {where} | {shape} | "
          f"{'on' if args.checkpointing else 'off'} | {seconds:.2f} s | {peak:.2f} GiB |")


if __name__ == "__main__":
    main()
