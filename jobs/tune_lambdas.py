"""Tune VST-UNet's λ_d and λ_r (or TAC-DT's, or any selector's, parameters) with Ray Tune, by
accuracy on a validation split carved from the real training set — never the test split.

Each trial selects VPC videos per class from the run's pool at one point of the space, trains
the run's evaluation classifier on them and reports validation top-1 as it trains (ASHA stops poor
trials early). Needs a run whose stages up to the selector's inputs have finished (embed for the
training-free selectors; generate, or latents for the real pool, for vst_unet). Writes
RUN/tune/{pool}/{method}/vpc={k}/: trials.parquet, best.json, best.yaml (pass it to a job with
--config to use the best parameters), sweep.png. Rerunning resumes an interrupted sweep.

    python jobs/tune_lambdas.py --run runs/quickstart --vpc 1 5 --lambda-div 0 0.1 1 \\
        --lambda-rep 0 0.1 1
    python jobs/tune_lambdas.py --run runs/quickstart --method tac_dt \\
        --space n_components=8,16,32 --space threshold_factor=0.25,0.5,1
    ray job submit --working-dir . -- python jobs/tune_lambdas.py --run s3://bucket/runs/k400 \\
        --vpc 10 --search optuna --num-samples 32 --trial-gpus 1
"""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from raydistill.config import SELECTION_METHODS, SWEEP_SEARCHES, TRACKERS, ConfigError


def value(text: str):
    """A YAML scalar: ``0.1`` → float, ``8`` → int, ``true`` → bool, else the string."""
    return yaml.safe_load(text)


def space_entry(text: str) -> tuple[str, list]:
    """``NAME=V1,V2,...`` → (NAME, [values])."""
    name, sep, values = text.partition("=")
    if not sep or not name or not values:
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,..., got {text!r}")
    return name, [value(v) for v in values.split(",")]


def param_entry(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` → (NAME, value)."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value(raw)


def build_parser() -> argparse.ArgumentParser:
    """The job's flags."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, metavar="RUN_DIR",
                        help="an existing run directory, local or s3://")
    parser.add_argument("--method", default="vst_unet", choices=sorted(SELECTION_METHODS),
                        help="selector to tune (default: vst_unet)")
    parser.add_argument("--vpc", type=int, nargs="+", default=[1], metavar="K",
                        help="videos per class; one sweep per VPC (default: 1)")
    parser.add_argument("--pool", choices=("synthetic", "real"),
                        help="pool to select from (default: the run's select.pool)")
    parser.add_argument("--lambda-div", type=float, nargs="+", metavar="V",
                        help="λ_d values (vst_unet; default 0 0.1 0.5 1)")
    parser.add_argument("--lambda-rep", type=float, nargs="+", metavar="V",
                        help="λ_r values (vst_unet; default 0 0.1 0.5 1)")
    parser.add_argument("--space", type=space_entry, action="append", default=[],
                        metavar="NAME=V1,V2", help="another swept parameter (repeatable); with "
                        "--search random/optuna/hyperopt two numbers are a range")
    parser.add_argument("--param", type=param_entry, action="append", default=[],
                        metavar="NAME=VALUE", help="a fixed selector parameter (repeatable)")
    parser.add_argument("--search", choices=SWEEP_SEARCHES, default="grid",
                        help="grid (default), random, optuna or hyperopt (when installed)")
    parser.add_argument("--num-samples", type=int, default=16,
                        help="trials of a random/optuna/hyperopt search (default: 16)")
    parser.add_argument("--val-per-class", type=int, default=10,
                        help="real training videos per class held out for validation "
                             "(default: 10)")
    parser.add_argument("--val-seed", type=int, default=0, help="seed of the validation split")
    parser.add_argument("--seed", type=int, default=0,
                        help="selection and classifier seed of every trial")
    parser.add_argument("--epochs", type=int,
                        help="classifier epochs per trial (default: the run's evaluate section)")
    parser.add_argument("--report-every", type=int, default=1,
                        help="epochs between validation reports (ASHA's time unit)")
    parser.add_argument("--grace-period", type=int, default=1,
                        help="reports before ASHA may stop a trial")
    parser.add_argument("--no-asha", action="store_true", help="train every trial to the end")
    parser.add_argument("--trial-cpus", type=float, default=1.0, help="CPUs per trial")
    parser.add_argument("--trial-gpus", type=float, default=0.0, help="GPUs per trial")
    parser.add_argument("--max-concurrent", type=int, help="trials running at once")
    parser.add_argument("--fresh", action="store_true",
                        help="delete earlier results of these sweeps first")
    parser.add_argument("--address", help="Ray address to join (default: $RAY_ADDRESS, else a "
                        "new local Ray)")
    parser.add_argument("--tracker", choices=TRACKERS,
                        help="log the trials with Tune's logger callback for this tracker "
                             "(default: the run's tracking.tracker)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check the run and the space, print the planned sweeps, run nothing")
    return parser


def sweep_settings(args: argparse.Namespace) -> dict:
    """The :class:`~raydistill.pipeline.tune.SweepConfig` fields of parsed flags (but ``vpc``)."""
    space = dict(args.space)
    if args.lambda_div is not None:
        space["lambda_div"] = args.lambda_div
    if args.lambda_rep is not None:
        space["lambda_rep"] = args.lambda_rep
    return {"method": args.method, "space": space, "params": dict(args.param),
            "search": args.search, "num_samples": args.num_samples,
            "val_per_class": args.val_per_class, "val_seed": args.val_seed, "seed": args.seed,
            "epochs": args.epochs, "report_every": args.report_every,
            "grace_period": args.grace_period, "asha": not args.no_asha,
            "trial_cpus": args.trial_cpus, "trial_gpus": args.trial_gpus,
            "max_concurrent": args.max_concurrent}


def main(argv: list[str] | None = None) -> int:
    """Run (or ``--dry-run``) the sweeps; returns the exit code."""
    args = build_parser().parse_args(argv)
    # Ray, torch and the selectors (seconds to import) only once --help is answered.
    from raydistill.pipeline.tune_job import tune_command

    try:
        results = tune_command(args.run, sweep_settings(args), args.vpc, args.pool,
                               args.address, args.fresh, args.dry_run, args.tracker)
    except ConfigError as error:
        print(f"tune_lambdas: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"tune_lambdas: error: {error}", file=sys.stderr)
        return 1
    for result in results:
        if args.dry_run:
            print(f"would sweep {result['method']} at VPC {result['vpc']}: {result['trials']} "
                  f"{result['search']} trials over {json.dumps(result['space'])} "
                  f"→ {result['folder']}")
            continue
        print(f"best {result['method']} at VPC {result['vpc']}: {json.dumps(result['params'])} "
              f"(validation top-1 {100 * result['val_accuracy']:.1f} %, {result['trials']} "
              f"trials, {result['failed']} failed)")
        print(f"  results: {result['folder']}/best.yaml, trials.parquet, sweep.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
