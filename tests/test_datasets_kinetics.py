"""Kinetics-400 layout: annotation CSVs + {split}/[class/]{youtube_id}_{start}_{end}.mp4."""

from __future__ import annotations

import os

import fsspec
import pytest

from helpers import ids_by_split, write_test_video
from raydistill.datasets import kinetics

HEADER = "label,youtube_id,time_start,time_end,split"


def write_csv(root, split_name, rows):
    """annotations/{split_name}.csv with ``rows`` of (label, youtube_id, start, end) as written."""
    lines = [HEADER] + [f"{label},{yid},{start},{end},{split_name}"
                        for label, yid, start, end in rows]
    path = root / "annotations" / f"{split_name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_clip(root, relative):
    return write_test_video(str(root / relative))


def official_tree(root):
    """Two classes, train + val CSVs, class folders for train (one spelt with an underscore)."""
    write_csv(root, "train", [("air drumming", "abcDEF12345", 10, 20),
                              ("abseiling", "-9xYz_0abcd", 0, 10),
                              ("abseiling", "ZZZZZZZZZZZ", 5, 15)])
    write_csv(root, "val", [("air drumming", "valvid00001", 1, 11)])
    write_clip(root, "train/air_drumming/abcDEF12345_000010_000020.mp4")
    write_clip(root, "train/abseiling/-9xYz_0abcd_000000_000010.mp4")
    write_clip(root, "train/abseiling/ZZZZZZZZZZZ_000005_000015.mp4")
    write_clip(root, "val/valvid00001_000001_000011.mp4")
    return root


def test_class_folder_tree_lists_every_split_with_sorted_class_labels(tmp_path):
    listing = kinetics.list_videos(str(official_tree(tmp_path)))

    assert listing.class_names == ["abseiling", "air drumming"]
    assert ids_by_split(listing) == {
        "train": {"abcDEF12345_000010_000020", "-9xYz_0abcd_000000_000010",
                  "ZZZZZZZZZZZ_000005_000015"},
        "val": {"valvid00001_000001_000011"},
    }
    labels = {v["video_id"]: (v["label"], v["class_name"]) for v in listing.videos}
    assert labels["abcDEF12345_000010_000020"] == (1, "air drumming")
    assert labels["-9xYz_0abcd_000000_000010"] == (0, "abseiling")
    assert all(os.path.isfile(v["path"]) for v in listing.videos)
    assert listing.rejects == []


def test_flat_tree_is_matched_by_file_name(tmp_path):
    write_csv(tmp_path, "test", [("abseiling", "flatflat001", 3, 13)])
    path = write_clip(tmp_path, "test/flatflat001_000003_000013.mp4")

    listing = kinetics.list_videos(str(tmp_path))

    assert listing.videos == [{"video_id": "flatflat001_000003_000013", "path": path, "label": 0,
                               "class_name": "abseiling", "split": "test"}]


def test_youtube_id_beginning_with_dash_is_listed(tmp_path):
    write_csv(tmp_path, "train", [("abseiling", "--dashStart", 0, 10)])
    write_clip(tmp_path, "train/abseiling/--dashStart_000000_000010.mp4")

    listing = kinetics.list_videos(str(tmp_path))

    assert [v["video_id"] for v in listing.videos] == ["--dashStart_000000_000010"]


def test_times_written_as_decimals_give_the_same_video_id(tmp_path):
    write_csv(tmp_path, "train", [("abseiling", "decimals001", "10.0", "20.0")])
    write_clip(tmp_path, "train/decimals001_000010_000020.mp4")

    listing = kinetics.list_videos(str(tmp_path))

    assert [v["video_id"] for v in listing.videos] == ["decimals001_000010_000020"]


def test_listed_clip_without_a_file_is_rejected_as_missing(tmp_path):
    official_tree(tmp_path)
    write_csv(tmp_path, "test", [("abseiling", "goneFromYT1", 0, 10)])

    listing = kinetics.list_videos(str(tmp_path))

    assert [(r["video_id"], r["split"], r["reason"]) for r in listing.rejects] == [
        ("goneFromYT1_000000_000010", "test", "missing")]
    assert listing.rejects[0]["path"] == str(tmp_path / "test/goneFromYT1_000000_000010.mp4")
    assert "test" not in ids_by_split(listing)


def test_clip_in_the_wrong_split_folder_is_missing(tmp_path):
    write_csv(tmp_path, "val", [("abseiling", "wrongfolder", 0, 10)])
    write_clip(tmp_path, "train/wrongfolder_000000_000010.mp4")

    listing = kinetics.list_videos(str(tmp_path))

    assert listing.videos == []
    assert [r["reason"] for r in listing.rejects] == ["missing"]


def test_malformed_rows_are_rejected_with_file_and_line_and_the_rest_listed(tmp_path):
    write_csv(tmp_path, "train", [("abseiling", "goodvideo01", 0, 10),
                                  ("abseiling", "badtime0001", "abc", 10),
                                  ("abseiling", "halfsecond1", "0.5", 10),
                                  ("abseiling", "", 0, 10)])
    write_clip(tmp_path, "train/goodvideo01_000000_000010.mp4")

    listing = kinetics.list_videos(str(tmp_path))

    assert [v["video_id"] for v in listing.videos] == ["goodvideo01_000000_000010"]
    assert [r["reason"] for r in listing.rejects] == ["bad_annotation"] * 3
    details = [r["detail"] for r in listing.rejects]
    assert [d.split(":")[0] for d in details] == [
        "annotations/train.csv line 3", "annotations/train.csv line 4",
        "annotations/train.csv line 5"]
    assert listing.rejects[0]["video_id"] == "badtime0001"


def test_clip_listed_in_two_csvs_is_a_duplicate(tmp_path):
    write_csv(tmp_path, "train", [("abseiling", "twicelisted", 0, 10)])
    write_csv(tmp_path, "val", [("abseiling", "twicelisted", 0, 10)])
    write_clip(tmp_path, "train/twicelisted_000000_000010.mp4")
    write_clip(tmp_path, "val/twicelisted_000000_000010.mp4")

    listing = kinetics.list_videos(str(tmp_path))

    assert ids_by_split(listing) == {"train": {"twicelisted_000000_000010"}}
    assert [(r["split"], r["reason"]) for r in listing.rejects] == [("val", "duplicate_id")]


def test_class_names_are_the_union_over_every_csv(tmp_path):
    write_csv(tmp_path, "train", [("zumba", "trainvideo1", 0, 10)])
    write_csv(tmp_path, "val", [("abseiling", "valvideo001", 0, 10)])
    write_clip(tmp_path, "train/trainvideo1_000000_000010.mp4")

    listing = kinetics.list_videos(str(tmp_path))

    assert listing.class_names == ["abseiling", "zumba"]
    assert [v["label"] for v in listing.videos] == [1]


def test_no_annotation_csv_at_all_raises_naming_the_folder(tmp_path):
    write_clip(tmp_path, "train/someclip0001_000000_000010.mp4")

    with pytest.raises(FileNotFoundError, match="annotations"):
        kinetics.list_videos(str(tmp_path))


def test_reads_the_same_tree_from_s3(tmp_path, s3_bucket):
    local = official_tree(tmp_path / "k400")
    write_csv(local, "test", [("abseiling", "goneFromYT1", 0, 10)])
    fsspec.filesystem("s3").put(f"{local}/", f"{s3_bucket[5:]}/tree", recursive=True)
    remote = f"{s3_bucket}/tree"

    from_s3 = kinetics.list_videos(remote)
    from_disk = kinetics.list_videos(str(local))

    assert all(v["path"].startswith(f"{remote}/train/") or v["path"].startswith(f"{remote}/val/")
               for v in from_s3.videos)
    assert [r["path"] for r in from_s3.rejects] == [
        f"{remote}/test/goneFromYT1_000000_000010.mp4"]
    relative = [{**v, "path": v["path"][len(remote):]} for v in from_s3.videos]
    assert relative == [{**v, "path": v["path"][len(str(local)):]} for v in from_disk.videos]
    assert from_s3.class_names == from_disk.class_names


def test_a_label_with_stray_spaces_is_the_same_class(tmp_path):
    official_tree(tmp_path)
    write_csv(tmp_path, "train", [("air drumming", "abcDEF12345", 10, 20),
                                  ("abseiling ", "-9xYz_0abcd", 0, 10),
                                  (" abseiling", "ZZZZZZZZZZZ", 5, 15)])

    listing = kinetics.list_videos(str(tmp_path))

    assert listing.class_names == ["abseiling", "air drumming"]
    assert {v["class_name"] for v in listing.videos if v["split"] == "train"} == {
        "abseiling", "air drumming"}
