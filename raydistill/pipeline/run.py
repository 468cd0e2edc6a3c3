"""Chain the stages of a run: validate first, then run each unfinished stage in order.

A stage's completion marker is written after all of its outputs, so a run interrupted anywhere
reruns exactly the unfinished stages (and, inside a stage, only the unfinished work items).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from raydistill.config import ADDITIVE_STAGES, STAGE_NAMES, ConfigError, RunConfig, to_dict
from raydistill.datasets.common import DatasetError
from raydistill.layout import MANIFEST
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
        if not _exists(fs, path, "ingest.root", root):
            raise ConfigError(f"ingest.root: {root} does not exist")
    fs, path = _open(config.run_dir, "run_dir")
    if not is_local(fs):  # a local run directory is created; a bucket must exist already
        bucket = path.split("/")[0]
        if not _exists(fs, bucket, "run_dir", config.run_dir):
            raise ConfigError(f"run_dir: bucket {bucket!r} of {config.run_dir} does not exist")
    elif fs.exists(path) and not fs.isdir(path):
        raise ConfigError(f"run_dir: {config.run_dir} is a file, not a directory")


def _exists(fs, path: str, field_name: str, url: str) -> bool:
    """``fs.exists(path)``; ConfigError naming the field when the storage cannot be asked (wrong
    credentials, an endpoint that does not answer)."""
    try:
        return fs.exists(path)
    except Exception as error:  # s3fs / botocore raise many types; each means "cannot reach"
        raise ConfigError(f"{field_name}: cannot reach {url}: {type(error).__name__}: "
                          f"{error}") from None


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


def validate_real_pool_size(run: RunDir, config: RunConfig) -> None:
    """Check ``select.vpc`` against the real pool once the run's manifest exists (the synthetic
    pool's size, ``generate.per_class``, is checked with the config itself).

    Raises :class:`ConfigError` naming ``select.vpc`` when a VPC is more than the training videos
    of some class: every method would keep that whole class, and the comparison means nothing.
    """
    if (config.select.pool != "real" or not run.is_done("ingest")
            or not run.exists(MANIFEST)):
        return
    manifest = run.read_table(MANIFEST)
    per_class = Counter(name for name, split in zip(manifest.column("class_name").to_pylist(),
                                                    manifest.column("split").to_pylist())
                        if split == "train")
    # A class of the class list without a single training video counts too (as 0).
    for name in run.stage_summary("ingest").get("class_names") or []:
        per_class.setdefault(name, 0)
    if not per_class:
        return
    smallest, count = min(per_class.items(), key=lambda item: (item[1], item[0]))
    largest_vpc = max(config.select.vpc)
    if largest_vpc > count:
        raise ConfigError(f"select.vpc: {largest_vpc} videos per class is more than the {count} "
                          f"training videos of class {smallest!r} in the real pool "
                          f"({run.uri(MANIFEST)})")


RESOURCE_TIMEOUT_ENV = "RAYDISTILL_RESOURCE_TIMEOUT_S"
DEFAULT_RESOURCE_TIMEOUT_S = 1800.0
"""How long a stage waits, by default, for a node that can hold its workers (a GPU node the
autoscaler starts: minutes, image pull included) before the run fails naming the field."""


def resource_timeout(seconds: float | None = None) -> float:
    """The wait for nodes (see :func:`~raydistill.pipeline.resources.wait_for_resources`):
    ``seconds`` (``--resource-timeout``), else ``$RAYDISTILL_RESOURCE_TIMEOUT_S``, else
    :data:`DEFAULT_RESOURCE_TIMEOUT_S`. Raises :class:`ConfigError` naming the flag or variable
    for a value that is not a number of seconds >= 0."""
    name = "--resource-timeout"
    if seconds is None:
        text = os.environ.get(RESOURCE_TIMEOUT_ENV)
        if text is None:
            return DEFAULT_RESOURCE_TIMEOUT_S
        name = f"${RESOURCE_TIMEOUT_ENV}"
        try:
            seconds = float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected a number of seconds, got {text!r}") from None
    if not seconds >= 0:
        raise ConfigError(f"{name}: must be a number of seconds >= 0, got {seconds!r}")
    return float(seconds)


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
               address: str | None = None, resource_timeout_s: float | None = None) -> RunDir:
    """Run ``stages`` (default: all, in order) of the run described by ``config``.

    Validates paths, takes the run directory's lease (:class:`~raydistill.lease.RunLease`: a run
    another job works in is refused with :class:`~raydistill.lease.RunInUse`), saves
    ``config.yaml``, starts or joins Ray, then runs each stage that has no completion marker yet,
    printing what it skips; releases the lease at the end, also on errors. Returns the run
    directory.

    Before anything is written, it also refuses a changed section of a finished stage, a VPC
    larger than the real pool, and a worker no node of the cluster can ever hold
    (:func:`~raydistill.pipeline.resources.check_resources`); a worker that nodes joining could hold
    is waited for when its stage starts, at most ``resource_timeout_s`` seconds
    (:func:`resource_timeout`).
    """
    names = list(STAGES) if stages is None else stages
    unknown = [name for name in names if name not in STAGES]
    if unknown:
        raise ConfigError(f"stages: unknown stage {unknown[0]!r}; known: {', '.join(STAGES)}")
    validate_paths(config)
    validate_selection_params(config)
    validate_evaluation(config)  # every stage's settings, whichever stages run now
    run = RunDir(config.run_dir)
    _check_order(run, config, names)
    from raydistill.pipeline import plan, resources  # plan imports this module

    plan.check_frozen_sections(run, config)
    if "select" in names:
        validate_real_pool_size(run, config)
    timeout_s = resource_timeout(resource_timeout_s)
    lease = run.lease()
    lease.refuse_if_held()  # a busy run is refused before Ray's start-up, not after it
    init_ray(address)
    # Before the lease, which creates the run directory: an impossible ask writes nothing.
    resources.check_resources([n for n in names if not is_finished(run, config, n)], config)
    with lease:
        run.save_config(config)
        for name in names:
            lease.check()
            if is_finished(run, config, name):
                print(f"{name}: already done, skipped", flush=True)
                continue
            if name == "select":  # the manifest may be new
                validate_real_pool_size(run, config)
            resources.wait_for_resources(name, config, timeout_s)
            started = time.time()
            summary = STAGES[name](run, config)
            summary["wall_seconds"] = round(time.time() - started, 2)
            run.mark_done(name, summary, to_dict(getattr(config, name)))
    return run


def error_line(prog: str, error: BaseException) -> str:
    """``{prog}: error: {message}`` on one line, whatever newlines the message holds."""
    return f"{prog}: error: {' '.join(str(error).split())}"


def run_command(prog: str, build: Callable[[], tuple[RunConfig, list[str] | None]],
                address: str | None = None,
                resource_timeout_s: float | None = None) -> tuple[int, RunDir | None]:
    """Build a config with ``build`` and run its stages, as a command line does
    (``resource_timeout_s``: see :func:`run_stages`).

    Returns ``(exit code, run directory)``: 0 and the run on success; 2 for a bad config and 1
    for a missing input file, a storage failure (a full disk, an S3 endpoint that does not
    answer, refused credentials), each after one ``{prog}: error: ...`` line on stderr naming
    the path or URL and the cause (run None).
    """
    try:
        config, stages = build()
        return 0, run_stages(config, stages, address=address,
                             resource_timeout_s=resource_timeout_s)
    except ConfigError as error:
        print(error_line(prog, error), file=sys.stderr)
        return 2, None
    except (FileNotFoundError, DatasetError) as error:
        cause = storage_cause(error) if isinstance(error, FileNotFoundError) else None
        wrapped = cause is not None and cause is not error  # raised in a Ray task
        print(error_line(prog, describe_storage_error(cause) if wrapped else error),
              file=sys.stderr)
        return 1, None
    except Exception as error:
        cause = storage_cause(error)
        if cause is None:
            raise
        print(error_line(prog, describe_storage_error(cause)), file=sys.stderr)
        return 1, None


def storage_cause(error: BaseException) -> BaseException | None:
    """The storage failure behind ``error`` (an ``OSError`` such as a full disk, a botocore
    error such as an S3 endpoint that does not answer), also when a Ray task or a Ray Data
    operator raised it and Ray wrapped it; None for any other error."""
    from ray.exceptions import RayError

    seen, current = set(), error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, RayError):  # "RayTaskError(OSError)" is an OSError without a path
            inner = getattr(current, "cause", None) or current.__cause__
            if inner is None or isinstance(inner, RayError) and not getattr(inner, "cause", 0):
                # Ray Data keeps a UDF's error only as text in the remote traceback.
                return _os_error_in(getattr(current, "traceback_str", "") or str(current))
            current = inner
            continue
        if isinstance(current, (OSError, BotoCoreError, ClientError)):
            return current
        current = current.__cause__ or current.__context__
    return None


_OS_ERROR_LINE = re.compile(
    r"^(?:\w+\.)*(?:OSError|\w+Error): \[Errno (\d+)\] ([^\n]*?)(?:: '([^'\n]*)')?$", re.M)


def _os_error_in(text: str) -> OSError | None:
    """The last ``OSError`` a remote traceback's text shows (errno, message, file), or None."""
    found = _OS_ERROR_LINE.findall(text)
    if not found:
        return None
    number, message, filename = found[-1]
    return OSError(int(number), message, filename or None)


def describe_storage_error(error: BaseException) -> str:
    """``PATH: CAUSE`` of an ``OSError``, ``storage: TYPE: MESSAGE`` of a botocore error."""
    if isinstance(error, OSError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror or error}"
    return f"storage: {type(error).__name__}: {error}"
