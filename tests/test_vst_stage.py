"""VST-UNet selection as a stage: Ray Train over the pool's latents, resume, same as in-process."""

import dataclasses
import io
import os

import numpy as np
import pytest
import torch

from raydistill.config import RunConfig, from_dict, with_overrides
from raydistill.pipeline.latents import latent_table
from raydistill.pipeline.run import run_stages
from raydistill.pipeline.stages import requirements
from raydistill.layout import selection_path, vst_model_path
from raydistill.pipeline import vst
from raydistill.pipeline.vst import rank_classes, select_with_models, selector_for
from raydistill.runs import RunDir
from raydistill.selection import VSTUNetSelector
from raydistill.selection.vst_selector import build_model

pytestmark = pytest.mark.usefixtures("ray_cluster")

TINY = {"width": 4, "levels": 2, "feature_dim": 8, "norm_groups": 2, "n_samples": 4,
        "epochs": 2}


def planted_latents(classes=3, per_class=8, seed=0):
    """(latents (n, 2, 4, 4, 4), labels, ids): per class two modes and an outlier."""
    rng = np.random.default_rng(seed)
    latents, labels, ids = [], [], []
    for label in range(classes):
        modes = rng.normal(0, 1, (2, 2, 4, 4, 4))
        for i in range(per_class):
            base = modes[i % 2] if i < per_class - 1 else rng.normal(0, 3, (2, 4, 4, 4))
            latents.append(base + rng.normal(0, 0.1, base.shape))
            labels.append(label)
            ids.append(f"r{label}_{i:02d}")
    return np.asarray(latents, np.float32), np.asarray(labels), ids


def vst_run(run_dir, epochs=2, seeds=2, vpc=(1, 2)):
    return from_dict(RunConfig, {
        "run_dir": run_dir, "embed": {"pools": ["real"]},
        "select": {"pool": "real", "methods": ["vst_unet"], "vpc": list(vpc), "seeds": seeds,
                   "checkpoint_every": 1, "params": {"vst_unet": {**TINY, "epochs": epochs}}}})


def run_with_latents(config):
    run = RunDir(config.run_dir)
    latents, labels, ids = planted_latents()
    run.write_table("latents/train/shard-00000.parquet",
                    latent_table(ids, labels.tolist(), latents))
    for stage in ("ingest", "decode", "latents"):
        run.mark_done(stage)
    return run


def picked_ids(run, vpc, seed):
    table = run.read_table(selection_path("real", "vst_unet", vpc, seed))
    return table.column("video_id").to_pylist()


def test_vst_unet_on_real_latents_needs_the_latent_cache_not_the_embeddings():
    config = vst_run("unused")
    assert requirements("select", config) == ["ingest", "decode", "latents"]


def test_ranks_take_equal_numbers_of_classes():
    assert rank_classes([0, 1, 2, 3, 4], 0, 2) == [0, 2, 4]
    assert rank_classes([0, 1, 2, 3, 4], 1, 2) == [1, 3, 1]
    assert rank_classes([0], 1, 2) == [0]


def test_stage_selects_like_the_in_process_selector(tmp_path):
    config = vst_run(str(tmp_path / "run"))
    run = run_with_latents(config)
    run_stages(config, ["select"])
    latents, labels, ids = planted_latents()
    for vpc in (1, 2):
        for seed in (0, 1):
            assert run.exists(vst_model_path("real", vpc, seed))
            selector = VSTUNetSelector(n_per_class=vpc, random_state=seed, **TINY)
            expected = [ids[i] for i in selector.fit(latents, labels).selected_indices_]
            assert picked_ids(run, vpc, seed) == expected
            quality = run.read_json(selection_path("real", "vst_unet", vpc, seed).replace(
                ".parquet", ".quality.json"))
            assert quality["balanced"] is True
    assert run.stage_summary("select")["computed_now"] == 4


def test_an_interrupted_training_resumes_from_its_checkpoint(tmp_path):
    config = vst_run(str(tmp_path / "run"), epochs=2, seeds=1, vpc=(2,))
    run = run_with_latents(config)
    run_stages(config, ["select"])
    # As if the job died after the epoch-2 checkpoint of a 4-epoch training.
    os.remove(run.path(vst_model_path("real", 2, 0)))
    os.remove(run.path(selection_path("real", "vst_unet", 2, 0)))
    os.remove(run.path("selection/real/vst_unet/settings.json"))
    longer = with_overrides(config, {"select": {"params": {"vst_unet": {"epochs": 4}}}})
    run_stages(longer, ["select"])
    import torch
    history = torch.load(run.path(vst_model_path("real", 2, 0)))["history"]
    assert len(history) == 4
    latents, labels, ids = planted_latents()
    selector = VSTUNetSelector(n_per_class=2, random_state=0, **{**TINY, "epochs": 4})
    selector.fit(latents, labels)
    assert picked_ids(run, 2, 0) == [ids[i] for i in selector.selected_indices_]
    np.testing.assert_allclose([h["total"] for h in history],
                               [h["total"] for h in selector.loss_history_], rtol=1e-4)


def test_changing_a_methods_parameters_in_the_same_run_is_refused(tmp_path):
    config = vst_run(str(tmp_path / "run"), seeds=1, vpc=(1,))
    run_with_latents(config)
    run_stages(config, ["select"])
    changed = with_overrides(config, {"select": {"params": {"vst_unet": {"lambda_rep": 2.0}},
                                                 "seeds": 2}})
    from raydistill.config import ConfigError
    with pytest.raises(ConfigError, match="select.params.vst_unet"):
        run_stages(changed, ["select"])


def test_two_data_parallel_workers_train_and_select_vpc_per_class(tmp_path):
    config = with_overrides(vst_run(str(tmp_path / "run"), seeds=1, vpc=(2,)),
                            {"select": {"train_workers": 2}})
    run = run_with_latents(config)
    run_stages(config, ["select"])
    import torch
    assert len(torch.load(run.path(vst_model_path("real", 2, 0)))["history"]) == 2
    picked = run.read_table(selection_path("real", "vst_unet", 2, 0)).to_pylist()
    assert sorted(row["label"] for row in picked) == [0, 0, 1, 1, 2, 2]


def test_scores_do_not_depend_on_the_drivers_thread_count(tmp_path, monkeypatch):
    """The driver scores the pool with the trained models: a local driver runs torch on every
    core, a `ray job submit` one on a single thread (OMP_NUM_THREADS=1). Sums split by thread
    round differently, and the scores written with a selection followed the driver's threads."""
    run = RunDir(str(tmp_path / "run"))
    rng = np.random.default_rng(0)
    latents = rng.normal(0, 1, (12, 8, 4, 16, 16)).astype(np.float32)
    labels = np.repeat([0, 1], 6)
    ids = [f"v{i:02d}" for i in range(12)]
    run.write_table("latents/train/shard-00000.parquet",
                    latent_table(ids, labels.tolist(), latents))
    config = selector_for((2, 0), {"width": 16, "levels": 2, "feature_dim": 32,
                                   "norm_groups": 4}).model_config(4, 2)
    model = build_model(config, seed=0)
    buffer = io.BytesIO()
    torch.save({"config": dataclasses.asdict(config), "model": model.state_dict()}, buffer)
    run.write_bytes(vst_model_path("real", 2, 0), buffer.getvalue())
    scored_with = []
    original = vst.score_classes

    def score_classes(*args, **kwargs):
        scored_with.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(vst, "score_classes", score_classes)
    threads = torch.get_num_threads()
    scores = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            results, *_ = select_with_models(run, "real", [(2, 0)])
            scores.append(np.concatenate([p for _, p in results[(2, 0)].values()]))
    finally:
        torch.set_num_threads(threads)
    assert scores[0].tobytes() == scores[1].tobytes()
    # on machines where 1 and 2 threads happen to round alike, the pin itself is still checked
    assert scored_with == [vst.SCORING_THREADS] * 2
