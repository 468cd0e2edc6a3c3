"""Selection-quality metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from raydistill.selection import class_balance, coverage, diversity, selection_quality

POINTS = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])


def test_coverage_is_the_mean_distance_to_the_nearest_selected_video():
    assert coverage(POINTS, [0]) == pytest.approx((0 + 1 + 2 + 5) / 4)
    assert coverage(POINTS, [0, 3]) == pytest.approx((0 + 1 + 2 + 0) / 4)
    assert coverage(POINTS, [0, 1, 2, 3]) == 0.0


def test_coverage_needs_a_selection():
    with pytest.raises(ValueError, match="at least one"):
        coverage(POINTS, [])


def test_diversity_is_the_mean_pairwise_cosine_distance_of_the_selection():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    expected = (1.0 + 2 * (1 - 1 / math.sqrt(2))) / 3
    assert diversity(vectors, [0, 1, 2]) == pytest.approx(expected)
    assert diversity(vectors, [0, 3]) == pytest.approx(0.0)  # same direction
    assert math.isnan(diversity(vectors, [2]))


def test_class_balance_counts_per_class_against_min_of_vpc_and_class_size():
    y = np.array([0, 0, 0, 4, 4, 9])
    short = class_balance(y, [0, 1, 3, 5], n_per_class=2)
    assert short == {"counts": {0: 2, 4: 1, 9: 1}, "expected": {0: 2, 4: 2, 9: 1},
                     "duplicates": 0, "balanced": False}
    assert class_balance(y, [0, 1, 3, 4, 5], n_per_class=2)["balanced"] is True
    twice = class_balance(y, [0, 0, 3, 4, 5], n_per_class=2)
    assert twice["duplicates"] == 1 and twice["balanced"] is False


def test_selection_quality_averages_the_per_class_metrics():
    X = np.concatenate([POINTS, 10.0 + POINTS])
    y = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    quality = selection_quality(X, y, [0, 3, 4, 5], n_per_class=2)
    class_1 = ((0 + 1 + 2 + 0) / 4, 1 - 0.0)  # [0,0] vs [3,4]: a zero vector counts as distance 1
    class_2 = ((0 + 0 + 2 + math.hypot(2, 4)) / 4,
               1 - (10 * 11 + 10 * 10) / (math.hypot(10, 10) * math.hypot(11, 10)))
    assert quality["coverage"] == pytest.approx((class_1[0] + class_2[0]) / 2)
    assert quality["diversity"] == pytest.approx((class_1[1] + class_2[1]) / 2)
    assert quality["balanced"] is True
    assert (quality["n_classes"], quality["n_selected"], quality["n_per_class"]) == (2, 4, 2)
    assert json.loads(json.dumps(quality)) == quality


def test_selection_quality_with_one_pick_per_class_has_no_diversity_and_stays_json():
    y = np.array([0, 0, 1, 1])
    quality = selection_quality(POINTS, y, [0, 2], n_per_class=1)
    assert quality["diversity"] is None
    assert quality["coverage"] == pytest.approx((0 + 1 + 0 + math.hypot(3, 2)) / 4)
    json.dumps(quality, allow_nan=False)


def test_selection_quality_flags_a_class_without_picks_as_unbalanced():
    y = np.array([0, 0, 1, 1])
    quality = selection_quality(POINTS, y, [0], n_per_class=1)
    assert quality["balanced"] is False
    assert quality["coverage"] == pytest.approx(0.5)  # class 0 only
