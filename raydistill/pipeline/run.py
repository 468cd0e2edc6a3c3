"""Chain the stages of a run: check first (:mod:`~raydistill.pipeline.preflight`), then run
each unfinished stage of :data:`~raydistill.pipeline.stages.STAGES` in order.

A stage's completion marker is written after all of its outputs, so a run interrupted anywhere
reruns exactly the unfinished stages (and, inside a stage, only the unfinished work items).
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from raydistill.config import STAGE_NAMES, ConfigError, RunConfig
from raydistill.datasets.common import DatasetError
from raydistill.logs import error_line, run_log_file, setup_console
from raydistill.pipeline import resources
from raydistill.pipeline.cluster import init_ray
from raydistill.pipeline.preflight import preflight
from raydistill.pipeline.stages import completion_settings, is_finished, named
from raydistill.runs import RunDir

log = logging.getLogger(__name__)

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


def run_stages(config: RunConfig, stages: list[str] | None = None,
               address: str | None = None, resource_timeout_s: float | None = None) -> RunDir:
    """Run ``stages`` (default: all, in order) of the run described by ``config``.

    Makes every check of :func:`~raydistill.pipeline.preflight.preflight`, takes the run
    directory's lease (:class:`~raydistill.lease.RunLease`: a run another job works in is
    refused with :class:`~raydistill.lease.RunInUse`), saves
    ``config.yaml``, starts or joins Ray, then runs each stage that has no completion marker yet,
    logging a header per stage (``[5/9] generate: …``) and what it skips, into the console and
    ``RUN/logs/`` (:mod:`raydistill.logs`); releases the lease at the end, also on errors.
    Returns the run directory.

    Before anything is written, it also refuses a worker no node of the cluster can ever hold
    (:func:`~raydistill.pipeline.resources.check_resources`); a worker that nodes joining could
    hold is waited for when its stage starts, at most ``resource_timeout_s`` seconds
    (:func:`resource_timeout`).
    """
    setup_console()
    to_run = named(STAGE_NAMES if stages is None else stages)
    run = preflight(config, [stage.name for stage in to_run])
    timeout_s = resource_timeout(resource_timeout_s)
    lease = run.lease()
    lease.refuse_if_held()  # a busy run is refused before Ray's start-up, not after it
    init_ray(address)
    # Before the lease, which creates the run directory: an impossible ask writes nothing.
    resources.check_resources([s for s in to_run if not is_finished(run, config, s)], config)
    with lease, run_log_file(run) as log_file:
        try:
            run.save_config(config)
            for number, stage in enumerate(to_run, 1):
                step = f"[{number}/{len(to_run)}] {stage.name}"
                lease.check()
                if is_finished(run, config, stage):
                    log.info(f"{step}: already done, skipped")
                    continue
                log.info(f"{step}: {stage.describe(config)}")
                if stage.check_inputs is not None:  # earlier stages may have added to the run
                    stage.check_inputs(run, config)
                resources.wait_for_resources(stage, config, timeout_s)
                started = time.time()
                summary = stage.run(run, config)
                summary["wall_seconds"] = round(time.time() - started, 2)
                run.mark_done(stage.name, summary, completion_settings(stage, config))
                log_file.sync()
        except BaseException as error:  # the file keeps the traceback; the console one line
            log.debug(f"stopped by {type(error).__name__}: {error}", exc_info=True)
            raise
    return run


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
    setup_console()
    try:
        config, stages = build()
        return 0, run_stages(config, stages, address=address,
                             resource_timeout_s=resource_timeout_s)
    except ConfigError as error:
        log.error(error_line(prog, error))
        return 2, None
    except (FileNotFoundError, DatasetError) as error:
        cause = storage_cause(error) if isinstance(error, FileNotFoundError) else None
        wrapped = cause is not None and cause is not error  # raised in a Ray task
        log.error(error_line(prog, describe_storage_error(cause) if wrapped else error))
        return 1, None
    except Exception as error:
        cause = storage_cause(error)
        if cause is None:
            raise
        log.error(error_line(prog, describe_storage_error(cause)))
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
