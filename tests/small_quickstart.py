"""The small quickstart run that several slow tests share (every stage, every selector).

Running the quickstart job takes minutes even at this size (a Ray Train or Ray Data start per
stage), so one session fixture (``small_quickstart`` in conftest.py) runs it once: the quickstart
tests check what it wrote, the fault tests compare their interrupted runs with it, and the
``ray job submit`` test compares the submitted job's run with it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

JOB = Path(__file__).resolve().parents[1] / "jobs" / "quickstart.py"
SIZE = {"classes": 2, "train_per_class": 4, "test_per_class": 2, "steps": 12, "per_class": 3,
        "seeds": 1, "eval_epochs": 2, "methods": "all", "smoke": True}
FLAGS = [part for name, value in SIZE.items() if name != "smoke"
         for part in (f"--{name.replace('_', '-')}", str(value))] + ["--smoke"]
"""The job's command-line flags for :data:`SIZE`."""
TRACKER = ["--tracker", "tensorboard"]
"""The shared run also logs its training loops (``RUN/tracking/``, which no fingerprint holds):
the tracking tests read what it logged."""
RUN_NAME = "quick"
"""The run's folder, relative to the working directory the job ran in (as the README runs it)."""


def load_job():
    """The quickstart job as a module (``main(argv)``, ``quickstart_config(...)``)."""
    spec = importlib.util.spec_from_file_location("quickstart_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
