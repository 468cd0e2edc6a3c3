"""`raydistill export`: one selection of a finished run becomes a dataset folder that Hugging
Face `datasets` reads, with a dataset card; bad input is refused naming the flag, writing
nothing."""

import csv
import hashlib
import os

import pytest

from raydistill.cli import main
from raydistill.runs import RunDir


def export(capsys, run_path, to, *extra):
    code = main(["export", "--run", run_path, "--method", "tac_dt", "--vpc", "1", "--to", to,
                 *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_export_writes_class_folders_metadata_and_a_card_that_datasets_reads(
        small_quickstart, tmp_path, capsys):
    run = RunDir(small_quickstart.path)
    selection = run.read_table("selection/synthetic/tac_dt/vpc=1/seed=0.parquet").to_pylist()
    out = tmp_path / "distilled"
    code, printed, _ = export(capsys, small_quickstart.path, str(out))
    assert code == 0 and f"{len(selection)} videos in 2 classes" in printed

    with open(out / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["video_id"] for row in rows) == sorted(r["video_id"] for r in selection)
    for row, chosen in zip(rows, sorted(selection, key=lambda r: (r["label"], r["rank"]))):
        assert row["file_name"] == f"{chosen['class_name']}/{chosen['video_id']}.mp4"
        assert row["label"] == chosen["class_name"] and row["seed"] == "0"
        # the very bytes the run generated
        assert digest(out / row["file_name"]) == digest(run.resolve(chosen["path"]))
    card = (out / "README.md").read_text()
    assert "video-classification" in card and "TAC-DT" in card and "seed 0" in card
    metrics = run.read_json("eval/synthetic/tac_dt/vpc=1/seed=0/metrics.json")
    assert f"Top-1 {100 * metrics['top1']:.2f} %" in card
    assert "Full real" in card  # the upper bound beside it

    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("videofolder", data_dir=str(out), split="train")
    assert loaded.num_rows == len(selection)
    assert sorted(loaded["video_id"]) == sorted(r["video_id"] for r in selection)
    assert sorted(set(loaded["label"])) == sorted({r["class_name"] for r in selection})


def test_export_to_s3_writes_the_same_files(small_quickstart, s3_bucket, tmp_path, capsys):
    import s3fs

    local = tmp_path / "local"
    assert export(capsys, small_quickstart.path, str(local))[0] == 0
    assert export(capsys, small_quickstart.path, f"{s3_bucket}/distilled")[0] == 0
    fs = s3fs.S3FileSystem()
    remote = {path.split("/distilled/", 1)[1]: fs.cat_file(path)
              for path in fs.find(f"{s3_bucket}/distilled")}
    here = {os.path.relpath(os.path.join(folder, name), local):
            open(os.path.join(folder, name), "rb").read()
            for folder, _, names in os.walk(local) for name in names}
    assert remote == here


def test_export_of_a_selection_the_run_lacks_names_the_flags_and_lists_what_it_holds(
        small_quickstart, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, error = export(capsys, small_quickstart.path, str(out), "--seed", "7")
    assert code == 2 and "--method/--vpc/--seed" in error and "seed=7" in error
    assert "tac_dt --vpc 1 --seed 0" in error
    assert not out.exists()


def test_export_never_writes_into_a_folder_that_holds_files(small_quickstart, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, error = export(capsys, small_quickstart.path, str(out))
    assert code == 2 and error.startswith("raydistill: error: --to:") and str(out) in error
    assert os.listdir(out) == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"


def test_export_of_an_unknown_method_or_a_folder_without_a_run_exits_2(tmp_path, capsys):
    code = main(["export", "--run", str(tmp_path), "--method", "nope", "--vpc", "1",
                 "--to", str(tmp_path / "out")])
    assert code == 2 and "--method" in capsys.readouterr().err
    code = main(["export", "--run", str(tmp_path / "no-run"), "--method", "random", "--vpc",
                 "1", "--to", str(tmp_path / "out")])
    assert code == 2 and "config.yaml" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_export_that_cannot_read_a_video_names_it_and_leaves_the_folder_empty(
        small_quickstart, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(small_quickstart.path, copy)
    run = RunDir(str(copy))
    paths = run.read_table("selection/synthetic/tac_dt/vpc=1/seed=0.parquet",
                           columns=["path"]).column("path").to_pylist()
    (copy / sorted(paths)[-1]).unlink()  # the last one copied: the others are written first
    out = tmp_path / "out"
    code, _, error = export(capsys, str(copy), str(out))
    assert code == 1 and sorted(paths)[-1].rsplit("/", 1)[1] in error
    assert [name for _, _, names in os.walk(out) for name in names] == []
