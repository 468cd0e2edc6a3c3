"""A run copied or moved elsewhere is a run of its own: every single-stage command on a copy
works in the copy and leaves the original untouched, the copy reads its own videos (manifests
store run-relative paths), and evaluating the other pool of a copy is one command."""

import json
import os
import shutil

import pytest

from raydistill.cli import STAGE_FLAGS, main
from raydistill.runs import RunDir

SINGLE_STAGE_COMMANDS = ["decode", *STAGE_FLAGS]
"""Every single-stage command that takes ``--run`` (ingest takes ``--out``; latents runs as
``raydistill run --stages latents``)."""


def file_states(root) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime in ns)} of every file under ``root``, hidden ones and markers too."""
    return {os.path.relpath(os.path.join(folder, name), root):
            (os.stat(os.path.join(folder, name)).st_size,
             os.stat(os.path.join(folder, name)).st_mtime_ns)
            for folder, _, names in os.walk(root) for name in names}


def test_every_single_stage_command_on_a_copy_works_in_the_copy_from_another_directory(
        small_quickstart, tmp_path, capsys, monkeypatch):
    before = file_states(small_quickstart.path)
    copy = tmp_path / "copies" / "copy"
    shutil.copytree(small_quickstart.path, copy)
    (copy / "report" / "report.md").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # its config.yaml names a relative run_dir: "quick"
    for name in SINGLE_STAGE_COMMANDS:
        assert main([name, "--run", str(copy)]) == 0, name
        printed = capsys.readouterr().out
        assert f"run directory: {copy}" in printed, name
        if name != "report":
            assert f"{name}: already done, skipped" in printed, name
    assert (copy / "report" / "report.md").exists()
    assert file_states(small_quickstart.path) == before  # not a byte, not a marker, not a log
    assert not os.listdir(elsewhere)


def test_a_moved_run_reads_its_own_videos(small_quickstart, tmp_path, capsys):
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(small_quickstart.path, first)
    shutil.move(first, moved)  # the place the run was made in is gone
    run = RunDir(str(moved))
    for manifest in ("manifest.parquet", "synthetic/manifest.parquet"):
        stored = run.read_table(manifest).column("path").to_pylist()
        assert stored and not any(os.path.isabs(path) for path in stored), manifest
        assert all(path.startswith(str(moved)) for path in
                   run.read_manifest(manifest).column("path").to_pylist())
    # The moved run's own copy of the selected video, changed: an export must take this one,
    # not the original run's (which still exists where the run was made).
    [chosen] = run.read_table("selection/synthetic/random/vpc=1/seed=0.parquet",
                              columns=["path"]).column("path").to_pylist()[:1]
    other = next(p for p in run.read_table("synthetic/manifest.parquet").column("path")
                 .to_pylist() if p != chosen)
    shutil.copyfile(moved / other, moved / chosen)
    assert main(["export", "--run", str(moved), "--method", "random", "--vpc", "1",
                 "--to", str(tmp_path / "out")]) == 0
    exported = next((tmp_path / "out").glob(f"*/{os.path.basename(chosen)}"))
    assert exported.read_bytes() == (moved / other).read_bytes()
    (moved / "report" / "report.md").unlink()
    assert main(["report", "--run", str(moved)]) == 0  # draws the selections' filmstrips
    report = (moved / "report" / "report.md").read_text()
    assert "_No manifest" not in report and "_Skipped" not in report
    capsys.readouterr()


def test_the_real_pool_of_a_run_is_selected_and_evaluated_beside_the_synthetic_one(
        small_quickstart, tmp_path, capsys):
    copy = tmp_path / "both"
    shutil.copytree(small_quickstart.path, copy)
    run, one = str(copy), ["--method", "random", "--vpc", "1", "--seeds", "1"]
    assert main(["embed", "--run", run, "--pool", "synthetic", "real"]) == 0
    assert main(["select", "--run", run, "--pool", "real", *one]) == 0
    assert main(["evaluate", "--run", run, "--pool", "real", "synthetic", *one,
                 "--tracker", "mlflow"]) == 0
    printed = capsys.readouterr().out
    assert "evaluate: already done, skipped" not in printed
    metrics = copy / "eval" / "real" / "random" / "vpc=1" / "seed=0" / "metrics.json"
    assert metrics.exists()
    assert_tracked_in_mlflow(copy, "evaluate/real/random/vpc=1/seed=0",
                             json.loads(metrics.read_text()))
    assert main(["report", "--run", run]) == 0
    report = (copy / "report" / "report.md").read_text()
    assert "## Pools side by side" in report
    side = report.split("## Pools side by side", 1)[1].split("\n## ", 1)[0]
    assert "| real pool Top-1 (%) | synthetic pool Top-1 (%) |" in side
    assert "| 1 | Random |" in side
    # asking again is a no-op: the stage records the pools it evaluated
    assert main(["evaluate", "--run", run, "--pool", "real", "synthetic", *one]) == 0
    assert "evaluate: already done, skipped" in capsys.readouterr().out


def assert_tracked_in_mlflow(run_dir, name: str, metrics: dict) -> None:
    """The classifier trained now logged its epochs' losses and its test accuracy into the MLflow
    file store inside the run (``--tracker mlflow``: the run's folder name is the experiment)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{run_dir}/tracking/mlruns")
    experiment = client.get_experiment_by_name(os.path.basename(run_dir))
    [tracked] = client.search_runs([experiment.experiment_id],
                                   filter_string=f"tags.`raydistill.model` = '{name}'")
    losses = client.get_metric_history(tracked.info.run_id, "loss")
    assert [m.step for m in losses] == [1, 2]  # the smoke classifier's two epochs
    assert tracked.data.metrics["test_top1"] == pytest.approx(metrics["top1"])
    assert tracked.data.params["classifier"] == metrics["classifier"]


def test_evaluating_a_pool_without_selections_names_the_select_command(small_quickstart,
                                                                        tmp_path, capsys):
    copy = tmp_path / "nosel"
    shutil.copytree(small_quickstart.path, copy)
    assert main(["evaluate", "--run", str(copy), "--pool", "real"]) == 2
    error = capsys.readouterr().err
    assert "no selection" in error and "raydistill select --pool real" in error


def test_evaluate_counts_as_done_only_for_the_pools_methods_and_vpcs_it_evaluated(tmp_path):
    from raydistill.config import RunConfig, from_dict, with_overrides
    from raydistill.pipeline.evaluate import STAGE, selections_to_evaluate
    from raydistill.pipeline.stages import completion_settings, is_finished

    run = RunDir(str(tmp_path / "run"))
    config = from_dict(RunConfig, {"run_dir": run.url, "select": {
        "methods": ["random"], "vpc": [1], "seeds": 1}})
    run.mark_done("evaluate", {}, completion_settings(STAGE, config))
    assert is_finished(run, config, STAGE)
    for change in ({"select": {"pool": "real"}}, {"select": {"methods": ["random", "herding"]}},
                   {"select": {"vpc": [1, 5]}}, {"evaluate": {"pools": ["real", "synthetic"]}}):
        assert not is_finished(run, with_overrides(config, change), STAGE), change
    both = with_overrides(config, {"evaluate": {"pools": ["real", "synthetic"]}})
    assert [key.name for key in selections_to_evaluate(both)] == [
        "real/random/vpc=1/seed=0", "synthetic/random/vpc=1/seed=0"]
