"""The quickstart job end to end on a small toy set, and its rerun."""

import importlib.util
from pathlib import Path

import pytest

from raydistill.config import SELECTION_METHODS, STAGE_NAMES
from raydistill.runs import RunDir

JOB = Path(__file__).resolve().parents[1] / "jobs" / "quickstart.py"


def load_job():
    spec = importlib.util.spec_from_file_location("quickstart_job", JOB)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_a_rerun_skips_them(tmp_path, capsys, ray_cluster,
                                                            monkeypatch):
    job = load_job()
    monkeypatch.chdir(tmp_path)  # a relative run directory, as the README's command uses
    argv = ["--run", "quick", "--classes", "3", "--train-per-class", "4",
            "--test-per-class", "2", "--steps", "10", "--per-class", "2", "--seeds", "1",
            "--eval-epochs", "2", "--smoke"]
    assert job.main(argv) == 0
    run = RunDir(str(tmp_path / "quick"))
    assert all(run.is_done(stage) for stage in STAGE_NAMES)
    assert run.stage_summary("ingest")["videos_per_split"] == {"test": 6, "train": 12}
    assert run.stage_summary("decode")["clips"] == 18
    assert run.stage_summary("generate")["videos"] == 6
    assert len(run.list("report/filmstrips", ".png")) == 3
    assert run.stage_summary("select")["selections"] == len(SELECTION_METHODS)  # VPC 1, 1 seed
    assert run.stage_summary("evaluate")["evaluations"] == len(SELECTION_METHODS) + 2
    assert "| all | Full real |" in run.read_bytes("report/report.md").decode()
    first = capsys.readouterr().out
    assert first.strip().endswith(f"report: {tmp_path / 'quick' / 'report' / 'report.md'}")
    assert job.main(argv) == 0
    assert capsys.readouterr().out.count("already done, skipped") == len(STAGE_NAMES) - 1


def test_quickstart_rejects_a_bad_setting_before_work(tmp_path, capsys):
    job = load_job()
    assert job.main(["--run", str(tmp_path / "q"), "--classes", "12"]) == 2
    assert "ingest.toy.num_classes" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
