"""VideoMAE embedder and the tiny embedding classifier (transformers, tiny configs, CPU)."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import VideoMAEConfig, VideoMAEForVideoClassification, VideoMAEModel

from raydistill.classify.training import TOY_TRAINING
from raydistill.config import EmbedConfig
from raydistill.embedding.c3d import C3DEmbedder, save_c3d, train_c3d_classifier
from raydistill.embedding.scorer import (ClassScorer, embeddings_name, resample_clips,
                                         score_model_problem, scorer_description)
from raydistill.embedding.videomae import (VideoMAEEmbedder, class_index_map, embedding_name,
                                           pixel_values, tiny_videomae_config,
                                           train_videomae_classifier)

CLASSES = ["move_left", "move_right", "pulse"]


def coloured_clips(per_class=4, frames=4, size=16, seed=0):
    """Clips whose class is their colour channel: trivially separable."""
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    for label in range(len(CLASSES)):
        for _ in range(per_class):
            clip = rng.integers(0, 40, (frames, size, size, 3)).astype(np.uint8)
            clip[..., label] += 200
            clips.append(clip)
            labels.append(label)
    return np.stack(clips), np.asarray(labels)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    clips, labels = coloured_clips()
    model, losses = train_videomae_classifier(clips, labels, CLASSES, steps=30, batch_size=6,
                                              learning_rate=3e-3, seed=0)
    folder = tmp_path_factory.mktemp("videomae")
    model.save_pretrained(folder)
    return str(folder), losses


def test_embedding_name_is_the_last_part_of_the_model_source():
    assert embedding_name(None) == "videomae-run"
    assert embedding_name(None, "c3d") == "c3d-run"
    assert embedding_name("MCG-NJU/videomae-base-finetuned-kinetics") == \
        "videomae-base-finetuned-kinetics"
    assert embedding_name("/models/my model/") == "my-model"


def test_class_index_map_matches_names_ignoring_case_and_punctuation():
    id2label = {0: "Pulse", 1: "move right", 2: "Move-Left", 3: "other"}
    assert class_index_map(id2label, CLASSES).tolist() == [2, 1, 0]
    assert class_index_map(id2label, CLASSES + ["missing"]) is None


def test_pixel_values_are_normalised_and_channel_first():
    clips = np.full((2, 3, 4, 5, 3), 255, np.uint8)
    pixels = pixel_values(clips, np.array([0.5, 0.5, 0.5]), np.array([0.5, 0.25, 0.5]))
    assert pixels.shape == (2, 3, 3, 4, 5)
    assert torch.allclose(pixels[:, :, 1], torch.full((2, 3, 4, 5), 2.0))


def test_tiny_classifier_learns_a_separable_set(classifier_dir):
    _, losses = classifier_dir
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_classifier_embeddings_are_fc_norm_features_with_own_class_probability(classifier_dir):
    folder, _ = classifier_dir
    clips, labels = coloured_clips(per_class=2, seed=1)
    embedder = VideoMAEEmbedder(folder, CLASSES, batch_size=4)
    out = embedder(clips, labels)
    assert embedder.features == "fc_norm" and (embedder.num_frames, embedder.size) == (4, 16)
    assert out["embedding"].shape == (6, 64) and out["embedding"].dtype == np.float32
    model = VideoMAEForVideoClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        pixels = pixel_values(clips, embedder.mean, embedder.std)
        hidden = model.videomae(pixels).last_hidden_state.mean(1)
        expected = model.fc_norm(hidden)
        probabilities = model(pixel_values=pixels).logits.softmax(-1).numpy()
    np.testing.assert_allclose(out["embedding"], expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["score"], probabilities[np.arange(6), labels], atol=1e-5)
    assert out["score"].mean() > 0.6  # the classifier knows these colours


def test_mean_features_and_unknown_classes_give_nan_scores(classifier_dir):
    folder, _ = classifier_dir
    clips, labels = coloured_clips(per_class=1)
    out = VideoMAEEmbedder(folder, ["a", "b", "c"], features="mean")(clips, labels)
    assert out["embedding"].shape == (3, 64) and np.isnan(out["score"]).all()


def test_a_videomae_model_without_head_embeds_by_mean_pooling(tmp_path):
    config = tiny_videomae_config(CLASSES, 4, 16)
    VideoMAEModel(VideoMAEConfig(**{**config.to_dict(), "architectures": None})).save_pretrained(
        tmp_path)
    embedder = VideoMAEEmbedder(str(tmp_path), CLASSES)
    clips, labels = coloured_clips(per_class=1)
    out = embedder(clips, labels)
    assert embedder.features == "mean" and out["embedding"].shape == (3, 64)
    assert np.isnan(out["score"]).all()
    with pytest.raises(ValueError, match="fc_norm"):
        VideoMAEEmbedder(str(tmp_path), CLASSES, features="fc_norm")


def test_embedding_nothing_gives_empty_arrays(classifier_dir):
    out = VideoMAEEmbedder(classifier_dir[0], CLASSES)(np.zeros((0, 4, 16, 16, 3), np.uint8),
                                                       np.zeros(0, np.int64))
    assert out["embedding"].shape == (0, 64) and out["score"].shape == (0,)


def test_selection_and_evaluation_workers_import_neither_transformers_nor_diffusers():
    # Every Ray worker imports its UDF's module afresh; these two libraries cost a 2-core
    # machine seconds per worker start (benchmarks/BENCHMARKS.md, "Worker start-up").
    code = ("import sys, raydistill.pipeline.select, raydistill.pipeline.evaluate; "
            "print(sorted({'transformers', 'diffusers'} & set(sys.modules)))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert found == "[]"


def test_a_c3d_trained_on_the_run_embeds_scores_and_predicts_its_classes(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(2), 6)
    clips = rng.integers(0, 40, size=(12, 8, 32, 32, 3)).astype(np.uint8)
    clips[labels == 1] += 180  # class 1 is bright: learnable in a few epochs
    model, history = train_c3d_classifier(clips, labels, 2,
                                          dataclasses.replace(TOY_TRAINING, epochs=8), seed=0)
    assert len(history) == 8
    save_c3d(model, str(tmp_path / "c3d"), ["dark", "bright"])
    embedder = C3DEmbedder(str(tmp_path / "c3d"), ["dark", "bright"], batch_size=5)
    out = embedder(clips, labels)
    assert out["embedding"].shape == (12, embedder.dim) and out["embedding"].dtype == np.float32
    assert (out["predicted"] == labels).all() and out["predicted"].dtype == np.int32
    assert (out["score"] > 0.5).all()
    with pytest.raises(ValueError, match="trained on classes"):
        C3DEmbedder(str(tmp_path / "c3d"), ["bright", "dark"])


# --- a separate scorer (embed.score_model) -------------------------------------------------------

def kinetics_like_classifier(folder) -> str:
    """A tiny VideoMAE classifier whose labels are Kinetics classes, not the run's: its head can
    score nothing here (as a Kinetics VideoMAE on UCF101)."""
    torch.manual_seed(1)
    VideoMAEForVideoClassification(tiny_videomae_config(["abseiling", "zumba", "yoga"], 4, 16)
                                   ).save_pretrained(folder)
    return str(folder)


def test_a_score_model_naming_the_run_classes_scores_where_the_embedding_head_cannot(
        classifier_dir, tmp_path):
    features = kinetics_like_classifier(tmp_path / "kinetics")
    clips, labels = coloured_clips(per_class=2, seed=2)
    embedded = VideoMAEEmbedder(features, CLASSES)(clips, labels)
    assert np.isnan(embedded["score"]).all() and (embedded["predicted"] == -1).all()
    scorer = ClassScorer(classifier_dir[0], CLASSES, batch_size=4)
    scored = scorer(clips, labels)
    model = VideoMAEForVideoClassification.from_pretrained(classifier_dir[0]).eval()
    with torch.no_grad():
        pixels = pixel_values(clips, scorer.model.mean, scorer.model.std)
        probabilities = model(pixel_values=pixels).logits.softmax(-1).numpy()
    np.testing.assert_allclose(scored["score"], probabilities[np.arange(6), labels], atol=1e-5)
    np.testing.assert_array_equal(scored["predicted"], probabilities.argmax(axis=1))
    # Clips decoded at the embedding model's geometry (here 8 frames of 32²) are resampled to
    # the scorer's own (4 frames of 16²) first.
    bigger = clips.repeat(2, axis=1).repeat(2, axis=2).repeat(2, axis=3)
    rescored = scorer(bigger, labels)
    assert rescored["score"].shape == (6,) and np.isfinite(rescored["score"]).all()
    assert rescored["score"].mean() > 0.6  # still its colours


def test_resample_clips_picks_frames_uniformly_and_resizes_the_centre_square():
    clips = np.zeros((2, 8, 20, 30, 3), np.uint8)
    clips[:] = (np.arange(8) * 30).astype(np.uint8)[None, :, None, None, None]
    out = resample_clips(clips, 4, 10)
    assert out.shape == (2, 4, 10, 10, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :, 5, 5, 0], [30, 90, 150, 210])  # frames 1, 3, 5, 7
    assert resample_clips(clips, 8, 20).shape == (2, 8, 20, 20, 3)  # the centre square only


def test_a_score_model_that_cannot_score_the_run_classes_is_refused_naming_the_problem(
        classifier_dir, tmp_path):
    assert score_model_problem(classifier_dir[0], CLASSES) is None
    problem = score_model_problem(classifier_dir[0], ["move_left", "wave", "jump"])
    assert f"the labels of {classifier_dir[0]} do not name the run's classes: 2 of 3 " \
           "missing ('wave', 'jump')" in problem
    with pytest.raises(ValueError, match="do not name the run's classes"):
        ClassScorer(kinetics_like_classifier(tmp_path / "kinetics"), CLASSES)
    config = tiny_videomae_config(CLASSES, 4, 16)
    VideoMAEModel(VideoMAEConfig(**{**config.to_dict(), "architectures": None})).save_pretrained(
        tmp_path / "no-head")
    assert "is not a VideoMAEForVideoClassification" in score_model_problem(
        str(tmp_path / "no-head"), CLASSES)
    assert score_model_problem(str(tmp_path / "missing"), CLASSES).startswith(
        f"cannot read {tmp_path / 'missing'} as a VideoMAE")
    assert "convert it with its class names (python -m raydistill.embedding.videomae_v2" in \
        score_model_problem(str(tmp_path / "vit_g_k710_ft.pth"), CLASSES)


def test_the_embeddings_folder_and_the_recorded_scorer_follow_the_score_model():
    kinetics = "MCG-NJU/videomae-base-finetuned-kinetics"
    plain = EmbedConfig(model=kinetics)
    separate = EmbedConfig(model=kinetics, score_model="/models/videomae-ucf101/")
    own = EmbedConfig(model=kinetics, score_model="run", run_classifier="c3d")
    assert embeddings_name(plain) == "videomae-base-finetuned-kinetics"
    assert embeddings_name(separate) == "videomae-base-finetuned-kinetics+score-videomae-ucf101"
    assert embeddings_name(own) == "videomae-base-finetuned-kinetics+score-c3d-run"
    assert embeddings_name(EmbedConfig()) == "videomae-run"
    assert scorer_description(plain) == f"the classifier head of embed.model {kinetics}"
    assert scorer_description(separate) == "embed.score_model /models/videomae-ucf101/"
    assert scorer_description(own) == ("embed.score_model: the run's own c3d classifier "
                                       "(embed/c3d-run), trained on the real training clips")
