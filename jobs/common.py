"""What the dataset jobs (``distill_k400.py``, ``distill_ssv2.py``, ``distill_ucf101.py``,
``distill_hmdb51.py``) share: their flags, the paper's settings, flags → :class:`RunConfig`, and
``--dry-run`` (validate the config, the paths and the cluster's resources, print the stage plan).

Settings are layered, later wins: the paper's settings and the flags' defaults, then the
``--config`` file, then the flags given on the command line.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import yaml

from raydistill.config import (PROPOSED_METHODS, SAMPLER_PRESETS, SELECTION_METHODS, ConfigError,
                               RunConfig, TRACKERS, from_dict, yaml_problem)
from raydistill.dataset_info import dataset_info

PAPER_METHODS = tuple(sorted(SELECTION_METHODS, key=lambda name: name not in PROPOSED_METHODS))
"""Every selector, the paper's own (``proposed``) first, each group in ``SELECTORS`` order
(``config``'s copies of the selectors' names and flags: importing the selectors takes seconds).
``attention_topk`` stands where the paper's CSTA row stands without being CSTA
(``config.RENAMED_METHODS``): the report labels it as what it is."""
FLAG_DEFAULTS: dict[str, Any] = {
    "split": 1,
    "vae": "stabilityai/sd-vae-ft-ema",
    "latte": None,
    "videomae": "MCG-NJU/videomae-base-finetuned-kinetics",
    "vpc": [1, 5, 10],
    "methods": list(PAPER_METHODS),
    "seeds": 5,
    "per_class": 100,
    "gpus_per_actor": 1.0,
    "generate_actors": 4,
    "embed_actors": 4,
    "train_workers": 4,
    "decode_cpus": 1.0,
}
"""Defaults of the flags that set config fields (one GPU node of ``cluster.yaml`` = 4 GPUs)."""

FLAG_FIELDS: dict[str, tuple[str, ...]] = {
    "data": ("ingest.root",),
    "run": ("run_dir",),
    "split": ("ingest.split",),
    "vae": ("latents.vae",),
    "latte": ("finetune.model",),
    "steps": ("finetune.steps",),
    "sampler": ("generate.scheduler", "generate.steps", "generate.guidance"),
    "videomae": ("embed.model",),
    "score_model": ("embed.score_model",),
    "vpc": ("select.vpc",),
    "methods": ("select.methods",),
    "seeds": ("select.seeds",),
    "per_class": ("generate.per_class",),
    "gpus_per_actor": ("latents.gpus_per_actor", "generate.gpus_per_actor",
                       "embed.gpus_per_actor"),
    "generate_actors": ("generate.num_actors",),
    "embed_actors": ("latents.num_actors", "embed.num_actors", "evaluate.test_actors"),
    "train_workers": ("finetune.num_workers", "select.train_workers", "evaluate.num_workers"),
    "decode_cpus": ("decode.num_cpus",),
    "tracker": ("tracking.tracker",),
}
"""Flag (argparse destination) → the config fields it sets."""
TRAIN_GPU_FIELDS = ("finetune.use_gpu", "select.use_gpu", "evaluate.use_gpu")
"""Set from ``--gpus-per-actor``: Ray Train workers take one GPU each unless it is 0."""


PAPER_FINETUNE_STEPS = {"hmdb51": 500_000, "kinetics400": 1_000_000, "ssv2": 1_000_000,
                        "ucf101": 0, "miniucf": 0}
"""Latte fine-tuning steps per dataset (the paper's Table 7). UCF101 and MiniUCF use the public
UCF101 Latte as it is (0 steps: no training, ``finetune.steps: 0``)."""
SCRATCH_STEPS = 20_000
"""Steps of a fresh Latte-XL/2 (``--from-scratch``) where the paper trains none (UCF101)."""


def paper_settings(dataset: str) -> dict:
    """The paper's fixed settings (Table 1, Sec. 4, Table 7): Latte-XL/2 on 16×256² clips
    (latents 16×4×32×32) fine-tuned for Table 7's steps, sampled as Latte's own script does
    (the ``latte`` sampler preset; the paper does not say), C3D on 16×112² clips, selection from
    the synthetic pool."""
    return {
        "ingest": {"dataset": dataset},
        # Each model's own frames: C3D takes 16 consecutive frames, Latte's UCF101 model was
        # trained on 16 frames 3 apart from a random start (its loader's frame_interval).
        "decode": {"num_frames": 16, "size": 112, "frame_interval": 1},
        "latents": {"num_frames": 16, "size": 256, "frame_interval": 3,
                    "frame_start": "random"},
        "finetune": {"architecture": "xl", "cache_latents": not dataset_info(dataset).large,
                     "steps": PAPER_FINETUNE_STEPS[dataset]},
        "generate": dict(SAMPLER_PRESETS["latte"]),
        "embed": {"pools": ["synthetic"]},
        "select": {"pool": "synthetic"},
        "evaluate": {"classifier": "c3d", "preset": "paper"},
    }


# -- command line -------------------------------------------------------------------------------

def gpus_value(text: str) -> float | None:
    """``--gpus-per-actor``: a number, or ``auto`` (1 if the cluster has GPUs at stage start)."""
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, got {text!r}") from None


def job_parser(doc: str, dataset: str, with_split: bool) -> argparse.ArgumentParser:
    """The flags every dataset job takes (``with_split``: ``--split`` for UCF101 / HMDB51).

    Flags that set config fields default to "not given" (the layering fills them in).
    """
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS)
    d = FLAG_DEFAULTS
    parser.add_argument("--data", metavar="ROOT", help="dataset root in its official layout, "
                        "local or s3:// (required unless --config sets ingest.root)")
    parser.add_argument("--run", metavar="RUN_DIR",
                        help=f"run directory, local or s3:// (default: runs/{dataset})")
    if with_split:
        parser.add_argument("--split", type=int, help="official train/test split 1-3 "
                            f"(default: {d['split']})")
    parser.add_argument("--vae", metavar="PATH_OR_ID",
                        help=f"AutoencoderKL for the 256² latents (default: {d['vae']})")
    parser.add_argument("--latte", metavar="PATH", help="local pretrained Latte weights to "
                        "fine-tune from (a .pt checkpoint or a model folder); required unless "
                        "--from-scratch")
    parser.add_argument("--from-scratch", action="store_true", default=False,
                        help="train a fresh, untrained Latte-XL/2 instead (not the paper's "
                             "setting; Table 7's steps, or "
                             f"{SCRATCH_STEPS} for UCF101 / MiniUCF, unless --steps says)")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="Latte fine-tuning steps (default: the paper's Table 7: "
                             + ", ".join(f"{name} {steps:,}" for name, steps
                                         in PAPER_FINETUNE_STEPS.items())
                             + "; 0 uses the pretrained model as it is)")
    parser.add_argument("--sampler", choices=sorted(SAMPLER_PRESETS),
                        help="sampling preset: latte (DDPM 250 steps, guidance 7, as Latte's "
                             "sample script; the default) or fast (DDIM 50 steps, guidance 4)")
    parser.add_argument("--videomae", metavar="PATH_OR_ID",
                        help=f"VideoMAE for the embeddings (default: {d['videomae']})")
    parser.add_argument("--score-model", metavar="PATH_OR_ID",
                        help="classifier of this dataset's classes whose probabilities mae_score "
                             "ranks by (a VideoMAE fine-tuned on it, or 'run' for a classifier "
                             "trained on the run's real clips); default: the --videomae head, "
                             "which names Kinetics' classes only")
    parser.add_argument("--vpc", type=int, nargs="+", metavar="K",
                        help="videos per class to select (default: 1 5 10)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        help=f"selectors, out of {', '.join(SELECTION_METHODS)} "
                             "(default: all of them)")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help=f"selection and evaluation seeds per (method, VPC) "
                             f"(default: {d['seeds']})")
    parser.add_argument("--per-class", type=int, metavar="N",
                        help=f"synthetic videos generated per class, N_c (default: "
                             f"{d['per_class']})")
    parser.add_argument("--gpus-per-actor", type=gpus_value, metavar="G|auto",
                        help="GPUs of each VAE, generation and VideoMAE actor; 0 also trains on "
                             f"CPUs (default: {d['gpus_per_actor']:g})")
    parser.add_argument("--generate-actors", type=int, metavar="N",
                        help=f"Latte replicas sampling in parallel (default: "
                             f"{d['generate_actors']})")
    parser.add_argument("--embed-actors", type=int, metavar="N",
                        help="inference actors: VAE encoding, VideoMAE embedding, classifier "
                             f"testing (default: {d['embed_actors']})")
    parser.add_argument("--train-workers", type=int, metavar="N",
                        help="Ray Train workers of fine-tuning, VST-UNet and evaluation "
                             f"(default: {d['train_workers']})")
    parser.add_argument("--decode-cpus", type=float, metavar="C",
                        help=f"CPUs per decode task (default: {d['decode_cpus']:g})")
    parser.add_argument("--tracker", choices=TRACKERS,
                        help="log training metrics to TensorBoard, MLflow or W&B (default: none)")
    parser.add_argument("--config", metavar="YAML", default=None,
                        help="run config to start from (flags given here override it)")
    parser.add_argument("--address", default=None,
                        help="Ray address to join (default: $RAY_ADDRESS, else a new local Ray)")
    parser.add_argument("--resource-timeout", type=float, default=None, metavar="SECONDS",
                        help="how long a stage waits for a node that can hold its workers "
                             "(default: $RAYDISTILL_RESOURCE_TIMEOUT_S, else 1800)")
    parser.add_argument("--dry-run", action="store_true", default=False,
                        help="check config, paths and cluster resources, print the stage plan; "
                             "run nothing, write nothing")
    return parser


def flag_settings(flags: dict) -> dict:
    """Nested config settings from ``{flag destination: value}``."""
    settings: dict = {}
    for flag, value in flags.items():
        for path in FLAG_FIELDS.get(flag, ()):
            # --sampler names a preset: each field takes the preset's value for it
            put(settings, path, SAMPLER_PRESETS[value][path.split(".")[1]]
                if flag == "sampler" else value)
        if flag == "gpus_per_actor":
            for path in TRAIN_GPU_FIELDS:
                put(settings, path, None if value is None else value > 0)
    return settings


def put(settings: dict, dotted: str, value: Any) -> None:
    """Set ``settings[a][b] = value`` for ``dotted = "a.b"``."""
    *sections, name = dotted.split(".")
    for section in sections:
        settings = settings.setdefault(section, {})
    settings[name] = value


def merged(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        both_maps = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both_maps else value
    return out


def read_config_file(path: str) -> dict:
    """The mapping in a YAML run config (validated later, with everything else)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--config: {path}: not valid YAML ({yaml_problem(error)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {path} does not hold a mapping")
    return data


def build_config(args: argparse.Namespace, dataset: str) -> RunConfig:
    """The validated run config of a job's parsed flags (:class:`ConfigError` names the field)."""
    given = {k: v for k, v in vars(args).items() if k in FLAG_FIELDS}
    defaults = {**FLAG_DEFAULTS, "run": f"runs/{dataset}"}
    settings = merged(paper_settings(dataset), flag_settings(defaults))
    steps_said = "--steps" if "steps" in given else None
    if args.config:
        from_file = read_config_file(args.config)
        ingest = from_file.get("ingest")
        named = ingest.get("dataset", dataset) if isinstance(ingest, dict) else dataset
        if named != dataset:
            raise ConfigError(f"ingest.dataset: {args.config} is for {named!r}; this job runs "
                              f"{dataset!r}")
        settings = merged(settings, from_file)
        if not steps_said and "steps" in (from_file.get("finetune") or {}):
            steps_said = f"finetune.steps in {args.config}"
    settings = merged(settings, flag_settings(given))
    return from_dict(RunConfig, latte_source(settings, getattr(args, "from_scratch", False),
                                             steps_said, "latte" in given))


def latte_source(settings: dict, from_scratch: bool, steps_said: str | None,
                 latte_given: bool = False) -> dict:
    """``settings`` checked for where the Latte comes from: pretrained weights
    (``finetune.model``, ``--latte``), or a fresh model only with ``--from-scratch`` (then
    :data:`SCRATCH_STEPS` steps where Table 7 trains none, unless ``steps_said`` names where
    the steps were set: ``--steps`` or the config file's ``finetune.steps``). ``--from-scratch``
    clears a config file's model, but not ``--latte`` (``latte_given``). Raises
    :class:`ConfigError` naming the flag."""
    finetune = settings.get("finetune", {})
    if from_scratch and latte_given:
        raise ConfigError("--from-scratch: a fresh Latte and --latte exclude each other; give "
                          "one")
    if from_scratch:  # the flag wins over a config file's finetune.model
        finetune = {**finetune, "model": None, "model_classes": None}
        settings = {**settings, "finetune": finetune}
    if finetune.get("model"):
        return settings
    if not from_scratch:
        raise ConfigError("--latte: no pretrained Latte given; the paper fine-tunes the public "
                          "Latte (pass --latte PATH), or pass --from-scratch to train a fresh "
                          "Latte-XL/2 (not the paper's setting)")
    if finetune.get("steps") == 0:
        if steps_said:
            raise ConfigError(f"{steps_said}: 0 steps keeps a pretrained Latte as it is; a fresh "
                              "one (--from-scratch) needs steps > 0")
        settings = merged(settings, {"finetune": {"steps": SCRATCH_STEPS}})
    return settings


def run_job(prog: str, parser: argparse.ArgumentParser,
            build: Callable[[argparse.Namespace], RunConfig], argv: list[str] | None) -> int:
    """Parse ``argv``; run every unfinished stage (or only plan them, ``--dry-run``)."""
    args = parser.parse_args(argv)
    # The pipeline (Ray, torch, diffusers: seconds to import) only once --help is answered.
    from raydistill.pipeline.plan import dry_run
    from raydistill.pipeline.run import run_command

    if args.dry_run:
        return dry_run(prog, lambda: build(args), args.address)
    code, run = run_command(prog, lambda: (build(args), None), address=args.address,
                            resource_timeout_s=args.resource_timeout)
    if run is not None:
        print(f"{prog} finished: {run.url}")
        print(f"report: {run.stage_summary('report')['report']}")
    return code
