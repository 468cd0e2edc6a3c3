"""Evaluate and report stages on a tiny toy run: Ray Train per selection, Ray Data testing."""

import io
import shutil
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
import torch

from raydistill.classify import build_classifier, fit_classifier, predict
from raydistill.classify.metrics import classification_metrics
from raydistill.config import ConfigError, RunConfig, from_dict, with_overrides
from raydistill.classify.training import training_recipe
from raydistill.embedding.c3d import TOY_C3D_SPEC, save_c3d, train_c3d_classifier
from raydistill.classify.training import make_optimizer, make_scheduler
from raydistill.layout import (eval_checkpoint_path, eval_metrics_path, eval_model_path,
                               run_model_dir, selection_path)
from raydistill.pipeline.evaluate import (RunDirCheckpoints, adopt_run_classifier,
                                          classifier_settings, load_clips, longest_first,
                                          validate_evaluation)
from raydistill.runs import RunDir
from raydistill.pipeline.run import run_stages

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.slow]


def eval_run(run_dir, seeds=1):
    return from_dict(RunConfig, {
        "run_dir": run_dir,
        "ingest": {"dataset": "toy", "toy": {"num_classes": 3, "train_per_class": 4,
                                             "test_per_class": 2, "num_frames": 8,
                                             "size": 32}},
        "decode": {"num_frames": 8, "size": 32},
        "embed": {"pools": ["real"]},
        "select": {"pool": "real", "methods": ["random"], "vpc": [1, 2], "seeds": seeds},
        "evaluate": {"preset": "toy", "full_synthetic": False, "checkpoint_every": 2,
                     "upper_bound_seeds": 1,
                     "training": {"epochs": 3, "batch_size": 4}},
    })


def fake_selections(run, seeds):
    """Selections of the real pool written directly (first ``vpc`` training videos per class,
    shifted by seed), as if embed and select had run."""
    manifest = run.read_manifest("manifest.parquet").to_pylist()
    train = sorted((row for row in manifest if row["split"] == "train"),
                   key=lambda row: row["video_id"])
    for vpc in (1, 2):
        for seed in range(seeds):
            rows = []
            for label in range(3):
                mine = [row for row in train if row["label"] == label]
                for rank in range(vpc):
                    rows.append({"video_id": mine[(seed + rank) % len(mine)]["video_id"],
                                 "label": label, "rank": rank, "score": 1.0})
            run.write_table(selection_path("real", "random", vpc, seed),
                            pa.Table.from_pylist(rows))
    run.mark_done("embed")
    run.mark_done("select")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    config = eval_run(str(tmp_path_factory.mktemp("eval") / "run"))
    run = run_stages(config, ["ingest", "decode"])
    fake_selections(run, seeds=2)
    run_stages(config, ["evaluate", "report"])
    return config, run


def test_every_selection_and_the_full_real_bound_get_test_metrics(evaluated):
    _, run = evaluated
    for key, videos in [("full_real/seed=0", 12), ("real/random/vpc=1/seed=0", 3),
                        ("real/random/vpc=2/seed=0", 6)]:
        metrics = run.read_json(eval_metrics_path(key))
        assert metrics["train_videos"] == videos and metrics["test_videos"] == 6
        assert all(0 <= metrics[name] <= 1 for name in ("top1", "top5", "auc", "f1"))
        assert metrics["top5"] == 1.0  # 3 classes: top-5 holds every class
    assert run.stage_summary("evaluate")["trained_now"] == 3


def test_ray_train_and_ray_data_give_what_an_in_process_fit_gives(evaluated):
    config, run = evaluated
    spec, settings = classifier_settings(config.evaluate)
    clips, labels = load_clips(run, "train", None)
    torch.manual_seed(0)  # the seed of full_real/seed=0
    model = build_classifier(spec["name"], 3, spec["frames"], spec["size"], **spec["options"])
    fit_classifier(model, clips, labels, settings)
    test_clips, test_labels = load_clips(run, "test")
    expected = classification_metrics(test_labels, predict(model, test_clips),
                                      labels=np.arange(3))
    metrics = run.read_json(eval_metrics_path("full_real/seed=0"))
    for name in ("top1", "auc", "f1"):
        assert metrics[name] == pytest.approx(expected[name], abs=1e-6)


def test_evaluate_adopts_the_embedding_c3d_only_where_its_recipe_is_the_jobs(evaluated,
                                                                             tmp_path):
    config, run = evaluated
    shutil.copytree(run.root, tmp_path / "run")
    copy = RunDir(str(tmp_path / "run"))
    spec, settings = classifier_settings(config.evaluate)
    clips, labels = load_clips(copy, "train", None)
    model, history = train_c3d_classifier(clips, labels, 3, settings, seed=0)
    save_c3d(model, str(tmp_path / "embedder"), ["a", "b", "c"], history)
    copy.put_dir(str(tmp_path / "embedder"), run_model_dir("c3d"))
    copy.write_json(f"{run_model_dir('c3d')}/training.json", {
        "recipe": training_recipe(TOY_C3D_SPEC, replace(settings, seed=0), len(labels)),
        "seconds": 1.5})
    some_ids = copy.read_table(selection_path("real", "random", 1, 0)).column(
        "video_id").to_pylist()
    jobs = [{"key": "full_real/seed=0", "split": "train", "ids": None, "seed": 0},
            {"key": "full_real/seed=1", "split": "train", "ids": None, "seed": 1},
            {"key": "real/random/vpc=1/seed=0", "split": "train", "ids": some_ids, "seed": 0}]

    assert adopt_run_classifier(copy, config, jobs) == ["full_real/seed=0"]
    adopted = torch.load(io.BytesIO(copy.read_bytes(eval_model_path("full_real/seed=0"))),
                         weights_only=True)
    assert adopted["history"] == history and adopted["seconds"] == 1.5
    assert all(torch.equal(adopted["model"][name], value)
               for name, value in model.state_dict().items())
    longer = with_overrides(config, {"evaluate": {"training": {"epochs": 4, "batch_size": 4}}})
    two_workers = with_overrides(config, {"evaluate": {"num_workers": 2}})  # DDP: other batches
    assert adopt_run_classifier(copy, longer, jobs) == []
    assert adopt_run_classifier(copy, two_workers, jobs) == []
    copy.write_json(f"{run_model_dir('c3d')}/training.json", {"seconds": 1.5})  # no recipe
    assert adopt_run_classifier(copy, config, jobs) == []


def test_rerun_trains_only_the_new_seed(evaluated):
    config, run = evaluated
    before = run.read_bytes(eval_metrics_path("real/random/vpc=1/seed=0"))
    run_stages(with_overrides(config, {"evaluate": {"seeds": 2}}), ["evaluate"])
    assert run.stage_summary("evaluate")["trained_now"] == 2  # vpc 1 and 2 of seed 1
    assert run.read_bytes(eval_metrics_path("real/random/vpc=1/seed=0")) == before
    assert run.exists(eval_metrics_path("real/random/vpc=2/seed=1"))


def test_report_shows_the_results_table_and_its_figures(evaluated):
    _, run = evaluated
    report = run.read_bytes("report/report.md").decode()
    assert "| all | Full real |" in report and "Random" in report
    for line in report.splitlines():
        if line.startswith("![") and "](" in line:
            image = line.split("](")[1].rstrip(")")
            assert run.read_bytes(f"report/{image}")[:4] == b"\x89PNG"


def test_a_selection_that_was_never_made_is_named(evaluated):
    config, _ = evaluated
    missing = with_overrides(config, {"evaluate": {"methods": ["tac_dt"]}})
    with pytest.raises(ConfigError, match="no selection .*tac_dt"):
        run_stages(missing, ["evaluate"])


@pytest.mark.parametrize("evaluate, message", [
    ({"classifier_options": {"depth": 4}}, "evaluate.classifier_options"),
    ({"training": {"epochz": 3}}, "evaluate.training"),
    ({"classifier": "resnet"}, "evaluate.classifier"),
    ({"parallelism": "models"}, "evaluate.parallelism"),
])
def test_bad_evaluation_settings_stop_before_any_work(evaluate, message):
    with pytest.raises(ConfigError, match=message):
        validate_evaluation(from_dict(RunConfig, {"evaluate": evaluate}))


def test_two_data_parallel_workers_train_a_classifier(tmp_path):
    config = with_overrides(eval_run(str(tmp_path / "run")),
                            {"evaluate": {"num_workers": 2, "methods": ["random"], "vpc": [2]}})
    run = run_stages(config, ["ingest", "decode"])
    fake_selections(run, seeds=1)
    run_stages(config, ["evaluate"])
    assert run.read_json(eval_metrics_path("real/random/vpc=2/seed=0"))["train_videos"] == 6
    assert run.read_json(eval_metrics_path("full_real/seed=0"))["test_videos"] == 6


def test_jobs_parallelism_trains_each_classifier_as_one_worker_would(evaluated, tmp_path):
    config, run = evaluated
    shutil.copytree(run.root, tmp_path / "run")
    copy = RunDir(str(tmp_path / "run"))
    copy.fs.rm(copy.path("eval"), recursive=True)
    copy.fs.rm(copy.path("_stages/evaluate.json"))
    jobs_config = with_overrides(config, {"run_dir": copy.url, "evaluate": {
        "parallelism": "jobs", "num_workers": 2, "cpus_per_worker": 1,
        "vpc": [1, 2, 1]}})  # VPC 1 twice: one job, never two workers on one key
    run_stages(jobs_config, ["evaluate"])
    assert copy.stage_summary("evaluate")["evaluations"] == 3

    keys = ["full_real/seed=0", "real/random/vpc=1/seed=0", "real/random/vpc=2/seed=0"]
    for key in keys:  # the fixture's run: one worker of 1 CPU, data-parallel mode
        mine = torch.load(io.BytesIO(copy.read_bytes(eval_model_path(key))), weights_only=True)
        theirs = torch.load(io.BytesIO(run.read_bytes(eval_model_path(key))), weights_only=True)
        assert mine["history"] == theirs["history"], key
        assert all(torch.equal(value, theirs["model"][name])
                   for name, value in mine["model"].items()), key
        assert copy.read_json(eval_metrics_path(key))["top1"] == run.read_json(
            eval_metrics_path(key))["top1"]
        assert not copy.exists(eval_checkpoint_path(key))  # deleted once the model is saved


def test_jobs_start_longest_first_ties_in_job_order():
    jobs = [{"key": name} for name in "abcdef"]
    ordered = longest_first(jobs, [1, 6, 2, 5, 3, 3])
    assert [job["key"] for job in ordered] == ["b", "d", "e", "f", "c", "a"]
    assert longest_first([], []) == []


def test_a_job_checkpoint_in_the_run_restores_what_was_saved_and_goes_when_done(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    _, settings = classifier_settings(from_dict(RunConfig, {"evaluate": {"preset": "toy"}})
                                      .evaluate)

    def fresh():
        torch.manual_seed(0)
        model = build_classifier("c3d", 3, 8, 32, width=1 / 16, batch_norm=True)
        optimizer = make_optimizer(model, settings)
        return model, optimizer, make_scheduler(optimizer, settings), torch.Generator()

    checkpoints = RunDirCheckpoints(run, "real/random/vpc=1/seed=0")
    assert checkpoints.restore(*fresh()) == (0, [])
    model, optimizer, scheduler, generator = fresh()
    model(torch.rand(2, 3, 8, 32, 32)).sum().backward()
    optimizer.step()
    scheduler.step()
    generator.manual_seed(7)
    history = [{"epoch": 1, "loss": 1.5, "lr": 0.002}, {"epoch": 2, "loss": 1.2, "lr": 0.002}]
    checkpoints.save(model, optimizer, scheduler, generator, history)
    assert run.exists(eval_checkpoint_path("real/random/vpc=1/seed=0"))

    restored = fresh()
    epoch, saved_history = RunDirCheckpoints(run, "real/random/vpc=1/seed=0").restore(*restored)
    assert (epoch, saved_history) == (2, history)
    assert all(torch.equal(value, restored[0].state_dict()[name])
               for name, value in model.state_dict().items())
    assert restored[1].state_dict()["state"].keys() == optimizer.state_dict()["state"].keys()
    assert torch.equal(restored[3].get_state(), generator.get_state())
    checkpoints.finish()
    assert not run.exists(eval_checkpoint_path("real/random/vpc=1/seed=0"))


def test_a_job_checkpoint_written_under_another_recipe_is_not_resumed(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    torch.manual_seed(0)
    model = build_classifier("c3d", 3, 8, 32, width=1 / 16, batch_norm=True)
    optimizer = torch.optim.Adam(model.parameters())
    key = "real/random/vpc=1/seed=0"
    RunDirCheckpoints(run, key, {"training": {"epochs": 30}}).save(
        model, optimizer, None, None, [{"epoch": 3, "loss": 1.0, "lr": 0.002}])
    other = RunDirCheckpoints(run, key, {"training": {"epochs": 60}})
    assert other.restore(model, optimizer, None, None) == (0, [])
    assert not run.exists(eval_checkpoint_path(key))  # the stale one is gone


def test_a_classifier_task_that_keeps_failing_stops_the_stage_naming_its_job(evaluated,
                                                                              tmp_path):
    config, run = evaluated
    shutil.copytree(run.root, tmp_path / "run")
    copy = RunDir(str(tmp_path / "run"))
    copy.fs.rm(copy.path("eval"), recursive=True)
    copy.fs.rm(copy.path("_stages/evaluate.json"))
    copy.fs.rm(copy.path("clips/train"), recursive=True)  # every job's clips are gone
    jobs_config = with_overrides(config, {"run_dir": copy.url, "evaluate": {
        "parallelism": "jobs", "num_workers": 1, "cpus_per_worker": 1, "max_failures": 1}})
    with pytest.raises(RuntimeError, match=r"eval/.*seed=0.* failed 2 times \(evaluate\."
                                           r"max_failures: 1\).*no clip shards in .*clips/train"):
        run_stages(jobs_config, ["evaluate"])
    assert not copy.list("eval", "model.pt")
