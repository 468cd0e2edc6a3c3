"""Chain the stages of a run: validate first, then run each unfinished stage in order.

A stage's completion marker is written after all of its outputs, so a run interrupted anywhere
reruns exactly the unfinished stages (and, inside a stage, only the unfinished work items).
"""

from __future__ import annotations

import sys
import time
from typing import Callable

from raydistill.config import ADDITIVE_STAGES, STAGE_NAMES, ConfigError, RunConfig, to_dict
from raydistill.datasets.common import DatasetError
from raydistill.pipeline.cluster import init_ray
from raydistill.pipeline.decode import run_decode
from raydistill.pipeline.embed import run_embed
from raydistill.pipeline.evaluate import run_evaluate, validate_evaluation
from raydistill.pipeline.finetune import run_finetune
from raydistill.pipeline.generate import run_generate
from raydistill.pipeline.ingest import run_ingest
from raydistill.pipeline.latents import run_latents
from raydistill.pipeline.report import run_report
from raydistill.pipeline.select import run_select
from raydistill.runs import RunDir, is_local, open_fs

# The stages in order (config.STAGE_NAMES): name → function(run, config) -> summary dict.
STAGES: dict[str, Callable[[RunDir, RunConfig], dict]] = {
    "ingest": run_ingest,
    "decode": run_decode,
    "latents": run_latents,
    "finetune": run_finetune,
    "generate": run_generate,
    "embed": run_embed,
    "select": run_select,
    "evaluate": run_evaluate,
    "report": run_report,
}
assert tuple(STAGES) == STAGE_NAMES


def validate_paths(config: RunConfig) -> None:
    """Check that the dataset root exists, and the bucket of a remote run directory.

    Raises :class:`ConfigError` naming the field, before any work starts.
    """
    root = config.ingest.root
    if root is not None and config.ingest.dataset != "toy":  # toy: where it will be generated
        fs, path = _open(root, "ingest.root")
        if not fs.exists(path):
            raise ConfigError(f"ingest.root: {root} does not exist")
    fs, path = _open(config.run_dir, "run_dir")
    if not is_local(fs):  # a local run directory is created; a bucket must exist already
        bucket = path.split("/")[0]
        if not fs.exists(bucket):
            raise ConfigError(f"run_dir: bucket {bucket!r} of {config.run_dir} does not exist")


def validate_selection_params(config: RunConfig) -> None:
    """Build every selector of ``select.params`` once, so a parameter the method does not have
    stops the run before any work (:class:`ConfigError` naming it)."""
    from raydistill.selection import SELECTORS

    for method, params in config.select.params.items():
        known = sorted(set(SELECTORS[method]().get_params()) - {"n_per_class", "random_state"})
        for name in params:
            if name not in known:
                raise ConfigError(f"select.params.{method}.{name}: not a parameter of "
                                  f"{method} (known: {', '.join(known) or 'none'})")


def _open(url: str, field: str):
    try:
        return open_fs(url)
    except (ValueError, ImportError) as error:
        raise ConfigError(f"{field}: cannot open {url} ({error})") from None


def requirements(name: str, config: RunConfig) -> list[str]:
    """The stages that must have finished before stage ``name`` can run.

    Each stage needs the one before it, except that embedding and selecting real videos only
    (coreset selection) needs no diffusion model: ``embed`` of the ``real`` pool needs ``decode``
    (toy runs train their embedding classifier on the clip cache); ``select`` needs ``embed``,
    and for ``vst_unet`` the pool's latents (``latents`` for real videos, ``generate`` for
    synthetic ones).
    """
    order = list(STAGES)
    if name == "embed" and "synthetic" not in config.embed.pools:
        return ["ingest", "decode"]
    if name == "select":
        needs = [] if config.select.methods == ("vst_unet",) else ["embed"]
        if "vst_unet" in config.select.methods:  # it selects from the pool's VAE latents
            needs.append("latents" if config.select.pool == "real" else "generate")
        return _with_requirements(needs, config)
    if name == "evaluate":
        needs = ["decode", "select"] + (["generate"] if config.evaluate.full_synthetic else [])
        return _with_requirements(needs, config)
    if name == "report":
        return ["ingest"]  # it draws whatever the run holds
    return order[:order.index(name)]


def _with_requirements(needs: list[str], config: RunConfig) -> list[str]:
    """``needs`` and everything they need, in stage order."""
    order = list(STAGES)
    return sorted({earlier for need in needs for earlier in requirements(need, config)}
                  | set(needs), key=order.index)


def _check_order(run: RunDir, config: RunConfig, names: list[str]) -> None:
    """Refuse a stage whose required stages are neither finished nor run before it now."""
    for position, name in enumerate(names):
        for earlier in requirements(name, config):
            if earlier not in names[:position] and not run.is_done(earlier):
                raise ConfigError(f"stages: {name} needs the {earlier} stage of {run.url} "
                                  f"first (`raydistill run --run {run.url}` runs what is "
                                  "missing)")


def is_finished(run: RunDir, config: RunConfig, name: str) -> bool:
    """Whether stage ``name`` has nothing left to do: finished, and, for an additive stage
    (``embed``, ``select``, ``evaluate``), finished with the settings asked for now. The report
    is never finished: it is redrawn from whatever the run holds."""
    if name == "report":
        return False
    if name in ADDITIVE_STAGES:
        return run.is_done_with(name, to_dict(getattr(config, name)))
    return run.is_done(name)


def run_stages(config: RunConfig, stages: list[str] | None = None,
               address: str | None = None) -> RunDir:
    """Run ``stages`` (default: all, in order) of the run described by ``config``.

    Validates paths, saves ``config.yaml``, starts or joins Ray, then runs each stage that has no
    completion marker yet, printing what it skips. Returns the run directory.
    """
    names = list(STAGES) if stages is None else stages
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown stage {unknown[0]!r}; known: {', '.join(STAGES)}")
    validate_paths(config)
    validate_selection_params(config)
    if "evaluate" in names:
        validate_evaluation(config)
    run = RunDir(config.run_dir)
    _check_order(run, config, names)
    run.save_config(config)
    init_ray(address)
    for name in names:
        if is_finished(run, config, name):
            print(f"{name}: already done, skipped", flush=True)
            continue
        started = time.time()
        summary = STAGES[name](run, config)
        summary["wall_seconds"] = round(time.time() - started, 2)
        run.mark_done(name, summary, to_dict(getattr(config, name)))
    return run


def run_command(prog: str, build: Callable[[], tuple[RunConfig, list[str] | None]],
                address: str | None = None) -> tuple[int, RunDir | None]:
    """Build a config with ``build`` and run its stages, as a command line does.

    Returns ``(exit code, run directory)``: 0 and the run on success; 2 for a bad config and 1
    for a missing input file, each after one ``{prog}: error: ...`` line on stderr (run None).
    """
    try:
        config, stages = build()
        return 0, run_stages(config, stages, address=address)
    except ConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2, None
    except (FileNotFoundError, DatasetError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1, None
