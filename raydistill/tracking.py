"""Experiment tracking: the training loops log their metrics to TensorBoard, MLflow or W&B.

Ray Train's documented pattern: each training loop logs through the tracker's own API from
its rank-0 worker, one tracking run per trained model (``finetune``,
``select/{pool}/vst_unet/vpc=K/seed=S``, ``evaluate/{job key}``); Tune sweeps log their trials
with Tune's logger callbacks (``pipeline/tune.py``).

:func:`tracking_target` resolves the run's ``tracking`` section (the checks: package, location;
nothing written, so the dry run makes it too); :func:`prepare_tracking` completes it on the
driver before a stage's workers start: the run's tracking identity (``RUN/tracking/run.json``:
a copy or a fresh run in the same folder gets a new one, so two runs never share a tracking
run) and, for MLflow, the experiment, created once. Workers open one tracking run each with
:func:`open_tracker`: a model whose training resumes after a lost worker logs on into the same
tracking run, without logging a step twice. A tracker that fails (a server gone, a full disk)
warns once and stops logging: tracking changes no result, so it never stops a stage.
Nothing here imports Ray or a tracker's package until that tracker is used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import uuid
from typing import Mapping

from raydistill.config import ConfigError, RunConfig, TrackingConfig

log = logging.getLogger(__name__)

PACKAGES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
"""The package each tracker needs (tensorboardX comes with Ray)."""
INSTALL = {"tensorboard": "pip install tensorboardX",
           "mlflow": "pip install 'raydistill[tracking]'", "wandb": "pip install wandb"}
"""How to install each tracker's package (on every node of a cluster)."""
FOLDERS = {"tensorboard": "tensorboard", "mlflow": "mlruns", "wandb": "wandb"}
"""Each tracker's folder under ``RUN/tracking/`` when ``tracking.uri`` is not given."""
NAME_TAG = "raydistill.model"
"""The MLflow tag holding a tracking run's stable name (found again on resume)."""
RUN_TAG = "raydistill.run"
"""The MLflow tag holding the run directory's tracking identity."""
IDENTITY = "tracking/run.json"
"""Run-relative file of the run's tracking identity: ``{"url", "id"}``."""


def tracking_target(config: RunConfig) -> dict | None:
    """The run's tracker: ``{"tracker", "uri", "experiment", "in_run"}`` (absolute paths;
    ``in_run``: the default location inside the run), or None when ``tracking.tracker`` is
    ``none``. Raises :class:`ConfigError` naming ``tracking.tracker`` when its package is
    missing and ``tracking.uri`` when a run on S3 names no location or the location is not one
    the tracker can write to."""
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
    check_location(tracking.tracker, uri)
    uri = uri.removeprefix("file://") if tracking.tracker != "mlflow" else uri
    if "://" not in uri and not uri.startswith("file:"):
        uri = os.path.abspath(uri)  # the workers' working directories differ from the driver's
    experiment = tracking.experiment or os.path.basename(run_dir) or "raydistill"
    return {"tracker": tracking.tracker, "uri": uri, "experiment": experiment,
            "in_run": tracking.uri is None}


def check_location(tracker: str, uri: str) -> None:
    """ConfigError naming ``tracking.uri`` for a location ``tracker`` cannot write to: MLflow
    takes a folder, a ``file:`` URI or a server (``http(s)://``, ``databricks``); TensorBoard
    and W&B a local or shared folder."""
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if tracker == "mlflow":
        if scheme not in ("", "file", "http", "https") and not uri.startswith("databricks"):
            raise ConfigError(f"tracking.uri: MLflow cannot track to {uri}; give a folder, a "
                              "file: URI or a tracking server (http://host:5000)")
    elif scheme not in ("", "file"):
        raise ConfigError(f"tracking.uri: {tracker} writes to a folder (local or shared by the "
                          f"nodes), not to {uri}")


def check_installed(tracking: TrackingConfig) -> None:
    """Raise :class:`ConfigError` naming ``tracking.tracker`` when its package is missing."""
    package = PACKAGES.get(tracking.tracker)
    if package and importlib.util.find_spec(package) is None:
        raise ConfigError(f"tracking.tracker: {tracking.tracker} needs the {package} package "
                          f"({INSTALL[tracking.tracker]})")


def prepare_tracking(run, config: RunConfig) -> dict | None:
    """:func:`tracking_target` completed on the driver for the workers: ``run_id`` (the run
    directory's tracking identity, made on first use), ``mode`` (W&B: ``$WANDB_MODE`` here, so
    workers on other nodes use it too) and, for MLflow, ``experiment_id`` (the experiment made
    here once: workers that each created it would make several of that name). ``run`` is the
    :class:`~raydistill.runs.RunDir`. None without a tracker."""
    target = tracking_target(config)
    if target is None:
        return None
    target = {**target, "run_id": run_identity(run)}
    if target["tracker"] == "wandb":
        target["mode"] = os.environ.get("WANDB_MODE")
    if target["tracker"] == "mlflow":
        try:
            target["experiment_id"] = mlflow_experiment(target["uri"], target["experiment"])
        except Exception as error:  # an unreachable server, a folder that cannot be written
            log.warning(f"tracking: MLflow at {target['uri']} cannot be used "
                        f"({type(error).__name__}: {str(error)[:200]}); metrics are not tracked")
            return None
    return target


def run_identity(run) -> str:
    """The run directory's tracking identity, from ``RUN/tracking/run.json``; a new one when
    the file is missing or was written for another place (a copied run tracks apart from its
    original)."""
    if run.exists(IDENTITY):
        saved = run.read_json(IDENTITY)
        if saved.get("url") == run.url and saved.get("id"):
            return saved["id"]
    identity = uuid.uuid4().hex[:12]
    run.write_json(IDENTITY, {"url": run.url, "id": identity})
    return identity


def mlflow_uri(uri: str) -> str:
    """MLflow's tracking URI for ``uri``: a server or ``file:`` URI as given, a folder as a
    ``file:`` URI. MLflow keeps its file store in maintenance mode and refuses it unless
    ``MLFLOW_ALLOW_FILE_STORE`` is set: a folder is what the user chose, so it is set here."""
    if "://" in uri and not uri.startswith("file:"):
        return uri
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri if uri.startswith("file:") else f"file://{os.path.abspath(uri)}"


def mlflow_experiment(uri: str, name: str) -> str:
    """The id of MLflow experiment ``name`` at ``uri``, created when missing."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri(uri))
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def numeric(metrics: Mapping[str, object]) -> dict[str, float]:
    """The entries of ``metrics`` that are finite numbers, as floats."""
    return {name: float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value))}


class Tracker:
    """One tracking run: :meth:`log` numeric metrics at a step, :meth:`final` the results of
    the finished model, :meth:`close` when done. The base class logs nothing
    (``tracking.tracker: none``)."""

    def log(self, metrics: Mapping[str, object], step: int) -> None:
        """Log the finite numbers of ``metrics`` at ``step`` (other values are skipped); a step
        this tracking run already holds (logged before the training resumed) is skipped."""

    def final(self, metrics: Mapping[str, object], step: int) -> None:
        """Record the finished model's results (its test accuracy), after its last step."""
        self.log(metrics, step)

    def close(self) -> None:
        """Flush and end the tracking run."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TensorBoardTracker(Tracker):
    """Scalars in ``{folder}/events.out.tfevents.*`` (tensorboardX), one tag per metric; the
    parameters as a JSON text entry. The writer opens at the first step logged, discarding what
    earlier writers logged from that step on (a resumed training logs those steps again)."""

    def __init__(self, folder: str, params: Mapping | None):
        self.folder, self.params, self.writer = folder, params, None

    def _open(self, step: int):
        from tensorboardX import SummaryWriter

        # Its file is named by the second it was opened in: a job resumed within that second
        # would overwrite the first file without a suffix of its own.
        self.writer = SummaryWriter(logdir=self.folder, flush_secs=30, purge_step=step,
                                    filename_suffix=f".{uuid.uuid4().hex[:8]}")
        if self.params:
            self.writer.add_text("params", json.dumps(self.params, sort_keys=True, default=str))

    def log(self, metrics, step):
        if self.writer is None:
            self._open(step)
        for name, value in numeric(metrics).items():
            self.writer.add_scalar(name, value, step)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class MLflowTracker(Tracker):
    """One MLflow run named ``name`` in the target's experiment, tagged with the name and the
    run directory's identity; a run of both already there is continued, from after its last
    logged step."""

    def __init__(self, target: dict, name: str, params: Mapping | None):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=mlflow_uri(target["uri"]))
        experiment_id = target.get("experiment_id") or mlflow_experiment(target["uri"],
                                                                         target["experiment"])
        query = f"tags.`{NAME_TAG}` = '{name}' and tags.`{RUN_TAG}` = '{target['run_id']}'"
        earlier = self.client.search_runs([experiment_id], filter_string=query, max_results=1)
        self.last_step: dict[str, int] = {}
        if earlier:
            self.run_id = earlier[0].info.run_id
            self.last_step = {key: max(m.step for m in self.client.get_metric_history(
                self.run_id, key)) for key in earlier[0].data.metrics}
        else:
            self.run_id = self.client.create_run(
                experiment_id, run_name=name,
                tags={NAME_TAG: name, RUN_TAG: target["run_id"]}).info.run_id
            for key, value in (params or {}).items():
                self.client.log_param(self.run_id, key, str(value)[:500])

    def log(self, metrics, step):
        for name, value in numeric(metrics).items():
            if step > self.last_step.get(name, -1):
                self.client.log_metric(self.run_id, name, value, step=step)

    def close(self):
        self.client.set_terminated(self.run_id)


class WandbTracker(Tracker):
    """One W&B run in project ``experiment``, its id drawn from the run directory's identity
    and the name (resumed when it exists); files under the target's folder; ``mode`` from the
    driver's ``$WANDB_MODE``. The finished model's results go to the run's summary."""

    def __init__(self, target: dict, name: str, params: Mapping | None):
        import wandb

        os.makedirs(target["uri"], exist_ok=True)
        run_id = hashlib.sha1(f"{target['run_id']}/{name}".encode()).hexdigest()[:16]
        self.run = wandb.init(project=target["experiment"], name=name, id=run_id,
                              resume="allow", dir=target["uri"], config=dict(params or {}),
                              reinit="create_new", mode=target.get("mode"))

    def log(self, metrics, step):
        if step >= self.run.step:  # W&B refuses steps below its current one
            self.run.log(numeric(metrics), step=step)

    def final(self, metrics, step):
        self.run.summary.update(numeric(metrics))

    def close(self):
        self.run.finish()


class SafeTracker(Tracker):
    """A tracker whose failures warn once and turn it off: a tracking server that goes away
    must not fail the training it watches."""

    def __init__(self, opener, name: str):
        self.name, self.inner = name, None
        self.inner = self._guarded(opener)

    def _guarded(self, action):
        """``action()``, or None after a warning when it raises (this tracker then stops)."""
        try:
            return action()
        except Exception as error:  # any tracker failure: tracking changes no result
            log.warning(f"tracking: {self.name} stops logging ({type(error).__name__}: "
                        f"{str(error)[:200]})")
            self.inner = None
            return None

    def log(self, metrics, step):
        if self.inner is not None:
            self._guarded(lambda: self.inner.log(metrics, step))

    def final(self, metrics, step):
        if self.inner is not None:
            self._guarded(lambda: self.inner.final(metrics, step))

    def close(self):
        if self.inner is not None:
            self._guarded(self.inner.close)


def open_tracker(target: dict | None, name: str, params: Mapping | None = None) -> Tracker:
    """A tracking run ``name`` of ``target`` (:func:`prepare_tracking`; None: one that logs
    nothing), with ``params`` recorded when it is new; its failures warn and stop it."""
    if target is None:
        return Tracker()
    tracker = target["tracker"]
    if tracker == "tensorboard":
        prefix = "" if target.get("in_run") else f"{target['experiment']}-{target['run_id']}"
        folder = os.path.join(target["uri"], prefix, name)
        return SafeTracker(lambda: TensorBoardTracker(folder, params), name)
    if tracker == "mlflow":
        return SafeTracker(lambda: MLflowTracker(target, name, params), name)
    return SafeTracker(lambda: WandbTracker(target, name, params), name)
