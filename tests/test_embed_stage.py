"""The embed stage's scores from a separate classifier (``embed.score_model``) on a local Ray:
which model scored, what ``mae_score`` ranks by, and the report saying so."""

import re

import numpy as np
import pytest
import torch
from transformers import VideoMAEForVideoClassification

from raydistill.config import ConfigError, RunConfig, ToyConfig, from_dict, with_overrides
from raydistill.datasets.toy import class_names as toy_class_names
from raydistill.embedding.videomae import tiny_videomae_config
from raydistill.pipeline.embed import read_embeddings
from raydistill.pipeline.run import run_stages
from raydistill.layout import selection_path
from raydistill.runs import RunDir
from raydistill.selection.mae_score import OUT_OF_FOLD_SCORER

pytestmark = pytest.mark.usefixtures("ray_cluster")

TINY_TOY = {"num_classes": 3, "train_per_class": 3, "test_per_class": 1, "num_frames": 8,
            "size": 32}


def tiny_classifier(folder, class_names: list[str], frames: int, size: int) -> str:
    """An untrained tiny VideoMAE classifier whose head names ``class_names``."""
    torch.manual_seed(0)
    VideoMAEForVideoClassification(tiny_videomae_config(class_names, frames, size)
                                   ).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def decoded(tmp_path_factory):
    """A toy run with ingest and decode done, a Kinetics-like feature model (its labels name no
    toy class, as a Kinetics VideoMAE on UCF101) and models to score with."""
    root = tmp_path_factory.mktemp("embed-stage")
    classes = toy_class_names(ToyConfig(**TINY_TOY))
    models = {
        "features": tiny_classifier(root / "kinetics-tiny", ["abseiling", "zumba", "yoga"], 4,
                                    16),
        # Another geometry than the features' (8 × 32² vs 4 × 16²): clips are resampled for it.
        "scorer": tiny_classifier(root / "toy-scorer", classes, 8, 32),
        "wrong": tiny_classifier(root / "wrong-scorer", ["wave", *classes[1:]], 4, 16),
    }
    config = from_dict(RunConfig, {
        "run_dir": str(root / "run"), "ingest": {"dataset": "toy", "toy": TINY_TOY},
        "decode": {"num_frames": 8, "size": 32, "shard_size": 8},
        "embed": {"model": models["features"], "pools": ["real"], "shard_size": 5,
                  "batch_size": 4, "classifier_steps": 3},
        "select": {"pool": "real", "methods": ["mae_score"], "vpc": [1], "seeds": 1}})
    run_stages(config, ["ingest", "decode"])
    return config, models, classes


def embedded_with(config: RunConfig, **embed) -> tuple[RunConfig, RunDir]:
    config = with_overrides(config, {"embed": embed})
    return config, run_stages(config, ["embed"])


def test_a_score_model_gives_the_scores_and_the_report_names_it(decoded):
    config, models, classes = decoded
    config, run = embedded_with(config, score_model=models["scorer"])
    folder = "kinetics-tiny+score-toy-scorer"
    table = read_embeddings(run, "real", folder)
    scores = table.column("score").to_numpy()
    predicted = np.asarray(table.column("predicted").to_pylist())
    assert table.num_rows == 9 and np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    assert ((predicted >= 0) & (predicted < len(classes))).all()
    record = run.read_json(f"embeddings/real/{folder}/scorer.json")
    assert record == {"scorer": f"embed.score_model {models['scorer']}", "videos": 9,
                      "scored": 9, "mae_score": f"embed.score_model {models['scorer']}"}
    assert run.stage_summary("embed")["real"]["mae_score"] == record["mae_score"]
    run_stages(config, ["select", "report"])
    picked = run.read_table(selection_path("real", "mae_score", 1, 0)).to_pylist()
    by_id = dict(zip(table.column("video_id").to_pylist(), scores.tolist()))
    for row in picked:  # the best-scored video of its class, by the score model's scores
        same_class = [by_id[v] for v, label in zip(table.column("video_id").to_pylist(),
                                                   table.column("label").to_pylist())
                      if label == row["label"]]
        assert row["score"] == pytest.approx(max(same_class))
    report = run.read_bytes("report/report.md").decode()
    assert f"- MAE-Score ranks by: embed.score_model {models['scorer']}" in report


def test_without_a_matching_head_the_fallback_is_recorded(decoded):
    config, _, _ = decoded
    _, run = embedded_with(config)
    record = run.read_json("embeddings/real/kinetics-tiny/scorer.json")
    assert record["scorer"] is None and record["scored"] == 0
    assert record["mae_score"] == OUT_OF_FOLD_SCORER
    assert "logistic regression on the embeddings, out-of-fold" in OUT_OF_FOLD_SCORER


def test_score_model_run_scores_with_the_classifier_trained_on_the_run(decoded):
    config, _, _ = decoded
    _, run = embedded_with(config, score_model="run")
    assert run.exists("embed/videomae-run/training.json")  # trained for the scores
    table = read_embeddings(run, "real", "kinetics-tiny+score-videomae-run")
    assert np.isfinite(table.column("score").to_numpy()).all()
    assert run.read_json("embeddings/real/kinetics-tiny+score-videomae-run/scorer.json")[
        "mae_score"].startswith("embed.score_model: the run's own videomae classifier")


def test_a_score_model_whose_labels_miss_a_run_class_is_refused_before_embedding(decoded):
    config, models, classes = decoded
    expected = (f"embed.score_model: the labels of {models['wrong']} do not name the run's "
                f"classes: 1 of 3 missing ('{classes[0]}')")
    with pytest.raises(ConfigError, match="^" + re.escape(expected)):
        embedded_with(config, score_model=models["wrong"])
    assert not RunDir(config.run_dir).exists("embeddings/real/kinetics-tiny+score-wrong-scorer")
