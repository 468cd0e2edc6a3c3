"""Latents, finetune (Ray Train) and generate (Ray Data actors) stages on a tiny toy run."""

import os
import shutil

import numpy as np
import pytest
import torch

from raydistill.config import ConfigError, RunConfig, from_dict, with_overrides
from raydistill.generation.convert import LoadReport
from raydistill.generation.latte import ClassConditionalLatte
from raydistill.pipeline.finetune import untrained_parts
from raydistill.runs import RunDir
from raydistill.pipeline.embed import read_embeddings
from raydistill.pipeline.run import run_stages
from raydistill.layout import selection_path
from raydistill.video import decode_clip, probe_video

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.slow]


def tiny_run(run_dir, steps=4):
    return from_dict(RunConfig, {
        "run_dir": run_dir,
        "ingest": {"dataset": "toy", "toy": {"num_classes": 3, "train_per_class": 4,
                                             "test_per_class": 1, "num_frames": 8, "size": 32}},
        "decode": {"num_frames": 8, "size": 32},
        "latents": {"num_frames": 8, "size": 32, "vae_steps": 20, "shard_size": 8},
        "finetune": {"architecture": "tiny", "steps": steps, "batch_size": 4,
                     "checkpoint_every": 2, "log_every": 1, "ema_decay": 0.9},
        "generate": {"per_class": 2, "steps": 3, "batch_size": 4, "guidance": 2.0},
        "embed": {"pools": ["synthetic"], "classifier_steps": 5, "shard_size": 4},
        "select": {"methods": ["random", "tac_dt", "mae_score"], "vpc": [1, 2], "seeds": 2},
        "evaluate": {"preset": "toy", "methods": ["tac_dt"], "vpc": [2], "seeds": 1,
                     "training": {"epochs": 1}, "checkpoint_every": 5},
    })


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    config = tiny_run(str(tmp_path_factory.mktemp("gen") / "run"))
    return config, run_stages(config)


def test_latent_cache_holds_every_training_clip(generated):
    _, run = generated
    summary = run.stage_summary("latents")
    assert summary["latents"] == 12 and summary["latent_shape"] == [8, 4, 8, 8]
    assert run.exists("vae/config.json") and summary["vae_loss_last"] < summary["vae_loss_first"]


def test_finetune_saves_the_ema_model_and_loss_curve(generated):
    _, run = generated
    assert run.stage_summary("finetune")["steps"] == 4
    assert run.exists("finetune/model/config.json")
    assert run.read_bytes("finetune/loss.csv").decode().splitlines()[0] == "step,loss"
    assert run.read_bytes("report/finetune_loss.png")[:4] == b"\x89PNG"


def test_generate_writes_n_decodable_videos_per_class_with_their_seeds(generated):
    config, run = generated
    manifest = run.read_manifest("synthetic/manifest.parquet").to_pylist()
    assert sorted((row["label"], row["video_id"]) for row in manifest) == [
        (label, f"syn_{label:04d}_{index:05d}") for label in range(3) for index in range(2)]
    assert len({row["seed"] for row in manifest}) == 6
    for row in manifest:
        assert probe_video(row["path"]).num_frames == 8
        assert np.load(row["latent_path"]).shape == (8, 4, 8, 8)
    assert len(run.list("report/filmstrips", ".png")) == 3


def assert_actor_shares(summary: dict, calls: int) -> None:
    """One actor did ``calls`` calls; its shares of time are in [0, 1] and add up to 1."""
    [actor] = summary["actors"]
    assert actor["calls"] == calls and actor["seconds"] > 0
    shares = [actor[key] for key in ("busy_share", "other_share", "wait_share")]
    assert all(0 <= share <= 1 for share in shares) and sum(shares) == pytest.approx(1, abs=0.01)
    assert summary["busy_share_min"] == actor["busy_share"] > 0


def test_generate_and_embed_report_their_actors_shares_of_time(generated):
    _, run = generated
    assert_actor_shares(run.stage_summary("generate"), calls=2)  # 6 videos, batches of 4
    assert_actor_shares(run.stage_summary("embed")["synthetic"], calls=2)  # 2 shards


def test_rerun_of_generate_writes_nothing_and_a_lost_video_comes_back_the_same(generated):
    config, run = generated
    manifest = run.read_manifest("synthetic/manifest.parquet").to_pylist()
    victim = manifest[3]
    before = np.load(victim["latent_path"])
    kept_mtime = os.path.getmtime(manifest[0]["path"])
    os.remove(victim["path"])
    os.remove(run.path("_stages/generate.json"))
    run_stages(config, ["generate"])
    assert run.stage_summary("generate")["generated_now"] == 1
    assert os.path.getmtime(manifest[0]["path"]) == kept_mtime
    assert np.allclose(np.load(victim["latent_path"]), before, atol=1e-3)
    assert decode_clip(victim["path"], 8, 32).shape == (8, 32, 32, 3)


TWO_CLASSES = {"ingest": {"toy": {"num_classes": 2}}}


@pytest.fixture(scope="module")
def two_class_latents(tmp_path_factory):
    """A 2-class tiny run with ingest, decode and latents done, for tests to copy
    (:func:`copied`): each then starts at finetune without preparing its data again."""
    config = with_overrides(tiny_run(str(tmp_path_factory.mktemp("up") / "run")), TWO_CLASSES)
    run_stages(config, ["ingest", "decode", "latents"])
    return config.run_dir


def copied(run_dir: str, tmp_path, overrides: dict):
    """A copy of the run ``run_dir`` in ``tmp_path`` and the tiny 2-class config on it, with
    ``overrides``."""
    target = str(tmp_path / "run")
    shutil.copytree(run_dir, target)
    return with_overrides(tiny_run(target), {**TWO_CLASSES, **overrides})


def test_finetune_resumes_from_its_last_checkpoint(two_class_latents, tmp_path):
    config = copied(two_class_latents, tmp_path, {"finetune": {"steps": 2}})
    run = run_stages(config, ["finetune"])
    first = run.read_bytes("finetune/loss.csv").decode().splitlines()
    os.remove(run.path("_stages/finetune.json"))  # as if the job died after the checkpoint
    longer = with_overrides(config, {"finetune": {"steps": 4}})
    run_stages(longer, ["finetune"])
    resumed = run.read_bytes("finetune/loss.csv").decode().splitlines()
    assert run.stage_summary("finetune")["steps"] == 4
    assert resumed[:len(first)] == first and len(resumed) == len(first) + 2


def test_finetune_from_a_run_model_keeps_the_label_rows_of_the_shared_classes(
        generated, two_class_latents, tmp_path):
    _, first = generated
    names = first.stage_summary("ingest")["class_names"]
    assert first.read_json("finetune/model/config.json")["class_names"] == names
    config = copied(two_class_latents, tmp_path, {
        "finetune": {"model": first.path("finetune/model"), "architecture": "tiny",
                     "steps": 1}})
    run = run_stages(config, ["finetune"])
    taken = run.stage_summary("finetune")["initialisation"]
    assert taken["class_rows_by_name"] == 2 and taken["class_rows_new"] == 0
    assert taken["tensors_not_in_source"] == 0


def test_zero_steps_saves_the_pretrained_model_as_it_is_and_generates_from_it(
        generated, two_class_latents, tmp_path):
    _, first = generated
    config = copied(two_class_latents, tmp_path, {
        "finetune": {"model": first.path("finetune/model"), "architecture": "tiny",
                     "steps": 0}})
    run = run_stages(config, ["finetune", "generate"])
    summary = run.stage_summary("finetune")
    assert summary["steps"] == 0 and summary["loss_first"] is None
    assert summary["initialisation"]["class_rows_by_name"] == 2
    assert not run.exists("finetune/ray") and not run.exists("finetune/loss.csv")  # no training
    source = ClassConditionalLatte.from_pretrained(first.path("finetune/model")).state_dict()
    kept = ClassConditionalLatte.from_pretrained(run.path("finetune/model")).state_dict()
    table = "class_embedding.embedding_table.weight"
    assert all(torch.equal(value, source[name]) for name, value in kept.items() if name != table)
    # rows of the two shared classes (the toy's first two) and the null row
    assert torch.equal(kept[table], source[table][[0, 1, 3]])
    assert run.stage_summary("generate")["videos"] == 2 * 2


def test_zero_steps_refuses_a_model_without_a_row_for_a_run_class(generated, tmp_path):
    _, first = generated  # 3 classes; this run has 4
    config = with_overrides(tiny_run(str(tmp_path / "run")), {
        "ingest": {"toy": {"num_classes": 4}},
        "finetune": {"model": first.path("finetune/model"), "architecture": "tiny",
                     "steps": 0}})
    run_stages(config, ["ingest", "decode", "latents"])
    fourth = RunDir(config.run_dir).stage_summary("ingest")["class_names"][3]
    with pytest.raises(ConfigError, match=rf"^finetune\.steps: 0 uses .* no row for 1 of the "
                                          rf"run's 4 classes \(e\.g\. '{fourth}'\)"):
        run_stages(config, ["finetune"])
    assert not RunDir(config.run_dir).exists("finetune/model/config.json")


def test_zero_steps_refuses_label_rows_taken_by_position_or_a_missing_null_row():
    named = dict(class_rows_by_name=3, class_rows_new=0, null_row_from_source=True)
    assert untrained_parts(LoadReport(**named), 3) is None
    assert "matched to the run's classes by name" in untrained_parts(LoadReport(), 3)
    assert "no null-class row" in untrained_parts(
        LoadReport(**{**named, "null_row_from_source": False}), 3)
    assert "(e.g. pos_embed.proj.weight)" in untrained_parts(
        LoadReport(**named, skipped_shape=["pos_embed.proj.weight"]), 3)


def test_tiny_generation_run_on_s3_keeps_everything_in_the_bucket(s3_bucket):
    import fsspec

    config = tiny_run(f"{s3_bucket}/runs/gen", steps=2)
    config = with_overrides(config, {"ingest": {"toy": {"num_classes": 2}},
                                     "generate": {"per_class": 1}, "select": {"vpc": [1]},
                                     "evaluate": {"vpc": [1]}})
    run = run_stages(config)
    stored = run.read_table("synthetic/manifest.parquet").column("path").to_pylist()
    assert all(path.startswith("synthetic/videos/") for path in stored)  # run-relative
    manifest = run.read_manifest("synthetic/manifest.parquet").to_pylist()
    assert [row["video_id"] for row in manifest] == ["syn_0000_00000", "syn_0001_00000"]
    assert all(row["path"].startswith(f"{s3_bucket}/runs/gen/synthetic/") for row in manifest)
    assert probe_video(manifest[0]["path"]).num_frames == 8
    keys = fsspec.filesystem("s3").find(f"{s3_bucket[5:]}/runs/gen/finetune")
    assert any(key.endswith("state.pt") for key in keys)  # Ray Train checkpoints in the bucket
    assert run.exists("finetune/model/config.json") and run.exists("vae/config.json")
    assert run.exists("embed/videomae-run/config.json")
    assert run.read_table(selection_path("synthetic", "tac_dt", 1, 0)).num_rows == 2
    assert run.read_json("eval/full_synthetic/seed=0/metrics.json")["train_videos"] == 2
    assert run.read_bytes("report/report.md").startswith(b"# raydistill report")


def test_embed_writes_one_vector_per_synthetic_video_with_the_run_classifier(generated):
    _, run = generated
    summary = run.stage_summary("embed")
    assert summary["synthetic"]["videos"] == 6 and summary["synthetic"]["shards"] == 2
    assert summary["classifier"]["classifier_videos"] == 12
    assert run.exists("embed/videomae-run/config.json")
    table = read_embeddings(run, "synthetic", "videomae-run")
    assert table.column("video_id").to_pylist() == [
        f"syn_{label:04d}_{index:05d}" for label in range(3) for index in range(2)]
    embeddings = table.column("embedding").combine_chunks().to_numpy_ndarray()
    scores = table.column("score").to_numpy()
    assert embeddings.shape == (6, 64) and np.isfinite(embeddings).all()
    assert ((scores > 0) & (scores < 1)).all()  # the run classifier names the run's classes


def test_select_picks_from_the_synthetic_pool(generated):
    _, run = generated
    assert run.stage_summary("select")["selections"] == 12
    picked = run.read_table(selection_path("synthetic", "tac_dt", 2, 1)).to_pylist()
    assert sorted(row["video_id"] for row in picked) == [
        f"syn_{label:04d}_{index:05d}" for label in range(3) for index in range(2)]


def test_evaluate_trains_on_the_synthetic_pool_and_reports(generated):
    _, run = generated
    metrics = run.read_json("eval/synthetic/tac_dt/vpc=2/seed=0/metrics.json")
    assert metrics["train_videos"] == 6 and metrics["test_videos"] == 3
    assert run.read_json("eval/full_synthetic/seed=0/metrics.json")["train_videos"] == 6
    assert run.exists("clips/synthetic/shard-00000.parquet")
    assert "TAC-DT" in run.read_bytes("report/report.md").decode()


def test_an_interrupted_embed_resumes_without_embedding_again(generated):
    config, run = generated
    first = run.read_bytes("embeddings/synthetic/videomae-run/shard-00000.parquet")
    os.remove(run.path("_stages/embed.json"))  # as if the job died after the last shard
    run_stages(config, ["embed"])
    assert run.stage_summary("embed")["synthetic"]["shards_embedded_now"] == 0
    assert run.read_bytes("embeddings/synthetic/videomae-run/shard-00000.parquet") == first
