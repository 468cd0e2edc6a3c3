"""``raydistill status --run RUN``: where a run stands, read from its files alone (no Ray).

One line per stage in pipeline order: done (with its wall time and the counts its summary
holds) or left to do; then the lease of a job working in it now, if any.
"""

from __future__ import annotations

import time

from raydistill.config import STAGE_NAMES, ConfigError
from raydistill.report.tables import format_duration, stage_markers
from raydistill.runs import RunDir

COUNTS = {
    "ingest": ("videos", "classes", "rejects"),
    "decode": ("clips", "decode_errors"),
    "latents": ("latents",),
    "finetune": ("steps",),
    "generate": ("videos", "per_class"),
    "select": ("selections",),
    "evaluate": ("evaluations", "trained_now"),
}
"""The summary fields each stage's status line shows, where its summary has them."""


def run_status(run: RunDir) -> str:
    """The status of ``run`` as text: its URL, a line per stage, what is left. ConfigError
    when the folder holds no run."""
    if not run.exists("config.yaml"):
        raise ConfigError(f"--run: {run.url} holds no run (no config.yaml)")
    markers = stage_markers(run)
    lines = [f"run {run.url}"]
    total = 0.0
    for name in STAGE_NAMES:
        marker = markers.get(name)
        if marker is None:
            lines.append(f"  {name:<9} not done")
            continue
        summary = marker.get("summary") or {}
        seconds = summary.get("wall_seconds", summary.get("seconds")) or 0.0
        total += seconds
        counts = [f"{summary[field]} {field.replace('_', ' ')}" for field in COUNTS.get(name, ())
                  if isinstance(summary.get(field), (int, float))]
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(marker.get("finished_at") or 0))
        lines.append(f"  {name:<9} done in {format_duration(seconds)} ({when} UTC)"
                     + (f": {', '.join(counts)}" if counts else ""))
    left = [name for name in STAGE_NAMES if name not in markers]
    lines.append(f"  stages' wall time: {format_duration(total)}")
    lines.append(f"left: {', '.join(left)}" if left else "every stage is done")
    holder = run.lease().holder()
    if holder:
        lines.append(f"in use by {holder}")
    return "\n".join(lines)
