"""The training-free selectors: counts, determinism, edge cases, fan-out equality, quality."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from sklearn.base import clone
from sklearn.utils.estimator_checks import (
    check_do_not_raise_errors_in_init_or_set_params,
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)
from threadpoolctl import threadpool_limits

from raydistill.config import PROPOSED_METHODS, SELECTION_METHODS
from raydistill.report.plots import BOUND_COLORS, method_color
from raydistill.selection import (
    PER_CLASS_METHODS,
    SELECTORS,
    AttentionTopKSelector,
    HerdingSelector,
    KCenterSelector,
    MAEScoreSelector,
    RandomSelector,
    TACDTSelector,
    make_selector,
    merge_class_selections,
    select_class,
    selection_quality,
)
from raydistill.selection.dm_mmd import gaussian_kernel_median, mmd2
from raydistill.selection.tac_dt import isolated_rows

LABELS = (3, 7, 11)
BLOB_SIZES = (30, 15, 8, 4)
METHODS = sorted(PER_CLASS_METHODS)  # vst_unet: tests/test_vst_unet.py
SCORED_METHODS = ("tac_dt", "kcenter", "herding", "dm_mmd", "mae_score", "attention_topk")
"""Today's per-class selectors that score every pick (``random`` scores none: NaN)."""


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    # Multi-threaded BLAS on tiny matrices spins for ~10x the work on a shared 2-core machine.
    with threadpool_limits(limits=1):
        yield


def blob_pool(seed: int, labels=LABELS, sizes=BLOB_SIZES, n_outliers: int = 2, dim: int = 64):
    """Per class: Gaussian blobs of unequal sizes (unit spread, centres ~N(0, 3²)) plus a few far
    outliers, rows shuffled across classes. Returns X (n, dim), y (n,), blob (n,) (-1: outlier)."""
    rng = np.random.default_rng(seed)
    X, y, blob = [], [], []
    for label in labels:
        centres = rng.normal(0.0, 3.0, size=(len(sizes), dim))
        for index, (centre, size) in enumerate(zip(centres, sizes)):
            X.append(centre + rng.normal(size=(size, dim)))
            blob += [index] * size
        X.append(8.0 * rng.normal(size=(n_outliers, dim)))
        blob += [-1] * n_outliers
        y += [label] * (sum(sizes) + n_outliers)
    order = rng.permutation(len(y))
    return np.concatenate(X)[order], np.asarray(y)[order], np.asarray(blob)[order]


@pytest.fixture(scope="module")
def pool():
    X, y, _ = blob_pool(0)
    return X, y


def fitted(method: str, X, y, n_per_class: int, seed: int = 0, scores=None, **params):
    return make_selector(method, n_per_class=n_per_class, random_state=seed, **params).fit(
        X, y, scores)


def per_class(selector, y) -> dict[int, np.ndarray]:
    return {int(label): selector.selected_indices_[selector.selected_labels_ == label]
            for label in np.unique(y)}


def assert_same_selection(a, b):
    np.testing.assert_array_equal(a.selected_indices_, b.selected_indices_)
    np.testing.assert_array_equal(a.selected_scores_, b.selected_scores_)  # NaN == NaN here
    np.testing.assert_array_equal(a.selected_labels_, b.selected_labels_)


# --- counts and layout ---------------------------------------------------------------------------

@pytest.mark.parametrize("n_per_class", [1, 5])
@pytest.mark.parametrize("method", METHODS)
def test_every_selector_keeps_exactly_vpc_distinct_videos_per_class(method, n_per_class, pool):
    X, y = pool
    selector = fitted(method, X, y, n_per_class)
    indices, labels = selector.selected_indices_, selector.selected_labels_
    assert indices.dtype == np.int64 and len(np.unique(indices)) == len(indices)
    assert len(indices) == len(selector.selected_scores_) == len(labels) == 3 * n_per_class
    np.testing.assert_array_equal(y[indices], labels)
    np.testing.assert_array_equal(labels, np.repeat(LABELS, n_per_class))  # grouped, ascending
    np.testing.assert_array_equal(selector.classes_, LABELS)
    scores = selector.selected_scores_
    assert np.all(np.isfinite(scores)) or np.all(np.isnan(scores))  # a score per pick, or none
    if method in SCORED_METHODS:
        assert np.all(np.isfinite(scores))
    elif method == "random":
        assert np.all(np.isnan(scores))


@pytest.mark.parametrize("method", METHODS)
def test_selection_is_deterministic_for_a_seed(method, pool):
    X, y = pool
    assert_same_selection(fitted(method, X, y, 5, seed=3), fitted(method, X, y, 5, seed=3))


def test_random_selection_differs_between_seeds(pool):
    X, y = pool
    draws = {tuple(fitted("random", X, y, 5, seed=seed).selected_indices_) for seed in range(4)}
    assert len(draws) == 4


def test_random_selection_is_uniform_within_a_class():
    X = np.random.default_rng(0).normal(size=(10, 4))
    y = np.zeros(10, dtype=int)
    hits = np.zeros(10)
    for seed in range(400):
        hits[RandomSelector(n_per_class=3, random_state=seed).fit(X, y).selected_indices_] += 1
    assert hits.min() > 0.75 * 120 and hits.max() < 1.25 * 120


# --- edge cases ----------------------------------------------------------------------------------

def edge_pool():
    """Class 0: 12 videos; class 5: 3 videos; class 9: 1 video; class 20: 10 identical videos;
    class 30: 8 rows that are only 2 distinct embeddings."""
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=(12, 16)), rng.normal(size=(3, 16)), rng.normal(size=(1, 16)),
             np.tile(rng.normal(size=(1, 16)), (10, 1)), np.repeat(rng.normal(size=(2, 16)), 4, 0)]
    y = np.repeat([0, 5, 9, 20, 30], [len(p) for p in parts])
    return np.concatenate(parts), y


@pytest.mark.parametrize("method", METHODS)
def test_small_single_and_duplicate_classes_get_min_of_vpc_and_class_size(method):
    X, y = edge_pool()
    selector = fitted(method, X, y, 5)
    counts = {int(label): len(rows) for label, rows in per_class(selector, y).items()}
    assert counts == {0: 5, 5: 3, 9: 1, 20: 5, 30: 5}
    assert len(np.unique(selector.selected_indices_)) == len(selector.selected_indices_)
    assert selection_quality(X, y, selector.selected_indices_, 5)["balanced"]


@pytest.mark.parametrize("method", METHODS)
def test_vpc_one_picks_one_video_per_class(method, pool):
    X, y = pool
    selector = fitted(method, X, y, 1)
    np.testing.assert_array_equal(y[selector.selected_indices_], LABELS)


@pytest.mark.parametrize("method", METHODS)
def test_non_contiguous_and_negative_labels_come_out_in_ascending_order(method, pool):
    X, y = pool
    relabelled = np.select([y == 3, y == 7], [100, -4], default=12)
    selector = fitted(method, X, relabelled, 2)
    np.testing.assert_array_equal(selector.selected_labels_, [-4, -4, 12, 12, 100, 100])
    np.testing.assert_array_equal(relabelled[selector.selected_indices_],
                                  selector.selected_labels_)


# --- the per-class fan-out -----------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_per_class_entry_point_on_class_subsets_equals_a_full_fit(method, pool):
    X, y = pool
    selector = make_selector(method, n_per_class=4, random_state=2)
    scores = selector.prepare_scores(X, y, None)  # once over the pool, as the fan-out does
    results = {}
    for label in (11, 3, 7):  # any order, as separate tasks
        rows = np.flatnonzero(y == label)
        scores_c = None if scores is None else scores[rows]
        results[label] = select_class(clone(selector), X[rows], label, scores_c)
    indices, pick_scores, labels = merge_class_selections(y, results)
    full = clone(selector).fit(X, y)
    np.testing.assert_array_equal(indices, full.selected_indices_)
    np.testing.assert_array_equal(pick_scores, full.selected_scores_)
    np.testing.assert_array_equal(labels, full.selected_labels_)


@pytest.mark.parametrize("method", METHODS)
def test_a_class_result_does_not_depend_on_the_other_classes(method, pool):
    X, y = pool
    scores = np.random.default_rng(5).uniform(size=len(y))  # given, as from the classifier
    full = per_class(fitted(method, X, y, 4, scores=scores), y)
    keep = y != 7
    part = fitted(method, X[keep], y[keep], 4, scores=scores[keep])
    rows_in_full = np.flatnonzero(keep)
    for label in (3, 11):
        np.testing.assert_array_equal(rows_in_full[per_class(part, y[keep])[label]], full[label])


def test_mae_score_select_class_without_scores_asks_for_pool_scores(pool):
    X, y = pool
    with pytest.raises(ValueError, match="prepare_scores"):
        select_class(MAEScoreSelector(n_per_class=2), X[y == 3], 3)


# --- what each method does -----------------------------------------------------------------------

def mean_coverage(method: str, seeds=range(5), n_per_class: int = 6) -> float:
    coverages = []
    for seed in seeds:
        X, y, _ = blob_pool(seed)
        selector = fitted(method, X, y, n_per_class, seed=seed)
        coverages.append(selection_quality(X, y, selector.selected_indices_,
                                           n_per_class)["coverage"])
    return float(np.mean(coverages))


@pytest.mark.parametrize("method", ["tac_dt", "kcenter", "herding", "dm_mmd", "attention_topk"])
def test_diverse_selectors_cover_the_clusters_better_than_random(method):
    assert mean_coverage(method) < 0.85 * mean_coverage("random")


def single_class_blobs(seed: int = 0):
    X, _, blob = blob_pool(seed, labels=(0,), n_outliers=0)
    return X, np.zeros(len(X), dtype=int), blob


def test_tac_dt_paper_reading_takes_one_representative_per_blob_largest_group_first():
    X, y, blob = single_class_blobs()
    selector = TACDTSelector(n_per_class=4, outlier_fence=None).fit(X, y)
    np.testing.assert_array_equal(blob[selector.selected_indices_], [0, 1, 2, 3])
    np.testing.assert_allclose(selector.selected_scores_, np.array(BLOB_SIZES) / len(X))
    for pick in selector.selected_indices_:  # each is the member nearest its blob's mean
        members = np.flatnonzero(blob == blob[pick])
        distances = np.linalg.norm(X[members] - X[members].mean(axis=0), axis=1)
        assert pick in members[np.argsort(distances)[:3]]


def test_tac_dt_with_twice_the_groups_spends_picks_on_the_large_blobs():
    X, y, blob = single_class_blobs()  # blobs of 30, 15, 8 and 4 videos
    picks = blob[TACDTSelector(n_per_class=4, group_factor=2).fit(X, y).selected_indices_]
    assert {0, 1} <= set(picks.tolist()) and np.sum(picks == 0) >= 2


def test_tac_dt_lowers_the_birch_threshold_when_it_finds_too_few_subclusters():
    X, y, blob = single_class_blobs()
    selector = TACDTSelector(n_per_class=6, threshold_factor=50.0, max_halvings=20).fit(X, y)
    assert len(selector.selected_indices_) == 6
    assert set(blob[selector.selected_indices_]) == {0, 1, 2, 3}


def test_tac_dt_sets_isolated_outliers_aside_where_the_paper_reading_picks_them():
    for seed in range(3):
        X, _, blob = blob_pool(seed, labels=(0,), n_outliers=3)
        y = np.zeros(len(X), dtype=int)
        paper = TACDTSelector(n_per_class=4, outlier_fence=None).fit(X, y).selected_indices_
        assert -1 in blob[paper]  # an outlier is a group of its own, so it is picked
        for selector in (TACDTSelector(n_per_class=4),  # isolated videos set aside
                         TACDTSelector(n_per_class=4, outlier_fence=None, group_factor=2)):
            picks = selector.fit(X, y).selected_indices_
            assert -1 not in blob[picks] and len(set(picks)) == 4
            assert set(blob[picks]) >= {0, 1, 2}


def test_isolated_rows_are_those_beyond_the_upper_fence_of_neighbour_distances():
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)  # a ring, slightly uneven
    angles += np.random.default_rng(0).uniform(-0.03, 0.03, size=40)
    Z = np.concatenate([np.stack([np.cos(angles), np.sin(angles)], axis=1),
                        [[30.0, 0.0], [0.0, -25.0]]])
    np.testing.assert_array_equal(np.flatnonzero(isolated_rows(Z, 3, 1.5)), [40, 41])
    assert not isolated_rows(Z[:1], 3, 1.5).any()  # one row has no neighbour to be far from


def test_without_spread_in_isolation_no_video_is_set_aside():
    Z = np.concatenate([np.zeros((8, 3)), np.eye(3)[:2]])  # mostly copies of one video
    assert not isolated_rows(Z, 3, 1.5).any()
    y = np.zeros(len(Z), dtype=int)
    picks = TACDTSelector(n_per_class=3).fit(Z, y).selected_indices_
    assert len({tuple(Z[p]) for p in picks}) == 3  # three different videos, not three copies


def test_tac_dt_keeps_one_group_at_one_per_class_whatever_the_factor():
    X, y, _ = blob_pool(0, labels=(0,), n_outliers=3)
    y = np.zeros(len(X), dtype=int)
    selector = TACDTSelector(n_per_class=1, outlier_fence=None)
    Z = selector.reduce(X, np.random.default_rng(0))
    nearest_mean = np.argmin(np.linalg.norm(Z - Z.mean(axis=0), axis=1))
    assert selector.fit(X, y).selected_indices_.tolist() == [nearest_mean]
    for factor in (2, 3):
        assert TACDTSelector(n_per_class=1, group_factor=factor, outlier_fence=None).fit(
            X, y).selected_indices_.tolist() == [nearest_mean]


def test_tac_dt_with_min_score_groups_only_the_videos_that_look_like_their_class():
    X, y, blob = single_class_blobs()  # blobs of 30, 15, 8 and 4 videos
    scores = np.where(blob <= 1, 0.9, 0.1)  # blobs 2 and 3: the classifier sees another class
    plain = TACDTSelector(n_per_class=4).fit(X, y, scores).selected_indices_
    assert {2, 3} <= set(blob[plain].tolist())
    picks = TACDTSelector(n_per_class=4, min_score=0.5).fit(X, y, scores).selected_indices_
    assert set(blob[picks].tolist()) == {0, 1} and len(set(picks.tolist())) == 4
    without_scores = TACDTSelector(n_per_class=4, min_score=0.5).fit(X, y).selected_indices_
    np.testing.assert_array_equal(without_scores, plain)


def test_tac_dt_keeps_the_best_scored_when_too_few_videos_reach_min_score():
    X, y, _ = single_class_blobs()
    scores = np.linspace(0.0, 0.3, len(X))
    scores[[5, 40]] = 0.8  # two pass; the other two picks are the next best scored
    picks = TACDTSelector(n_per_class=4, min_score=0.5).fit(X, y, scores).selected_indices_
    assert sorted(picks.tolist()) == sorted([5, 40, len(X) - 1, len(X) - 2])


def test_tac_dt_sampling_draws_one_member_of_every_group_and_varies_with_the_seed():
    X, y, blob = single_class_blobs()  # blobs of 30, 15, 8 and 4 videos
    draws = [TACDTSelector(n_per_class=4, representative="sample", random_state=seed)
             .fit(X, y).selected_indices_ for seed in range(6)]
    for picks in draws:  # one pick per blob, largest blob first, as the centres are
        np.testing.assert_array_equal(blob[picks], [0, 1, 2, 3])
    assert len({tuple(picks.tolist()) for picks in draws}) > 1
    np.testing.assert_array_equal(  # a seed gives the same draw again
        TACDTSelector(n_per_class=4, representative="sample", random_state=3)
        .fit(X, y).selected_indices_, draws[3])
    centres = TACDTSelector(n_per_class=4).fit(X, y).selected_indices_
    np.testing.assert_array_equal(  # the default picks each group's centre, whatever the seed
        TACDTSelector(n_per_class=4, random_state=5).fit(X, y).selected_indices_, centres)


def test_tac_dt_by_score_picks_the_best_scored_member_of_every_group():
    X, y, blob = single_class_blobs()  # blobs of 30, 15, 8 and 4 videos
    scores = np.random.default_rng(0).uniform(0.6, 0.9, len(X))
    picks = TACDTSelector(n_per_class=4, representative="score", min_score=0.5,
                          outlier_fence=None).fit(X, y, scores).selected_indices_
    np.testing.assert_array_equal(blob[picks], [0, 1, 2, 3])
    for pick in picks:  # every video is a candidate here (no fence)
        assert scores[pick] == scores[blob == blob[pick]].max()
    centres = TACDTSelector(n_per_class=4).fit(X, y).selected_indices_
    np.testing.assert_array_equal(  # without scores: the centres
        TACDTSelector(n_per_class=4, representative="score").fit(X, y).selected_indices_,
        centres)
    low = np.where(blob == 0, 0.1, scores)  # blob 0 fails min_score: the other three remain
    kept = TACDTSelector(n_per_class=3, representative="score", min_score=0.5,
                         outlier_fence=None).fit(X, y, low).selected_indices_
    np.testing.assert_array_equal(blob[kept], [1, 2, 3])
    for pick in kept:  # still the best scored of its blob, not the centre
        assert low[pick] == low[blob == blob[pick]].max()


def test_tac_dt_sampling_never_draws_an_isolated_video():
    X, _, blob = blob_pool(0, labels=(0,), n_outliers=3)
    y = np.zeros(len(X), dtype=int)
    for seed in range(10):
        picks = TACDTSelector(n_per_class=1, representative="sample",
                              random_state=seed).fit(X, y).selected_indices_
        assert blob[picks[0]] != -1


@pytest.mark.parametrize("params, message", [
    ({"representative": "medoid"}, "representative must be one of centre, sample, score"),
    ({"group_factor": 0.5}, "group_factor must be >= 1"),
    ({"outlier_fence": -1.0}, "outlier_fence must be >= 0 or None"),
    ({"outlier_neighbours": 0}, "outlier_neighbours must be >= 1"),
    ({"min_score": 1.5}, r"min_score must be in \[0, 1\] or None")])
def test_tac_dt_refuses_bad_grouping_parameters(params, message):
    X, y, _ = single_class_blobs()
    with pytest.raises(ValueError, match=message):
        TACDTSelector(n_per_class=2, **params).fit(X, y)


def test_kcenter_starts_at_the_class_mean_with_non_increasing_distances():
    X, y, _ = single_class_blobs()
    selector = KCenterSelector(n_per_class=8).fit(X, y)
    first = selector.selected_indices_[0]
    assert first == np.argmin(np.linalg.norm(X - X.mean(axis=0), axis=1))
    assert np.all(np.diff(selector.selected_scores_[1:]) <= 1e-12)


def test_herding_tracks_the_class_mean_and_reaches_it_with_every_video():
    X, y, _ = single_class_blobs()
    selector = HerdingSelector(n_per_class=len(X)).fit(X, y)
    assert selector.selected_indices_[0] == np.argmin(np.linalg.norm(X - X.mean(0), axis=1))
    assert selector.selected_scores_[-1] == pytest.approx(0.0, abs=1e-9)
    five = HerdingSelector(n_per_class=5).fit(X, y).selected_indices_
    random_gaps = [np.linalg.norm(X[np.random.default_rng(s).choice(len(X), 5, replace=False)]
                                  .mean(0) - X.mean(0)) for s in range(20)]
    assert np.linalg.norm(X[five].mean(0) - X.mean(0)) < min(random_gaps)


def test_dm_mmd_picks_one_video_per_cluster_with_lower_mmd_than_other_such_picks():
    X, y, blob = single_class_blobs()
    kernel = gaussian_kernel_median(X)
    selector = make_selector("dm_mmd", n_per_class=4).fit(X, y)
    np.testing.assert_array_equal(blob[selector.selected_indices_], [0, 1, 2, 3])  # by size
    rng = np.random.default_rng(0)
    one_per_blob = [[rng.choice(np.flatnonzero(blob == b)) for b in range(4)] for _ in range(50)]
    assert mmd2(kernel, selector.selected_indices_) <= min(mmd2(kernel, p) for p in one_per_blob)


def test_mae_score_keeps_the_most_confident_videos_of_each_class(pool):
    X, y = pool
    scores = np.random.default_rng(0).uniform(size=len(y))
    selector = MAEScoreSelector(n_per_class=3).fit(X, y, scores)
    for label, picks in per_class(selector, y).items():
        rows = np.flatnonzero(y == label)
        np.testing.assert_array_equal(picks, rows[np.argsort(-scores[rows])[:3]])
    np.testing.assert_array_equal(selector.selected_scores_, scores[selector.selected_indices_])


def test_mae_score_without_scores_uses_out_of_fold_confidence(pool):
    X, y = pool
    selector = MAEScoreSelector(n_per_class=3)
    confidence = selector.prepare_scores(X, y, None)
    assert confidence.shape == y.shape and np.all((confidence >= 0) & (confidence <= 1))
    assert confidence.mean() > 0.5  # the classes are separable
    assert_same_selection(selector.fit(X, y), clone(selector).fit(X, y, confidence))


def test_attention_topk_redundancy_penalty_spreads_the_picks_over_the_blobs():
    X, y, blob = single_class_blobs()
    attention_only = AttentionTopKSelector(n_per_class=4, redundancy=0.0).fit(X, y)
    penalised = AttentionTopKSelector(n_per_class=4, redundancy=0.5).fit(X, y)
    assert len(set(blob[attention_only.selected_indices_])) == 1  # the densest blob only
    assert set(blob[penalised.selected_indices_]) == {0, 1, 2, 3}
    assert np.all(np.diff(penalised.selected_scores_) <= 0)


def best_unit_weight_value(values: np.ndarray, capacity: int) -> float:
    """The 0/1 knapsack by brute force: the highest total value of a subset of at most
    ``capacity`` items, each of weight 1."""
    return max(float(values[list(subset)].sum())
               for size in range(min(capacity, len(values)) + 1)
               for subset in itertools.combinations(range(len(values)), size))


def test_a_unit_weight_knapsack_over_the_attention_values_is_exactly_top_k():
    # Why the selector has no knapsack (it had one when it was called csta): each video weighs
    # 1, so the knapsack of capacity VPC over positive values is worth exactly the VPC best.
    from sklearn.preprocessing import normalize

    from raydistill.selection.attention_topk import attention_values

    rng = np.random.default_rng(0)
    for _ in range(40):
        n, k = int(rng.integers(1, 10)), int(rng.integers(1, 5))
        X = rng.normal(size=(n, 8))
        selector = AttentionTopKSelector(n_per_class=k).fit(X, np.zeros(n, dtype=int))
        values = attention_values(normalize(X - X.mean(axis=0)), 0.1, 0.5)
        shifted = values - values.min() + 1.0  # positive, as a knapsack's values would be
        picked = selector.selected_indices_
        assert len(picked) == min(k, n)
        np.testing.assert_allclose(selector.selected_scores_, values[picked])
        assert shifted[picked].sum() == pytest.approx(best_unit_weight_value(shifted, k),
                                                      abs=1e-9)


def test_the_old_csta_name_is_refused_with_its_new_name():
    assert "csta" not in SELECTORS and "csta" not in SELECTION_METHODS
    with pytest.raises(ValueError, match="'csta' was renamed to 'attention_topk': it is not the "
                                         "CSTA model"):
        make_selector("csta", n_per_class=2)


# --- estimator contract and registry -------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_selectors_follow_the_scikit_learn_estimator_contract(method, pool):
    cls = SELECTORS[method]
    for check in (check_parameters_default_constructible, check_no_attributes_set_in_init,
                  check_get_params_invariance, check_set_params,
                  check_do_not_raise_errors_in_init_or_set_params):
        check(method, cls())
    selector = cls(n_per_class=3, random_state=7)
    params = selector.get_params()
    assert params["n_per_class"] == 3 and params["random_state"] == 7
    twin = clone(selector)
    assert twin is not selector and twin.get_params() == params
    assert cls().set_params(**params).get_params() == params
    X, y = pool
    assert selector.fit(X, y) is selector
    assert not hasattr(clone(selector), "selected_indices_")


def test_every_configured_method_has_a_selector():
    assert set(SELECTION_METHODS) <= set(SELECTORS)
    assert all(isinstance(make_selector(name), SELECTORS[name]) for name in SELECTION_METHODS)


def test_the_configs_method_names_are_the_selectors_in_their_order():
    # config.py keeps its own copy because it may not import the selectors (torch).
    assert SELECTION_METHODS == tuple(SELECTORS)
    assert PROPOSED_METHODS == tuple(name for name in SELECTORS if SELECTORS[name].proposed)


def colour_clashes(colors: dict[str, str]) -> list[str]:
    """The methods of ``{method: colour}`` whose colour resolves to the RGB of an earlier one, of
    the upper bounds' or of C5 (a method without a selector): ``C10`` is ``C0`` again and
    ``tab:brown`` is ``C5``, so the names are compared by what matplotlib draws."""
    taken: dict[tuple, str] = {}
    for color in (method_color("no such method"), "C7", *BOUND_COLORS.values()):
        taken.setdefault(to_rgb(color), f"reserved {color}")
    clashes = []
    for method, color in colors.items():
        rgb = to_rgb(color)
        if rgb in taken:
            clashes.append(f"{method} ({color}) = {taken[rgb]}")
        taken.setdefault(rgb, method)
    return clashes


def test_every_selector_carries_its_report_label_order_and_colour():
    classes = list(SELECTORS.values())
    for cls in classes:
        assert isinstance(cls.label, str) and cls.label, cls
        assert isinstance(cls.report_order, int) and isinstance(cls.color, str), cls
        assert isinstance(cls.proposed, bool), cls
    for attribute in ("label", "report_order"):
        assert len({getattr(cls, attribute) for cls in classes}) == len(classes), attribute
    assert colour_clashes({name: cls.color for name, cls in SELECTORS.items()}) == []
    proposed = {name for name, cls in SELECTORS.items() if cls.proposed}
    assert {"tac_dt", "vst_unet"} <= proposed  # the paper's own; the baselines are not
    assert not proposed & {"random", "kcenter", "herding", "dm_mmd", "mae_score",
                           "attention_topk"}


def test_selector_colours_are_compared_by_the_rgb_matplotlib_draws():
    assert colour_clashes({"random": "C0", "new": "C10"}) == ["new (C10) = random"]
    assert colour_clashes({"new": "tab:brown"}) == ["new (tab:brown) = reserved C5"]
    assert colour_clashes({"new": "tab:gray"}) == ["new (tab:gray) = reserved C7"]
    assert colour_clashes({"new": "k"}) == ["new (k) = reserved black"]
    assert colour_clashes({"random": "C0", "new": "xkcd:teal"}) == []  # any other colour


def test_make_selector_passes_params_and_names_the_methods_for_an_unknown_one():
    selector = make_selector("tac_dt", n_per_class=5, n_components=8)
    assert (selector.n_per_class, selector.n_components) == (5, 8)
    with pytest.raises(ValueError, match="unknown selection method 'kmeans'.*herding.*tac_dt"):
        make_selector("kmeans")


# --- invalid input -------------------------------------------------------------------------------

@pytest.mark.parametrize("X, y, scores, params, message", [
    (np.zeros((4, 3)), np.zeros(5, int), None, {}, "4 rows but y has 5"),
    (np.zeros((0, 3)), np.zeros(0, int), None, {}, "empty"),
    (np.zeros(4), np.zeros(4, int), None, {}, "2-D"),
    (np.array([[0.0, np.nan]] * 3), np.zeros(3, int), None, {}, "NaN"),
    (np.zeros((3, 2)), np.array([0.5, 1.0, 2.0]), None, {}, "integer labels"),
    (np.zeros((3, 2)), np.zeros(3, int), np.ones(2), {}, "scores must have shape"),
    (np.zeros((3, 2)), np.zeros(3, int), None, {"n_per_class": 0}, "n_per_class"),
    (np.zeros((3, 2)), np.zeros(3, int), None, {"n_per_class": 2.5}, "n_per_class"),
    (np.zeros((3, 2)), np.zeros(3, int), None, {"random_state": -1}, "random_state"),
])
@pytest.mark.parametrize("method", ["random", "tac_dt"])
def test_invalid_input_raises_a_clear_value_error(method, X, y, scores, params, message):
    with pytest.raises(ValueError, match=message):
        make_selector(method, **params).fit(X, y, scores)
