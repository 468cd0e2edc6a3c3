"""Run directory: atomic writes, tables, stage markers, config guard, on local disk and S3."""

import pyarrow as pa
import pytest

from raydistill.config import ConfigError, RunConfig, with_overrides
from raydistill.runs import RunDir


def test_write_leaves_no_temporary_file_and_reads_back(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.write_json("a/b.json", {"x": 1})
    run.write_table("t.parquet", pa.table({"v": [1, 2, 3]}))
    assert run.read_json("a/b.json") == {"x": 1}
    assert run.read_table("t.parquet").column("v").to_pylist() == [1, 2, 3]
    names = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    assert names == ["a", "b.json", "t.parquet"]


def test_stage_marker_records_summary(tmp_path):
    run = RunDir(str(tmp_path))
    assert not run.is_done("ingest")
    run.mark_done("ingest", {"videos": 3})
    assert run.is_done("ingest")
    assert run.stage_summary("ingest") == {"videos": 3}


def test_config_of_an_unfinished_stage_may_change(tmp_path):
    run = RunDir(str(tmp_path))
    config = RunConfig(run_dir=str(tmp_path))
    run.save_config(config)
    run.mark_done("ingest")
    changed = with_overrides(config, {"decode": {"size": 64}})
    run.save_config(changed)
    assert run.load_config().decode.size == 64


def test_config_of_a_finished_stage_is_refused_naming_the_field(tmp_path):
    run = RunDir(str(tmp_path))
    config = RunConfig(run_dir=str(tmp_path))
    run.save_config(config)
    run.mark_done("ingest")
    with pytest.raises(ConfigError, match=r"^ingest\.split:"):
        run.save_config(with_overrides(config, {"ingest": {"split": 2}}))
    with pytest.raises(ConfigError, match=r"^seed:"):
        run.save_config(with_overrides(config, {"seed": 3}))
    assert run.load_config() == config


def test_same_run_reached_by_another_path_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    RunDir("run").save_config(RunConfig(run_dir="run"))
    RunDir(str(tmp_path / "run")).mark_done("ingest")
    RunDir(str(tmp_path / "run")).save_config(RunConfig(run_dir=str(tmp_path / "run")))


def test_loading_a_run_without_config_names_the_run(tmp_path):
    with pytest.raises(ConfigError, match="has no config.yaml"):
        RunDir(str(tmp_path)).load_config()


def test_s3_round_trip_of_tables_json_and_markers(s3_bucket):
    run = RunDir(f"{s3_bucket}/runs/one")
    run.write_table("manifest.parquet", pa.table({"video_id": ["a", "b"]}))
    run.mark_done("ingest", {"videos": 2})
    again = RunDir(f"{s3_bucket}/runs/one")
    assert again.read_table("manifest.parquet").column("video_id").to_pylist() == ["a", "b"]
    assert again.is_done("ingest") and again.stage_summary("ingest") == {"videos": 2}
    assert again.list("", ".parquet") == ["manifest.parquet"]
    assert again.uri("manifest.parquet") == f"{s3_bucket}/runs/one/manifest.parquet"


def test_a_relative_local_run_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = RunDir("runs/quick/")
    assert run.url == str(tmp_path / "runs" / "quick") == run.root
    assert RunDir("s3://bucket/runs/quick/").url == "s3://bucket/runs/quick"
