"""Where the toy run's class signal is lost: real clips → VAE → Latte samples.

The run's evaluation classifier (the quickstart's: C3D, toy preset), trained as its evaluate stage
trains one, is trained on a finished run's real training clips. Its top-1 accuracy is then read on

- the real test clips (the ceiling),
- the run's VAE reconstructions of the real training and test clips (what the latent cache can
  carry at all: a Latte that learned the latents perfectly could do no better),
- the run's synthetic videos, each against the class it was generated for (whether samples look
  like their class to a classifier of real videos),

and a second classifier trained on the VAE reconstructions of the training clips is read on the real
test clips. With ``--vae-steps`` the tiny VAE is also retrained from scratch at each step count on
the run's training frames, to compare budgets.

    python jobs/quickstart.py && python benchmarks/toy_quality.py --run runs/quickstart
    python benchmarks/toy_quality.py --run runs/quickstart --vae-steps 600 2000

Prints Markdown table rows for benchmarks/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time

import numpy as np
import torch
from diffusers import AutoencoderKL

from raydistill.classify.models import build_classifier
from raydistill.classify.training import evaluate, fit_classifier
from raydistill.config import EvaluateConfig
from raydistill.generation.vae import decode_latents, encode_clips, train_tiny_vae
from raydistill.pipeline.evaluate import classifier_settings, load_clips
from raydistill.runs import RunDir


def trained_classifier(clips: np.ndarray, labels: np.ndarray, num_classes: int,
                       evaluation: EvaluateConfig, seed: int):
    """The run's evaluation classifier, trained as its evaluate stage trains one, on uint8 clips
    (N, T, H, W, 3)."""
    spec, settings = classifier_settings(evaluation)
    torch.manual_seed(seed)
    model = build_classifier(spec["name"], num_classes, spec["frames"], spec["size"],
                             **spec["options"])
    fit_classifier(model, clips, labels, dataclasses.replace(settings, seed=seed))
    return model


def reconstruct(vae: AutoencoderKL, clips: np.ndarray) -> np.ndarray:
    """uint8 clips (N, T, H, W, 3) through the VAE's posterior mean and back."""
    return decode_latents(vae, torch.from_numpy(encode_clips(vae, clips)))


def top1(model, clips: np.ndarray, labels: np.ndarray) -> float:
    return 100 * evaluate(model, clips, labels)["top1"]


def vae_rows(name: str, vae: AutoencoderKL, seconds: float | None, real_model, train, test,
             num_classes: int, evaluation: EvaluateConfig, seed: int) -> str:
    """One table row of a VAE: reconstruction error and the accuracies it allows."""
    (train_clips, train_labels), (test_clips, test_labels) = train, test
    train_rec, test_rec = reconstruct(vae, train_clips), reconstruct(vae, test_clips)
    error = np.abs(test_rec.astype(np.float64) - test_clips).mean()
    on_reconstructions = trained_classifier(train_rec, train_labels, num_classes, evaluation,
                                            seed)
    took = "—" if seconds is None else f"{seconds:.0f} s"
    return (f"| {name} | {took} | {error:.1f} | "
            f"{top1(real_model, train_rec, train_labels):.1f} | "
            f"{top1(real_model, test_rec, test_labels):.1f} | "
            f"{top1(on_reconstructions, test_clips, test_labels):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished toy run (local)")
    parser.add_argument("--vae-steps", type=int, nargs="*", default=[],
                        help="also retrain the tiny VAE from scratch for these step counts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    run = RunDir(args.run)
    train, test = load_clips(run, "train"), load_clips(run, "test")
    num_classes = int(max(train[1].max(), test[1].max()) + 1)
    evaluation = run.load_config().evaluate
    real_model = trained_classifier(*train, num_classes, evaluation, args.seed)
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d')}; "
          f"run {run.url}: {len(train[0])} train / {len(test[0])} test clips")
    print(f"{evaluation.classifier} trained on real clips: {top1(real_model, *train):.1f} % on them, "
          f"{top1(real_model, *test):.1f} % on the real test clips")
    if run.exists("clips/synthetic"):
        synthetic = load_clips(run, "synthetic")
        print(f"... on the run's {len(synthetic[0])} synthetic videos (their own class): "
              f"{top1(real_model, *synthetic):.1f} %")
    print("| VAE | training time | test MAE (0-255) | real C3D on rec. train (%) "
          "| real C3D on rec. test (%) | C3D trained on rec. train, real test (%) |")
    print("|---|---|---|---|---|---|")
    print(vae_rows("the run's", AutoencoderKL.from_pretrained(run.path("vae")).eval(), None,
                   real_model, train, test, num_classes, evaluation, args.seed))
    frames = train[0][:256].reshape(-1, *train[0].shape[2:])  # as the latents stage trains it
    for steps in args.vae_steps:
        started = time.perf_counter()
        vae, _ = train_tiny_vae(frames, steps=steps, seed=args.seed)
        print(vae_rows(f"tiny, {steps} steps", vae, time.perf_counter() - started, real_model,
                       train, test, num_classes, evaluation, args.seed), flush=True)


if __name__ == "__main__":
    main()
