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

With ``--real-pool`` it instead measures whether the toy lets a selector show its value before
any generator is involved: coreset selection from the run's *real* training clips. A C3D trained
on the real training clips embeds them (the run's ``embed.run_classifier: c3d``), random and
TAC-DT pick VPC clips per class, and the run's evaluation classifier trained on each pick is read
on the real test clips, over ``--seeds`` seeds (seed s: random's draw s, TAC-DT's PCA seed s, and
training seed s for both, so the two are paired by seed).

    python benchmarks/toy_quality.py --run runs/quickstart --real-pool --seeds 5

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


def real_pool_rows(train, test, num_classes: int, evaluation: EvaluateConfig,
                   vpcs: list[int], seeds: int) -> list[str]:
    """Random vs TAC-DT on the real training pool, one row per (VPC, method): mean ± std of
    top-1 over seeds, and TAC-DT's paired difference from random with its 95 % interval."""
    from raydistill.embedding.c3d import C3DEmbedder, save_c3d, train_c3d_classifier
    from raydistill.report.tables import compare_with_random
    from raydistill.selection.tac_dt import TACDTSelector
    import tempfile

    (train_clips, train_labels), (test_clips, test_labels) = train, test
    embedder_model, _ = train_c3d_classifier(train_clips, train_labels, num_classes, seed=0)
    with tempfile.TemporaryDirectory() as folder:
        names = [str(c) for c in range(num_classes)]
        save_c3d(embedder_model, folder, names)
        features = C3DEmbedder(folder, names)(train_clips, train_labels)["embedding"]
    values: dict = {}
    for vpc in vpcs:
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            picks = {"random": np.concatenate([
                         rng.choice(np.flatnonzero(train_labels == c), vpc, replace=False)
                         for c in range(num_classes)]),
                     "tac_dt": TACDTSelector(n_per_class=vpc, random_state=seed)
                     .fit(features, train_labels).selected_indices_}
            for method, pick in picks.items():
                model = trained_classifier(train_clips[pick], train_labels[pick], num_classes,
                                           evaluation, seed)
                values.setdefault((method, vpc), {})[seed] = evaluate(
                    model, test_clips, test_labels)["top1"]
            print(f"  VPC {vpc} seed {seed}: " + ", ".join(
                f"{m} {100 * values[(m, vpc)][seed]:.1f}" for m in picks), flush=True)
    comparisons = {(c.method, c.vpc): c for c in compare_with_random(values)}
    rows = []
    for (method, vpc), by_seed in sorted(values.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        accuracies = 100 * np.asarray(list(by_seed.values()))
        difference = comparisons.get((method, vpc))
        versus = ("—" if difference is None else
                  f"{100 * difference.difference:+.1f} [{100 * difference.low:+.1f}, "
                  f"{100 * difference.high:+.1f}]")
        rows.append(f"| {vpc} | {method} | {accuracies.mean():.1f} ± {accuracies.std():.1f} | "
                    f"{versus} | {len(accuracies)} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished toy run (local)")
    parser.add_argument("--vae-steps", type=int, nargs="*", default=[],
                        help="also retrain the tiny VAE from scratch for these step counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-pool", action="store_true",
                        help="coreset selection from the real pool: random vs TAC-DT")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of --real-pool")
    parser.add_argument("--vpc", type=int, nargs="+", default=[1, 5], help="VPCs of --real-pool")
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
    if args.real_pool:
        print("| VPC | method | top-1 on the real test clips (%) | vs random, paired (points, "
              "95 % CI) | seeds |")
        print("|---|---|---|---|---|")
        print("\n".join(real_pool_rows(train, test, num_classes, evaluation, args.vpc,
                                       args.seeds)))
        return
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
