"""The `raydistill` command: bad input stops before any work with one error naming the field."""

import re

import pytest

from raydistill.cli import build_parser, config_from_args, main
from raydistill.config import STAGE_NAMES, ConfigError, RunConfig, from_dict
from raydistill.dataset_info import DATASET_INFO, DatasetInfo
from raydistill.runs import RunDir


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("argv, field", [
    (["ingest", "--dataset", "kinetics400", "--out", "{tmp}/run"], "ingest.root"),
    (["ingest", "--dataset", "kinetics400", "--root", "{tmp}/no-such-dir", "--out", "{tmp}/run"],
     "ingest.root"),
    (["ingest", "--dataset", "ucf101", "--root", "{tmp}", "--split", "7", "--out", "{tmp}/run"],
     "ingest.split"),
    (["ingest", "--dataset", "toy", "--out", "{tmp}/run", "--config", "{tmp}/missing.yaml"],
     "--config"),
    (["decode", "--run", "{tmp}/run"], "run_dir"),
    (["run"], "run"),
    (["ingest", "--dataset", "toy", "--split", "2", "--out", "{tmp}/run"], "--split"),
])
def test_bad_input_exits_2_naming_the_field_and_writes_nothing(tmp_path, capsys, argv, field):
    code, _, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert err.startswith(f"raydistill: error: {field}")
    assert not (tmp_path / "run").exists()


def split_refusal(datasets) -> str:
    return re.escape(f"--split: applies to {', '.join(datasets)} only") + "$"


def test_the_dataset_record_says_which_datasets_take_split(tmp_path, monkeypatch):
    takers = [name for name, info in DATASET_INFO.items() if info.official_splits]
    assert {"ucf101", "miniucf", "hmdb51"} <= set(takers) and "toy" not in takers
    argv = ["ingest", "--dataset", "toy", "--split", "2", "--out", str(tmp_path / "run")]
    with pytest.raises(ConfigError, match="^" + split_refusal(takers)):
        config_from_args(build_parser().parse_args(argv))
    monkeypatch.setitem(DATASET_INFO, "toy", DatasetInfo("toy", official_splits=True))
    config, _ = config_from_args(build_parser().parse_args(argv))
    assert (config.ingest.dataset, config.ingest.split) == ("toy", 2)
    # the refusal reads the records when it is raised
    argv[2] = "kinetics400"
    with pytest.raises(ConfigError, match="^" + split_refusal(["toy", *takers])):
        config_from_args(build_parser().parse_args(argv))


def test_unknown_field_in_a_config_file_is_named(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("decode:\n  frames: 8\n")
    code, _, err = run_cli(capsys, "ingest", "--dataset", "toy", "--out", str(tmp_path / "run"),
                           "--config", str(tmp_path / "c.yaml"))
    assert code == 2 and "decode.frames: unknown field" in err
    assert not (tmp_path / "run").exists()


def test_missing_bucket_is_refused_before_work(s3_endpoint, capsys, tmp_path):
    code, _, err = run_cli(capsys, "ingest", "--dataset", "toy", "--out",
                           "s3://no-such-bucket-here/run")
    assert code == 2 and "run_dir: bucket 'no-such-bucket-here'" in err


def test_unknown_dataset_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ingest", "--dataset", "imagenet", "--out", "x"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'imagenet'" in capsys.readouterr().err


def test_missing_annotations_exit_1_naming_the_file(tmp_path, capsys, ray_cluster):
    (tmp_path / "ucf").mkdir()
    code, _, err = run_cli(capsys, "ingest", "--dataset", "ucf101", "--root",
                           str(tmp_path / "ucf"), "--out", str(tmp_path / "run"))
    assert code == 1 and "classInd.txt" in err


def test_ingest_then_decode_then_run_resumes(tmp_path, capsys, ray_cluster):
    (tmp_path / "c.yaml").write_text(
        "ingest:\n  toy: {num_classes: 2, train_per_class: 2, test_per_class: 1, "
        "num_frames: 8, size: 32}\n")
    out = str(tmp_path / "run")
    code, printed, _ = run_cli(capsys, "ingest", "--dataset", "toy", "--out", out,
                               "--config", str(tmp_path / "c.yaml"))
    assert code == 0 and "videos: 6 in 2 classes" in printed
    code, printed, _ = run_cli(capsys, "decode", "--run", out, "--num-frames", "4",
                               "--size", "16")
    assert code == 0 and "decode: 6 clips of 4×16²" in printed
    code, printed, _ = run_cli(capsys, "run", "--run", out, "--stages", "ingest", "decode")
    assert code == 0 and printed.count("already done, skipped") == 2
    code, _, err = run_cli(capsys, "decode", "--run", out, "--size", "32")
    assert code == 2 and err.startswith("raydistill: error: decode.size")


def test_decode_before_ingest_names_the_missing_stage(tmp_path, capsys):
    from raydistill.config import RunConfig
    from raydistill.runs import RunDir

    RunDir(str(tmp_path / "run")).save_config(RunConfig(run_dir=str(tmp_path / "run")))
    code, _, err = run_cli(capsys, "decode", "--run", str(tmp_path / "run"))
    assert code == 2 and "decode needs the ingest stage" in err


def test_malformed_class_index_exits_1_with_one_line(tmp_path, capsys, ray_cluster):
    lists = tmp_path / "ucf" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n3 Archery\n")
    code, _, err = run_cli(capsys, "ingest", "--dataset", "ucf101", "--root",
                           str(tmp_path / "ucf"), "--out", str(tmp_path / "run"))
    assert code == 1 and "classInd.txt" in err and len(err.strip().splitlines()) == 1


def test_config_file_root_is_kept_and_a_rerun_of_ingest_is_skipped(tmp_path, capsys,
                                                                  ray_cluster):
    (tmp_path / "c.yaml").write_text(
        f"ingest:\n  root: {tmp_path / 'toydata'}\n  toy: {{num_classes: 2, "
        "train_per_class: 1, test_per_class: 1, num_frames: 8, size: 32}\n"
        "decode: {num_frames: 4, size: 16}\n")
    out = str(tmp_path / "run")
    argv = ["ingest", "--dataset", "toy", "--out", out]
    assert run_cli(capsys, *argv, "--config", str(tmp_path / "c.yaml"))[0] == 0
    assert (tmp_path / "toydata" / "toy.json").exists()
    assert run_cli(capsys, "decode", "--run", out)[0] == 0
    code, printed, _ = run_cli(capsys, *argv)
    assert code == 0 and "ingest: already done, skipped" in printed


def test_a_stage_command_on_a_copied_run_works_in_the_copy(tmp_path, capsys, ray_cluster):
    import shutil

    (tmp_path / "c.yaml").write_text(
        "ingest:\n  toy: {num_classes: 2, train_per_class: 1, test_per_class: 1, "
        "num_frames: 8, size: 32}\ndecode: {num_frames: 4, size: 16}\n")
    original, copy = tmp_path / "run", tmp_path / "elsewhere" / "copy"
    assert run_cli(capsys, "ingest", "--dataset", "toy", "--out", str(original),
                   "--config", str(tmp_path / "c.yaml"))[0] == 0
    shutil.copytree(original, copy)  # its config.yaml still says run_dir: …/run
    code, printed, _ = run_cli(capsys, "decode", "--run", str(copy))
    assert code == 0 and f"run directory: {copy}" in printed
    assert (copy / "_stages" / "decode.json").exists() and list((copy / "clips").iterdir())
    assert not (original / "clips").exists()
    assert not (original / "_stages" / "decode.json").exists()


def test_embed_score_model_flag_sets_the_field_of_the_run_copy(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    run.save_config(from_dict(RunConfig, {"run_dir": run.url}))
    scorer = str(tmp_path / "scorer")
    args = build_parser().parse_args(["embed", "--run", run.url, "--score-model", scorer])
    config, stages = config_from_args(args)
    assert config.embed.score_model == scorer and stages == ["embed"]
    assert config.run_dir == run.url


def test_run_dry_run_plans_every_stage_and_writes_nothing(tmp_path, capsys, ray_cluster):
    (tmp_path / "c.yaml").write_text(f"run_dir: {tmp_path / 'run'}\n")
    code, printed, _ = run_cli(capsys, "run", "--config", str(tmp_path / "c.yaml"), "--dry-run")
    assert code == 0
    planned = [line.split()[0] for line in printed.splitlines()
               if line.startswith("  ") and line.split()[0] in STAGE_NAMES]
    assert planned == list(STAGE_NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]
