"""VST-UNet selection: model shapes, losses by hand, gradients to the scorer, training behaviour."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone

from raydistill.selection.vst_losses import (
    classification_loss,
    default_lambdas,
    diversity_loss,
    per_video_cross_entropy,
    plackett_luce_log_prob,
    representativeness_loss,
    sample_subsets,
    selection_rewards,
    total_loss,
)
from raydistill.selection.vst_selector import (
    STATE_FILE,
    VSTUNetSelector,
    epoch_generator,
    make_class_batches,
    score_classes,
    train_epoch,
)
from raydistill.selection.vst_unet import VSTUNet, VSTUNetConfig, count_parameters

TINY = {"width": 8, "levels": 2, "feature_dim": 16, "norm_groups": 4}
SHAPE = (2, 4, 4, 4)  # T, C, h, w


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(num_classes: int = 3, seed: int = 0, mixing: bool = False) -> VSTUNet:
    torch.manual_seed(seed)
    model = VSTUNet(VSTUNetConfig.tiny(num_classes))
    if mixing:  # the mixing blocks start as the identity; give them weights to act with
        for name, param in model.named_parameters():
            if "to_scale_shift" in name:
                torch.nn.init.normal_(param, std=0.3)
    return model


def random_latents(n: int, shape=SHAPE, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def planted_latents(seed: int, n_classes: int = 2, sizes=(8, 5, 3), n_outliers: int = 2):
    """Per class, modes of different sizes plus outliers; modes differ in per-(frame, channel)
    offsets, which survive the model's global pooling, and members scatter around their mode."""
    rng = np.random.default_rng(seed)
    T, C = SHAPE[:2]
    videos, labels = [], []

    def video(offset, spread):
        jitter = offset + spread * rng.normal(size=(T, C))
        return jitter[:, :, None, None] + 0.1 * rng.normal(size=SHAPE)

    for label in range(n_classes):
        for size in sizes:
            centre = rng.normal(size=(T, C))
            videos += [video(centre, 0.3) for _ in range(size)]
            labels += [label] * size
        videos += [video(1.5 * rng.normal(size=(T, C)), 0.0) for _ in range(n_outliers)]
        labels += [label] * n_outliers
    return np.stack(videos).astype(np.float32), np.array(labels)


def coverage_and_similarity(X, y, picks) -> tuple[float, float]:
    """Mean distance of every video to its nearest pick, and mean pairwise cosine similarity of
    the picks, in flattened latent space, averaged over classes."""
    flat = X.reshape(len(X), -1)
    coverage, similarity = [], []
    for label in np.unique(y):
        members = flat[y == label]
        chosen = flat[[i for i in picks if y[i] == label]]
        coverage.append(np.linalg.norm(members[:, None] - chosen[None], axis=-1).min(1).mean())
        unit = chosen / np.linalg.norm(chosen, axis=1, keepdims=True)
        cosine = unit @ unit.T
        k = len(chosen)
        similarity.append((cosine.sum() - np.trace(cosine)) / (k * (k - 1)))
    return float(np.mean(coverage)), float(np.mean(similarity))


# --- model -----------------------------------------------------------------------------------

def test_forward_gives_one_probability_feature_and_logit_row_per_video():
    out = tiny_model(num_classes=3)(random_latents(12, (4, 4, 8, 8)))
    assert out.probs.shape == (12,) and out.score_logits.shape == (12,)
    assert out.features.shape == (12, 16) and out.class_logits.shape == (12, 3)
    assert torch.all((out.probs > 0) & (out.probs < 1))
    assert torch.allclose(out.probs, torch.sigmoid(out.score_logits))


def test_forward_handles_a_single_video_and_odd_sizes():
    out = tiny_model()(random_latents(1, (3, 4, 7, 5)))
    assert out.probs.shape == (1,) and torch.isfinite(out.features).all()


def test_permuting_the_videos_permutes_every_output():
    model = tiny_model(mixing=True).eval()
    latents = random_latents(9)
    order = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain, permuted = model(latents), model(latents[order])
    for a, b in zip(plain, permuted):
        assert torch.allclose(a[order], b, atol=1e-4)


def test_features_of_a_video_depend_on_the_other_videos_of_the_class():
    model = tiny_model(mixing=True).eval()
    latents = random_latents(6)
    changed = latents.clone()
    changed[5] += 3.0
    with torch.no_grad():
        before, after = model(latents).features, model(changed).features
    assert not torch.allclose(before[:5], after[:5], atol=1e-4)


def test_paper_preset_sizes_and_full_scale_shapes():
    config = VSTUNetConfig.paper(num_classes=50)
    assert config.widths == (32, 64, 128)
    assert 1_000_000 < count_parameters(VSTUNet(config)) < 3_000_000
    with torch.device("meta"):  # 100 × 16 × 4 × 32 × 32 without the memory
        out = VSTUNet(config)(torch.empty(100, 16, 4, 32, 32))
    assert out.probs.shape == (100,) and out.features.shape == (100, 256)
    assert out.class_logits.shape == (100, 50)
    small = VSTUNet(config)(random_latents(3, (2, 4, 8, 8)))
    assert small.features.shape == (3, 256)


def test_gradient_checkpointing_gives_the_same_gradients():
    latents = random_latents(5)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = VSTUNet(VSTUNetConfig.tiny(2, checkpointing=checkpointing))
        out = model(latents)
        (out.features.square().sum() + out.score_logits.sum() + out.class_logits.sum()).backward()
        grads.append([p.grad for p in model.parameters()])
    for plain, recomputed in zip(*grads):
        assert torch.allclose(plain, recomputed, atol=1e-5)


def test_model_rejects_wrong_inputs_and_configs():
    with pytest.raises(ValueError, match="latents"):
        tiny_model()(torch.zeros(3, 2, 3, 4, 4))
    with pytest.raises(ValueError, match="divisible"):
        VSTUNetConfig(base_width=10, norm_groups=4)


# --- losses ----------------------------------------------------------------------------------

def test_diversity_loss_is_the_mean_pairwise_cosine_similarity():
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [5.0, 0.0]])
    # pairs among {0, 1, 2}: cos(0,1) = 0, cos(0,2) = cos(1,2) = 1/√2
    assert diversity_loss(features, torch.tensor([0, 1, 2])).item() == pytest.approx(
        math.sqrt(2) / 3, abs=1e-6)
    batched = diversity_loss(features, torch.tensor([[0, 3], [0, 1]]))
    assert batched.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert diversity_loss(features, torch.tensor([2])).item() == 0.0


def test_representativeness_loss_is_one_minus_exp_of_mean_nearest_distance():
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [4.0, 0.0], [-2.0, 0.0]])
    # normalised: (1,0) (0,1) (1,0) (-1,0); nearest to pick 0: 0, √2, 0, 2
    one = representativeness_loss(features, torch.tensor([0]), "l2").item()
    assert one == pytest.approx(1 - math.exp(-(math.sqrt(2) + 2) / 4), abs=1e-6)
    two = representativeness_loss(features, torch.tensor([[0, 3]]), "l2")
    assert two.tolist() == pytest.approx([1 - math.exp(-math.sqrt(2) / 4)], abs=1e-6)
    # raw 16×4×32×32 latents would make exp(−distance) underflow; normalised they do not
    big = 100 * torch.randn(20, 65536, generator=torch.Generator().manual_seed(0))
    assert 0 < representativeness_loss(big, torch.tensor([0, 1]), "l2").item() < 1


def test_representativeness_loss_with_mse_uses_the_mean_square_error_of_raw_features():
    features = torch.tensor([[1.0, 0.0], [0.0, 3.0], [4.0, 0.0], [-2.0, 0.0]])
    # MSE to pick 0: 0, (1 + 9)/2 = 5, 9/2 = 4.5, 9/2 = 4.5; nearest of {0, 3}: 0, 5, 4.5, 0;
    # nearest of {0, 1}: 0, 0, 4.5, 4.5
    one = representativeness_loss(features, torch.tensor([0]), "mse").item()
    assert one == pytest.approx(1 - math.exp(-(0 + 5 + 4.5 + 4.5) / 4), abs=1e-6)
    two = representativeness_loss(features, torch.tensor([[0, 3], [0, 1]]))  # mse by default
    assert two.tolist() == pytest.approx([1 - math.exp(-(5 + 4.5) / 4),
                                          1 - math.exp(-9 / 4)], abs=1e-6)
    with pytest.raises(ValueError, match="distance"):
        representativeness_loss(features, torch.tensor([0]), "cosine")


def test_classification_loss_gives_every_video_the_class_label():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    expected = (-math.log(3 / 4) - math.log(1 / 2)) / 2
    assert classification_loss(logits, 1).item() == pytest.approx(expected, abs=1e-6)


def test_default_lambdas_follow_the_paper():
    assert default_lambdas(1) == (0.0, 0.1)
    assert default_lambdas(5) == default_lambdas(10) == (0.1, 1.0)
    with pytest.raises(ValueError):
        default_lambdas(0)


def test_plackett_luce_probabilities_of_all_ordered_draws_sum_to_one():
    logits = torch.tensor([0.3, -1.0, 2.0, 0.5])
    orders = torch.tensor(list(itertools.permutations(range(4), 2)))
    assert plackett_luce_log_prob(logits, orders).exp().sum().item() == pytest.approx(1.0)


def test_sampled_subsets_are_distinct_videos_and_seeded():
    logits = torch.zeros(10)
    draw = sample_subsets(logits, 4, 32, torch.Generator().manual_seed(3))
    again = sample_subsets(logits, 4, 32, torch.Generator().manual_seed(3))
    assert draw.shape == (32, 4) and torch.equal(draw, again)
    assert all(len(set(row.tolist())) == 4 for row in draw)


def test_total_loss_value_is_eq3_at_the_top_selection():
    out = tiny_model()(random_latents(10))
    loss, parts = total_loss(out, 1, 3, 0.1, 1.0, generator=torch.Generator().manual_seed(0))
    top = torch.argsort(out.probs.detach(), descending=True)[:3]
    features = out.features.detach()
    assert parts["div"].item() == pytest.approx(diversity_loss(features, top).item())
    assert parts["rep"].item() == pytest.approx(representativeness_loss(features, top).item())
    expected = parts["ce"] + 0.1 * parts["div"] + 1.0 * parts["rep"]
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("losses", [("div",), ("rep",)])
def test_diversity_and_representativeness_alone_reach_the_scorer(losses):
    model = tiny_model()
    latents = random_latents(10)
    loss, _ = total_loss(model(latents), 0, 3, 1.0, 1.0, losses=losses,
                         generator=torch.Generator().manual_seed(0),
                         embeddings=latents.flatten(1))
    loss.backward()
    grad = model.score_head.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_cross_entropy_alone_reaches_the_scorer():
    model = tiny_model()
    loss, parts = total_loss(model(random_latents(10)), 0, 3, 1.0, 1.0, losses=("ce",),
                             generator=torch.Generator().manual_seed(0))
    loss.backward()
    grad = model.score_head.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert model.class_head.weight.grad.abs().sum() > 0
    assert parts["div"] == 0 and parts["rep"] == 0 and parts["policy"] != 0


def test_subset_rewards_are_detached_and_include_minus_the_mean_cross_entropy_of_the_subset():
    features = torch.randn(5, 3, requires_grad=True)
    video_ce = torch.tensor([0.1, 2.0, 0.3, 4.0, 0.5], requires_grad=True)
    subsets = torch.tensor([[0, 2], [1, 3], [4, 0]])
    rewards = selection_rewards(features, subsets, 0.0, 0.0, video_ce=video_ce)
    assert not rewards.requires_grad
    assert rewards.tolist() == pytest.approx([-0.2, -3.0, -0.3])
    full = selection_rewards(features, subsets, 0.5, 2.0, video_ce=video_ce, rep_distance="l2")
    expected = (-video_ce.detach()[subsets].mean(-1)
                - 0.5 * diversity_loss(features.detach(), subsets)
                - 2.0 * representativeness_loss(features.detach(), subsets, "l2"))
    assert not full.requires_grad and torch.allclose(full, expected)


def test_per_video_cross_entropy_averages_to_the_classification_loss():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [2.0, -1.0]])
    per_video = per_video_cross_entropy(logits, 1)
    assert per_video.shape == (3,)
    assert per_video[0].item() == pytest.approx(-math.log(3 / 4), abs=1e-6)
    assert per_video.mean().item() == pytest.approx(classification_loss(logits, 1).item())


@pytest.mark.parametrize("losses,nonzero", [
    (("ce",), {"ce"}), (("ce", "div"), {"ce", "div"}), (("ce", "rep"), {"ce", "rep"}),
    (("ce", "div", "rep"), {"ce", "div", "rep"})])
def test_ablation_flag_decides_which_losses_are_nonzero(losses, nonzero):
    X, y = planted_latents(0)
    selector = VSTUNetSelector(n_per_class=3, epochs=1, losses=losses, **TINY).fit(X, y)
    parts = selector.loss_history_[-1]
    assert {name for name in ("ce", "div", "rep") if parts[name] != 0} == nonzero


# --- selector --------------------------------------------------------------------------------

def test_training_on_planted_modes_improves_coverage_and_diversity_with_the_whitened_scorer():
    trained, untrained, random = [], [], []
    for seed in range(3):
        X, y = planted_latents(seed)
        # What this measures needs the earlier whitened score input (see vst_unet's docstring:
        # a smooth per-video score ranks near-duplicates together); its rewards on latents.
        params = {"n_per_class": 3, "random_state": seed, "score_input": "whitened",
                  "reward_space": "latents", "rep_distance": "l2", **TINY}
        trained.append(coverage_and_similarity(
            X, y, VSTUNetSelector(epochs=80, **params).fit(X, y).selected_indices_))
        untrained.append(coverage_and_similarity(
            X, y, VSTUNetSelector(epochs=0, **params).fit(X, y).selected_indices_))
        rng = np.random.default_rng(seed)
        random += [coverage_and_similarity(X, y, np.concatenate(
            [rng.choice(np.flatnonzero(y == c), 3, replace=False) for c in (0, 1)]))
            for _ in range(20)]
    (cov_t, sim_t), (cov_u, sim_u), (cov_r, sim_r) = (
        np.mean(trained, 0), np.mean(untrained, 0), np.mean(random, 0))
    assert cov_t < 0.9 * min(cov_u, cov_r)
    assert sim_t < min(sim_u, sim_r) - 0.1


def test_selection_has_vpc_per_class_grouped_by_ascending_label():
    X, y = planted_latents(1)
    y = np.where(y == 0, 7, 3)  # non-contiguous labels, unsorted in X
    selector = VSTUNetSelector(n_per_class=2, epochs=1, latent_shape=SHAPE, **TINY).fit(
        X.reshape(len(X), -1), y)
    assert selector.selected_indices_.dtype == np.int64
    assert selector.selected_labels_.tolist() == [3, 3, 7, 7]
    assert np.array_equal(y[selector.selected_indices_], selector.selected_labels_)
    for label in (3, 7):
        scores = selector.selected_scores_[selector.selected_labels_ == label]
        assert scores[0] >= scores[1]
    assert selector.classes_.tolist() == [3, 7]
    assert selector.model_.config.num_classes == 2 and len(selector.loss_history_) == 1


def test_vpc_larger_than_a_class_takes_the_whole_class():
    X = random_latents(7).numpy()
    y = np.array([0, 0, 1, 1, 1, 1, 1])
    selector = VSTUNetSelector(n_per_class=4, epochs=1, **TINY).fit(X, y)
    assert sorted(selector.selected_indices_[:2].tolist()) == [0, 1]
    assert len(selector.selected_indices_) == 6 and len(set(selector.selected_indices_)) == 6


def test_fit_is_deterministic_for_a_seed():
    X, y = planted_latents(2)
    first, second = (VSTUNetSelector(n_per_class=3, epochs=3, **TINY).fit(X, y)
                     for _ in range(2))
    other = VSTUNetSelector(n_per_class=3, epochs=3, random_state=1, **TINY).fit(X, y)
    assert np.array_equal(first.selected_indices_, second.selected_indices_)
    assert first.loss_history_ == second.loss_history_
    for a, b in zip(first.model_.state_dict().values(), second.model_.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(first.model_.score_head.weight, other.model_.score_head.weight)


def test_resumed_training_reaches_the_weights_of_uninterrupted_training(tmp_path):
    X, y = planted_latents(3)
    params = {"n_per_class": 3, "random_state": 5, **TINY}
    straight = VSTUNetSelector(epochs=4, **params).fit(X, y)
    VSTUNetSelector(epochs=2, checkpoint_dir=str(tmp_path), **params).fit(X, y)
    assert (tmp_path / STATE_FILE).exists()
    resumed = VSTUNetSelector(epochs=4, checkpoint_dir=str(tmp_path), **params).fit(X, y)
    for a, b in zip(straight.model_.state_dict().values(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.loss_history_ == straight.loss_history_
    assert np.array_equal(resumed.selected_indices_, straight.selected_indices_)
    with pytest.raises(ValueError, match="different"):
        VSTUNetSelector(epochs=4, checkpoint_dir=str(tmp_path), **{**params, "lr": 0.1}).fit(X, y)


def test_selector_follows_the_estimator_contract():
    selector = VSTUNetSelector(n_per_class=5, lambda_rep=0.5, **TINY)
    assert selector.get_params()["lambda_rep"] == 0.5 and selector.get_params()["lambda_div"] is None
    copy = clone(selector).set_params(n_per_class=1)
    assert copy.n_per_class == 1 and selector.n_per_class == 5
    assert not hasattr(selector, "selected_indices_")


@pytest.mark.parametrize("X,y,params,error", [
    (np.zeros((4, 2, 4, 4)), [0, 0, 1, 1], {}, ValueError),                  # 4-D X
    (np.zeros((4, 128)), [0, 0, 1, 1], {}, ValueError),                      # 2-D, no latent_shape
    (np.zeros((4, *SHAPE)), [0, 0, 1], {}, ValueError),                      # y too short
    (np.zeros((4, *SHAPE)), [0.5, 0, 1, 1], {}, ValueError),                 # float labels
    (np.full((4, *SHAPE), np.nan), [0, 0, 1, 1], {}, ValueError),            # NaN latents
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"n_per_class": 0}, ValueError),
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"lambda_div": -1.0}, ValueError),
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"losses": ("ce", "kl")}, ValueError),
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"reward_space": "pixels"}, ValueError),
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"rep_distance": "cosine"}, ValueError),
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"score_input": "raw"}, ValueError),
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"random_state": -1}, ValueError),
    (np.zeros((4, *SHAPE)), [0, 0, 1, 1], {"n_per_class": True}, ValueError),
])
def test_fit_rejects_bad_inputs(X, y, params, error):
    with pytest.raises(error):
        VSTUNetSelector(epochs=1, **{**TINY, **params}).fit(X, y)


# --- issue 16: unwhitened score input, rewards on f_c, CE reaching p_c --------------------------

def test_score_head_reads_the_layernormed_features_of_each_video_alone():
    model = tiny_model().eval()  # fresh mixing blocks are the identity: features are per video
    latents = random_latents(6)
    changed = latents.clone()
    changed[5] = 3.0 * changed[5] + 1.0
    with torch.no_grad():
        before, after = model(latents), model(changed)
        norm = torch.nn.functional.layer_norm(before.features, (before.features.shape[1],))
        expected = model.score_head(norm).squeeze(-1)
    assert torch.allclose(before.features[:5], after.features[:5], atol=1e-6)
    # whitened across the class, the other videos' features would move these scores
    assert torch.allclose(before.score_logits[:5], after.score_logits[:5], atol=1e-6)
    assert torch.allclose(before.score_logits, expected, atol=1e-6)
    # identical videos score the same; a small change of a video moves its score a little
    twins = latents.clone()
    twins[1] = twins[0]
    nudged = twins.clone()
    nudged[0] += 1e-3 * random_latents(1, seed=1)[0]
    with torch.no_grad():
        twin_scores, nudged_scores = model(twins).score_logits, model(nudged).score_logits
    assert twin_scores[0].item() == pytest.approx(twin_scores[1].item(), abs=1e-6)
    assert 0 < abs(nudged_scores[0] - twin_scores[0]).item() < 1e-2


def test_whitened_score_input_is_an_opt_in_that_depends_on_the_other_videos():
    torch.manual_seed(0)
    model = VSTUNet(VSTUNetConfig.tiny(3, score_input="whitened")).eval()
    latents = random_latents(6)
    changed = latents.clone()
    changed[5] = 3.0 * changed[5] + 1.0
    with torch.no_grad():
        before, after = model(latents).score_logits, model(changed).score_logits
    assert not torch.allclose(before[:5], after[:5], atol=1e-4)
    with pytest.raises(ValueError, match="score_input"):
        VSTUNetConfig.tiny(2, score_input="raw")


def test_selector_defaults_to_the_form_that_selected_better_and_offers_the_papers():
    selector = VSTUNetSelector(**TINY)
    params = selector.get_params()
    assert params["reward_space"] == "latents" and params["rep_distance"] == "l2"
    assert params["score_input"] == "whitened"
    copy = clone(selector).set_params(reward_space="features", rep_distance="mse",
                                      score_input="layernorm")
    assert (copy.reward_space, copy.rep_distance, copy.score_input) == ("features", "mse",
                                                                         "layernorm")
    assert selector.reward_space == "latents"
    assert copy.model_config(4, 2).score_input == "layernorm"
    assert selector.model_config(4, 2).score_input == "whitened"


def test_rewards_are_computed_on_the_model_features_by_default():
    X, y = planted_latents(0)
    batches, _ = make_class_batches(X, y)
    model = tiny_model(num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # parts are read, weights kept
    parts = train_epoch(model, optimizer, batches[:1], n_select=3, lambda_div=0.1,
                        lambda_rep=1.0, generator=epoch_generator(0, 0))
    with torch.no_grad():
        out = model(batches[0].latents)
    top = torch.argsort(out.probs, descending=True, stable=True)[:3]
    assert parts["div"] == pytest.approx(diversity_loss(out.features, top).item(), abs=1e-5)
    assert parts["rep"] == pytest.approx(
        representativeness_loss(out.features, top, "mse").item(), abs=1e-5)
    flat = batches[0].latents.flatten(1)
    assert parts["div"] != pytest.approx(diversity_loss(flat, top).item(), abs=1e-3)
    latent_parts = train_epoch(model, optimizer, batches[:1], n_select=3, lambda_div=0.1,
                               lambda_rep=1.0, generator=epoch_generator(0, 0),
                               reward_space="latents", rep_distance="l2")
    assert latent_parts["div"] == pytest.approx(diversity_loss(flat, top).item(), abs=1e-5)
    assert latent_parts["rep"] == pytest.approx(
        representativeness_loss(flat, top, "l2").item(), abs=1e-5)


def noisy_class_latents(seed: int, n_clean: int = 10, n_noisy: int = 3):
    """Two classes around two centres; class 0 also holds ``n_noisy`` videos drawn around class
    1's centre (off-class generations), placed after its clean ones."""
    rng = np.random.default_rng(seed)
    T, C = SHAPE[:2]
    centres = [rng.normal(size=(T, C)) for _ in range(2)]

    def video(c):
        return (centres[c] + 0.3 * rng.normal(size=(T, C)))[:, :, None, None] + \
            0.1 * rng.normal(size=SHAPE)

    n = n_clean + n_noisy
    videos = [video(0) for _ in range(n_clean)] + [video(1) for _ in range(n_noisy + n)]
    return np.stack(videos).astype(np.float32), np.array([0] * n + [1] * n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_entropy_alone_ranks_clean_videos_above_off_class_ones(seed):
    # Table 6's "CE" row. Short training: once the class head fits every video of a batch (the
    # across-video mixing can carry the batch's class), the CE differences, and the signal, fade.
    X, y = noisy_class_latents(seed)
    selector = VSTUNetSelector(n_per_class=3, epochs=10, losses=("ce",), random_state=seed,
                               **TINY).fit(X, y)
    p = score_classes(selector.model_, make_class_batches(X, y)[0])[0]
    clean, noisy = p[:10], p[10:]
    assert (clean[:, None] > noisy[None]).mean() >= 0.9
    assert set(selector.selected_indices_[:3].tolist()) <= set(range(10))
    untrained = VSTUNetSelector(n_per_class=3, epochs=0, losses=("ce",), random_state=seed,
                                **TINY).fit(X, y)
    assert not np.array_equal(untrained.selected_indices_, selector.selected_indices_)
