"""Quickstart: every stage that exists, end to end, on the generated toy dataset.

    python jobs/quickstart.py                      # local Ray, writes runs/quickstart/
    ray job submit --working-dir . -- python jobs/quickstart.py --run s3://bucket/quick

Starts a local Ray (or joins the one at --address / $RAY_ADDRESS). Rerunning skips finished
stages; --fresh deletes the run directory first.
"""

from __future__ import annotations

import argparse
import sys

from raydistill.config import SELECTION_METHODS, RunConfig, from_dict
from raydistill.pipeline.run import run_command
from raydistill.runs import RunDir


SMOKE = {"vae_steps": 40, "classifier_steps": 30, "vst_epochs": 4, "sampling_steps": 5}
"""What ``--smoke`` shortens."""


def quickstart_config(run_dir: str, classes: int, train_per_class: int, test_per_class: int,
                      steps: int, per_class: int, seeds: int = 2,
                      eval_epochs: int = 30, smoke: bool = False) -> RunConfig:
    """The toy preset: 64² toy videos; 8-frame 32² clips and latents (tiny VAE, 4×8×8 latents);
    a tiny Latte fine-tuned for ``steps`` steps; ``per_class`` synthetic videos per class; a
    tiny VideoMAE classifier trained on the real clips embeds them; every selector (a tiny
    VST-UNet among them) picks 1 and 5 per class with 2 seeds. ``smoke``: the auxiliary models
    (VAE, embedding classifier, VST-UNet) train a few steps only and sampling takes 5 steps —
    every stage runs, in little time, with meaningless results (for tests)."""
    short = SMOKE if smoke else {}
    return from_dict(RunConfig, {
        "run_dir": run_dir,
        "ingest": {"dataset": "toy", "toy": {"num_classes": classes,
                                             "train_per_class": train_per_class,
                                             "test_per_class": test_per_class}},
        "decode": {"num_frames": 8, "size": 32, "shard_size": 64},
        "latents": {"num_frames": 8, "size": 32, "shard_size": 64,
                    "vae_steps": short.get("vae_steps", 2000)},
        "finetune": {"architecture": "tiny", "steps": steps, "batch_size": 32,
                     "learning_rate": 1e-3, "ema_decay": 0.995,
                     "checkpoint_every": max(1, min(500, steps // 3)),
                     "log_every": 10},
        "generate": {"per_class": per_class, "guidance": 2.0,
                     "steps": short.get("sampling_steps", 25),
                     "scheduler": "ddim", "batch_size": 16},
        "embed": {"model": None, "pools": ["synthetic"],
                  "classifier_steps": short.get("classifier_steps", 400)},
        "select": {"pool": "synthetic", "methods": list(SELECTION_METHODS),
                   "vpc": [k for k in (1, 5) if k <= per_class], "seeds": seeds,
                   "params": {"vst_unet": {"width": 8, "levels": 2, "feature_dim": 32,
                                           "norm_groups": 4,
                                           "epochs": short.get("vst_epochs", 30)}}},
        # The toy C3D has 0.2 M parameters: every classifier of the run (34 with the default
        # flags) is tested in one pass over the test clips, not one actor start per 8.
        "evaluate": {"classifier": "c3d", "preset": "toy", "upper_bound_seeds": 1,
                     "checkpoint_every": 30, "models_per_pass": 64,
                     "training": {"epochs": eval_epochs}},
    })


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/quickstart", help="run directory, local or s3://")
    parser.add_argument("--classes", type=int, default=8, help="toy classes (2-8)")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--steps", type=int, default=1500, help="Latte fine-tuning steps")
    parser.add_argument("--per-class", type=int, default=10,
                        help="synthetic videos generated per class")
    parser.add_argument("--seeds", type=int, default=2,
                        help="selection and evaluation seeds per (method, VPC)")
    parser.add_argument("--eval-epochs", type=int, default=30,
                        help="epochs of each evaluation classifier")
    parser.add_argument("--smoke", action="store_true",
                        help="train the VAE, embedding classifier and VST-UNet a few steps only "
                             "and sample in 5 steps: checks that every stage runs, quickly")
    parser.add_argument("--address", help="Ray address to join")
    parser.add_argument("--fresh", action="store_true", help="delete the run directory first")
    args = parser.parse_args(argv)

    def build():
        config = quickstart_config(args.run, args.classes, args.train_per_class,
                                   args.test_per_class, args.steps, args.per_class, args.seeds,
                                   args.eval_epochs, args.smoke)
        if args.fresh:
            run = RunDir(args.run)
            if run.fs.exists(run.root):
                run.fs.rm(run.root, recursive=True)
        return config, None

    code, run = run_command("quickstart", build, address=args.address)
    if run is not None:
        print(f"quickstart finished: {run.url}")
        print(f"report: {run.stage_summary('report')['report']}")
    return code

if __name__ == "__main__":
    sys.exit(main())
