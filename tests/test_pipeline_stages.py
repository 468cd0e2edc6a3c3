"""Ingest and decode stages on a real local Ray: manifest, rejects, clip cache, resume, S3."""

import os

import numpy as np
import pytest

from helpers import write_empty, write_random_bytes, write_test_video, write_truncated_video
from raydistill.config import RunConfig, from_dict
from raydistill.datasets import LAYOUTS
from raydistill.pipeline.decode import clip_dataset
from raydistill.pipeline.shards import shard_path as _shard_path
from raydistill.pipeline.run import run_stages
from raydistill.runs import RunDir
from raydistill.video import decode_clip
from raydistill.video.clips import clips_from_table

pytestmark = pytest.mark.usefixtures("ray_cluster")

DATA_STAGES = ["ingest", "decode"]
TINY_TOY = {"num_classes": 3, "train_per_class": 3, "test_per_class": 2, "num_frames": 8,
            "size": 32}


def shard_path(split, index):
    return _shard_path("clips", split, index)


def kinetics_tree(root):
    """A Kinetics-400 tree: 3 good videos, 1 listed but absent, 3 damaged files."""
    (root / "annotations").mkdir(parents=True)
    rows = [("abseiling", "-aaaaaaaaaa", 0, 10, "good"), ("abseiling", "bbbbbbbbbbb", 5, 15, "good"),
            ("zumba", "ccccccccccc", 1, 11, "good"), ("zumba", "ddddddddddd", 0, 10, "absent"),
            ("zumba", "eeeeeeeeeee", 0, 10, "empty"), ("abseiling", "fffffffffff", 0, 10, "bytes"),
            ("zumba", "ggggggggggg", 0, 10, "truncated")]
    lines = ["label,youtube_id,time_start,time_end,split"]
    for label, youtube_id, start, end, kind in rows:
        lines.append(f"{label},{youtube_id},{start},{end},train")
        path = str(root / "train" / label / f"{youtube_id}_{start:06d}_{end:06d}.mp4")
        writer = {"good": write_test_video, "empty": write_empty, "bytes": write_random_bytes,
                  "truncated": write_truncated_video}.get(kind)
        if writer:
            writer(path)
    (root / "annotations" / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def k400_config(tmp_path, **decode):
    root = kinetics_tree(tmp_path / "k400")
    return from_dict(RunConfig, {"run_dir": str(tmp_path / "run"),
                                 "ingest": {"dataset": "kinetics400", "root": str(root)},
                                 "decode": {"num_frames": 4, "size": 16, **decode}})


def toy_config(run_dir, **decode):
    return from_dict(RunConfig, {"run_dir": run_dir, "ingest": {"dataset": "toy", "toy": TINY_TOY},
                                 "decode": {"num_frames": 8, "size": 32, "shard_size": 4,
                                            **decode}})


def test_ingest_writes_manifest_of_good_videos_and_rejects_with_reasons(tmp_path, capsys):
    run = run_stages(k400_config(tmp_path), ["ingest"])
    manifest = run.read_manifest("manifest.parquet").to_pylist()
    assert [row["video_id"] for row in manifest] == [
        "-aaaaaaaaaa_000000_000010", "bbbbbbbbbbb_000005_000015", "ccccccccccc_000001_000011"]
    assert [row["label"] for row in manifest] == [0, 0, 1]
    assert all((row["num_frames"], row["width"], row["height"]) == (8, 48, 32)
               for row in manifest)
    assert all(os.path.exists(row["path"]) for row in manifest)
    reasons = {row["video_id"][:3]: row["reason"] for row in
               run.read_table("rejects.parquet").to_pylist()}
    assert reasons == {"ddd": "missing", "eee": "empty", "fff": "not_a_video", "ggg": "corrupt"}
    printed = capsys.readouterr().out
    assert "videos: 3 in 2 classes" in printed and "missing" in printed


def test_rerun_skips_a_finished_ingest(tmp_path, capsys):
    config = k400_config(tmp_path)
    run = run_stages(config, ["ingest"])
    written = os.path.getmtime(run.path("manifest.parquet"))
    run_stages(config, ["ingest"])
    assert "ingest: already done, skipped" in capsys.readouterr().out
    assert os.path.getmtime(run.path("manifest.parquet")) == written


def test_decode_writes_clip_shards_and_rejects_a_file_broken_after_ingest(tmp_path):
    config = k400_config(tmp_path, shard_size=2)
    run = run_stages(config, ["ingest"])
    broken = run.read_manifest("manifest.parquet").to_pylist()[1]
    with open(broken["path"], "wb") as handle:
        handle.write(b"\x00" * 100)
    run_stages(config, ["decode"])
    shards = [run.read_table(shard_path("train", i)) for i in range(2)]
    ids = [vid for shard in shards for vid in shard.column("video_id").to_pylist()]
    assert ids == ["-aaaaaaaaaa_000000_000010", "ccccccccccc_000001_000011"]
    assert clips_from_table(shards[0]).shape == (1, 4, 16, 16, 3)
    rejects = run.read_table("clips/rejects.parquet").to_pylist()
    assert [(r["video_id"], r["reason"]) for r in rejects] == [(broken["video_id"],
                                                                "decode_error")]
    assert broken["path"] in rejects[0]["detail"]
    assert run.stage_summary("decode")["clips"] == 2
    # Readers of the clip folder see clips only: the shard's rejects live in clips/_rejects/.
    import pandas

    frame = pandas.read_parquet(run.path("clips/train"))
    assert sorted(frame["video_id"]) == ids and not frame["label"].isna().any()
    assert os.path.exists(run.path("clips/_rejects/train/shard-00000.parquet"))


def test_rejects_of_a_run_made_before_the_rejects_folder_are_still_collected(tmp_path):
    from raydistill.pipeline.shards import collect_rejects, shard_rejects_path
    from raydistill.schema import REJECTS_SCHEMA, reject, table_from_rows

    run = RunDir(str(tmp_path / "run"))
    old = table_from_rows([reject("a", "/v/a.mp4", "train", "decode_error", "x")], REJECTS_SCHEMA)
    new = table_from_rows([reject("b", "/v/b.mp4", "train", "decode_error", "y")], REJECTS_SCHEMA)
    run.write_table("clips/train/shard-00000.rejects.parquet", old)  # beside its shard
    run.write_table(shard_rejects_path("clips/train/shard-00001.parquet"), new)
    assert shard_rejects_path("clips/train/shard-00001.parquet") == \
        "clips/_rejects/train/shard-00001.parquet"
    plan = [{"split": "train", "index": 0}, {"split": "train", "index": 1}]
    assert collect_rejects(run, plan, "clips").column("video_id").to_pylist() == ["a", "b"]


def test_interrupted_decode_redoes_only_missing_shards(tmp_path):
    config = toy_config(str(tmp_path / "run"))
    run = run_stages(config, DATA_STAGES)
    assert run.stage_summary("decode")["shards"] == 5  # 9 train in 3 shards, 6 test in 2
    kept = run.path(shard_path("train", 0))
    kept_mtime = os.path.getmtime(kept)
    os.remove(run.path(shard_path("test", 1)))
    os.remove(run.path("_stages/decode.json"))
    run_stages(config, DATA_STAGES)
    assert run.stage_summary("decode")["shards_decoded_now"] == 1
    assert os.path.getmtime(kept) == kept_mtime
    assert run.read_table(shard_path("test", 1)).num_rows == 2


def test_clip_dataset_streams_clips_with_an_error_column(tmp_path):
    config = toy_config(str(tmp_path / "run"))
    run = run_stages(config, ["ingest"])
    manifest = run.read_manifest("manifest.parquet").slice(0, 3)
    os.remove(manifest.column("path")[2].as_py())
    rows = list(clip_dataset(manifest, config.decode).iter_rows())
    assert [row["video_id"] for row in sorted(rows, key=lambda r: r["video_id"])] == sorted(
        manifest.column("video_id").to_pylist())
    by_error = {bool(row["error"]): row for row in rows}
    assert by_error[False]["clip"].shape == (8, 32, 32, 3)
    assert by_error[False]["clip"].max() > 0
    assert "cannot decode" in by_error[True]["error"]


def test_whole_toy_run_on_s3(s3_bucket):
    config = toy_config(f"{s3_bucket}/runs/toy")
    run = run_stages(config, DATA_STAGES)
    again = RunDir(f"{s3_bucket}/runs/toy")
    manifest = again.read_manifest("manifest.parquet")
    assert manifest.num_rows == 15
    assert all(path.startswith(f"{s3_bucket}/runs/toy/source/toy/")
               for path in manifest.column("path").to_pylist())
    clips = clips_from_table(again.read_table(shard_path("test", 0)))
    assert clips.shape == (4, 8, 32, 32, 3) and clips.std() > 10
    assert again.is_done("decode") and run.url == again.url


def test_ingest_reads_a_dataset_root_on_s3(tmp_path, s3_bucket):
    import fsspec

    local = kinetics_tree(tmp_path / "k400")
    fsspec.filesystem("s3").put(str(local), f"{s3_bucket[5:]}/k400", recursive=True)
    config = from_dict(RunConfig, {"run_dir": str(tmp_path / "run"),
                                   "ingest": {"dataset": "kinetics400",
                                              "root": f"{s3_bucket}/k400"}})
    run = run_stages(config, ["ingest"])
    manifest = run.read_manifest("manifest.parquet").to_pylist()
    assert len(manifest) == 3 and all(r["path"].startswith("s3://") for r in manifest)
    reasons = sorted(r["reason"] for r in run.read_table("rejects.parquet").to_pylist())
    assert reasons == ["corrupt", "empty", "missing", "not_a_video"]


def official_trees():
    """dataset name → builder of its official tree, from each layout's own tests."""
    from test_datasets_hmdb51 import official_tree as hmdb51_tree
    from test_datasets_kinetics import official_tree as kinetics_tree_
    from test_datasets_ssv2 import official_tree as ssv2_tree
    from test_datasets_ucf101 import official_tree as ucf101_tree

    return {"kinetics400": kinetics_tree_, "ssv2": ssv2_tree, "ucf101": ucf101_tree,
            "hmdb51": hmdb51_tree}


@pytest.mark.parametrize("dataset", ["kinetics400", "ssv2", "ucf101", "hmdb51"])
def test_ingest_of_each_layout_probes_real_codecs_and_rejects_damaged_files(tmp_path, dataset):
    root = str(official_trees()[dataset](tmp_path / "data"))
    listed = sorted(video["path"] for video in LAYOUTS[dataset](root, 1).videos)
    truncated, garbage, good = listed[0], listed[1], set(listed[2:])
    write_truncated_video(truncated)
    write_random_bytes(garbage)
    config = from_dict(RunConfig, {"run_dir": str(tmp_path / "run"),
                                   "ingest": {"dataset": dataset, "root": root}})
    run = run_stages(config, ["ingest"])
    rejects = {row["path"]: row["reason"] for row in run.read_table("rejects.parquet").to_pylist()}
    assert (rejects[truncated], rejects[garbage]) == ("corrupt", "not_a_video")
    manifest = run.read_manifest("manifest.parquet").to_pylist()
    assert {row["path"] for row in manifest} == good
    assert all((row["num_frames"], row["width"], row["height"]) == (8, 48, 32)
               for row in manifest)


def test_a_file_that_kills_its_probe_worker_rejects_only_itself(tmp_path):
    import ray

    from raydistill.datasets.manifest import probe_rows
    from raydistill.pipeline.ingest import probe_in_parallel

    @ray.remote(max_retries=0)
    def probe_crashing_on_poison(rows, verify, max_pixels=None):
        if any(row["path"].endswith("poison.mp4") for row in rows):
            os._exit(1)  # what a decoder abort does to the worker
        return probe_rows(rows, verify)

    rows = [{"video_id": f"v{i}", "path": write_test_video(str(tmp_path / f"v{i}.mp4")),
             "label": 0, "class_name": "c", "split": "train"} for i in range(3)]
    rows.insert(1, {"video_id": "p", "path": str(tmp_path / "poison.mp4"), "label": 0,
                    "class_name": "c", "split": "train"})
    videos, rejects = probe_in_parallel(rows, batch_size=4, verify=True,
                                        probe_task=probe_crashing_on_poison)
    assert sorted(v["video_id"] for v in videos) == ["v0", "v1", "v2"]
    assert [(r["video_id"], r["reason"]) for r in rejects] == [("p", "corrupt")]
    assert "crashed the worker" in rejects[0]["detail"]


def test_a_worker_lost_while_decoding_a_file_rejects_nothing(tmp_path):
    from raydistill.pipeline.decode import run_decode
    from raydistill.pipeline.shards import decode_shards

    deaths = tmp_path / "deaths"

    def decode_losing_its_worker_twice(batch, num_frames, size):
        # Lost with the shard's task, then once more when decoded alone (a preempted node):
        # the retry of the file alone succeeds.
        if any("move_left_train_0001" in rows for rows in batch["rows"]):
            count = len(deaths.read_text()) if deaths.exists() else 0
            if count < 2:
                deaths.write_text("x" * (count + 1))
                os._exit(1)
        return decode_shards(batch, num_frames, size)

    config = toy_config(str(tmp_path / "run"))
    run = run_stages(config, ["ingest"])
    summary = run_decode(run, config, decode_fn=decode_losing_its_worker_twice)
    assert deaths.read_text() == "xx" and run.read_table("clips/rejects.parquet").num_rows == 0
    assert summary["clips"] == 15


def test_a_file_that_kills_its_decode_worker_rejects_only_itself(tmp_path):
    from raydistill.pipeline.decode import run_decode
    from raydistill.pipeline.shards import decode_shards

    def decode_crashing_on_poison(batch, num_frames, size):
        if any("move_left_train_0001" in rows for rows in batch["rows"]):
            os._exit(1)  # what a decoder abort does to the worker
        return decode_shards(batch, num_frames, size)

    config = toy_config(str(tmp_path / "run"))
    run = run_stages(config, ["ingest"])
    summary = run_decode(run, config, decode_fn=decode_crashing_on_poison)
    rejects = run.read_table("clips/rejects.parquet").to_pylist()
    assert [(r["video_id"], r["reason"]) for r in rejects] == [("move_left_train_0001",
                                                                "decode_error")]
    assert "crashed the worker" in rejects[0]["detail"]
    assert summary["clips"] == 14


def test_changed_settings_after_an_interrupted_decode_drop_the_stale_shards(tmp_path):
    config = toy_config(str(tmp_path / "run"))
    run = run_stages(config, DATA_STAGES)
    os.remove(run.path("_stages/decode.json"))
    os.remove(run.path(shard_path("test", 1)))
    changed = toy_config(str(tmp_path / "run"), num_frames=4, size=16)
    run_stages(changed, DATA_STAGES)
    for split, count in (("train", 3), ("test", 2)):
        for index in range(count):
            clips = clips_from_table(run.read_table(shard_path(split, index)))
            assert clips.shape[1:] == (4, 16, 16, 3)


def test_a_frame_interval_decodes_consecutive_frames_into_its_own_cache(tmp_path):
    config = toy_config(str(tmp_path / "run"), num_frames=4)  # of 8: frames 1, 3, 5, 7
    run = run_stages(config, DATA_STAGES)
    spread = clips_from_table(run.read_table(shard_path("train", 0)))
    os.remove(run.path("_stages/decode.json"))  # the decode settings may change before it ends
    strided = toy_config(str(tmp_path / "run"), num_frames=4, frame_interval=1)  # 2, 3, 4, 5
    run_stages(strided, DATA_STAGES)
    table = run.read_table(shard_path("train", 0))
    first = run.read_manifest("manifest.parquet").to_pylist()
    path = next(row["path"] for row in first if row["video_id"] == table["video_id"][0].as_py())
    clips = clips_from_table(table)
    assert np.array_equal(clips[0], decode_clip(path, 4, 32, frame_interval=1))
    assert not np.array_equal(clips, spread)
    assert run.read_json("clips/settings.json")["frame_interval"] == 1
    assert run.stage_summary("decode")["frame_interval"] == 1
