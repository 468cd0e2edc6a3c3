"""Experiment tracking: the training loops log their metrics to TensorBoard, MLflow or W&B.

Ray Train's documented pattern: each training loop logs through the tracker's own API from
its rank-0 worker, one tracking run per trained model (``finetune``,
``select/{pool}/vst_unet/vpc=K/seed=S``, ``evaluate/{job key}``); Tune sweeps log their trials
with Tune's logger callbacks (:func:`tune_callbacks`). A tracking run has a stable name, so a
model whose training resumes after a lost worker logs on into the same run.

:func:`tracking_target` resolves the run's ``tracking`` section on the driver into a JSON-ready
dict that the workers get; :func:`open_tracker` opens one tracking run from it. Nothing here
imports Ray or a tracker's package until that tracker is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import uuid
from typing import Mapping

from raydistill.config import ConfigError, RunConfig, TrackingConfig

PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
"""The package each tracker needs (tensorboardX comes with Ray)."""
INSTALL = {"tensorboard": "pip install tensorboardX",
           "mlflow": "pip install 'raydistill[tracking]'", "wandb": "pip install wandb"}
"""How to install each tracker's package."""
FOLDERS = {"tensorboard": "tensorboard", "mlflow": "mlruns", "wandb": "wandb"}
"""Each tracker's folder under ``RUN/tracking/`` when ``tracking.uri`` is not given."""
NAME_TAG = "raydistill.model"
"""The MLflow tag holding a tracking run's stable name (found again on resume)."""


def tracking_target(config: RunConfig) -> dict | None:
    """The run's tracker for the workers: ``{"tracker", "uri", "experiment"}`` (absolute
    paths), or None when ``tracking.tracker`` is ``none``. Raises :class:`ConfigError` naming
    ``tracking.tracker`` when its package is missing and ``tracking.uri`` when a run on S3 names
    no location."""
    tracking = config.tracking
    if tracking.tracker == "none":
        return None
    check_installed(tracking)
    run_dir = config.run_dir.rstrip("/")
    on_s3 = "://" in run_dir and not run_dir.startswith("file://")
    if tracking.uri is None and on_s3:
        server = ", or an MLflow server URL" if tracking.tracker == "mlflow" else ""
        raise ConfigError(f"tracking.uri: the run is on {run_dir.split('://')[0]}; name where "
                          f"{tracking.tracker} should log (a folder every node reaches{server})")
    uri = tracking.uri or os.path.join(run_dir.removeprefix("file://"), "tracking",
                                       FOLDERS[tracking.tracker])
    if "://" not in uri and not uri.startswith("file:"):
        uri = os.path.abspath(uri)  # the workers' working directories differ from the driver's
    experiment = tracking.experiment or os.path.basename(run_dir) or "raydistill"
    return {"tracker": tracking.tracker, "uri": uri, "experiment": experiment}


def check_installed(tracking: TrackingConfig) -> None:
    """Raise :class:`ConfigError` naming ``tracking.tracker`` when its package is missing."""
    package = PACKAGES.get(tracking.tracker)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"tracking.tracker: {tracking.tracker} needs the {package} package "
                          f"({INSTALL[tracking.tracker]})")


class Tracker:
    """One tracking run: :meth:`log` numeric metrics at a step, :meth:`close` when done. The
    base class logs nothing (``tracking.tracker: none``)."""

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Log the finite numbers of ``metrics`` at ``step`` (other values are skipped)."""

    def close(self) -> None:
        """Flush and end the tracking run."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def numeric(metrics: Mapping[str, object]) -> dict[str, float]:
    """The entries of ``metrics`` that are finite numbers, as floats."""
    return {name: float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value))}


class TensorBoardTracker(Tracker):
    """Scalars in ``{uri}/{name}/events.out.tfevents.*`` (tensorboardX), one tag per metric;
    the parameters as a JSON text entry."""

    def __init__(self, uri: str, name: str, params: Mapping | None):
        from tensorboardX import SummaryWriter

        # Its file is named by the second it was opened in: a job resumed within that second
        # would overwrite the first file without a suffix of its own.
        self.writer = SummaryWriter(logdir=os.path.join(uri, name), flush_secs=30,
                                    filename_suffix=f".{uuid.uuid4().hex[:8]}")
        if params:
            self.writer.add_text("params", json.dumps(params, sort_keys=True, default=str))

    def log(self, metrics, step):
        for name, value in numeric(metrics).items():
            self.writer.add_scalar(name, value, step)

    def close(self):
        self.writer.close()


def mlflow_uri(uri: str) -> str:
    """MLflow's tracking URI for ``uri``: a server or ``file:`` URI as given, a folder as a
    ``file:`` URI. MLflow keeps its file store in maintenance mode and refuses it unless
    ``MLFLOW_ALLOW_FILE_STORE`` is set: a folder is what the user chose, so it is set here."""
    if "://" in uri and not uri.startswith("file:"):
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri if uri.startswith("file:") else f"file://{os.path.abspath(uri)}"


class MLflowTracker(Tracker):
    """One MLflow run, named ``name`` and tagged with it in ``experiment`` (created when
    missing); a run of that name already there is continued."""

    def __init__(self, uri: str, experiment: str, name: str, params: Mapping | None):
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=mlflow_uri(uri))
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            try:
                experiment_id = self.client.create_experiment(experiment)
            except MlflowException:  # another worker created it meanwhile
                experiment_id = self.client.get_experiment_by_name(experiment).experiment_id
        else:
            experiment_id = found.experiment_id
        earlier = self.client.search_runs([experiment_id],
                                          filter_string=f"tags.`{NAME_TAG}` = '{name}'",
                                          max_results=1)
        if earlier:
            self.run_id = earlier[0].info.run_id
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=name,
                                                 tags={NAME_TAG: name}).info.run_id
            for key, value in (params or {}).items():
                self.client.log_param(self.run_id, key, str(value)[:500])

    def log(self, metrics, step):
        for name, value in numeric(metrics).items():
            self.client.log_metric(self.run_id, name, value, step=step)

    def close(self):
        self.client.set_terminated(self.run_id)


class WandbTracker(Tracker):
    """One W&B run in project ``experiment``, its id drawn from the name (resumed when it
    exists); files under ``uri``. Offline when ``WANDB_MODE=offline``."""

    def __init__(self, uri: str, experiment: str, name: str, params: Mapping | None):
        import wandb

        os.makedirs(uri, exist_ok=True)
        run_id = hashlib.sha1(f"{experiment}/{name}".encode()).hexdigest()[:16]
        self.run = wandb.init(project=experiment, name=name, id=run_id, resume="allow",
                              dir=uri, config=dict(params or {}), reinit="create_new")

    def log(self, metrics, step):
        self.run.log(numeric(metrics), step=step)

    def close(self):
        self.run.finish()


def open_tracker(target: dict | None, name: str, params: Mapping | None = None) -> Tracker:
    """A tracking run ``name`` of ``target`` (:func:`tracking_target`; None: one that logs
    nothing), with ``params`` recorded when it is new."""
    if target is None:
        return Tracker()
    tracker, uri, experiment = target["tracker"], target["uri"], target["experiment"]
    if tracker == "tensorboard":
        return TensorBoardTracker(uri, name, params)
    if tracker == "mlflow":
        return MLflowTracker(uri, experiment, name, params)
    return WandbTracker(uri, experiment, name, params)

