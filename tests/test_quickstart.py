"""The quickstart job end to end on a small toy set, and its rerun."""

import contextlib
import io
import os
import sys
from dataclasses import replace

import pytest

from raydistill.classify.training import TOY_TRAINING, training_recipe
from raydistill.config import SELECTION_METHODS, STAGE_NAMES
from raydistill.embedding.c3d import TOY_C3D_SPEC
from raydistill.pipeline.evaluate import classifier_settings
from raydistill.runs import RunDir
from raydistill.selection.tac_dt import TACDTSelector

sys.path.insert(0, os.path.dirname(__file__))
from small_quickstart import FLAGS, RUN_NAME, SIZE, load_job  # noqa: E402


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_a_rerun_skips_them(small_quickstart, monkeypatch):
    run = RunDir(small_quickstart.path)
    classes, per_class = SIZE["classes"], SIZE["per_class"]
    assert all(run.is_done(stage) for stage in STAGE_NAMES)
    assert run.stage_summary("ingest")["videos_per_split"] == {
        "test": classes * SIZE["test_per_class"], "train": classes * SIZE["train_per_class"]}
    assert run.stage_summary("decode")["clips"] == classes * (SIZE["test_per_class"]
                                                              + SIZE["train_per_class"])
    assert run.stage_summary("generate")["videos"] == classes * per_class
    assert len(run.list("report/filmstrips", ".png")) == classes
    assert run.stage_summary("select")["selections"] == len(SELECTION_METHODS)  # VPC 1, 1 seed
    assert run.stage_summary("evaluate")["evaluations"] == len(SELECTION_METHODS) + 2
    # The embedding C3D has the full-real bound's recipe: evaluate takes it, trains it not again.
    assert run.stage_summary("evaluate")["adopted"] == ["full_real/seed=0"]
    written = run.read_bytes("report/report.md").decode()
    assert "| all | Full real |" in written
    assert "## Class fidelity of the synthetic pool" in written
    assert "## Difference from random" in written
    report = os.path.join(small_quickstart.path, "report", "report.md")
    assert small_quickstart.printed.strip().endswith(f"report: {report}")

    monkeypatch.chdir(small_quickstart.cwd)  # the same relative run directory again
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert load_job().main(["--run", RUN_NAME, *FLAGS]) == 0
    assert printed.getvalue().count("already done, skipped") == len(STAGE_NAMES) - 1


def test_the_default_quickstart_has_a_pool_worth_selecting_from_and_200_test_videos():
    job = load_job()
    config = job.config_from_args(job.parse_args([]))
    toy = config.ingest.toy
    assert toy.num_classes * toy.test_per_class >= 200
    assert config.generate.per_class >= 5 * max(config.select.vpc)
    assert config.select.seeds >= 5
    assert list(config.select.methods) == ["random", "tac_dt"]
    assert config.embed.run_classifier == "c3d"  # the fidelity table's classifier
    # TAC-DT filters and ranks by that classifier's own-class scores: valid selector settings
    tac_dt = TACDTSelector(n_per_class=5, **config.select.params["tac_dt"])
    tac_dt._check_tac_params()
    assert tac_dt.min_score is not None and tac_dt.representative == "score"
    assert (config.latents.vae_cpus, config.generate.cpus_per_actor,
            config.evaluate.test_cpus_per_actor) == (job.WORKER_CPUS,) * 3


def test_the_quickstarts_embedding_c3d_has_its_full_real_bounds_recipe():
    job = load_job()
    config = job.config_from_args(job.parse_args(["--run", "unused"]))
    spec, settings = classifier_settings(config.evaluate)
    embedding = replace(TOY_TRAINING, epochs=config.embed.classifier_epochs, seed=config.seed)
    videos = config.ingest.toy.num_classes * config.ingest.toy.train_per_class
    assert (training_recipe(TOY_C3D_SPEC, embedding, videos)
            == training_recipe(spec, replace(settings, seed=0), videos))


def test_quickstart_rejects_a_bad_setting_before_work(tmp_path, capsys):
    job = load_job()
    assert job.main(["--run", str(tmp_path / "q"), "--classes", "12"]) == 2
    assert "ingest.toy.num_classes" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_each_evaluation_keeps_its_test_predictions_and_they_give_its_accuracy(
        small_quickstart):
    import numpy as np

    from raydistill.layout import eval_predictions_path

    run = RunDir(small_quickstart.path)
    keys = [path.rsplit("/", 1)[0].removeprefix("eval/") for path in
            run.list("eval", "metrics.json")]
    assert len(keys) == len(SELECTION_METHODS) + 2
    test_videos = SIZE["classes"] * SIZE["test_per_class"]
    for key in keys:
        table = run.read_table(eval_predictions_path(key)).to_pydict()
        metrics = run.read_json(f"eval/{key}/metrics.json")
        assert len(table["video_id"]) == test_videos == len(set(table["video_id"]))
        label, predicted = np.asarray(table["label"]), np.asarray(table["predicted"])
        assert np.mean(label == predicted) == pytest.approx(metrics["top1"]), key
        assert all(top[0] == first for top, first in zip(table["top5"], predicted))
        assert all(len(top) == SIZE["classes"] for top in table["top5"])  # 2 classes: top-2
