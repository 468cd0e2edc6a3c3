"""Video core: sampling, resizing, decoding real codecs with decord and PyAV, probing, errors."""

import numpy as np
import pytest

from helpers import (moving_square_frames, write_empty, write_random_bytes, write_test_video,
                     write_truncated_video)
from raydistill.config import ToyConfig
from raydistill.datasets import toy
from raydistill.video import (DecodeError, ProbeError, decode_clip, encode_video, probe_video,
                              resize_center_crop, sample_indices)
from raydistill.video import decode as decode_module

CODECS = ["mp4", "webm", "avi"]


def write_counter_video(path, num_frames=16, size=32):
    """Frame t is a flat grey of value 15·t, so a decoded frame tells its index."""
    frames = np.stack([np.full((size, size, 3), 15 * t, np.uint8) for t in range(num_frames)])
    with open(path, "wb") as handle:
        handle.write(encode_video(frames, 8, path.rsplit(".", 1)[1]))
    return path


def block_brightness(frames):
    """Mean grey level of each 4×4 block: (T, H/4, W/4)."""
    t, h, w, _ = frames.shape
    return frames.astype(float).mean(axis=3).reshape(t, h // 4, 4, w // 4, 4).mean(axis=(2, 4))


def test_sample_indices_cover_the_video_uniformly():
    assert sample_indices(32, 4).tolist() == [4, 12, 20, 28]
    assert sample_indices(16, 16).tolist() == list(range(16))


def test_sample_indices_repeat_frames_of_a_short_video():
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]


def test_a_frame_interval_takes_consecutive_frames_centred_in_the_video():
    assert sample_indices(32, 4, frame_interval=3).tolist() == [11, 14, 17, 20]  # span 10
    assert sample_indices(16, 16, frame_interval=1).tolist() == list(range(16))
    assert sample_indices(20, 4, frame_interval=1).tolist() == [8, 9, 10, 11]


def test_a_video_shorter_than_the_span_takes_the_largest_stride_that_fits():
    assert sample_indices(10, 4, frame_interval=5).tolist() == [0, 3, 6, 9]
    assert sample_indices(3, 6, frame_interval=2).tolist() == [0, 0, 1, 1, 2, 2]  # uniform


def test_a_random_start_is_drawn_from_the_key_and_stays_inside_the_video():
    starts = {int(sample_indices(100, 16, 3, "random", key=f"v{i}.avi")[0]) for i in range(40)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 100 - 46
    again = sample_indices(100, 16, 3, "random", key="v7.avi")
    assert again.tolist() == sample_indices(100, 16, 3, "random", key="v7.avi").tolist()
    assert np.diff(again).tolist() == [3] * 15
    with pytest.raises(ValueError, match="frame_start"):
        sample_indices(100, 16, 3, "middle")


@pytest.mark.parametrize("extension", CODECS)
def test_decode_clip_with_a_frame_interval_reads_those_frames(tmp_path, extension):
    path = write_counter_video(str(tmp_path / f"c.{extension}"))
    clip = decode_clip(path, num_frames=4, size=16, frame_interval=2)  # frames 4, 6, 8, 10
    assert np.allclose(clip.reshape(4, -1).mean(axis=1), [60, 90, 120, 150], atol=8)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    copy = moved / f"c.{extension}"
    copy.write_bytes((tmp_path / f"c.{extension}").read_bytes())
    random_start = decode_clip(path, num_frames=4, size=16, frame_interval=2,
                               frame_start="random")
    assert np.array_equal(random_start, decode_clip(str(copy), num_frames=4, size=16,
                                                    frame_interval=2, frame_start="random"))


def test_resize_center_crop_keeps_the_centre_of_a_wide_frame():
    frames = np.zeros((2, 40, 80, 3), np.uint8)
    frames[:, :, 20:60] = 200  # the centre 40×40 square
    out = resize_center_crop(frames, 20)
    assert out.shape == (2, 20, 20, 3) and out.dtype == np.uint8
    assert out.min() == 200


def test_resize_center_crop_of_a_tall_frame_upscales():
    out = resize_center_crop(np.full((1, 30, 10, 3), 7, np.uint8), 16)
    assert out.shape == (1, 16, 16, 3) and (out == 7).all()


@pytest.mark.parametrize("extension", CODECS)
def test_decode_clip_matches_the_written_frames(tmp_path, extension):
    path = write_test_video(str(tmp_path / f"v.{extension}"), num_frames=8, height=32, width=48)
    clip = decode_clip(path, num_frames=8, size=32)
    expected = moving_square_frames(8, 32, 48)[:, :, 8:40]
    assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
    # Lossy codecs blur per-pixel noise and chroma: compare 4×4-block brightness.
    assert np.abs(block_brightness(clip) - block_brightness(expected)).mean() < 6


@pytest.mark.parametrize("extension", [*CODECS, "mkv"])
def test_the_same_frames_encode_to_the_same_bytes_every_time(extension):
    # Toy videos: the frames that made x264's mbtree give varying bytes on an AVX-only CPU.
    config = ToyConfig(num_classes=2)
    videos = [toy.render_video(label, config.num_frames, config.size,
                               np.random.default_rng(toy.video_seed(config, "train", label, index)))
              for label in range(2) for index in range(4)]
    varying = [index for index, frames in enumerate(videos)
               if len({encode_video(frames, 8, extension) for _ in range(12)}) > 1]
    assert varying == []


@pytest.mark.parametrize("extension", CODECS)
def test_decode_clip_samples_frames_uniformly_in_time(tmp_path, extension):
    path = write_counter_video(str(tmp_path / f"c.{extension}"))
    clip = decode_clip(path, num_frames=4, size=16)
    assert np.allclose(clip.reshape(4, -1).mean(axis=1), [30, 90, 150, 210], atol=8)


def test_pyav_fallback_gives_the_same_clip_as_decord(tmp_path, monkeypatch):
    path = write_test_video(str(tmp_path / "v.mp4"), num_frames=12)
    with_decord = decode_clip(path, num_frames=6, size=24)
    monkeypatch.setattr(decode_module, "decord", None)
    with_pyav = decode_clip(path, num_frames=6, size=24)
    assert np.abs(with_decord.astype(int) - with_pyav).max() <= 2


@pytest.mark.parametrize("make", [write_random_bytes, write_truncated_video, write_empty])
def test_decode_of_a_bad_file_raises_decode_error_naming_it(tmp_path, make):
    path = make(str(tmp_path / "bad.mp4"))
    with pytest.raises(DecodeError, match="bad.mp4"):
        decode_clip(path)


def test_decode_of_a_missing_file_raises_decode_error(tmp_path):
    with pytest.raises(DecodeError, match="nope.mp4"):
        decode_clip(str(tmp_path / "nope.mp4"))


@pytest.mark.parametrize("extension", CODECS)
def test_probe_reads_frames_fps_and_size(tmp_path, extension):
    path = write_test_video(str(tmp_path / f"v.{extension}"), num_frames=10, height=32,
                            width=48, fps=12)
    info = probe_video(path)
    assert (info.num_frames, info.width, info.height) == (10, 48, 32)
    assert info.fps == pytest.approx(12)


@pytest.mark.parametrize("make, reason", [
    (write_empty, "empty"),
    (write_random_bytes, "not_a_video"),
    (write_truncated_video, "corrupt"),
])
def test_probe_rejects_a_bad_file_with_its_reason(tmp_path, make, reason):
    path = make(str(tmp_path / "bad.mp4"))
    with pytest.raises(ProbeError) as error:
        probe_video(path)
    assert error.value.reason == reason and error.value.path == path


def test_probe_of_a_missing_file_says_missing(tmp_path):
    with pytest.raises(ProbeError) as error:
        probe_video(str(tmp_path / "gone.mp4"))
    assert error.value.reason == "missing"


def test_probe_and_decode_read_videos_from_s3(s3_bucket, tmp_path):
    import fsspec

    local = write_test_video(str(tmp_path / "v.webm"), num_frames=8)
    fsspec.filesystem("s3").put(local, f"{s3_bucket[5:]}/videos/v.webm")
    url = f"{s3_bucket}/videos/v.webm"
    assert probe_video(url).num_frames == 8
    assert np.array_equal(decode_clip(url, 8, 32), decode_clip(local, 8, 32))
