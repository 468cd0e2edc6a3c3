"""Bad data, end to end: dataset trees in official layouts full of damaged videos and annotation
lines go through the ingest and decode stages on a real local Ray.

Both stages finish; every bad item is a reject with its specific reason, the stage summaries
count them, and every good video is in the manifest and has a clip. Decisions pinned here:

- a one-frame video is a video: its clip repeats the frame T times (as any video shorter than
  the clip repeats frames), it is not rejected;
- a huge frame (4000×3000) is decoded and resized a few frames at a time, in bounded memory;
- the container is recognised from the file's content, not its name: an mp4 named ``.avi`` (or a
  WebM named ``.mp4``) is a good video, a text page named ``.avi`` / ``.mp4`` is ``not_a_video``;
- an annotation line that is not UTF-8 rejects only itself (``bad_annotation``), not the ingest;
- an empty-track ``.mp4`` is ``no_video_stream`` (FFmpeg drops an mp4 track without samples),
  an ``.avi`` whose stream holds no frame is ``zero_frames``.

UCF101 can express every kind of bad annotation (a class outside ``classInd.txt``, duplicate ids,
malformed and undecodable lines); Kinetics-400 cannot have an unknown class (its classes are the
labels its CSVs use), so its tree covers the CSV's own problems.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import (write_bytes, write_empty, write_flat_video, write_random_bytes,
                     write_test_video, write_truncated_video, write_zero_frame_video)
from raydistill.config import RunConfig, from_dict
from raydistill.pipeline.run import run_stages
from raydistill.pipeline.shards import shard_files
from raydistill.video.clips import clips_from_table

pytestmark = pytest.mark.usefixtures("ray_cluster")

NUM_FRAMES, SIZE = 4, 16
HUGE = (3000, 4000)  # height, width
FLAT_COLOUR = (30, 120, 200)
ONE_FRAME_COLOUR = (200, 60, 20)
TEXT_PAGE = b"Gone: this video has been removed by the user.\n"  # starts like an MPEG-TS ("G")
HTML_PAGE = b"<!DOCTYPE html><html><body>Video unavailable</body></html>\n"


def ucf(name: str, group: int, clip: int) -> str:
    """``Class/v_Class_gXX_cYY.avi`` of UCF101."""
    return f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"


def write_list(root, name: str, lines: list[bytes | str]) -> None:
    """A ``ucfTrainTestlist`` file with CRLF endings (lines given as bytes are written as is)."""
    raw = [line if isinstance(line, bytes) else line.encode() for line in lines]
    write_bytes(str(root / "ucfTrainTestlist" / name), b"\r\n".join(raw) + b"\r\n")


def ucf101_tree(root):
    """A UCF101 split-1 tree with every kind of bad item; returns ``(root, expected)``.

    ``expected``: ``good`` {video_id: (split, label, num_frames, width, height)} and
    ``rejects``: sorted (split, video_id or "file line N", reason).
    """
    videos = root / "UCF-101"
    write_list(root, "classInd.txt", ["1 ApplyEyeMakeup", "2 Archery", "3 BalanceBeam",
                                      "4Basketball"])
    good = {}
    for label, name in enumerate(["ApplyEyeMakeup", "Archery", "BalanceBeam"]):
        for group, split in ((8, "train"), (1, "test")):
            write_test_video(str(videos / ucf(name, group, 1)), seed=label)
            good[f"v_{name}_g{group:02d}_c01"] = (split, label, 8, 48, 32)
    write_empty(str(videos / ucf("Archery", 8, 2)))
    write_truncated_video(str(videos / ucf("BalanceBeam", 8, 2)))
    write_random_bytes(str(videos / ucf("ApplyEyeMakeup", 8, 3)))
    write_zero_frame_video(str(videos / ucf("Archery", 8, 3)))
    write_flat_video(str(videos / ucf("BalanceBeam", 8, 3)), 1, 32, 48, ONE_FRAME_COLOUR)
    write_flat_video(str(videos / ucf("ApplyEyeMakeup", 8, 4)), 3, *HUGE, FLAT_COLOUR)
    mp4 = write_test_video(str(root / "elsewhere" / "real.mp4"))  # H.264 in an mp4 container
    write_bytes(str(videos / ucf("Archery", 8, 4)), Path(mp4).read_bytes())
    write_bytes(str(videos / ucf("BalanceBeam", 8, 4)), TEXT_PAGE)
    write_test_video(str(videos / ucf("Basketball", 1, 1)))
    good.update({"v_BalanceBeam_g08_c03": ("train", 2, 1, 48, 32),
                 "v_ApplyEyeMakeup_g08_c04": ("train", 0, 3, HUGE[1], HUGE[0]),
                 "v_Archery_g08_c04": ("train", 1, 8, 48, 32)})
    write_list(root, "trainlist01.txt", [
        f"{ucf('ApplyEyeMakeup', 8, 1)} 1", f"{ucf('Archery', 8, 1)} 2",
        f"{ucf('BalanceBeam', 8, 1)} 3",
        f"{ucf('ApplyEyeMakeup', 8, 2)} 1",          # 4: no file
        f"{ucf('Archery', 8, 2)} 2",                 # 5: zero bytes
        f"{ucf('BalanceBeam', 8, 2)} 3",             # 6: truncated
        f"{ucf('ApplyEyeMakeup', 8, 3)} 1",          # 7: random bytes
        f"{ucf('Archery', 8, 3)} 2",                 # 8: a stream without frames
        f"{ucf('BalanceBeam', 8, 3)} 3",             # 9: one frame (good)
        f"{ucf('ApplyEyeMakeup', 8, 4)} 1",          # 10: 4000×3000 (good)
        f"{ucf('Archery', 8, 4)} 2",                 # 11: an mp4 named .avi (good)
        f"{ucf('BalanceBeam', 8, 4)} 3",             # 12: a text page named .avi
        "v_Archery_g08_c05.avi 2",                   # 13: no class folder
        b"Archery/v_Archery_g08_c06\xe9.avi 2",      # 14: Latin-1, not UTF-8
        f"{ucf('ApplyEyeMakeup', 8, 1)} 1",          # 15: listed again
        f"{ucf('Basketball', 8, 1)} 4",              # 16: class number 4 is not in classInd
    ])
    write_list(root, "testlist01.txt", [
        ucf("ApplyEyeMakeup", 1, 1), ucf("Archery", 1, 1), ucf("BalanceBeam", 1, 1),
        ucf("Basketball", 1, 1),                     # 4: folder not in classInd (file exists)
        ucf("Archery", 8, 1),                        # 5: a training video listed for test too
    ])
    train_list = "ucfTrainTestlist/trainlist01.txt"
    rejects = [
        ("", "ucfTrainTestlist/classInd.txt line 4", "bad_annotation"),
        ("train", "v_ApplyEyeMakeup_g08_c02", "missing"),
        ("train", "v_Archery_g08_c02", "empty"),
        ("train", "v_BalanceBeam_g08_c02", "corrupt"),
        ("train", "v_ApplyEyeMakeup_g08_c03", "not_a_video"),
        ("train", "v_Archery_g08_c03", "zero_frames"),
        ("train", "v_BalanceBeam_g08_c04", "not_a_video"),
        ("train", f"{train_list} line 13", "bad_annotation"),
        ("train", f"{train_list} line 14", "bad_annotation"),
        ("train", "v_ApplyEyeMakeup_g08_c01", "duplicate_id"),
        ("train", f"{train_list} line 16", "bad_annotation"),
        ("test", "v_Basketball_g01_c01", "unknown_class"),
        ("test", "v_Archery_g08_c01", "duplicate_id"),
    ]
    return root, {"good": good, "rejects": sorted(rejects)}


def kinetics_tree(root):
    """A Kinetics-400 tree (train.csv, class folders) with bad files and bad CSV rows; returns
    ``(root, expected)`` as :func:`ucf101_tree`."""
    def clip(label, youtube_id):
        return str(root / "train" / label / f"{youtube_id}_000000_000010.mp4")

    write_test_video(clip("abseiling", "aaaaaaaaaaa"), seed=1)
    write_test_video(clip("zumba", "bbbbbbbbbbb"), seed=2)
    webm = write_test_video(str(root / "elsewhere" / "real.webm"), seed=3)  # VP9 in WebM
    write_bytes(clip("zumba", "ccccccccccc"), Path(webm).read_bytes())
    write_bytes(clip("abseiling", "ddddddddddd"), HTML_PAGE)
    write_zero_frame_video(clip("abseiling", "eeeeeeeeeee"))
    lines = [b"label,youtube_id,time_start,time_end,split"] + [
        f"{label},{youtube_id},0,10,train".encode() for label, youtube_id in [
            ("abseiling", "aaaaaaaaaaa"), ("zumba", "bbbbbbbbbbb"), ("zumba", "ccccccccccc"),
            ("abseiling", "ddddddddddd"), ("abseiling", "eeeeeeeeeee"),
            ("zumba", "fffffffffff")]] + [
        b"abseiling,ggggggggggg",                          # 8: times missing
        b"zumba,hhhhhhhhhhh,ten,20,train",                 # 9: not a number of seconds
        b"zumba,iiiiiiiiiii,0,10,train\xff",               # 10: not UTF-8
        b"abseiling,jjjjjjjjjjj,0,10,train,extra,fields",  # 11: 7 fields
        b"abseiling,aaaaaaaaaaa,0,10,train",               # 12: listed again
    ]
    write_bytes(str(root / "annotations" / "train.csv"), b"\n".join(lines) + b"\n")
    csv_file = "annotations/train.csv"
    good = {"aaaaaaaaaaa_000000_000010": ("train", 0, 8, 48, 32),
            "bbbbbbbbbbb_000000_000010": ("train", 1, 8, 48, 32),
            "ccccccccccc_000000_000010": ("train", 1, 8, 48, 32)}
    rejects = [("train", "ddddddddddd_000000_000010", "not_a_video"),
               ("train", "eeeeeeeeeee_000000_000010", "no_video_stream"),
               ("train", "fffffffffff_000000_000010", "missing"),
               *[("train", f"{csv_file} line {n}", "bad_annotation") for n in (8, 9, 10, 11)],
               ("train", "aaaaaaaaaaa_000000_000010", "duplicate_id")]
    return root, {"good": good, "rejects": sorted(rejects)}


def run_data_stages(tmp_path, dataset: str, root):
    config = from_dict(RunConfig, {
        "run_dir": str(tmp_path / "run"),
        "ingest": {"dataset": dataset, "root": str(root), "probe_batch_size": 4},
        "decode": {"num_frames": NUM_FRAMES, "size": SIZE, "shard_size": 4}})
    return run_stages(config, ["ingest", "decode"])


def reject_key(row: dict) -> tuple[str, str, str]:
    """(split, video_id — or "file line N" for an annotation line —, reason) of a reject."""
    where = row["detail"].split(":")[0] if row["reason"] == "bad_annotation" else row["video_id"]
    return row["split"], where, row["reason"]


def reject_keys(rows: list[dict]) -> list[tuple[str, str, str]]:
    """:func:`reject_key` of each row, sorted."""
    return sorted(map(reject_key, rows))


def details(run) -> dict[str, str]:
    """{video_id or "file line N": detail} of the ingest's rejects."""
    return {reject_key(row)[1]: row["detail"]
            for row in run.read_table("rejects.parquet").to_pylist()}


def decoded_clips(run) -> dict[str, np.ndarray]:
    """{video_id: clip} of every clip-cache shard."""
    clips = {}
    for shard in shard_files(run, "clips"):
        table = run.read_table(shard)
        clips.update(zip(table.column("video_id").to_pylist(), clips_from_table(table)))
    return clips


def check_stages(run, expected: dict) -> tuple[dict, dict]:
    """Assert what both layouts promise; returns (manifest rows by id, clips by id)."""
    manifest = {row["video_id"]: row for row in run.read_manifest("manifest.parquet").to_pylist()}
    assert {vid: (row["split"], row["label"], row["num_frames"], row["width"], row["height"])
            for vid, row in manifest.items()} == expected["good"]
    rejects = run.read_table("rejects.parquet").to_pylist()
    assert reject_keys(rejects) == expected["rejects"]
    assert all(row["path"] for row in rejects)  # a file's path, or the annotation file's

    summary = run.stage_summary("ingest")
    counted = {}
    for _, _, reason in expected["rejects"]:
        counted[reason] = counted.get(reason, 0) + 1
    assert (summary["videos"], summary["rejects"], summary["rejects_by_reason"]) == (
        len(expected["good"]), len(expected["rejects"]), dict(sorted(counted.items())))

    clips = decoded_clips(run)
    assert sorted(clips) == sorted(expected["good"])  # every good video, and only those
    assert all(clip.shape == (NUM_FRAMES, SIZE, SIZE, 3) for clip in clips.values())
    assert run.read_table("clips/rejects.parquet").num_rows == 0
    decode = run.stage_summary("decode")
    assert (decode["clips"], decode["decode_errors"]) == (len(expected["good"]), 0)
    return manifest, clips


def test_ucf101_tree_of_bad_items_rejects_each_with_its_reason_and_decodes_the_rest(tmp_path,
                                                                                  capsys):
    root, expected = ucf101_tree(tmp_path / "ucf")
    run = run_data_stages(tmp_path, "ucf101", root)
    _, clips = check_stages(run, expected)

    detail = details(run)
    assert detail["ucfTrainTestlist/trainlist01.txt line 14"].endswith("not UTF-8 text")
    assert "class number 4 does not name folder 'Basketball'" in detail[
        "ucfTrainTestlist/trainlist01.txt line 16"]
    assert detail["v_Basketball_g01_c01"] == "class 'Basketball'"
    assert "Invalid data" in detail["v_BalanceBeam_g08_c02"]  # its index is cut off

    one_frame = clips["v_BalanceBeam_g08_c03"].astype(int)
    assert (one_frame == one_frame[:1]).all()  # the single frame, repeated
    assert np.abs(one_frame.reshape(-1, 3).mean(axis=0) - ONE_FRAME_COLOUR).max() < 4
    huge = clips["v_ApplyEyeMakeup_g08_c04"].astype(int)
    assert np.abs(huge.reshape(-1, 3).mean(axis=0) - FLAT_COLOUR).max() < 4
    assert clips["v_Archery_g08_c04"].std() > 10  # the mp4 named .avi: a real picture

    printed = capsys.readouterr().out
    assert "videos: 9 in 3 classes" in printed and "rejects: 13" in printed
    assert "decode: 9 clips" in printed and "0 decode errors" in printed


def test_kinetics_tree_of_bad_files_and_csv_rows_rejects_each_with_its_reason(tmp_path):
    root, expected = kinetics_tree(tmp_path / "k400")
    run = run_data_stages(tmp_path, "kinetics400", root)
    manifest, _ = check_stages(run, expected)
    assert manifest["ccccccccccc_000000_000010"]["path"].endswith(".mp4")  # a WebM inside
    detail = details(run)
    assert detail["annotations/train.csv line 9"].endswith("time 'ten' is not a whole number "
                                                           "of seconds")
    assert detail["annotations/train.csv line 10"].endswith("not UTF-8 text")
    assert detail["annotations/train.csv line 11"].endswith("7 fields, the header has 5")


MEASURE_DECODE_MEMORY = """
import json, resource, sys
from raydistill.video import decode
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
means = [decode.decode_clip(sys.argv[1], 16, 112).reshape(-1, 3).mean(axis=0).tolist()]
decode.decord = None  # the PyAV fallback
means.append(decode.decode_clip(sys.argv[1], 16, 112).reshape(-1, 3).mean(axis=0).tolist())
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"means": means, "grown_mb": grown / 1024}))
"""


def test_a_huge_frame_video_decodes_in_bounded_memory(tmp_path):
    """A 16-frame clip of a 4000×3000 video used to hold every frame at full size, and a float
    copy of them, at once (~2.7 GB); decoded a few frames at a time, with decord and with PyAV,
    it needs a few hundred MB (measured in a fresh process: its peak RSS growth)."""
    path = write_flat_video(str(tmp_path / "huge.avi"), 3, *HUGE, FLAT_COLOUR)
    result = subprocess.run([sys.executable, "-c", MEASURE_DECODE_MEMORY, path],
                            capture_output=True, text=True, check=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert np.abs(np.asarray(measured["means"]) - FLAT_COLOUR).max() < 4
    assert measured["grown_mb"] < 600, measured


# --- hostile run directories (issue 18) -----------------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1] / "raydistill"


def torch_load_calls_without_weights_only() -> list[str]:
    """``file:line`` of every ``torch.load(...)`` in the package not passing
    ``weights_only=True``."""
    import ast

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load" and getattr(node.func.value, "id", "") == "torch"
                    and not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                                for k in node.keywords)):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return found


def test_every_checkpoint_the_package_reads_is_loaded_weights_only():
    assert torch_load_calls_without_weights_only() == []


class Planted:
    """A pickle that, loaded with full unpickling, creates the file ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_planted_training_checkpoint_is_refused_without_running_its_code(tmp_path):
    import pickle

    import torch

    from raydistill.config import FinetuneConfig
    from raydistill.generation.latte import TINY_LATTE, ClassConditionalLatte
    from raydistill.generation.training import new_state, restore_checkpoint

    model = ClassConditionalLatte(**{**TINY_LATTE, "num_classes": 2})
    model.save_pretrained(tmp_path / "checkpoint" / "model")
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": Planted(str(marker)), "step": 3},
               tmp_path / "checkpoint" / "state.pt")
    with pytest.raises(pickle.UnpicklingError):
        restore_checkpoint(new_state(model, FinetuneConfig(architecture="tiny")),
                           str(tmp_path / "checkpoint"))
    assert not marker.exists()


def test_a_run_under_a_hidden_folder_finds_its_shards_but_not_temporaries(tmp_path):
    import pyarrow as pa

    from raydistill.pipeline.finetune import latent_files
    from raydistill.runs import RunDir

    run = RunDir(str(tmp_path / ".cache" / "raydistill" / "run"))
    run.write_table("latents/train/shard-00000.parquet", pa.table({"v": [1]}))
    run.write_bytes("latents/train/.tmp-shard-00001.parquet", b"half written")
    assert [path.rsplit("/", 1)[-1] for path in latent_files(run)] == ["shard-00000.parquet"]
    assert run.list("latents") == ["latents/train/shard-00000.parquet"]


def kinetics_csv(root, rows: list[tuple[str, str]]) -> None:
    lines = [b"label,youtube_id,time_start,time_end,split"] + [
        f"{label},{youtube_id},0,10,train".encode() for label, youtube_id in rows]
    write_bytes(str(root / "annotations" / "train.csv"), b"\n".join(lines) + b"\n")


def test_a_link_out_of_the_dataset_root_is_rejected_and_one_inside_it_is_read(tmp_path):
    import os

    root = tmp_path / "k400"
    clip = "{}/train/{}/{}_000000_000010.mp4"
    write_test_video(clip.format(root, "abseiling", "a" * 11), seed=1)
    outside = write_test_video(str(tmp_path / "private" / "secret.mp4"), seed=2)
    inside = write_test_video(str(root / "elsewhere" / "kept.mp4"), seed=3)
    os.makedirs(root / "train" / "zumba")
    os.symlink(outside, clip.format(root, "zumba", "b" * 11))
    os.symlink(inside, clip.format(root, "zumba", "c" * 11))
    kinetics_csv(root, [("abseiling", "a" * 11), ("zumba", "b" * 11), ("zumba", "c" * 11)])
    config = from_dict(RunConfig, {"run_dir": str(tmp_path / "run"),
                                   "ingest": {"dataset": "kinetics400", "root": str(root)}})
    run = run_stages(config, ["ingest"])
    listed = run.read_manifest("manifest.parquet").column("video_id").to_pylist()
    assert sorted(listed) == ["a" * 11 + "_000000_000010", "c" * 11 + "_000000_000010"]
    [rejected] = run.read_table("rejects.parquet").to_pylist()
    assert (rejected["video_id"], rejected["reason"]) == ("b" * 11 + "_000000_000010",
                                                          "outside_root")
    assert outside in rejected["detail"]


def test_class_names_that_cannot_be_folder_names_stop_ingest_naming_them(tmp_path):
    from raydistill.datasets.common import DatasetError

    root = tmp_path / "k400"
    write_test_video(f"{root}/train/abseiling/{'a' * 11}_000000_000010.mp4", seed=1)
    kinetics_csv(root, [("abseiling", "a" * 11), ("..", "b" * 11)])
    config = from_dict(RunConfig, {"run_dir": str(tmp_path / "run"),
                                   "ingest": {"dataset": "kinetics400", "root": str(root)}})
    with pytest.raises(DatasetError, match=r"class name '\.\.' has no characters usable"):
        run_stages(config, ["ingest"])


def test_a_class_name_that_climbs_out_writes_its_videos_and_filmstrip_inside_the_run(tmp_path):
    import os

    from raydistill.pipeline.generate import video_relpath, write_filmstrips
    from raydistill.runs import RunDir

    run = RunDir(str(tmp_path / "a" / "b" / "run"))
    items = [{"video_id": f"syn_0000_0000{i}", "class_name": "../../../escaped"}
             for i in range(2)]
    for item in items:
        write_test_video(run.path(video_relpath(item)), seed=4)
    written = write_filmstrips(run, items)
    for relpath in [video_relpath(item) for item in items] + written:
        resolved = os.path.realpath(run.path(relpath))
        assert resolved.startswith(os.path.realpath(run.root) + os.sep), relpath
        assert os.path.exists(resolved)
    assert not any(name.startswith("escaped") for _, _, names in os.walk(tmp_path)
                   for name in names)


def test_frames_larger_than_the_cap_are_rejected_before_any_decode(tmp_path):
    root = tmp_path / "k400"
    write_test_video(f"{root}/train/abseiling/{'a' * 11}_000000_000010.mp4", height=32, width=48)
    write_test_video(f"{root}/train/zumba/{'b' * 11}_000000_000010.mp4", height=64, width=96)
    kinetics_csv(root, [("abseiling", "a" * 11), ("zumba", "b" * 11)])
    config = from_dict(RunConfig, {"run_dir": str(tmp_path / "run"),
                                   "ingest": {"dataset": "kinetics400", "root": str(root),
                                              "max_frame_pixels": 48 * 32}})
    run = run_stages(config, ["ingest"])
    assert run.read_manifest("manifest.parquet").column("video_id").to_pylist() == [
        "a" * 11 + "_000000_000010"]
    [rejected] = run.read_table("rejects.parquet").to_pylist()
    assert rejected["reason"] == "too_large"
    assert rejected["detail"] == ("96x64 frames (0.0 M pixels) exceed ingest.max_frame_pixels "
                                  "(1536)")
    assert RunConfig().ingest.max_frame_pixels == 4096 * 4096  # 4K video stays, 8192² does not


def write_variable_rate_video(path: str, frames: int = 24) -> str:
    """A complete VP9 WebM / Matroska file whose frames alternate 100 and 275 ms apart, with an
    average rate of 8 fps in its header: duration × rate announces ~35 frames, it holds 24."""
    from fractions import Fraction

    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libvpx-vp9", rate=8)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 48, 3), 20 + 9 * index, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 100 if index % 2 == 0 else 275
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("extension", ["webm", "mkv"])
def test_a_complete_variable_rate_file_is_kept_and_a_cut_one_is_truncated(tmp_path, extension):
    from raydistill.video.probe import ProbeError, probe_video

    path = write_variable_rate_video(str(tmp_path / f"vfr.{extension}"))
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (24, 48, 32)
    data = Path(path).read_bytes()
    cut = tmp_path / f"cut.{extension}"
    cut.write_bytes(data[:int(len(data) * 0.7)])
    with pytest.raises(ProbeError, match="truncated: header announces .* s, the frames end at"):
        probe_video(str(cut))


def write_sideways_video(path: str) -> str:
    """An H.264 mp4 stored 48×32 whose left half is white, with the display matrix of a phone
    held upright (a quarter turn clockwise, in the track header): shown 32×48, white on top."""
    import struct

    import av

    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:, :24] = 255
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for _ in range(8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(Path(path).read_bytes())
    box = data.find(b"tkhd")
    assert data[box + 4] == 0  # version 0: 4-byte times
    matrix = box + 4 + 4 + 20 + 8 + 8  # version/flags, times/id/duration, reserved, layer…volume
    data[matrix:matrix + 36] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    Path(path).write_bytes(data)
    return path


def test_a_video_stored_sideways_gives_the_same_upright_clip_with_either_decoder(tmp_path):
    from raydistill.video.decode import _decode_with_decord, _decode_with_pyav
    from raydistill.video.io import open_source
    from raydistill.video.probe import probe_video

    path = write_sideways_video(str(tmp_path / "phone.mp4"))
    info = probe_video(path)
    assert (info.width, info.height) == (32, 48)  # the displayed size
    clips = [decode(open_source(path), 4, 16) for decode in (_decode_with_decord,
                                                             _decode_with_pyav)]
    for clip in clips:
        assert clip[:, :6].mean() > 200 and clip[:, -6:].mean() < 50  # white on top
    assert np.abs(clips[0].astype(int) - clips[1]).max() <= 2


def test_a_complete_webm_whose_audio_outlasts_its_video_is_kept(tmp_path):
    from fractions import Fraction

    import av

    from raydistill.video.probe import probe_video

    path = str(tmp_path / "talk.webm")
    with av.open(path, "w") as container:  # 2 s of VP9 video, 3 s of Opus audio
        video = container.add_stream("libvpx-vp9", rate=8)
        video.width, video.height, video.pix_fmt = 48, 32, "yuv420p"
        audio = container.add_stream("libopus", rate=48000)
        audio.layout = "mono"
        for index in range(16):
            frame = av.VideoFrame.from_ndarray(np.full((32, 48, 3), 9 * index, np.uint8),
                                               format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        for index in range(150):
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16",
                                               layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = 48000, index * 960, Fraction(1, 48000)
            for packet in audio.encode(sound):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    assert probe_video(path).num_frames == 16
