"""``--dry-run`` of the jobs: validate a config, its paths and the cluster's resources, and print
the stage plan, without computing or writing anything.

What each stage asks of the cluster is judged in :mod:`raydistill.pipeline.resources`: what can
never fit is an error, what waits for nodes a warning (the real run applies the same judgement).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


from raydistill.config import (ADDITIVE_STAGES, PLACEMENT_FIELDS, SAMPLER_PRESETS, SCORE_RUN,
                               STAGE_NAMES, ConfigError, RunConfig, to_dict)
from raydistill.datasets.common import DatasetError
from raydistill.embedding.videomae_v2 import CHECKPOINT_SUFFIXES
from raydistill.layout import REPORT_FOLDER
from raydistill.pipeline.resources import (Cluster, Request, cluster_view, resource_findings,
                                           stage_requests)
from raydistill.pipeline.run import error_line, is_finished, validate_paths
from raydistill.runs import RunDir

def frames_said(section) -> str:
    """How a ``decode`` or ``latents`` section samples a clip's frames, in words."""
    if section.frame_interval is None:
        return "frames spread over the video"
    start = "centred" if section.frame_start == "center" else "random start"
    return f"frames {section.frame_interval} apart, {start}"


def model_source(value: str | None, when_none: str, local_only: bool = False) -> str:
    """How a model path or hub id will be found: ``when_none``, a local path, or a hub id (a
    ``local_only`` model, as the Latte, or a checkpoint file such as an original VideoMAE V2
    ``.pth``, is never a hub id: a path this node lacks)."""
    if value is None:
        return when_none
    if os.path.exists(os.path.expanduser(value)):
        return f"{value} (local)"
    if local_only or value.lower().endswith(CHECKPOINT_SUFFIXES):
        return f"{value} (a local path, not on this node)"
    return f"{value} (hub id: downloaded on first use, or read from the HF cache)"


def model_warnings(config: RunConfig) -> list[str]:
    """Model paths that do not exist on this node. The Latte weights load from a local file or
    folder only; the others may also be hub ids. Warnings, not errors: the workers that load
    them may see paths this node does not."""
    models = {"latents.vae": config.latents.vae, "finetune.model": config.finetune.model,
              "embed.model": config.embed.model}
    if config.embed.score_model != SCORE_RUN:
        models["embed.score_model"] = config.embed.score_model
    local_only = ("finetune.model", "finetune.model_classes")
    if config.finetune.model_classes != "ucf101":
        models["finetune.model_classes"] = config.finetune.model_classes
    return [f"{field}: {value} does not exist on this node"
            for field, value in models.items()
            if value and not os.path.exists(os.path.expanduser(value))
            and (field in local_only or value.startswith(("/", ".", "~"))
                 or value.lower().endswith(CHECKPOINT_SUFFIXES))]


def stage_settings(name: str, config: RunConfig) -> str:
    """The main settings of stage ``name``, one line."""
    c = config
    if name == "ingest":
        with_split = c.ingest.dataset in ("ucf101", "miniucf", "hmdb51")
        split = f", split {c.ingest.split}" if with_split else ""
        return f"{c.ingest.dataset}{split} from {c.ingest.root}"
    if name == "decode":
        return (f"{c.decode.num_frames}×{c.decode.size}² clips for the classifier "
                f"({frames_said(c.decode)}), {c.decode.shard_size} videos per shard")
    if name == "latents":
        side = c.latents.size // 8  # the SD VAE downsamples 8×
        return (f"{c.latents.num_frames}×{c.latents.size}² clips ({frames_said(c.latents)}) → "
                f"{c.latents.num_frames}×4×{side}×{side} latents, VAE "
                f"{model_source(c.latents.vae, 'tiny, trained on the run first')}")
    if name == "finetune":
        f = c.finetune
        architecture = {"xl": "Latte-XL/2", "small": "small Latte",
                        "tiny": "tiny Latte"}[f.architecture]
        rows = ("" if not f.model else
                f" (label rows by class name: {f.model_classes or 'where the model names them'})")
        source = model_source(f.model, "scratch", local_only=True)
        if f.steps == 0:
            return f"{architecture} {source}{rows} used as it is (0 steps: no training)"
        return (f"{architecture} from {source}{rows}, {f.steps:,} steps, batch "
                f"{f.batch_size}/worker, lr {f.learning_rate:g}, {f.prediction_type}, "
                f"cache_latents {f.cache_latents}")
    if name == "generate":
        g = c.generate
        named = [f" ({name} sampler)" for name, preset in SAMPLER_PRESETS.items()
                 if preset == {"scheduler": g.scheduler, "steps": g.steps,
                               "guidance": g.guidance}]
        return (f"{g.per_class} videos per class, {g.scheduler} {g.steps} steps, "
                f"guidance {g.guidance:g}{''.join(named)}")
    if name == "embed":
        own = ("C3D, trained on the run's real clips first" if c.embed.run_classifier == "c3d"
               else "VideoMAE, tiny, trained on the run's real clips first")
        scores = ("" if c.embed.score_model is None
                  else ", scores from the run's own classifier (trained first)"
                  if c.embed.score_model == SCORE_RUN
                  else f", scores from {model_source(c.embed.score_model, '')}")
        return (f"pools {', '.join(c.embed.pools)}, "
                f"{'VideoMAE ' + model_source(c.embed.model, own) if c.embed.model else own}"
                f"{scores}")
    if name == "select":
        s = c.select
        return (f"{' '.join(s.methods)} × VPC {' '.join(map(str, s.vpc))} × {s.seeds} seeds "
                f"from the {s.pool} pool")
    if name == "evaluate":
        e = c.evaluate
        bounds = [b for b, on in (("full real", e.full_real),
                                  ("full synthetic", e.full_synthetic)) if on]
        return (f"{e.classifier} ({e.preset} preset) per selection"
                f"{' + ' + ', '.join(bounds) if bounds else ''}, tested on the real test "
                "split (val where there is none)")
    return f"report.md of {c.run_dir}"


def stage_status(run: RunDir, config: RunConfig, name: str) -> str:
    """``done`` (skipped), ``adds`` (an additive stage runs what its new settings add) or
    ``run``."""
    if is_finished(run, config, name):
        return "done"
    if name in ADDITIVE_STAGES and run.is_done(name):
        return "adds"
    return "run"


def check_frozen_sections(run: RunDir, config: RunConfig) -> None:
    """Refuse, as the run would, a changed section of a stage that finished in this run
    directory (reads ``config.yaml``, writes nothing)."""
    if not run.exists("config.yaml"):
        return
    saved, wanted = to_dict(run.load_config()), to_dict(config)
    for name in STAGE_NAMES:
        if name in ADDITIVE_STAGES or not run.is_done(name):
            continue
        changed = [key for key in wanted[name] if wanted[name][key] != saved[name].get(key)
                   and key not in PLACEMENT_FIELDS]
        if changed:
            raise ConfigError(f"{name}.{changed[0]}: {run.url} already holds a finished {name} "
                              "stage made with a different value; use a new run directory")


def dry_run(prog: str, build: Callable[[], RunConfig], address: str | None) -> int:
    """Validate everything a run would, then print the plan; compute and write nothing.

    Exit codes as :func:`run_command`: 0, 2 (bad config or a worker that can never fit,
    one ``{prog}: error:`` line on stderr) or 1 (a missing input file).
    """
    from raydistill.pipeline.cluster import init_ray
    from raydistill.pipeline.evaluate import validate_evaluation
    from raydistill.pipeline.run import validate_selection_params

    try:
        config = build()
        validate_paths(config)
        validate_selection_params(config)
        validate_evaluation(config)
        run = RunDir(config.run_dir)
        check_frozen_sections(run, config)
        init_ray(address)
        cluster = cluster_view()
        requests = {name: stage_requests(name, config, cluster) for name in STAGE_NAMES}
        errors, warnings = resource_findings(
            [r for stage in requests.values() for r in stage], cluster)
        if errors:
            print("\n".join(f"{prog}: error: {line}" for line in errors), file=sys.stderr)
            return 2
        print(plan_text(prog, config, run, cluster, requests, model_warnings(config) + warnings))
        return 0
    except ConfigError as error:
        print(error_line(prog, error), file=sys.stderr)
        return 2
    except (FileNotFoundError, DatasetError) as error:
        print(error_line(prog, error), file=sys.stderr)
        return 1


def plan_text(prog: str, config: RunConfig, run: RunDir, cluster: Cluster,
              requests: dict[str, list[Request]], warnings: list[str]) -> str:
    """The dry run's report: the cluster, the warnings, one line per stage."""
    autoscaler = ("autoscaler with known node types" if cluster.node_types_known else
                  "autoscaler detected" if cluster.autoscaler else "no autoscaler detected")
    now = (f"cluster now: {cluster.cpus:g} CPU, {cluster.gpus:g} GPU (largest node "
           f"{cluster.largest_cpus:g} CPU, {cluster.largest_gpus:g} GPU); {autoscaler}")
    lines = [f"{prog} --dry-run: nothing is computed or written", f"run directory: {run.url}",
             now]
    lines += [f"warning: {line}" for line in warnings]
    lines.append("stages:")
    for name in STAGE_NAMES:
        asks = "; ".join(r.describe() for r in requests[name]) or "the driver"
        lines.append(f"  {name:<9} {stage_status(run, config, name):<5} "
                     f"{stage_settings(name, config)}")
        lines.append(f"  {'':<15} asks: {asks}")
    lines.append(f"report: {run.uri(REPORT_FOLDER, 'report.md')}")
    return "\n".join(lines)
