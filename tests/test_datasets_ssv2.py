"""Something-Something-v2 layout: labels/*.json + 20bn-something-something-v2/{id}.webm."""

from __future__ import annotations

import json
import os

import fsspec
import pytest

from helpers import write_test_video
from raydistill.datasets import ssv2

LABELS = {"Holding something": "1", "Holding something next to something": "0",
          "Pushing something from left to right": "2"}


def entry(video_id, template):
    return {"id": video_id, "label": template.replace("[", "").replace("]", "").lower(),
            "template": template, "placeholders": ["potato"] * template.count("[")}


def official_tree(root, train=None, validation=None, labels=LABELS):
    """labels.json, train.json, validation.json and one .webm per listed id."""
    train = train if train is not None else [
        entry("78687", "Holding [something] next to [something]"),
        entry("42326", "Holding [something]")]
    validation = validation if validation is not None else [
        entry("74225", "Pushing [something] from left to right")]
    (root / "labels").mkdir(parents=True)
    for name, content in (("labels", labels), ("train", train), ("validation", validation)):
        (root / "labels" / f"{name}.json").write_text(json.dumps(content, indent=4))
    for item in train + validation:
        if isinstance(item, dict) and "id" in item:
            write_test_video(str(root / "20bn-something-something-v2" / f"{item['id']}.webm"))
    return root


def test_lists_train_and_val_with_bracket_free_classes_labelled_by_id(tmp_path):
    listing = ssv2.list_videos(str(official_tree(tmp_path)))

    assert listing.class_names == ["Holding something next to something", "Holding something",
                                   "Pushing something from left to right"]
    rows = {v["video_id"]: (v["split"], v["label"], v["class_name"]) for v in listing.videos}
    assert rows == {
        "78687": ("train", 0, "Holding something next to something"),
        "42326": ("train", 1, "Holding something"),
        "74225": ("val", 2, "Pushing something from left to right"),
    }
    assert all(os.path.isfile(v["path"]) and v["path"].endswith(f"{v['video_id']}.webm")
               for v in listing.videos)
    assert listing.rejects == []


def test_listed_id_without_a_file_is_rejected_as_missing(tmp_path):
    official_tree(tmp_path)
    os.remove(tmp_path / "20bn-something-something-v2" / "74225.webm")

    listing = ssv2.list_videos(str(tmp_path))

    assert [(r["video_id"], r["split"], r["reason"]) for r in listing.rejects] == [
        ("74225", "val", "missing")]
    assert listing.rejects[0]["path"] == str(tmp_path / "20bn-something-something-v2/74225.webm")
    assert {v["video_id"] for v in listing.videos} == {"78687", "42326"}


def test_template_outside_labels_json_is_an_unknown_class(tmp_path):
    official_tree(tmp_path, validation=[entry("11111", "Spinning [something] around")])

    listing = ssv2.list_videos(str(tmp_path))

    assert [(r["video_id"], r["reason"]) for r in listing.rejects] == [("11111", "unknown_class")]
    assert "Spinning something around" in listing.rejects[0]["detail"]


def test_entry_missing_keys_is_a_bad_annotation_naming_file_and_entry(tmp_path):
    official_tree(tmp_path, train=[entry("78687", "Holding [something]"),
                                   {"id": "22222", "label": "no template"}, "not an object"])

    listing = ssv2.list_videos(str(tmp_path))

    assert [v["video_id"] for v in listing.videos] == ["78687", "74225"]
    assert [r["reason"] for r in listing.rejects] == ["bad_annotation"] * 2
    assert listing.rejects[0]["detail"].startswith("labels/train.json entry 2:")
    assert listing.rejects[1]["detail"].startswith("labels/train.json entry 3:")


def test_id_listed_twice_is_a_duplicate(tmp_path):
    official_tree(tmp_path, validation=[entry("78687", "Holding [something]")])

    listing = ssv2.list_videos(str(tmp_path))

    assert [(r["video_id"], r["split"], r["reason"]) for r in listing.rejects] == [
        ("78687", "val", "duplicate_id")]


def test_unparseable_split_file_is_one_reject_and_the_other_split_is_listed(tmp_path):
    official_tree(tmp_path)
    (tmp_path / "labels" / "validation.json").write_text('[\n  {"id": "1",\n  oops\n]')

    listing = ssv2.list_videos(str(tmp_path))

    assert {v["split"] for v in listing.videos} == {"train"}
    assert [(r["split"], r["reason"]) for r in listing.rejects] == [("val", "bad_annotation")]
    assert listing.rejects[0]["detail"].startswith("labels/validation.json line 3:")


def test_absent_validation_json_raises_naming_it(tmp_path):
    official_tree(tmp_path)
    os.remove(tmp_path / "labels" / "validation.json")

    with pytest.raises(FileNotFoundError, match="validation.json"):
        ssv2.list_videos(str(tmp_path))


def test_label_ids_with_a_gap_are_refused(tmp_path):
    official_tree(tmp_path, labels={"Holding something": "0", "Pushing something": "2"})

    with pytest.raises(ValueError, match="label ids"):
        ssv2.list_videos(str(tmp_path))


def test_reads_the_same_tree_from_s3(tmp_path, s3_bucket):
    local = official_tree(tmp_path / "ssv2")
    fsspec.filesystem("s3").put(f"{local}/", f"{s3_bucket[5:]}/tree", recursive=True)
    remote = f"{s3_bucket}/tree"

    from_s3 = ssv2.list_videos(remote)
    from_disk = ssv2.list_videos(str(local))

    assert [v["path"] for v in from_s3.videos] == [
        f"{remote}/20bn-something-something-v2/{v['video_id']}.webm" for v in from_disk.videos]
    assert [{**v, "path": ""} for v in from_s3.videos] == [
        {**v, "path": ""} for v in from_disk.videos]
    assert from_s3.class_names == from_disk.class_names
    assert fsspec.filesystem("s3").exists(from_s3.videos[0]["path"])
