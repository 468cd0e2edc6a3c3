"""Listing → manifest: probing rows into videos and rejects, stable tables, the summary."""

from helpers import write_random_bytes, write_test_video
from raydistill.datasets.manifest import (build_tables, format_summary, label_set_warnings,
                                         probe_rows, summarize)


def listed(video_id, path, split="train", label=0):
    return {"video_id": video_id, "path": path, "label": label, "class_name": f"c{label}",
            "split": split}


def test_probe_rows_splits_readable_videos_from_rejects(tmp_path):
    good = write_test_video(str(tmp_path / "good.avi"), num_frames=6)
    bad = write_random_bytes(str(tmp_path / "bad.avi"))
    videos, rejects = probe_rows([listed("g", good), listed("b", bad),
                                  listed("m", str(tmp_path / "gone.avi"))])
    assert [(v["video_id"], v["num_frames"], v["width"]) for v in videos] == [("g", 6, 48)]
    assert [(r["video_id"], r["reason"]) for r in rejects] == [("b", "not_a_video"),
                                                               ("m", "missing")]


def test_tables_are_sorted_whatever_order_probes_finished_in():
    rows = [dict(listed(v, f"/{v}", split, label), num_frames=1, fps=1.0, width=2, height=2)
            for v, split, label in [("z", "train", 0), ("a", "train", 1), ("b", "test", 1),
                                    ("c", "train", 0)]]
    manifest, rejects = build_tables(rows, [])
    assert manifest.column("video_id").to_pylist() == ["b", "c", "z", "a"]
    assert manifest.schema.field("label").type == "int32" and rejects.num_rows == 0


def test_summary_counts_splits_classes_and_reasons(tmp_path):
    rows = [dict(listed(v, f"/{v}", split, label), num_frames=1, fps=1.0, width=2, height=2)
            for v, split, label in [("a", "train", 0), ("b", "train", 1), ("c", "test", 1)]]
    rejects = [{"video_id": "x", "path": "/x", "split": "train", "reason": "missing",
                "detail": ""}] * 2
    summary = summarize(*build_tables(rows, rejects))
    assert summary == {"videos": 3, "videos_per_split": {"test": 1, "train": 2}, "classes": 2,
                       "rejects": 2, "rejects_by_reason": {"missing": 2}}
    text = format_summary(summary, "ucf101", "runs/x")
    assert "videos: 3 in 2 classes" in text and "missing" in text and len(text.splitlines()) < 24


def test_label_set_warnings_name_classes_without_training_or_test_videos():
    import pyarrow as pa

    manifest = pa.table({"class_name": ["a", "a", "b", "c"],
                         "split": ["train", "test", "train", "test"]})
    assert label_set_warnings(["a", "b", "c", "d"], manifest) == [
        "2 classes with no training video: 'c', 'd'",
        "1 classes with training videos but none to test on: 'b'"]
    assert label_set_warnings(["a"], manifest.slice(0, 2)) == []
    summary = {"videos": 4, "classes": 3, "videos_per_split": {}, "rejects": 0,
               "rejects_by_reason": {}, "warnings": ["2 classes with no training video: …"]}
    assert "  warning: 2 classes with no training video: …" in format_summary(summary, "x", "r")
