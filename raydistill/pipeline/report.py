"""Report stage: ``report/report.md`` with the paper's tables and the run's plots, redrawn from
whatever the run holds (see ``raydistill/report/report.py``)."""

from __future__ import annotations

import logging
import time

from raydistill.config import RunConfig
from raydistill.pipeline.stage import Stage
from raydistill.report.report import write_report
from raydistill.runs import RunDir

log = logging.getLogger(__name__)


def run_report(run: RunDir, config: RunConfig) -> dict:
    """Write the run's report; returns its location."""
    started = time.time()
    uri = write_report(run, pool=config.select.pool, vpc_for_plots=config.report.vpc_for_plots,
                       max_filmstrip_classes=config.report.max_filmstrip_classes)
    log.info(f"report: {uri}")
    return {"report": uri, "seconds": round(time.time() - started, 2)}


def describe(config: RunConfig) -> str:
    """The plan's line: where the report goes."""
    return f"report.md of {config.run_dir}"


STAGE = Stage("report", run_report, describe, needs=lambda config: ("ingest",), redrawn=True)
