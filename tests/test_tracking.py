"""Experiment tracking: the run's tracker resolved on the driver, TensorBoard event files and
MLflow runs written by the real libraries and read back, and the shared quickstart run (made
with ``--tracker tensorboard``) logging its fine-tuning, VST-UNet and classifiers from their
training loops."""

import json
import os
import struct
from pathlib import Path

import pytest

from raydistill import tracking
from raydistill.config import ConfigError, RunConfig, from_dict
from raydistill.tracking import open_tracker, tracking_target


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
    assert target == {"tracker": "tensorboard", "experiment": "toy",
                      "uri": str(tmp_path / "runs" / "toy" / "tracking" / "tensorboard")}
    target = tracking_target(config_with("runs/toy", tracker="mlflow", uri="mlruns",
                                         experiment="k400"))
    assert target["uri"] == str(tmp_path / "mlruns") and target["experiment"] == "k400"
    server = tracking_target(config_with("runs/toy", tracker="mlflow",
                                         uri="http://mlflow.internal:5000"))
    assert server["uri"] == "http://mlflow.internal:5000"


def test_a_run_on_s3_must_name_where_to_log():
    with pytest.raises(ConfigError, match=r"^tracking\.uri: the run is on s3"):
        tracking_target(config_with("s3://bucket/runs/k400", tracker="mlflow"))
    named = tracking_target(config_with("s3://bucket/runs/k400", tracker="mlflow",
                                        uri="http://mlflow:5000"))
    assert named["experiment"] == "k400"


def test_a_tracker_whose_package_is_missing_is_refused_naming_the_field(monkeypatch):
    monkeypatch.setitem(tracking.PACKAGES, "wandb", "raydistill_no_such_package")
    with pytest.raises(ConfigError, match=r"^tracking\.tracker: wandb needs the "
                                          r"raydistill_no_such_package package"):
        tracking_target(config_with("runs/x", tracker="wandb"))


def test_an_unknown_tracker_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^tracking\.tracker: choose one of none, "):
        config_with("runs/x", tracker="neptune")


def test_tensorboard_logs_finite_numbers_per_step_and_appends_on_resume(tmp_path):
    target = {"tracker": "tensorboard", "uri": str(tmp_path), "experiment": "x"}
    with open_tracker(target, "evaluate/full_real/seed=0", {"lr": 0.1}) as tracker:
        tracker.log({"epoch": 1, "loss": 2.5, "lr": 0.1, "job": "a key"}, 1)
        tracker.log({"loss": float("nan")}, 2)  # skipped: not finite
    with open_tracker(target, "evaluate/full_real/seed=0") as tracker:  # a resumed job
        tracker.log({"loss": 1.5}, 2)
    scalars = read_scalars(tmp_path / "evaluate" / "full_real" / "seed=0")
    assert scalars["loss"] == [(1, 2.5), (2, 1.5)]
    assert scalars["epoch"] == [(1, 1.0)] and "job" not in scalars


def test_mlflow_keeps_one_run_per_model_and_continues_it_on_resume(tmp_path):
    from mlflow.tracking import MlflowClient

    target = {"tracker": "mlflow", "uri": str(tmp_path / "mlruns"), "experiment": "toy"}
    with open_tracker(target, "finetune", {"steps": 4, "lr": 1e-4}) as tracker:
        tracker.log({"loss": 0.9}, 2)
    with open_tracker(target, "finetune", {"steps": 4}) as tracker:
        tracker.log({"loss": 0.7}, 4)
    with open_tracker(target, "evaluate/full_real/seed=0") as tracker:
        tracker.log({"test_top1": 0.5}, 2)
    client = MlflowClient(tracking_uri=f"file://{tmp_path / 'mlruns'}")
    experiment = client.get_experiment_by_name("toy")
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"finetune", "evaluate/full_real/seed=0"}
    finetune = runs["finetune"]
    history = client.get_metric_history(finetune.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(2, 0.9), (4, 0.7)]
    assert finetune.data.params == {"steps": "4", "lr": "0.0001"}
    assert finetune.info.status == "FINISHED"


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
