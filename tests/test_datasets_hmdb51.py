"""HMDB51 layout: {class}/*.avi + testTrainMulti_7030_splits/{class}_test_split{N}.txt."""

from __future__ import annotations

import os

import fsspec
import pytest

from helpers import ids_by_split, write_test_video
from raydistill.datasets import hmdb51

SPLITS_DIR = "testTrainMulti_7030_splits"


def write_split(root, class_name, split, lines):
    """A split file as distributed: 'name.avi CODE ' lines (with the trailing space)."""
    path = root / SPLITS_DIR / f"{class_name}_test_split{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line} \n" for line in lines))


def official_tree(root):
    """Classes brush_hair and clap, three videos each; split 2 swaps train and test."""
    names = {"brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0", "Brushing_my_hair_1",
                            "Hair_brushing_2"],
             "clap": ["#20_Rhythm_clap_u_nm_np1_fr_goo_0", "Clap_hands_1", "Clapping_2"]}
    for class_name, stems in names.items():
        for stem in stems:
            write_test_video(str(root / class_name / f"{stem}.avi"))
        write_split(root, class_name, 1, [f"{stems[0]}.avi 1", f"{stems[1]}.avi 2",
                                          f"{stems[2]}.avi 0"])
        write_split(root, class_name, 2, [f"{stems[0]}.avi 2", f"{stems[1]}.avi 1",
                                          f"{stems[2]}.avi 0"])
    return root


def test_code_1_is_train_2_is_test_and_0_is_skipped(tmp_path):
    listing = hmdb51.list_videos(str(official_tree(tmp_path)), split=1)

    assert listing.class_names == ["brush_hair", "clap"]
    assert ids_by_split(listing) == {
        "train": {"April_09_brush_hair_u_nm_np1_ba_goo_0", "#20_Rhythm_clap_u_nm_np1_fr_goo_0"},
        "test": {"Brushing_my_hair_1", "Clap_hands_1"},
    }
    assert {(v["class_name"], v["label"]) for v in listing.videos} == {
        ("brush_hair", 0), ("clap", 1)}
    assert all(os.path.isfile(v["path"]) for v in listing.videos)
    assert listing.videos[0]["path"] == str(
        tmp_path / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_0.avi")
    assert listing.rejects == []


def test_split_2_reads_its_own_files(tmp_path):
    listing = hmdb51.list_videos(str(official_tree(tmp_path)), split=2)

    assert ids_by_split(listing) == {
        "train": {"Brushing_my_hair_1", "Clap_hands_1"},
        "test": {"April_09_brush_hair_u_nm_np1_ba_goo_0", "#20_Rhythm_clap_u_nm_np1_fr_goo_0"},
    }


def test_split_without_files_raises_naming_the_folder(tmp_path):
    official_tree(tmp_path)

    with pytest.raises(FileNotFoundError, match=SPLITS_DIR):
        hmdb51.list_videos(str(tmp_path), split=3)


def test_listed_video_without_a_file_is_rejected_as_missing(tmp_path):
    official_tree(tmp_path)
    os.remove(tmp_path / "clap" / "Clap_hands_1.avi")

    listing = hmdb51.list_videos(str(tmp_path), split=1)

    assert [(r["video_id"], r["split"], r["reason"]) for r in listing.rejects] == [
        ("Clap_hands_1", "test", "missing")]
    assert listing.rejects[0]["path"] == str(tmp_path / "clap" / "Clap_hands_1.avi")


def test_malformed_lines_are_rejected_with_file_and_line(tmp_path):
    official_tree(tmp_path)
    write_split(tmp_path, "clap", 1, ["Clap_hands_1.avi 2", "Clapping_2.avi 3", "no_code.avi",
                                      "#20_Rhythm_clap_u_nm_np1_fr_goo_0.avi 1"])

    listing = hmdb51.list_videos(str(tmp_path), split=1)

    assert ids_by_split(listing)["train"] == {"April_09_brush_hair_u_nm_np1_ba_goo_0",
                                              "#20_Rhythm_clap_u_nm_np1_fr_goo_0"}
    assert [(r["reason"], r["detail"].split(":")[0]) for r in listing.rejects] == [
        ("bad_annotation", f"{SPLITS_DIR}/clap_test_split1.txt line 2"),
        ("bad_annotation", f"{SPLITS_DIR}/clap_test_split1.txt line 3"),
    ]


def test_video_listed_under_two_classes_is_a_duplicate(tmp_path):
    official_tree(tmp_path)
    write_test_video(str(tmp_path / "clap" / "Brushing_my_hair_1.avi"))
    write_split(tmp_path, "clap", 1, ["Brushing_my_hair_1.avi 1"])

    listing = hmdb51.list_videos(str(tmp_path), split=1)

    assert [(r["video_id"], r["reason"]) for r in listing.rejects] == [
        ("Brushing_my_hair_1", "duplicate_id")]


def test_reads_the_same_tree_from_s3(tmp_path, s3_bucket):
    local = official_tree(tmp_path / "hmdb")
    os.remove(local / "clap" / "Clap_hands_1.avi")
    fsspec.filesystem("s3").put(f"{local}/", f"{s3_bucket[5:]}/tree", recursive=True)
    remote = f"{s3_bucket}/tree"

    from_s3 = hmdb51.list_videos(remote, split=1)
    from_disk = hmdb51.list_videos(str(local), split=1)

    assert [v["path"] for v in from_s3.videos] == [
        remote + v["path"][len(str(local)):] for v in from_disk.videos]
    assert [{**v, "path": ""} for v in from_s3.videos] == [
        {**v, "path": ""} for v in from_disk.videos]
    assert [(r["path"], r["reason"]) for r in from_s3.rejects] == [
        (f"{remote}/clap/Clap_hands_1.avi", "missing")]


def test_a_tree_extracted_one_folder_deeper_is_found(tmp_path):
    official_tree(tmp_path / "hmdb51")
    os.rename(tmp_path / "hmdb51" / SPLITS_DIR, tmp_path / SPLITS_DIR)  # splits beside it

    listing = hmdb51.list_videos(str(tmp_path), split=1)

    assert listing.rejects == [] and len(listing.videos) == 4
    assert listing.videos[0]["path"] == str(
        tmp_path / "hmdb51" / "brush_hair" / "April_09_brush_hair_u_nm_np1_ba_goo_0.avi")


def test_when_most_listed_videos_are_missing_it_says_where_it_looked(tmp_path, capsys):
    official_tree(tmp_path)
    for name in ("brush_hair", "clap"):
        for video in (tmp_path / name).iterdir():
            video.unlink()

    listing = hmdb51.list_videos(str(tmp_path), split=1)

    assert [r["reason"] for r in listing.rejects] == ["missing"] * 4
    said = capsys.readouterr().err
    assert said.startswith("hmdb51: 4 of 4 listed videos are missing; each was looked for as "
                           "{class}/{name}.avi anywhere under")
    assert str(tmp_path) in said
