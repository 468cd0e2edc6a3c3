"""Test metrics of the evaluate stage against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from raydistill.classify.metrics import (MetricWarning, classification_metrics, macro_auc,
                                         summarize_seeds)

# Four samples, three classes. Arg-max predictions: 0, 1, 1, 2 against truth 0, 1, 2, 2.
Y_TRUE = np.array([0, 1, 2, 2])
PROBS = np.array([[0.7, 0.2, 0.1],
                  [0.1, 0.6, 0.3],
                  [0.2, 0.5, 0.3],
                  [0.1, 0.2, 0.7]])


def test_top1_f1_and_auc_match_hand_computed_values():
    metrics = classification_metrics(Y_TRUE, PROBS)
    assert metrics["top1"] == pytest.approx(3 / 4)
    # F1 per class: class 0 = 1; class 1: P 1/2, R 1 → 2/3; class 2: P 1, R 1/2 → 2/3.
    assert metrics["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # OvR AUC per class, counting positive-negative pairs ranked right:
    # class 0: 0.7 beats 0.1, 0.2, 0.1 → 1; class 1: 0.6 vs 0.2, 0.5, 0.2 → 1;
    # class 2: {0.3, 0.7} vs {0.1, 0.3}: 0.3>0.1, 0.3=0.3 (½), 0.7>both → 3.5/4.
    assert metrics["auc"] == pytest.approx((1 + 1 + 3.5 / 4) / 3)
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in metrics.values())


@pytest.mark.filterwarnings("ignore::raydistill.classify.metrics.MetricWarning")
def test_top5_is_capped_at_the_number_of_classes_and_top_k_counts_ranks():
    assert classification_metrics(Y_TRUE, PROBS)["top5"] == 1.0
    # Six classes: the true class ranks 6th in the first row, 1st in the second → top-5 = 1/2.
    probs = np.array([[0.3, 0.25, 0.2, 0.15, 0.1, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    metrics = classification_metrics([5, 5], probs, labels=range(6))
    assert metrics["top5"] == pytest.approx(0.5)
    assert metrics["top1"] == pytest.approx(0.5)


def test_a_class_never_predicted_counts_as_zero_f1():
    probs = np.array([[0.9, 0.05, 0.05],
                      [0.8, 0.1, 0.1],
                      [0.1, 0.1, 0.8],
                      [0.1, 0.2, 0.7]])
    # Class 1 never predicted: F1 0; class 0: P 1/2, R 1 → 2/3; class 2: 1.
    metrics = classification_metrics([0, 1, 2, 2], probs)
    assert metrics["f1"] == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_auc_with_a_class_absent_from_y_true_averages_the_present_classes_and_warns():
    y_true = np.array([0, 0, 1, 1])  # class 2 has no test sample
    probs = np.array([[0.6, 0.3, 0.1],
                      [0.3, 0.4, 0.3],
                      [0.5, 0.4, 0.1],
                      [0.1, 0.8, 0.1]])
    with pytest.warns(MetricWarning, match=r"absent: \[2\]"):
        metrics = classification_metrics(y_true, probs)
    # class 0: {0.6, 0.3} vs {0.5, 0.1} → 3/4; class 1: {0.4, 0.8} vs {0.3, 0.4} → 3.5/4.
    assert metrics["auc"] == pytest.approx((3 / 4 + 3.5 / 4) / 2)
    assert 0 <= metrics["f1"] <= 1 and metrics["top1"] == pytest.approx(2 / 4)


def test_auc_with_a_single_class_present_is_nan_not_an_error():
    with pytest.warns(MetricWarning):
        assert np.isnan(macro_auc(np.array([1, 1]), PROBS[:2], np.arange(3)))


def test_probabilities_not_summing_to_one_give_the_same_metrics():
    scaled = PROBS * np.array([[1.001], [0.999], [1.0], [1.0000001]])
    assert classification_metrics(Y_TRUE, scaled) == pytest.approx(
        classification_metrics(Y_TRUE, PROBS))


def test_present_class_auc_agrees_with_sklearn_ovr_when_all_classes_are_present():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=40)
    y_true = rng.integers(0, 4, size=40)
    expected = roc_auc_score(y_true, probs, multi_class="ovr", average="macro")
    per_class = np.mean([roc_auc_score(y_true == c, probs[:, c]) for c in range(4)])
    assert classification_metrics(y_true, probs)["auc"] == pytest.approx(expected)
    assert expected == pytest.approx(per_class)


def test_two_classes_work_and_bad_inputs_raise():
    metrics = classification_metrics([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert metrics["auc"] == pytest.approx(1.0) and metrics["top1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics([0, 3], PROBS[:2])
    with pytest.raises(ValueError, match="probabilities must be"):
        classification_metrics(Y_TRUE, PROBS[:, :2], labels=range(3))


def test_summarize_seeds_gives_mean_and_population_std():
    runs = [{"top1": 0.2, "auc": 0.8}, {"top1": 0.4, "auc": 0.6}, {"top1": 0.3, "auc": 0.7}]
    summary = summarize_seeds(runs)
    assert summary["top1"] == pytest.approx((0.3, np.sqrt(((0.1 ** 2) * 2) / 3)))
    assert summary["auc"] == pytest.approx((0.7, np.std([0.8, 0.6, 0.7])))
    with pytest.raises(ValueError):
        summarize_seeds([])
    with pytest.raises(ValueError):
        summarize_seeds([{"top1": 0.1}, {"auc": 0.2}])
