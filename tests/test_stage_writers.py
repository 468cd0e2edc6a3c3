"""The writer tasks of the GPU stages (generate's mp4s, embed's shards) on batches shaped as Ray
Data hands them over (numpy columns: strings, object arrays of bytes, tensor columns), and the
CPUs they ask beside the actors."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest

from raydistill.pipeline import shards
from raydistill.pipeline.busy import CLOCK_COLUMNS
from raydistill.pipeline.embed import embedding_table, ipc_bytes, write_embedding_shards
from raydistill.pipeline.generate import write_synthetic_videos
from raydistill.runs import RunDir
from raydistill.video import probe_video

CLOCK = {"actor": np.array(["n:1", "n:1"]), "actor_calls": np.array([3, 3]),
         "actor_span_s": np.array([2.0, 2.0]), "actor_call_s": np.array([1.5, 1.5]),
         "actor_model_s": np.array([1.0, 1.0])}


def sampled_batch() -> dict:
    """Two sampled videos as SyntheticVideoSampler's output reaches a writer task."""
    rng = np.random.default_rng(0)
    return {"video_id": np.array(["syn_0000_00000", "syn_0001_00000"]),
            "label": np.array([0, 1]), "class_name": np.array(["abseiling", "tai chi"]),
            "seed": np.array([7, 8]),
            "latent": rng.standard_normal((2, 4, 4, 2, 2)).astype(np.float32),
            "frames": rng.integers(0, 255, (2, 4, 32, 32, 3), dtype=np.uint8),
            "node_id": np.array(["node", "node"]), **CLOCK}


def test_the_video_writer_writes_latent_and_mp4_once_and_passes_the_clock_on(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    batch = sampled_batch()
    out = write_synthetic_videos(batch, run.url, fps=8)
    assert list(out["written"]) == [True, True]
    assert set(out) == {"video_id", "label", "class_name", "seed", "written", "node_id",
                        *CLOCK_COLUMNS}
    assert list(out["actor_model_s"]) == [1.0, 1.0]
    latent = np.load(run.path("synthetic/latents/syn_0001_00000.npy"))
    assert np.array_equal(latent, batch["latent"][1])
    mp4 = run.path("synthetic/videos/tai chi/syn_0001_00000.mp4")
    assert probe_video(mp4).num_frames == 4
    before = os.stat(mp4).st_mtime_ns
    again = write_synthetic_videos(batch, run.url, fps=8)  # a retried task, or a rerun's group
    assert list(again["written"]) == [False, False] and os.stat(mp4).st_mtime_ns == before


def test_the_embedding_writer_writes_rejects_then_the_shard_once(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    embedded = {"embedding": np.arange(6, dtype=np.float32).reshape(2, 3),
                "score": np.array([0.25, 0.75], np.float32), "predicted": np.array([1, -1])}
    table = embedding_table(["v1", "v2"], [1, 0], embedded)
    rejects = [{"video_id": "v3", "path": "a/v3.mp4", "split": "synthetic",
                "reason": "decode_error", "detail": "moov atom not found"}]
    batch = {"split": np.array(["videomae-run"]), "index": np.array([4]),
             "rejects": np.array([json.dumps(rejects)]),
             "table": np.array([ipc_bytes(table)], dtype=object),
             "node_id": np.array(["node"]), **{k: v[:1] for k, v in CLOCK.items()}}
    out = write_embedding_shards(batch, run.url, "synthetic")
    assert set(out) == {"index", "node_id", *CLOCK_COLUMNS}
    shard = "embeddings/synthetic/videomae-run/shard-00004.parquet"
    assert run.read_table(shard).equals(table)
    written = run.read_table(shards.shard_rejects_path(shard)).to_pylist()
    assert [row["video_id"] for row in written] == ["v3"]
    before = os.stat(run.path(shard)).st_mtime_ns
    write_embedding_shards(batch, run.url, "synthetic")
    assert os.stat(run.path(shard)).st_mtime_ns == before


@pytest.mark.parametrize("cluster_cpus, actors_cpus, grows, fit", [
    (2.0, 0.5, False, True),   # a laptop's CPU actor leaves room for writers
    (2.0, 2.0, False, False),  # the quickstart's actor takes both CPUs: it writes itself
    (16.0, 8.0, False, True),  # a GPU node: 8 actors of 1 CPU
    (0.0, 1.0, True, True),    # an autoscaling cluster adds CPU nodes for them
])
def test_writer_tasks_run_where_half_a_cpu_is_left_beside_the_actors(monkeypatch, cluster_cpus,
                                                                    actors_cpus, grows, fit):
    monkeypatch.setattr(shards, "cluster_can_grow", lambda: grows)
    monkeypatch.setattr(shards.ray, "cluster_resources", lambda: {"CPU": cluster_cpus})
    assert shards.writers_fit(actors_cpus) is fit


def test_an_ipc_round_trip_keeps_the_tensor_column():
    table = embedding_table(["v"], [0], {"embedding": np.ones((1, 4), np.float32),
                                         "score": np.array([0.5], np.float32)})
    back = pa.ipc.open_stream(ipc_bytes(table)).read_all()
    assert back.equals(table) and back.schema.field("embedding").type == \
        table.schema.field("embedding").type
