"""The ``raydistill`` command: one sub-command per stage, plus ``run`` for all of them.

Every sub-command builds and validates the whole config first; a bad field stops with one line
naming it and exit code 2, before any work or any write.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from raydistill import __version__
from raydistill.config import (CLASSIFIER_NAMES, DATASETS, POOLS, SCHEDULER_NAMES,
                               SELECTION_METHODS, STAGE_NAMES, TRACKERS, ConfigError, RunConfig,
                               load_yaml, with_overrides)
from raydistill.dataset_info import SPLIT_DATASETS, dataset_info, split_datasets
from raydistill.runs import RunDir


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="Ray address to join (default: $RAY_ADDRESS, else a "
                                          "new local Ray)")
    parser.add_argument("--resource-timeout", type=float, metavar="SECONDS",
                        help="how long a stage waits for a node that can hold its workers (a GPU "
                             "node an autoscaler starts) before failing (default: "
                             "$RAYDISTILL_RESOURCE_TIMEOUT_S, else 1800)")
    parser.add_argument("--tracker", choices=TRACKERS,
                        help="log training metrics to this tracker (tracking.tracker; kept in "
                             "the run's config.yaml; default: the run's, else none)")


def _add_decode_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-frames", type=int, help="frames per clip (default 16)")
    parser.add_argument("--size", type=int, help="clip side in pixels (default 112)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``raydistill`` command."""
    parser = argparse.ArgumentParser(prog="raydistill", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"raydistill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="read a dataset layout into RUN/manifest.parquet")
    ingest.add_argument("--dataset", choices=DATASETS, required=True)
    ingest.add_argument("--root", help="dataset root, local or s3:// (toy: where to generate it)")
    ingest.add_argument("--out", required=True, help="run directory, local or s3://")
    ingest.add_argument("--split", type=int,
                        help=f"official split 1-3 ({', '.join(SPLIT_DATASETS)})")
    ingest.add_argument("--config", help="YAML run config to start from")
    _add_common(ingest)

    decode = commands.add_parser("decode", help="decode every manifest row into the clip cache")
    decode.add_argument("--run", required=True, help="run directory made by `ingest`")
    _add_decode_flags(decode)
    _add_common(decode)

    finetune = commands.add_parser("finetune", help="fine-tune the class-conditional Latte "
                                                    "on the latent cache (Ray Train)")
    finetune.add_argument("--run", required=True, help="run directory")
    finetune.add_argument("--steps", type=int, help="training steps")
    finetune.add_argument("--num-workers", type=int, help="Ray Train workers")
    _add_common(finetune)

    generate = commands.add_parser("generate", help="sample synthetic videos per class")
    generate.add_argument("--run", required=True, help="run directory")
    generate.add_argument("--per-class", type=int, help="videos per class (paper: 100)")
    generate.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    generate.add_argument("--steps", type=int, help="sampling steps")
    generate.add_argument("--scheduler", choices=SCHEDULER_NAMES)
    generate.add_argument("--num-actors", type=int, help="model replicas sampling in parallel")
    _add_common(generate)

    embed = commands.add_parser("embed", help="VideoMAE embeddings of a pool of videos")
    embed.add_argument("--run", required=True, help="run directory")
    embed.add_argument("--pool", nargs="+", choices=POOLS, help="pools to embed")
    embed.add_argument("--model", help="VideoMAE folder or hub id (default: the run's own tiny "
                                       "classifier, trained first)")
    embed.add_argument("--score-model", metavar="PATH_OR_ID",
                       help="classifier whose own-class probabilities score the videos "
                            "(mae_score, TAC-DT's min_score): a VideoMAE classifier naming the "
                            "run's classes, or 'run' for the run's own (default: the embedding "
                            "model's head)")
    _add_common(embed)

    select = commands.add_parser("select", help="select videos per class, every (method, VPC, "
                                                "seed), classes fanned out over Ray tasks")
    select.add_argument("--run", required=True, help="run directory")
    select.add_argument("--method", nargs="+", metavar="METHOD",
                        help=f"selectors, out of {', '.join(SELECTION_METHODS)}")
    select.add_argument("--vpc", nargs="+", type=int, help="videos per class, e.g. 1 5 10")
    select.add_argument("--seeds", type=int, help="seeds 0..N-1 per (method, VPC)")
    select.add_argument("--pool", choices=POOLS)
    _add_common(select)

    evaluate = commands.add_parser("evaluate", help="train a classifier on each selection "
                                                    "(Ray Train) and test it on the real test "
                                                    "split")
    evaluate.add_argument("--run", required=True, help="run directory")
    evaluate.add_argument("--method", nargs="+", metavar="METHOD",
                          help=f"selectors, out of {', '.join(SELECTION_METHODS)}")
    evaluate.add_argument("--vpc", nargs="+", type=int, help="videos per class, e.g. 1 5 10")
    evaluate.add_argument("--seeds", type=int, help="seeds 0..N-1 (selection and training)")
    evaluate.add_argument("--classifier", choices=CLASSIFIER_NAMES)
    evaluate.add_argument("--pool", nargs="+", choices=POOLS,
                          help="pools whose selections to evaluate, e.g. real synthetic "
                               "(default: the select stage's pool)")
    _add_common(evaluate)

    report = commands.add_parser("report", help="write RUN/report/report.md from what the run "
                                                "holds")
    report.add_argument("--run", required=True, help="run directory")
    _add_common(report)

    export = commands.add_parser("export", help="copy one selection's videos into a dataset "
                                                "folder (class folders, metadata.csv, "
                                                "dataset card)")
    export.add_argument("--run", required=True, help="run directory")
    export.add_argument("--method", required=True, metavar="METHOD",
                        help=f"selector, out of {', '.join(SELECTION_METHODS)}")
    export.add_argument("--vpc", type=int, required=True, help="videos per class")
    export.add_argument("--seed", type=int, default=0, help="selection seed (default 0)")
    export.add_argument("--pool", choices=POOLS, default="synthetic",
                        help="pool the selection was made from (default synthetic)")
    export.add_argument("--to", required=True, help="new or empty folder, local or s3://")

    status = commands.add_parser("status", help="what a run has done, in what time, and what "
                                                "is left (reads files only; no Ray)")
    status.add_argument("--run", required=True, help="run directory")

    run = commands.add_parser("run", help="run every unfinished stage of a run")
    run.add_argument("--config", help="YAML run config (default: RUN/config.yaml of --run)")
    run.add_argument("--run", help="run directory (overrides run_dir of --config)")
    run.add_argument("--stages", nargs="+", choices=STAGE_NAMES,
                     help="only these stages (default: every unfinished one)")
    run.add_argument("--dry-run", action="store_true",
                     help="check everything a run would and print the plan; write nothing")
    _add_decode_flags(run)
    _add_common(run)
    return parser


# Flags of the single-stage commands: argparse destination → field of the stage's config section.
STAGE_FLAGS = {
    "finetune": {"steps": "steps", "num_workers": "num_workers"},
    "generate": {"per_class": "per_class", "guidance": "guidance", "steps": "steps",
                 "scheduler": "scheduler", "num_actors": "num_actors"},
    "embed": {"pool": "pools", "model": "model", "score_model": "score_model"},
    "select": {"method": "methods", "vpc": "vpc", "seeds": "seeds", "pool": "pool"},
    "evaluate": {"method": "methods", "vpc": "vpc", "seeds": "seeds",
                 "classifier": "classifier", "pool": "pools"},
    "report": {},
}


def _decode_overrides(args: argparse.Namespace) -> dict:
    decode = {"num_frames": args.num_frames, "size": args.size}
    return {"decode": {k: v for k, v in decode.items() if v is not None}}


def _read_config(path: str) -> RunConfig:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"--config: cannot read {path} ({error})") from None
    return load_yaml(text, source=f"--config: {path}")


def config_from_args(args: argparse.Namespace) -> tuple[RunConfig, list[str] | None]:
    """The validated run config and the stages a parsed command line asks for."""
    config, stages = _stage_config(args)
    if getattr(args, "tracker", None):
        config = with_overrides(config, {"tracking": {"tracker": args.tracker}})
    return config, stages


def _stage_config(args: argparse.Namespace) -> tuple[RunConfig, list[str] | None]:
    if args.command == "ingest":
        if args.split is not None and not dataset_info(args.dataset).official_splits:
            raise ConfigError(f"--split: applies to {', '.join(split_datasets())} only")
        run = RunDir(args.out)
        if args.config:
            base = _read_config(args.config)
        else:  # rerunning ingest on an existing run keeps the run's other settings
            base = run.load_config() if run.exists("config.yaml") else RunConfig()
        ingest = {"dataset": args.dataset}
        for name in ("root", "split"):
            if getattr(args, name) is not None:
                ingest[name] = getattr(args, name)
        return with_overrides(base, {"run_dir": args.out, "ingest": ingest}), ["ingest"]
    if args.command == "decode":
        return with_overrides(RunDir(args.run).load_config(), _decode_overrides(args)), ["decode"]
    if args.command in STAGE_FLAGS:
        section = {field: getattr(args, flag) for flag, field in STAGE_FLAGS[args.command].items()
                   if getattr(args, flag) is not None}
        return (with_overrides(RunDir(args.run).load_config(), {args.command: section}),
                [args.command])
    if not (args.config or args.run):
        raise ConfigError("run: give --config, --run, or both")
    base = _read_config(args.config) if args.config else RunDir(args.run).load_config()
    overrides = _decode_overrides(args)
    if args.run:
        overrides["run_dir"] = args.run
    return with_overrides(base, overrides), args.stages


def read_only_command(args: argparse.Namespace) -> int:
    """Run ``export`` or ``status``, which read a run without Ray; returns the exit code (2
    and one line naming the flag for bad input, 1 for a file that cannot be read)."""
    from raydistill.export import export_selection
    from raydistill.layout import SelectionKey
    from raydistill.logs import error_line
    from raydistill.status import run_status

    try:
        run = RunDir(args.run)
        if args.command == "status":
            print(run_status(run))
            return 0
        _require_method(args.method)
        done = export_selection(run, SelectionKey(args.pool, args.method, args.vpc, args.seed),
                                args.to)
        print(f"export: {done.videos} videos in {done.classes} classes → {done.url}")
        return 0
    except ConfigError as error:
        print(error_line("raydistill", error), file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:  # a file that cannot be read, a corrupt one
        print(error_line("raydistill", error), file=sys.stderr)
        return 1


def _require_method(method: str) -> None:
    if method not in SELECTION_METHODS:
        raise ConfigError(f"--method: {method!r} is not a selector; choose one of "
                          f"{', '.join(SELECTION_METHODS)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raydistill`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command in ("export", "status"):
        return read_only_command(args)
    if args.command == "run" and args.dry_run:
        if args.stages:
            print("raydistill: error: --stages: the dry run plans every stage; drop --stages",
                  file=sys.stderr)
            return 2
        from raydistill.pipeline.plan import dry_run

        return dry_run("raydistill", lambda: config_from_args(args)[0], args.address)
    from raydistill.pipeline.run import run_command

    code, run = run_command("raydistill", lambda: config_from_args(args), address=args.address,
                            resource_timeout_s=args.resource_timeout)
    if run is not None:
        print(f"run directory: {run.url}")
    return code

if __name__ == "__main__":
    sys.exit(main())
