"""UCF101 and MiniUCF layout: UCF-101/{Class}/*.avi + ucfTrainTestlist/*.txt (CRLF)."""

from __future__ import annotations

import os

import fsspec
import pytest

from helpers import ids_by_split, write_test_video
from raydistill.datasets import ucf101

CLASSES = ["ApplyEyeMakeup", "Archery", "BalanceBeam"]  # UCF101 numbers 1, 2, 3


def video(class_name, group, clip):
    return f"{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}.avi"


def write_list(root, name, lines):
    """ucfTrainTestlist/{name} with CRLF endings and a trailing blank line, as distributed."""
    path = root / "ucfTrainTestlist" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\r\n".join(lines) + "\r\n\r\n").encode())


def official_tree(root):
    """Three classes; split 1 trains on groups 8-9 and tests on group 1, split 2 the reverse."""
    write_list(root, "classInd.txt", [f"{i} {name}" for i, name in enumerate(CLASSES, 1)])
    for split, (train_group, test_group) in {1: (8, 1), 2: (1, 8)}.items():
        write_list(root, f"trainlist0{split}.txt",
                   [f"{video(name, train_group, 1)} {i}" for i, name in enumerate(CLASSES, 1)])
        write_list(root, f"testlist0{split}.txt", [video(name, test_group, 1) for name in CLASSES])
    for name in CLASSES:
        for group in (1, 8):
            write_test_video(str(root / "UCF-101" / video(name, group, 1)))
    return root


def test_split_1_crlf_lists_give_train_and_test_with_class_index_labels(tmp_path):
    official_tree(tmp_path)
    assert b"\r\n" in (tmp_path / "ucfTrainTestlist" / "trainlist01.txt").read_bytes()

    listing = ucf101.list_videos(str(tmp_path), split=1)

    assert listing.class_names == CLASSES
    assert ids_by_split(listing) == {
        "train": {f"v_{name}_g08_c01" for name in CLASSES},
        "test": {f"v_{name}_g01_c01" for name in CLASSES},
    }
    assert {(v["class_name"], v["label"]) for v in listing.videos} == {
        ("ApplyEyeMakeup", 0), ("Archery", 1), ("BalanceBeam", 2)}
    assert all(os.path.isfile(v["path"]) for v in listing.videos)
    assert listing.rejects == []


def test_split_2_reads_its_own_lists(tmp_path):
    listing = ucf101.list_videos(str(official_tree(tmp_path)), split=2)

    assert ids_by_split(listing) == {
        "train": {f"v_{name}_g01_c01" for name in CLASSES},
        "test": {f"v_{name}_g08_c01" for name in CLASSES},
    }


def test_absent_split_list_raises_naming_it(tmp_path):
    official_tree(tmp_path)

    with pytest.raises(FileNotFoundError, match="trainlist03.txt"):
        ucf101.list_videos(str(tmp_path), split=3)
    with pytest.raises(ValueError, match="split"):
        ucf101.list_videos(str(tmp_path), split=4)


def test_listed_video_without_a_file_is_rejected_as_missing(tmp_path):
    official_tree(tmp_path)
    os.remove(tmp_path / "UCF-101" / video("Archery", 1, 1))

    listing = ucf101.list_videos(str(tmp_path), split=1)

    assert [(r["video_id"], r["split"], r["reason"]) for r in listing.rejects] == [
        ("v_Archery_g01_c01", "test", "missing")]
    assert listing.rejects[0]["path"] == str(tmp_path / "UCF-101" / video("Archery", 1, 1))


def test_bad_lines_unknown_folders_and_duplicates_are_rejected(tmp_path):
    official_tree(tmp_path)
    write_list(tmp_path, "trainlist01.txt", [
        f"{video('ApplyEyeMakeup', 8, 1)} 1",
        f"{video('Archery', 8, 1)} 1",              # number names another class
        f"{video('Archery', 9, 1)}",                # no class number
        f"{video('Basketball', 8, 1)} 2",           # folder not in classInd
        f"{video('ApplyEyeMakeup', 8, 1)} 1",       # listed again
    ])

    listing = ucf101.list_videos(str(tmp_path), split=1)

    assert ids_by_split(listing)["train"] == {"v_ApplyEyeMakeup_g08_c01"}
    assert [(r["reason"], r["detail"].split(":")[0]) for r in listing.rejects[:3]] == [
        ("bad_annotation", "ucfTrainTestlist/trainlist01.txt line 2"),
        ("bad_annotation", "ucfTrainTestlist/trainlist01.txt line 3"),
        ("bad_annotation", "ucfTrainTestlist/trainlist01.txt line 4"),
    ]
    assert [(r["video_id"], r["reason"]) for r in listing.rejects[3:]] == [
        ("v_ApplyEyeMakeup_g08_c01", "duplicate_id")]


def test_test_list_folder_outside_class_index_is_an_unknown_class(tmp_path):
    official_tree(tmp_path)
    write_list(tmp_path, "testlist01.txt", [video("Basketball", 1, 1)])
    write_test_video(str(tmp_path / "UCF-101" / video("Basketball", 1, 1)))

    listing = ucf101.list_videos(str(tmp_path), split=1)

    assert [(r["video_id"], r["split"], r["reason"]) for r in listing.rejects] == [
        ("v_Basketball_g01_c01", "test", "unknown_class")]


def test_miniucf_labels_follow_its_own_order_and_leave_other_classes_out(tmp_path):
    official_tree(tmp_path)

    listing = ucf101.list_mini_videos(str(tmp_path), split=1)

    assert listing.class_names == list(ucf101.MINIUCF_CLASSES)
    assert len(set(ucf101.MINIUCF_CLASSES)) == 50
    assert {(v["video_id"], v["label"]) for v in listing.videos} == {
        ("v_ApplyEyeMakeup_g08_c01", 0), ("v_ApplyEyeMakeup_g01_c01", 0),
        ("v_BalanceBeam_g08_c01", 1), ("v_BalanceBeam_g01_c01", 1)}
    assert listing.rejects == []  # Archery is not in MiniUCF: neither listed nor rejected


def test_miniucf_still_checks_the_class_number_of_its_own_classes(tmp_path):
    official_tree(tmp_path)
    write_list(tmp_path, "trainlist01.txt", [f"{video('BalanceBeam', 8, 1)} 2",
                                             f"{video('Archery', 8, 1)} 3"])

    listing = ucf101.list_mini_videos(str(tmp_path), split=1)

    assert "train" not in ids_by_split(listing)
    assert [(r["reason"], r["detail"].split(":")[0]) for r in listing.rejects] == [
        ("bad_annotation", "ucfTrainTestlist/trainlist01.txt line 1")]


def test_reads_the_same_tree_from_s3(tmp_path, s3_bucket):
    local = official_tree(tmp_path / "ucf")
    fsspec.filesystem("s3").put(f"{local}/", f"{s3_bucket[5:]}/tree", recursive=True)
    remote = f"{s3_bucket}/tree"

    for reader in (ucf101.list_videos, ucf101.list_mini_videos):
        from_s3, from_disk = reader(remote, split=2), reader(str(local), split=2)
        assert [v["path"] for v in from_s3.videos] == [
            remote + v["path"][len(str(local)):] for v in from_disk.videos]
        assert all(v["path"].startswith(f"{remote}/UCF-101/") for v in from_s3.videos)
        assert [{**v, "path": ""} for v in from_s3.videos] == [
            {**v, "path": ""} for v in from_disk.videos]
        assert from_s3.rejects == from_disk.rejects == []


def test_a_class_number_or_name_listed_twice_in_classind_is_rejected_naming_the_line(tmp_path):
    official_tree(tmp_path)
    write_list(tmp_path, "classInd.txt", [f"{i} {name}" for i, name in enumerate(CLASSES, 1)]
               + ["2 Basketball", "4 Archery"])

    listing = ucf101.list_videos(str(tmp_path), split=1)

    assert listing.class_names == CLASSES
    assert [r["detail"] for r in listing.rejects] == [
        "ucfTrainTestlist/classInd.txt line 4: class number 2 listed again (first: Archery)",
        "ucfTrainTestlist/classInd.txt line 5: class Archery listed again"]
