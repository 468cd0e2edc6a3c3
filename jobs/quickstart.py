"""Quickstart: every stage that exists, end to end, on the generated toy dataset.

    python jobs/quickstart.py                      # local Ray, writes runs/quickstart/
    ray job submit --working-dir . -- python jobs/quickstart.py --run s3://bucket/quick

Starts a local Ray (or joins the one at --address / $RAY_ADDRESS). Rerunning skips finished
stages; --fresh deletes the run directory first.
"""

from __future__ import annotations

import argparse
import os
import sys

from raydistill.config import SELECTION_METHODS, TRACKERS, RunConfig, from_dict, with_overrides
from raydistill.runs import RunDir


SMOKE = {"vae_steps": 40, "classifier_epochs": 2, "vst_epochs": 4, "sampling_steps": 5,
         "min_steps": 0}
"""What ``--smoke`` shortens."""

WORKER_CPUS = min(2, os.cpu_count() or 1)
"""CPUs (and torch threads) of the one VAE training task, fine-tuning worker, sampling actor,
embedding classifier task, evaluation worker and test actor: each runs alone, and one thread
would leave a laptop's second core idle."""

DEFAULT_METHODS = ("random", "tac_dt")
"""The selectors the quickstart runs unless ``--methods`` says otherwise: the baseline and the
paper's training-free one. The VST-UNet (``--methods random,tac_dt,vst_unet``) adds about two
minutes on 2 cores (ten VST-UNet trainings and ten more classifiers) and selected no better than
random on the toy (benchmarks/BENCHMARKS.md); ``--methods all`` runs every selector."""


TAC_DT_PARAMS = {"min_score": 0.8, "representative": "score"}
"""TAC-DT in the quickstart first sets aside the generated videos to which the run's embedding
C3D (trained on the real training clips) gives less than 0.8 probability for their own class
(the toy generator's off-class samples: its class fidelity is 60-70 %), and each group gives
its best-scored member rather than the one nearest its centre. Chosen on 800 fresh toy clips no
stage has seen, 10 seeds, among min_score 0.5 / 0.8 × centre / score: +7.6 points over random
at VPC 5 and +8.1 at VPC 1, against +3.6 and +4.8 for TAC-DT's defaults
(benchmarks/BENCHMARKS.md, session 13)."""


def resolve_methods(text: str) -> list[str]:
    """``all`` → every selector; else the comma-separated names (validated by the config)."""
    return list(SELECTION_METHODS) if text == "all" else [m for m in text.split(",") if m]


def quickstart_config(run_dir: str, classes: int, train_per_class: int, test_per_class: int,
                      steps: int, per_class: int, seeds: int = 5,
                      eval_epochs: int = 30, smoke: bool = False,
                      methods: tuple[str, ...] | list[str] = DEFAULT_METHODS) -> RunConfig:
    """The toy preset: 64² toy videos; 8-frame 32² clips and latents (tiny VAE, 4×8×8 latents);
    the small Latte (v-prediction) fine-tuned for ``steps`` steps; ``per_class`` synthetic
    videos per class; a small C3D classifier trained on the real clips embeds them (and says
    how many it recognises as their class); ``methods`` pick 1 and 5 per class with
    ``seeds`` seeds; a small C3D trained on each selection (at least 150 steps) is tested on the
    real test split. ``smoke``: the auxiliary models (VAE, embedding classifier, VST-UNet) train
    a few steps only, sampling takes 5 steps and classifiers train ``eval_epochs`` epochs —
    every stage runs, in little time, with meaningless results (for tests)."""
    short = SMOKE if smoke else {}
    return from_dict(RunConfig, {
        "run_dir": run_dir,
        "ingest": {"dataset": "toy", "toy": {"num_classes": classes,
                                             "train_per_class": train_per_class,
                                             "test_per_class": test_per_class}},
        "decode": {"num_frames": 8, "size": 32, "shard_size": 64},
        "latents": {"num_frames": 8, "size": 32, "shard_size": 64,
                    "vae_steps": short.get("vae_steps", 800), "vae_cpus": WORKER_CPUS},
        "finetune": {"architecture": "small", "prediction_type": "v_prediction",
                     "steps": steps, "batch_size": 32, "learning_rate": 2e-3,
                     "ema_decay": 0.995, "checkpoint_every": max(1, min(500, steps // 3)),
                     "log_every": 10, "cpus_per_worker": WORKER_CPUS},
        "generate": {"per_class": per_class, "guidance": 4.0,
                     "steps": short.get("sampling_steps", 25),
                     "scheduler": "ddim", "batch_size": 25, "cpus_per_actor": WORKER_CPUS},
        "embed": {"model": None, "run_classifier": "c3d", "pools": ["synthetic"],
                  "classifier_epochs": short.get("classifier_epochs", 30),
                  "classifier_cpus": WORKER_CPUS},
        "select": {"pool": "synthetic", "methods": list(methods),
                   "vpc": [k for k in (1, 5) if k <= per_class], "seeds": seeds,
                   "params": {"tac_dt": dict(TAC_DT_PARAMS),
                              "vst_unet": {"width": 8, "levels": 2, "feature_dim": 32,
                                           "norm_groups": 4,
                                           "epochs": short.get("vst_epochs", 10)}}},
        # The toy C3D has 0.2 M parameters: every classifier of the run is tested in one pass
        # over the test clips, not one actor start per 8. A selection of 1 or 5 videos per class
        # is one to three batches, so classifiers train at least min_steps steps, not 30 epochs.
        # Each takes seconds and is saved when done: no checkpoints within one (they cost ~1 s).
        # One classifier per CPU at a time: a 1-thread C3D step takes 1.4 x a 2-thread one, so
        # two at once train 1.4 x as many (benchmarks/BENCHMARKS.md).
        "evaluate": {"classifier": "c3d", "preset": "toy", "upper_bound_seeds": 1,
                     "num_workers": WORKER_CPUS, "cpus_per_worker": 1,
                     "parallelism": "jobs",
                     "checkpoint_every": 1000, "models_per_pass": 64,
                     "test_cpus_per_actor": WORKER_CPUS,
                     "training": {"epochs": eval_epochs,
                                  "min_steps": short.get("min_steps", 150)}},
    })


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The job's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/quickstart", help="run directory, local or s3://")
    parser.add_argument("--classes", type=int, default=8, help="toy classes (2-8)")
    parser.add_argument("--train-per-class", type=int, default=40)
    parser.add_argument("--test-per-class", type=int, default=25)
    parser.add_argument("--steps", type=int, default=2000, help="Latte fine-tuning steps")
    parser.add_argument("--per-class", type=int, default=25,
                        help="synthetic videos generated per class")
    parser.add_argument("--seeds", type=int, default=5,
                        help="selection and evaluation seeds per (method, VPC)")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                        help="comma-separated selectors, or 'all' (default: %(default)s)")
    parser.add_argument("--eval-epochs", type=int, default=30,
                        help="epochs of each evaluation classifier")
    parser.add_argument("--smoke", action="store_true",
                        help="train the VAE, embedding classifier and VST-UNet a few steps only "
                             "and sample in 5 steps: checks that every stage runs, quickly")
    parser.add_argument("--tracker", choices=TRACKERS, default="none",
                        help="log training metrics to TensorBoard, MLflow or W&B "
                             "(RUN/tracking/…; default: none)")
    parser.add_argument("--address", help="Ray address to join")
    parser.add_argument("--fresh", action="store_true", help="delete the run directory first")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's configuration for a parsed command line."""
    config = quickstart_config(args.run, args.classes, args.train_per_class,
                               args.test_per_class, args.steps, args.per_class, args.seeds,
                               args.eval_epochs, args.smoke, resolve_methods(args.methods))
    return with_overrides(config, {"tracking": {"tracker": args.tracker}})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The pipeline (Ray, torch, diffusers: seconds to import) only once --help is answered.
    from raydistill.pipeline.run import run_command

    def build():
        config = config_from_args(args)
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
