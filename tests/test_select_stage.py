"""The select stage: per-class fan-out over Ray tasks, files per (method, VPC, seed), reruns."""

import numpy as np
import pytest

from raydistill.config import ConfigError, RunConfig, from_dict, with_overrides
from raydistill.pipeline.embed import embedding_table
from raydistill.pipeline.run import run_stages
from raydistill.layout import selection_path
from raydistill.pipeline.select import fan_out, prepared_scores, select_classes, selection_jobs
from raydistill.runs import RunDir

pytestmark = pytest.mark.usefixtures("ray_cluster")


def clustered_pool(classes=5, per_class=12, dim=16, seed=0):
    """Embeddings with three blobs per class, ids ``v{label}_{i}``, labels not contiguous."""
    rng = np.random.default_rng(seed)
    X, y, ids = [], [], []
    for c in range(classes):
        centres = rng.normal(0, 5, (3, dim))
        for i in range(per_class):
            X.append(centres[i % 3] + rng.normal(0, 0.3, dim))
            y.append(10 * c)
            ids.append(f"v{c}_{i:03d}")
    return np.asarray(X, np.float32), np.asarray(y), ids


def select_run(run_dir, methods=("random", "tac_dt", "mae_score"), vpc=(1, 3), seeds=2):
    return from_dict(RunConfig, {
        "run_dir": run_dir, "generate": {"per_class": 12},
        "embed": {"pools": ["real"]},
        "select": {"pool": "real", "methods": list(methods), "vpc": list(vpc), "seeds": seeds,
                   "classes_per_task": 2, "params": {"tac_dt": {"n_components": 4}}}})


def run_with_embeddings(tmp_path, config):
    """A run whose ingest/decode/embed stages are done, holding the clustered pool's embeddings
    (scores missing, so mae_score computes its own)."""
    run = RunDir(config.run_dir)
    X, y, ids = clustered_pool()
    half = len(ids) // 2
    for index, part in enumerate([slice(0, half), slice(half, None)]):
        table = embedding_table(ids[part], y[part].tolist(),
                                {"embedding": X[part], "score": np.full(len(X[part]), np.nan)})
        run.write_table(f"embeddings/real/videomae-run/shard-{index:05d}.parquet", table)
    for stage in ("ingest", "decode", "embed"):
        run.mark_done(stage)
    return run


def test_fan_out_over_class_groups_equals_the_sequential_loop():
    X, y, _ = clustered_pool()
    jobs = [("tac_dt", 3, 0), ("kcenter", 2, 1), ("random", 4, 3), ("mae_score", 2, 0)]
    prepared = prepared_scores(jobs, {}, X, y, None)
    sequential = select_classes(X, y, prepared, sorted(set(y.tolist())), jobs, {})
    parallel = fan_out(X, y, prepared, jobs, {}, classes_per_task=2)
    for job in jobs:
        assert sorted(parallel[job]) == sorted(sequential[job])
        for label, (indices, scores) in sequential[job].items():
            np.testing.assert_array_equal(parallel[job][label][0], indices)
            np.testing.assert_array_equal(parallel[job][label][1], scores)


def test_select_stage_writes_one_balanced_file_per_method_vpc_seed(tmp_path):
    config = select_run(str(tmp_path / "run"))
    run = run_with_embeddings(tmp_path, config)
    run_stages(config, ["select"])
    jobs = selection_jobs(config.select)
    assert len(jobs) == 12 and run.stage_summary("select")["computed_now"] == 12
    for method, vpc, seed in jobs:
        table = run.read_table(selection_path("real", method, vpc, seed)).to_pylist()
        assert len(table) == 5 * vpc and len({row["video_id"] for row in table}) == 5 * vpc
        assert all(row["video_id"].startswith(f"v{row['label'] // 10}_") for row in table)
        assert sorted(row["rank"] for row in table if row["label"] == 0) == list(range(vpc))
        quality = run.read_json(selection_path("real", method, vpc, seed).replace(
            ".parquet", ".quality.json"))
        assert quality["balanced"] is True and quality["coverage"] > 0


def test_tac_dt_covers_the_pool_better_than_random(tmp_path):
    config = select_run(str(tmp_path / "run"), vpc=(3,), seeds=3)
    run = run_with_embeddings(tmp_path, config)
    run_stages(config, ["select"])

    def mean_coverage(method):
        return np.mean([run.read_json(selection_path("real", method, 3, s).replace(
            ".parquet", ".quality.json"))["coverage"] for s in range(3)])

    assert mean_coverage("tac_dt") < 0.8 * mean_coverage("random")


def test_rerun_computes_only_new_selections(tmp_path):
    config = select_run(str(tmp_path / "run"), methods=("random",), vpc=(1,), seeds=1)
    run = run_with_embeddings(tmp_path, config)
    run_stages(config, ["select"])
    first = run.read_bytes(selection_path("real", "random", 1, 0))
    run_stages(config, ["select"])  # same settings: skipped
    more = with_overrides(config, {"select": {"methods": ["random", "kcenter"], "vpc": [1, 2]}})
    run_stages(more, ["select"])
    assert run.stage_summary("select")["computed_now"] == 3
    assert run.read_bytes(selection_path("real", "random", 1, 0)) == first
    assert run.exists(selection_path("real", "kcenter", 2, 0))


def test_select_without_embeddings_names_the_missing_folder(tmp_path):
    config = select_run(str(tmp_path / "run"))
    run = RunDir(config.run_dir)
    for stage in ("ingest", "decode", "embed"):
        run.mark_done(stage)
    with pytest.raises(FileNotFoundError, match="embeddings/real/videomae-run"):
        run_stages(config, ["select"])


def test_select_needs_the_embed_stage_first(tmp_path):
    config = select_run(str(tmp_path / "run"))
    RunDir(config.run_dir).mark_done("ingest")
    with pytest.raises(ConfigError, match="select needs the decode stage"):
        run_stages(config, ["select"])


@pytest.mark.parametrize("select, message", [
    ({"methods": ["nope"]}, "select.methods: unknown method 'nope'"),
    ({"vpc": [0]}, "select.vpc"),
    ({"vpc": [1, 200]}, "select.vpc: 200 videos per class is more than the 100 generated"),
    ({"seeds": 0}, "select.seeds"),
    ({"params": {"nope": {}}}, "select.params.nope"),
])
def test_bad_select_config_names_the_field(select, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, {"select": select})


def test_a_parameter_the_method_lacks_stops_before_any_work(tmp_path):
    config = with_overrides(select_run(str(tmp_path / "run")),
                            {"select": {"params": {"tac_dt": {"n_compnents": 4}}}})
    with pytest.raises(ConfigError, match="select.params.tac_dt.n_compnents: not a parameter"):
        run_stages(config, ["select"])
    assert not RunDir(config.run_dir).exists("config.yaml")


def test_tac_dt_selections_made_with_older_defaults_are_not_mixed_with_new_ones(tmp_path):
    config = select_run(str(tmp_path / "run"), methods=("tac_dt",), vpc=(1,), seeds=1)
    run = run_with_embeddings(tmp_path, config)
    # What a run of the earlier TAC-DT (every video a candidate by default) recorded:
    run.write_json("selection/real/tac_dt/settings.json",
                   {"params": {"n_components": 4}, "embedding": "videomae-run"})
    with pytest.raises(ConfigError, match="select.params.tac_dt: .* holds selections made with"):
        run_stages(config, ["select"])
    assert not run.exists(selection_path("real", "tac_dt", 1, 0))
