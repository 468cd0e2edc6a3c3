"""Decode throughput: the Ray Data decode stage against a plain single-process decord loop.

Both decode the same clips (``--frames`` frames of ``--size``² from K400-sized H.264 videos) with
the same ``decode_clip`` function, in one run, so the ratio is what Ray's parallelism buys:

    python benchmarks/decode.py                 # 2 CPUs, 48 videos of 320×240, 150 frames
    python benchmarks/decode.py --cpus 8 --videos 200

Prints one Markdown table row for benchmarks/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import pyarrow as pa
import ray

from raydistill.config import DecodeConfig
from raydistill.pipeline.decode import clip_dataset
from raydistill.video import decode_clip, write_video


def make_videos(folder: str, count: int, frames: int, width: int, height: int) -> list[str]:
    """Write ``count`` H.264 videos of moving noise blocks (cached between runs)."""
    paths = []
    rng = np.random.default_rng(0)
    for index in range(count):
        path = os.path.join(folder, f"video_{index:04d}.mp4")
        if not os.path.exists(path):
            tiles = rng.integers(0, 255, size=(frames, height // 16, width // 16, 3), dtype=np.uint8)
            content = np.repeat(np.repeat(tiles, 16, axis=1), 16, axis=2)
            shift = np.arange(frames)[:, None, None, None]
            content = np.roll(content, 2, axis=2) if index % 2 else content
            write_video(path, ((content.astype(int) + shift) % 255).astype(np.uint8), 30)
        paths.append(path)
    return paths


def manifest_of(paths: list[str]) -> pa.Table:
    return pa.table({"video_id": [os.path.basename(p) for p in paths], "path": paths,
                     "label": pa.array([0] * len(paths), pa.int32()),
                     "split": ["train"] * len(paths)})


def time_plain_loop(paths: list[str], frames: int, size: int) -> float:
    """Seconds for one process to decode every clip with decode_clip (decord, 1 thread)."""
    started = time.perf_counter()
    for path in paths:
        decode_clip(path, frames, size)
    return time.perf_counter() - started


def time_ray_data(paths: list[str], decode: DecodeConfig) -> tuple[float, int]:
    """Seconds for the Ray Data decode stage to stream every clip to the driver, and clips seen."""
    started = time.perf_counter()
    seen = 0
    for batch in clip_dataset(manifest_of(paths), decode).iter_batches(batch_size=8):
        seen += int((batch["error"] == "").sum())
    return time.perf_counter() - started, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--video-frames", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3, help="timings per side (median)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "rd-bench-videos"))
    args = parser.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    paths = make_videos(args.cache, args.videos, args.video_frames, 320, 240)

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             object_store_memory=1_000_000_000)
    ray.data.DataContext.get_current().enable_progress_bars = False
    decode = DecodeConfig(num_frames=args.frames, size=args.size)
    time_ray_data(paths[:4], decode)  # start the workers once, outside the timing

    plain_times, ray_times = [], []
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        plain_times.append(time_plain_loop(paths, args.frames, args.size))
        ray_seconds, seen = time_ray_data(paths, decode)
        assert seen == len(paths), f"Ray Data decoded {seen} of {len(paths)} clips"
        ray_times.append(ray_seconds)
    plain, ray_seconds = float(np.median(plain_times)), float(np.median(ray_times))
    plain_rate, ray_rate = len(paths) / plain, len(paths) / ray_seconds
    print(f"| decode {args.frames}×{args.size}², {len(paths)} videos 320×240×{args.video_frames} "
          f"H.264 | {args.cpus} CPUs ({platform.processor() or platform.machine()}) "
          f"| plain decord loop {plain_rate:.1f} clips/s | Ray Data {ray_rate:.1f} clips/s "
          f"| {ray_rate / plain_rate:.2f}× (median of {args.repeats}) |")
    ray.shutdown()


if __name__ == "__main__":
    main()
