"""Experiment tracking: the run's tracker resolved on the driver, TensorBoard event files and
MLflow runs written by the real libraries and read back, and the shared quickstart run (made
with ``--tracker tensorboard``) logging its fine-tuning, VST-UNet and classifiers from their
training loops."""

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from raydistill import tracking
from raydistill.config import ConfigError, RunConfig, from_dict
from raydistill.runs import RunDir
from raydistill.tracking import open_tracker, prepare_tracking, tracking_target


def read_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), …] by step} of every TensorBoard event file under ``folder`` (TFRecord
    frames: length, its CRC, an ``Event`` proto, its CRC)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return {tag: sorted(points) for tag, points in scalars.items()}


def visible_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows of ``folder``: each event file in the order written, a file
    opened with ``purge_step`` hiding the earlier files' events from that step on."""
    from tensorboardX.proto import event_pb2

    def events(path: Path) -> list:
        data, offset, found = path.read_bytes(), 0, []
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            found.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
            offset += 12 + length + 4
        return found

    shown: dict[str, list[tuple[int, float]]] = {}
    # in the order the writers opened (their first event's wall time: file times are too coarse)
    for file_events in sorted(map(events, Path(folder).glob("events.out.tfevents.*")),
                              key=lambda found: found[0].wall_time):
        for event in file_events:
            if event.session_log.status == event_pb2.SessionLog.START and event.step:
                shown = {tag: [(s, v) for s, v in points if s < event.step]
                         for tag, points in shown.items()}
            for value in event.summary.value:
                shown.setdefault(value.tag, []).append((event.step, value.simple_value))
    return {tag: sorted(points) for tag, points in shown.items()}


def config_with(run_dir: str, **tracking_fields) -> RunConfig:
    return from_dict(RunConfig, {"run_dir": run_dir, "tracking": tracking_fields})


def test_no_tracker_resolves_to_nothing_and_logs_nothing(tmp_path):
    assert tracking_target(config_with(str(tmp_path / "run"))) is None
    with open_tracker(None, "finetune") as tracker:
        tracker.log({"loss": 1.0}, 1)
    assert not os.listdir(tmp_path)


def test_the_default_location_is_inside_the_run_and_relative_paths_become_absolute(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tracking_target(config_with("runs/toy", tracker="tensorboard"))
    assert target == {"tracker": "tensorboard", "experiment": "toy", "in_run": True,
                      "uri": str(tmp_path / "runs" / "toy" / "tracking" / "tensorboard")}
    target = tracking_target(config_with("runs/toy", tracker="mlflow", uri="mlruns",
                                         experiment="k400"))
    assert target["uri"] == str(tmp_path / "mlruns") and target["experiment"] == "k400"
    server = tracking_target(config_with("runs/toy", tracker="mlflow",
                                         uri="http://mlflow.internal:5000"))
    assert server["uri"] == "http://mlflow.internal:5000" and not server["in_run"]


def test_a_run_on_s3_must_name_where_to_log_and_a_tracker_its_kind_of_place():
    with pytest.raises(ConfigError, match=r"^tracking\.uri: the run is on s3"):
        tracking_target(config_with("s3://bucket/runs/k400", tracker="mlflow"))
    named = tracking_target(config_with("s3://bucket/runs/k400", tracker="mlflow",
                                        uri="http://mlflow:5000"))
    assert named["experiment"] == "k400"
    with pytest.raises(ConfigError, match=r"^tracking\.uri: MLflow cannot track to s3://"):
        tracking_target(config_with("runs/x", tracker="mlflow", uri="s3://bucket/mlruns"))
    with pytest.raises(ConfigError, match=r"^tracking\.uri: tensorboard writes to a folder"):
        tracking_target(config_with("runs/x", tracker="tensorboard", uri="http://tb:6006"))


def test_a_tracker_whose_package_is_missing_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setitem(tracking.PACKAGES, "wandb", "raydistill_no_such_package")
    with pytest.raises(ConfigError, match=r"^tracking\.tracker: wandb needs the "
                                          r"raydistill_no_such_package package"):
        tracking_target(config_with("runs/x", tracker="wandb"))


def test_an_unknown_tracker_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^tracking\.tracker: choose one of none, "):
        config_with("runs/x", tracker="neptune")


def prepared(tmp_path, tracker: str, **fields) -> tuple[RunDir, dict]:
    run = RunDir(str(tmp_path / "run"))
    return run, prepare_tracking(run, config_with(run.url, tracker=tracker, **fields))


def test_a_run_keeps_its_tracking_identity_and_a_copy_gets_its_own(tmp_path):
    run, first = prepared(tmp_path, "tensorboard")
    assert prepare_tracking(run, config_with(run.url, tracker="tensorboard")) == first
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    copy = RunDir(str(tmp_path / "copy"))
    again = prepare_tracking(copy, config_with(copy.url, tracker="tensorboard"))
    assert again["run_id"] != first["run_id"]


def test_tensorboard_logs_finite_numbers_and_a_resumed_job_replaces_its_last_steps(tmp_path):
    _, target = prepared(tmp_path, "tensorboard")
    with open_tracker(target, "evaluate/full_real/seed=0", {"lr": 0.1}) as tracker:
        for epoch, loss in ((1, 2.5), (2, 2.0), (3, 1.8)):
            tracker.log({"epoch": epoch, "loss": loss, "lr": 0.1, "job": "a key"}, epoch)
        tracker.log({"loss": float("nan")}, 4)  # skipped: not finite
    # the job resumes from its epoch-1 checkpoint: epochs 2 and 3 are logged again
    with open_tracker(target, "evaluate/full_real/seed=0") as tracker:
        tracker.log({"loss": 1.9}, 2)
        tracker.log({"loss": 1.7}, 3)
    scalars = visible_scalars(tmp_path / "run" / "tracking" / "tensorboard" / "evaluate"
                              / "full_real" / "seed=0")
    assert scalars["loss"] == [(1, 2.5), (2, pytest.approx(1.9)), (3, pytest.approx(1.7))]
    assert [step for step, _ in scalars["epoch"]] == [1] and "job" not in scalars


def test_mlflow_keeps_one_run_per_model_and_continues_it_without_logging_a_step_twice(tmp_path):
    from mlflow.tracking import MlflowClient

    run, target = prepared(tmp_path, "mlflow", experiment="toy")
    with open_tracker(target, "finetune", {"steps": 4, "lr": 1e-4}) as tracker:
        tracker.log({"loss": 0.9}, 2)
        tracker.log({"loss": 0.8}, 4)
    with open_tracker(target, "finetune", {"steps": 4}) as tracker:  # resumed at step 2
        tracker.log({"loss": 0.8}, 4)
        tracker.log({"loss": 0.7}, 6)
    with open_tracker(target, "evaluate/full_real/seed=0") as tracker:
        tracker.final({"test_top1": 0.5}, 2)
    client = MlflowClient(tracking_uri=f"file://{run.url}/tracking/mlruns")
    [experiment] = [e for e in client.search_experiments() if e.name == "toy"]
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"finetune", "evaluate/full_real/seed=0"}
    finetune = runs["finetune"]
    history = client.get_metric_history(finetune.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(2, 0.9), (4, 0.8), (6, 0.7)]
    assert finetune.data.params == {"steps": "4", "lr": "0.0001"}
    assert finetune.info.status == "FINISHED"
    assert finetune.data.tags["raydistill.run"] == target["run_id"]


def test_mlflow_workers_opening_runs_at_once_share_the_one_experiment(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracking import MlflowClient

    run, target = prepared(tmp_path, "mlflow", experiment="toy")  # made here, on the driver

    def train(index: int) -> None:
        with open_tracker(target, f"evaluate/job{index}") as tracker:
            tracker.log({"loss": 1.0}, 1)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(train, range(6)))
    client = MlflowClient(tracking_uri=f"file://{run.url}/tracking/mlruns")
    named = [e for e in client.search_experiments() if e.name == "toy"]
    assert len(named) == 1
    assert len(client.search_runs([named[0].experiment_id])) == 6


def test_wandb_logs_offline_into_the_run_and_keeps_the_test_results_in_the_summary(
        tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run, target = prepared(tmp_path, "wandb", experiment="toy")
    assert target["mode"] == "offline"
    with open_tracker(target, "evaluate/full_real/seed=0", {"lr": 0.1}) as tracker:
        tracker.log({"loss": 2.5}, 1)
        tracker.log({"loss": 2.0}, 2)
        tracker.final({"test_top1": 0.625}, 2)
    import wandb

    wandb.teardown()  # W&B's service writes the run file after finish() returns: wait for it
    [written] = (tmp_path / "run" / "tracking" / "wandb" / "wandb").glob("offline-run-*/*.wandb")
    data = written.read_bytes()
    assert b"evaluate/full_real/seed=0" in data and b"loss" in data
    assert b"test_top1" in data and b"0.625" in data


def test_a_tracker_that_fails_warns_and_the_training_goes_on(tmp_path, caplog):
    run, target = prepared(tmp_path, "tensorboard")
    (tmp_path / "run" / "tracking" / "tensorboard").write_text("a file where a folder goes")
    with open_tracker(target, "finetune") as tracker:
        tracker.log({"loss": 1.0}, 1)  # cannot create its folder: warns, does not raise
        tracker.log({"loss": 0.5}, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("tracking: finetune stops logging")


def test_the_vst_unet_loop_reports_every_epochs_losses(tmp_path):
    import numpy as np

    from raydistill.selection.vst_selector import VSTUNetSelector, make_class_batches

    rng = np.random.default_rng(0)
    batches, _ = make_class_batches(rng.normal(size=(12, 2, 4, 4, 4)).astype(np.float32),
                                    np.repeat([0, 1], 6))
    entries = []
    selector = VSTUNetSelector(n_per_class=1, epochs=3, width=8, levels=2, feature_dim=16,
                               norm_groups=4)
    selector.train_model(batches, 2, on_epoch=entries.append)
    assert [entry["epoch"] for entry in entries] == [1, 2, 3]
    assert all(np.isfinite(entry["total"]) and "ce" in entry for entry in entries)


def test_the_quickstart_run_logs_each_training_loop_to_tensorboard(small_quickstart):
    # The shared run was made with --tracker tensorboard (small_quickstart.FLAGS).
    root = Path(small_quickstart.path) / "tracking" / "tensorboard"
    finetune = read_scalars(root / "finetune")
    rows = (Path(small_quickstart.path) / "finetune" / "loss.csv").read_text().split()[1:]
    logged = [(int(step), float(loss)) for step, loss in (row.split(",") for row in rows)]
    assert logged and finetune["loss"] == [(step, pytest.approx(loss, abs=1e-5))
                                           for step, loss in logged]
    vst = read_scalars(root / "select" / "synthetic" / "vst_unet" / "vpc=1" / "seed=0")
    assert vst["total"] and vst["total"][0][0] == 1 and "ce" in vst
    classifier = read_scalars(root / "evaluate" / "synthetic" / "random" / "vpc=1" / "seed=0")
    assert [step for step, _ in classifier["loss"]] == [1, 2]  # two epochs
    metrics = json.loads((Path(small_quickstart.path) / "eval" / "synthetic" / "random"
                          / "vpc=1" / "seed=0" / "metrics.json").read_text())
    assert classifier["test_top1"] == [(2, pytest.approx(metrics["top1"]))]
