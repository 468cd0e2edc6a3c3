"""``--dry-run`` of the jobs: validate a config, its paths and the cluster's resources, and print
the stage plan, without computing or writing anything.

What each stage asks of the cluster is judged in :mod:`raydistill.pipeline.resources`: what can
never fit is an error, what waits for nodes a warning (the real run applies the same judgement).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from raydistill.config import ADDITIVE_STAGES, ConfigError, RunConfig
from raydistill.datasets.common import DatasetError
from raydistill.layout import REPORT_FOLDER
from raydistill.logs import error_line, setup_console
from raydistill.pipeline.cluster import init_ray
from raydistill.pipeline.preflight import preflight
from raydistill.pipeline.resources import Cluster, Request, cluster_view, resource_findings
from raydistill.pipeline.stage import Stage
from raydistill.pipeline.stages import STAGES, is_finished
from raydistill.runs import RunDir

log = logging.getLogger(__name__)


def stage_warnings(config: RunConfig) -> list[str]:
    """Every stage's warnings about its settings on this node (``Stage.warnings``), in stage
    order."""
    return [line for stage in STAGES if stage.warnings is not None
            for line in stage.warnings(config)]


def stage_status(run: RunDir, config: RunConfig, stage: Stage) -> str:
    """``done`` (skipped), ``adds`` (an additive stage runs what its new settings add) or
    ``run``."""
    if is_finished(run, config, stage):
        return "done"
    if stage.name in ADDITIVE_STAGES and run.is_done(stage.name):
        return "adds"
    return "run"


def dry_run(prog: str, build: Callable[[], RunConfig], address: str | None) -> int:
    """Validate everything a run would, then print the plan; compute and write nothing.

    Exit codes as :func:`run_command`: 0, 2 (bad config or a worker that can never fit,
    one ``{prog}: error:`` line on stderr) or 1 (a missing input file).
    """
    setup_console()
    try:
        config = build()
        run = preflight(config, [stage.name for stage in STAGES])
        init_ray(address)
        cluster = cluster_view()
        requests = {stage.name: stage.requests(config, cluster) for stage in STAGES}
        errors, warnings = resource_findings(
            [r for stage in requests.values() for r in stage], cluster)
        if errors:
            log.error("\n".join(f"{prog}: error: {line}" for line in errors))
            return 2
        found = input_findings(run, config)
        log.info(plan_text(prog, config, run, cluster, requests,
                           stage_warnings(config) + warnings, found))
        return 0
    except ConfigError as error:
        log.error(error_line(prog, error))
        return 2
    except (FileNotFoundError, DatasetError) as error:
        log.error(error_line(prog, error))
        return 1


def input_findings(run: RunDir, config: RunConfig) -> dict[str, str]:
    """Stage name → what its ``plan_check`` found, for the stages the run would run (a
    ConfigError from one stops the dry run)."""
    found = {}
    for stage in STAGES:
        if stage.plan_check is not None and stage_status(run, config, stage) != "done":
            line = stage.plan_check(config)
            if line:
                found[stage.name] = line
    return found


def plan_text(prog: str, config: RunConfig, run: RunDir, cluster: Cluster,
              requests: dict[str, list[Request]], warnings: list[str],
              found: dict[str, str] | None = None) -> str:
    """The dry run's report: the cluster, the warnings, one line per stage (and what its
    inputs hold, ``found``)."""
    autoscaler = ("autoscaler with known node types" if cluster.node_types_known else
                  "autoscaler detected" if cluster.autoscaler else "no autoscaler detected")
    now = (f"cluster now: {cluster.cpus:g} CPU, {cluster.gpus:g} GPU (largest node "
           f"{cluster.largest_cpus:g} CPU, {cluster.largest_gpus:g} GPU); {autoscaler}")
    lines = [f"{prog} --dry-run: nothing is computed or written", f"run directory: {run.url}",
             now]
    lines += [f"warning: {line}" for line in warnings]
    lines.append("stages:")
    for stage in STAGES:
        asks = "; ".join(r.describe() for r in requests[stage.name]) or "the driver"
        lines.append(f"  {stage.name:<9} {stage_status(run, config, stage):<5} "
                     f"{stage.describe(config)}")
        if found and stage.name in found:
            lines.append(f"  {'':<15} found: {found[stage.name]}")
        lines.append(f"  {'':<15} asks: {asks}")
    lines.append(f"report: {run.uri(REPORT_FOLDER, 'report.md')}")
    return "\n".join(lines)
