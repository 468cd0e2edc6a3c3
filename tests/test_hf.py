"""A run's shards as Hugging Face datasets: tensor columns arrive as arrays of their shape."""

import numpy as np
import pyarrow as pa
import pytest

from raydistill.hf import hf_columns, hf_dataset, shard_paths
from raydistill.runs import RunDir
from raydistill.schema import tensor_array


def write_shards(run: RunDir) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, size=(5, 2, 4, 4, 3), dtype=np.uint8)
    embeddings = rng.normal(size=(5, 6)).astype(np.float32)
    for shard, rows in ((0, slice(0, 3)), (1, slice(3, 5))):
        run.write_table(f"clips/train/shard-0000{shard}.parquet", pa.table({
            "video_id": [f"v{i}" for i in range(5)][rows],
            "clip": tensor_array(clips[rows], pa.uint8()),
            "embedding": tensor_array(embeddings[rows], pa.float32())}))
    run.write_table("clips/train/_rejects/shard-00000.parquet", pa.table({"video_id": ["bad"]}))
    run.write_table("clips/rejects.parquet", pa.table({"video_id": ["bad"]}))
    return clips, embeddings


def test_a_shard_folder_reads_as_a_dataset_with_its_tensors(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    clips, embeddings = write_shards(run)
    dataset = hf_dataset(run.uri("clips/train"))
    assert dataset["video_id"] == [f"v{i}" for i in range(5)]  # no reject row
    rows = dataset.with_format("numpy")[:]
    assert np.array_equal(rows["clip"], clips)
    assert np.allclose(rows["embedding"], embeddings)
    assert type(dataset.features["clip"]).__name__ == "Array4D"


def test_the_rejects_are_not_shards(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    write_shards(run)
    assert [path.rsplit("/", 1)[1] for path in shard_paths(run.uri("clips"))] == [
        "shard-00000.parquet", "shard-00001.parquet"]


def test_an_empty_folder_and_a_6d_tensor_are_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Parquet shards"):
        hf_dataset(str(tmp_path))
    table = pa.table({"x": tensor_array(np.zeros((1, 1, 1, 1, 1, 1, 2), np.uint8), pa.uint8())})
    with pytest.raises(ValueError, match="column x: 6-D tensors"):
        hf_columns(table)


def test_the_shared_runs_clip_and_latent_caches_read_as_datasets(small_quickstart):
    run = RunDir(small_quickstart.path)
    clips = hf_dataset(run.uri("clips/train")).with_format("numpy")[:]
    assert clips["clip"].shape == (8, 8, 32, 32, 3)  # 2 classes × 4 videos, 8×32² clips
    latents = hf_dataset(run.uri("latents/train")).with_format("numpy")[:]
    assert latents["latent"].shape == (8, 8, 4, 8, 8)
    embeddings = hf_dataset(run.uri("embeddings/synthetic/c3d-run")).with_format("numpy")[:]
    assert embeddings["embedding"].shape == (6, 256)  # 2 classes × 3 generated
