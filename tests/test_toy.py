"""Toy dataset: deterministic real mp4 files whose classes differ only by motion."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from raydistill.config import ToyConfig
from raydistill.datasets import toy
from raydistill.video import decode_clip, probe_video

SMALL = ToyConfig(num_classes=3, train_per_class=2, test_per_class=1, num_frames=8, size=32)


def test_generate_writes_real_mp4s_in_the_toy_layout(tmp_path):
    written = toy.generate(str(tmp_path), SMALL)
    assert written == 3 * (2 + 1)
    listing = toy.list_videos(str(tmp_path))
    assert listing.class_names == ["move_right", "move_left", "move_up"]
    assert sorted(v["video_id"] for v in listing.videos if v["split"] == "test") == [
        "move_left_test_0000", "move_right_test_0000", "move_up_test_0000"]
    assert {v["label"] for v in listing.videos if v["class_name"] == "move_up"} == {2}
    info = probe_video(listing.videos[0]["path"])
    assert (info.num_frames, info.width, info.height, info.fps) == (8, 32, 32, 8.0)


def test_generation_is_deterministic_and_a_rerun_writes_nothing(tmp_path):
    toy.generate(str(tmp_path / "a"), SMALL)
    toy.generate(str(tmp_path / "b"), SMALL)
    first = sorted((tmp_path / "a").rglob("*.mp4"))
    second = sorted((tmp_path / "b").rglob("*.mp4"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert toy.generate(str(tmp_path / "a"), SMALL) == 0


def test_a_deleted_video_is_regenerated_identically(tmp_path):
    toy.generate(str(tmp_path), SMALL)
    victim = next(tmp_path.rglob("move_left_train_0001.mp4"))
    original = victim.read_bytes()
    victim.unlink()
    assert toy.generate_class(str(tmp_path), SMALL, label=1) == 1
    assert victim.read_bytes() == original


def test_another_seed_gives_other_videos():
    a = toy.render_video(0, 8, 32, np.random.default_rng(toy.video_seed(SMALL, "train", 0, 0)))
    b = toy.render_video(0, 8, 32, np.random.default_rng(toy.video_seed(
        ToyConfig(seed=1), "train", 0, 0)))
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("label, key, sign", [
    (0, "x", +1), (1, "x", -1), (2, "y", -1), (3, "y", +1), (4, "angle", +1), (5, "angle", -1)])
def test_each_directed_class_moves_its_way(label, key, sign):
    motion = toy._motion(label, 16, 64, np.random.default_rng(label))
    steps = np.diff(motion[key])
    assert (np.sign(steps) == sign).all()


def test_pulse_and_shake_oscillate_in_place():
    pulse = toy._motion(6, 16, 64, np.random.default_rng(0))
    shake = toy._motion(7, 16, 64, np.random.default_rng(0))
    assert np.ptp(pulse["scale"]) > 0.3 and np.ptp(pulse["x"]) == 0
    assert len(np.flatnonzero(np.diff(np.sign(np.diff(shake["x"]))))) >= 2  # turns back twice


def test_a_single_frame_does_not_tell_the_class():
    rng = np.random.default_rng(0)
    frames, labels = [], []
    for label in range(8):
        for _ in range(30):
            video = toy.render_video(label, 16, 32, rng)
            frames.append(video[8, ::2, ::2].reshape(-1) / 255.0)
            labels.append(label)
    accuracy = cross_val_score(LogisticRegression(max_iter=300), np.array(frames),
                               np.array(labels), cv=3).mean()
    assert accuracy < 0.3  # chance is 0.125


def test_written_video_decodes_to_the_rendered_motion(tmp_path):
    toy.generate(str(tmp_path), SMALL)
    path = next(tmp_path.rglob("move_right_train_0000.mp4"))
    clip = decode_clip(str(path), num_frames=8, size=32).astype(float)
    rendered = toy.render_video(0, 8, 32, np.random.default_rng(
        toy.video_seed(SMALL, "train", 0, 0))).astype(float)
    assert np.abs(clip.mean(axis=(1, 2, 3)) - rendered.mean(axis=(1, 2, 3))).max() < 4


def test_listing_a_folder_without_toy_json_fails_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="toy.json"):
        toy.list_videos(str(tmp_path))


def test_a_folder_holding_another_toy_config_is_refused(tmp_path):
    toy.generate(str(tmp_path), SMALL)
    other = ToyConfig(num_classes=2, train_per_class=1, test_per_class=1, num_frames=8, size=32)
    with pytest.raises(toy.ToyRootInUse, match="another config"):
        toy.generate(str(tmp_path), other)


def test_listing_follows_the_config_not_stray_files(tmp_path):
    toy.generate(str(tmp_path), SMALL)
    (tmp_path / "train" / "move_up" / "stray.mp4").write_bytes(b"x")
    next(tmp_path.rglob("move_up_test_0000.mp4")).unlink()
    listing = toy.list_videos(str(tmp_path))
    assert len(listing.videos) == 8 and "stray" not in {v["video_id"] for v in listing.videos}
    assert [(r["video_id"], r["reason"]) for r in listing.rejects] == [("move_up_test_0000",
                                                                        "missing")]


def test_an_interrupted_generation_resumes_under_the_same_config(tmp_path):
    toy.start_generation(str(tmp_path), SMALL)
    assert toy.generate_class(str(tmp_path), SMALL, label=0) == 3
    assert not toy.is_generated(str(tmp_path), SMALL)
    assert toy.generate(str(tmp_path), SMALL) == 6
    assert toy.is_generated(str(tmp_path), SMALL)
