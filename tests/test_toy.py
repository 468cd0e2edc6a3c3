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


def _motion(label: int, num_frames: int = 16, size: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return toy.trajectory(label, toy.draw_motion(rng), toy.draw_style(rng), num_frames, size)


@pytest.mark.parametrize("label, key, sign", [
    (0, "x", +1), (1, "x", -1), (2, "y", -1), (3, "y", +1), (4, "angle", +1), (5, "angle", -1)])
def test_each_directed_class_moves_its_way(label, key, sign):
    steps = np.diff(_motion(label, seed=label)[key])
    assert (np.sign(steps) == sign).all()


def test_pulse_and_shake_oscillate_in_place():
    pulse, shake = _motion(6), _motion(7)
    assert np.ptp(pulse["scale"]) > 0.3 and np.ptp(pulse["x"]) == 0
    assert len(np.flatnonzero(np.diff(np.sign(np.diff(shake["x"]))))) >= 2  # turns back twice


def test_every_motion_passes_the_same_middle_state():
    """At the middle frame every class shows its mode's object at the same place, angle and
    scale: what tells the classes apart is how it got there."""
    style, motion = toy.mode_style(0, 0), toy.draw_motion(np.random.default_rng(1))
    middle = [toy.trajectory(label, motion, style, 9, 64) for label in range(8)]
    for key in ("x", "y", "angle", "scale"):
        assert np.allclose([m[key][4] for m in middle], middle[0][key][4])


def _frames(frame_of: callable) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames, labels = [], []
    for label in range(8):
        for _ in range(30):
            video = toy.render_video(label, 16, 32, rng)
            frames.append(video[frame_of(rng), ::2, ::2].reshape(-1) / 255.0)
            labels.append(label)
    return np.array(frames), np.array(labels)


@pytest.mark.parametrize("which", ["middle", "random"])
def test_a_single_frame_does_not_tell_the_class(which):
    frames, labels = _frames((lambda rng: 8) if which == "middle"
                             else (lambda rng: int(rng.integers(16))))
    accuracy = cross_val_score(LogisticRegression(max_iter=300), frames, labels, cv=3).mean()
    assert accuracy < 0.3  # chance is 0.125


def test_clip_kinds_follow_the_mode_shares_and_the_atypical_share():
    kinds = [toy.draw_kind(np.random.default_rng([0, 0, c, i])) for c in range(8)
             for i in range(500)]
    shares = {kind: kinds.count(kind) / len(kinds) for kind in set(kinds)}
    atypical = sum(shares.get(kind, 0) for kind in toy.ATYPICAL_KINDS)
    assert abs(atypical - toy.ATYPICAL_SHARE) < 0.02
    typical = [shares[f"mode{m}"] / (1 - atypical) for m in range(len(toy.MODE_SHARES))]
    assert np.allclose(typical, np.asarray(toy.MODE_SHARES) / sum(toy.MODE_SHARES), atol=0.03)


def test_a_mode_looks_the_same_in_every_class_and_its_clips_are_alike():
    """Mode m of every class shares one appearance (so the mode says nothing of the class), and
    the clips of one mode are closer to each other than to another mode's."""
    def middle_frames(label, mode):
        found = []
        for index in range(400):
            rng = np.random.default_rng([0, 0, label, index])
            if toy.draw_kind(np.random.default_rng([0, 0, label, index])) == f"mode{mode}":
                found.append(toy.render_video(label, 9, 32, rng)[4].astype(float))
            if len(found) == 4:
                return np.stack(found)
        raise AssertionError("mode not found")

    right0, left0, right1 = middle_frames(0, 0), middle_frames(1, 0), middle_frames(0, 1)
    across_classes = np.abs(right0.mean(0) - left0.mean(0)).mean()
    across_modes = np.abs(right0.mean(0) - right1.mean(0)).mean()
    assert across_classes < across_modes / 3


def test_atypical_clips_are_what_their_kind_says():
    plans = {}
    for index in range(300):
        plan = toy.clip_plan(3, np.random.default_rng([0, 0, 3, index]))
        plans.setdefault(plan["kind"], plan)
    assert set(toy.ATYPICAL_KINDS) <= set(plans)
    assert plans["poor"]["noise"] > 25 > plans["mode0"]["noise"]
    assert plans["poor"]["contrast"] < 0.6
    assert plans["hesitant"]["motion"]["travel"] < 0.1 < plans["mode0"]["motion"]["travel"]


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
