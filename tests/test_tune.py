"""Ray Tune sweeps of selector parameters (jobs/tune_lambdas.py) on a tiny toy run."""

import os
import sys

import numpy as np
import pytest
import yaml

from raydistill.config import ConfigError, RunConfig, from_dict
from raydistill.layout import embeddings_folder, sweep_folder
from raydistill.pipeline.embed import embedding_table
from raydistill.pipeline.latents import latent_table
from raydistill.pipeline.run import run_stages
from raydistill.pipeline.tune import (METRIC, SweepConfig, carve_validation, check_sweep,
                                      search_space, sweep_data)
from raydistill.pipeline.tune_job import tune_command
from raydistill.runs import RunDir

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "jobs"))
import tune_lambdas  # noqa: E402

TINY_VST = {"width": 4, "levels": 2, "feature_dim": 8, "norm_groups": 2, "n_samples": 4,
            "epochs": 2}
SWEEP = {"method": "vst_unet", "space": {"lambda_div": [0.0, 1.0], "lambda_rep": [0.0, 1.0]},
         "val_per_class": 2, "epochs": 2, "trial_cpus": 0.5}


def carved(ids, labels, per_class=2, seed=0):
    return set(np.asarray(ids)[carve_validation(ids, np.asarray(labels), per_class, seed)])


def test_validation_split_takes_per_class_and_leaves_each_class_a_video():
    ids = [f"v{i:02d}" for i in range(9)]
    labels = [0, 0, 0, 0, 0, 1, 1, 2, 2]
    held = carved(ids, labels, per_class=3)
    counts = {label: sum(ids[i] in held for i in range(9) if labels[i] == label)
              for label in (0, 1, 2)}
    assert counts == {0: 3, 1: 1, 2: 1}


def test_validation_split_depends_on_the_seed_not_on_row_order():
    ids = [f"v{i:02d}" for i in range(20)]
    labels = [i % 2 for i in range(20)]
    order = np.random.default_rng(3).permutation(20)
    shuffled = carved([ids[i] for i in order], [labels[i] for i in order])
    assert carved(ids, labels) == shuffled
    assert any(carved(ids, labels, seed=s) != carved(ids, labels) for s in range(1, 5))


def test_grid_space_is_every_value_and_random_space_samples_ranges():
    grid = search_space(from_dict(SweepConfig, SWEEP))
    assert grid["lambda_div"] == {"grid_search": [0.0, 1.0]}
    drawn = search_space(from_dict(SweepConfig, {**SWEEP, "search": "random",
                                                 "space": {"lambda_div": [0.0, 2.0],
                                                           "n_samples": [4, 8]}}))
    assert 0.0 <= drawn["lambda_div"].sample() <= 2.0
    assert drawn["n_samples"].sample() in range(4, 9)


@pytest.mark.parametrize("sweep, message", [
    ({"method": "nope"}, "method: unknown method 'nope'"),
    ({"search": "bayes"}, "search: choose one of"),
    ({"space": {"lambda_div": []}}, "space.lambda_div: expected a non-empty list"),
    ({"search": "random", "space": {"lambda_div": [0.5]}}, "space.lambda_div: give"),
    ({"val_per_class": 0}, "val_per_class"),
])
def test_bad_sweep_settings_name_the_field(sweep, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(SweepConfig, {**SWEEP, **sweep})


def test_a_parameter_the_selector_does_not_have_is_refused():
    config = from_dict(SweepConfig, {**SWEEP, "space": {"lambda_dv": [0.0, 1.0]}})
    with pytest.raises(ConfigError, match="space.lambda_dv: not a parameter vst_unet can sweep"):
        check_sweep(config, RunConfig())


# -- sweeps on a run ----------------------------------------------------------------------------

def tune_run_config(run_dir):
    return from_dict(RunConfig, {
        "run_dir": run_dir,
        "ingest": {"dataset": "toy", "toy": {"num_classes": 3, "train_per_class": 6,
                                             "test_per_class": 2, "num_frames": 8,
                                             "size": 32}},
        "decode": {"num_frames": 8, "size": 32},
        "embed": {"pools": ["real"]},
        "select": {"pool": "real", "methods": ["random"], "vpc": [1],
                   "params": {"vst_unet": TINY_VST}},
        "evaluate": {"preset": "toy", "training": {"epochs": 2, "batch_size": 4}},
    })


@pytest.fixture(scope="module")
def tune_run(tmp_path_factory, ray_cluster):
    """Ingested and decoded toy run whose real pool has planted latents and embeddings, as if
    the latents and embed stages had run."""
    config = tune_run_config(str(tmp_path_factory.mktemp("tune") / "run"))
    run = run_stages(config, ["ingest", "decode"])
    manifest = run.read_manifest("manifest.parquet").to_pylist()
    train = sorted((row for row in manifest if row["split"] == "train"),
                   key=lambda row: row["video_id"])
    ids, labels = [row["video_id"] for row in train], [row["label"] for row in train]
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(len(ids), 2, 4, 4, 4)).astype(np.float32)
    run.write_table("latents/train/shard-00000.parquet", latent_table(ids, labels, latents))
    embedded = {"embedding": rng.normal(size=(len(ids), 16)), "score": np.full(len(ids), 0.5),
                "predicted": np.asarray(labels, np.int32)}
    run.write_table(f"{embeddings_folder('real', 'videomae-run')}/shard-00000.parquet",
                    embedding_table(ids, labels, embedded))
    run.mark_done("latents")
    run.mark_done("embed")
    return run


def test_the_pool_never_holds_a_validation_video_and_validation_is_real_train(tune_run):
    run_config = RunDir(tune_run.url).load_config()
    data = sweep_data(tune_run, from_dict(SweepConfig, SWEEP), run_config)
    manifest = {row["video_id"]: row for row in tune_run.read_manifest("manifest.parquet")
                .to_pylist()}
    assert len(data["val_labels"]) == 6 and len(data["ids"]) == 12  # 2 + 4 per class
    assert sorted(np.bincount(data["val_labels"])) == [2, 2, 2]
    pool = set(data["ids"])
    train = {v for v, row in manifest.items() if row["split"] == "train"}
    assert pool <= train and len(train - pool) == 6


@pytest.mark.slow
def test_a_2x2_sweep_reports_the_best_trial_by_validation_accuracy(tune_run):
    [best] = tune_command(tune_run.url, SWEEP, [1])
    folder = sweep_folder("real", "vst_unet", 1)
    trials = tune_run.read_table(f"{folder}/trials.parquet").to_pylist()
    points = sorted((t["lambda_div"], t["lambda_rep"]) for t in trials)
    assert points == [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]
    assert all(t["status"] == "ok" and 0 <= t[METRIC] <= 1 for t in trials)
    top = max(trials, key=lambda t: t[METRIC])
    assert best[METRIC] == top[METRIC]
    assert best["params"] == {"lambda_div": top["lambda_div"], "lambda_rep": top["lambda_rep"]}
    saved = tune_run.read_json(f"{folder}/best.json")
    assert saved["params"] == best["params"] and saved["validation_videos"] == 6
    fragment = yaml.safe_load(tune_run.read_bytes(f"{folder}/best.yaml"))
    assert fragment["select"]["params"]["vst_unet"] == {**TINY_VST, **best["params"]}
    from_dict(RunConfig, fragment)  # a valid run-config fragment
    assert tune_run.read_bytes(f"{folder}/sweep.png")[:4] == b"\x89PNG"

    # The same sweep again resumes the finished experiment: same trials, nothing retrained.
    [again] = tune_command(tune_run.url, SWEEP, [1])
    assert again["params"] == best["params"] and again[METRIC] == best[METRIC]
    with pytest.raises(ConfigError, match="holds a sweep with other settings"):
        tune_command(tune_run.url, {**SWEEP, "seed": 1}, [1])


@pytest.mark.slow
def test_the_job_sweeps_tac_dt_through_the_same_estimator_interface(tune_run, capsys):
    code = tune_lambdas.main(["--run", tune_run.url, "--method", "tac_dt", "--vpc", "2",
                              "--space", "n_components=2,4", "--val-per-class", "2",
                              "--epochs", "2", "--trial-cpus", "0.5", "--tracker", "mlflow"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "best tac_dt at VPC 2: {\"n_components\":" in out
    trials = tune_run.read_table(f"{sweep_folder('real', 'tac_dt', 2)}/trials.parquet")
    assert sorted(trials.column("n_components").to_pylist()) == [2, 4]
    # Tune's MLflow logger callback: one MLflow run per trial, its validation accuracy logged
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file://{tune_run.url}/tracking/mlruns")
    experiment = client.get_experiment_by_name("run")
    tracked = client.search_runs([experiment.experiment_id])
    assert sorted(int(run.data.params["n_components"]) for run in tracked) == [2, 4]
    assert sorted(run.data.metrics[METRIC] for run in tracked) == sorted(
        trials.column(METRIC).to_pylist())


def test_dry_run_plans_the_sweeps_and_writes_nothing(tune_run, capsys):
    code = tune_lambdas.main(["--run", tune_run.url, "--vpc", "1", "2", "--lambda-div", "0",
                              "0.1", "1", "--lambda-rep", "0", "1", "--val-per-class", "2",
                              "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert "would sweep vst_unet at VPC 1: 6 grid trials" in out and "VPC 2" in out
    assert not tune_run.exists(sweep_folder("real", "vst_unet", 2))


def test_a_run_without_the_selectors_inputs_is_refused(tmp_path, capsys):
    config = tune_run_config(str(tmp_path / "run"))
    RunDir(config.run_dir).save_config(config)
    code = tune_lambdas.main(["--run", config.run_dir, "--dry-run"])
    assert code == 2
    assert "needs the ingest stage" in capsys.readouterr().err
    missing = tune_lambdas.main(["--run", str(tmp_path / "nothing"), "--dry-run"])
    assert missing == 2


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune_lambdas.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--lambda-div", "--lambda-rep", "--space", "--search", "--val-per-class",
                 "--trial-gpus", "--dry-run"):
        assert flag in out


def test_flags_become_the_sweep_settings():
    args = tune_lambdas.build_parser().parse_args(
        ["--run", "r", "--lambda-div", "0", "1", "--space", "n_samples=4,8",
         "--param", "reward_space=features", "--no-asha", "--epochs", "5"])
    settings = tune_lambdas.sweep_settings(args)
    assert settings["space"] == {"n_samples": [4, 8], "lambda_div": [0.0, 1.0]}
    assert settings["params"] == {"reward_space": "features"}
    assert settings["asha"] is False and settings["epochs"] == 5
    from_dict(SweepConfig, {**settings, "vpc": 1})  # a valid sweep


def test_a_vpc_larger_than_a_class_of_the_pool_stops_before_any_work(tune_run, capsys):
    code = tune_lambdas.main(["--run", tune_run.url, "--vpc", "3", "5", "--val-per-class", "2"])
    assert code == 2
    assert "vpc: 5 is more than the 4 videos of the smallest class" in capsys.readouterr().err
    assert not tune_run.exists(sweep_folder("real", "vst_unet", 3))  # VPC 3 did not run


def test_a_sweep_refuses_a_run_another_job_holds(tune_run, capsys):
    with RunDir(tune_run.url).lease():
        code = tune_lambdas.main(["--run", tune_run.url, "--vpc", "1", "--val-per-class", "2",
                                  "--lambda-div", "0", "--lambda-rep", "0", "--epochs", "1"])
    assert code == 2 and "is in use by another job" in capsys.readouterr().err
