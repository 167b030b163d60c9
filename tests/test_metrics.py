"""The scikit-learn-backed metrics against figures worked out by hand, with tied scores and an absent class."""

import math

import numpy as np
import pytest

from classifier.evaluation.metrics import (
    calibration_bins,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    roc_auc,
    roc_curve,
)

CODES = ("a", "b", "c", "d")  # "d" never occurs in y_true, but is predicted once
Y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PROBS = np.array([
    [0.7, 0.1, 0.1, 0.1],  # a -> a
    [0.5, 0.3, 0.1, 0.1],  # a -> a
    [0.2, 0.5, 0.2, 0.1],  # a -> b
    [0.2, 0.6, 0.1, 0.1],  # b -> b
    [0.5, 0.3, 0.1, 0.1],  # b -> a (the same scores as row 1: ties in every column)
    [0.1, 0.1, 0.7, 0.1],  # c -> c
    [0.1, 0.2, 0.2, 0.5],  # c -> d
    [0.2, 0.1, 0.6, 0.1],  # c -> c
])


def test_confusion_matrix_and_per_class_figures_by_hand():
    assert confusion_matrix(Y, PROBS.argmax(axis=1), 4).tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 1],
                                                                     [0, 0, 0, 0]]
    m = classification_metrics(PROBS, Y, CODES)
    assert m["n"] == 8 and m["accuracy"] == 0.625
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 2, 1], [0, 0, 0, 0]]
    a, b, c, d = (m["per_class"][code] for code in CODES)
    assert a == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "auc": 0.8333, "support": 3}  # AUC 12.5/15
    assert b == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "auc": 0.875, "support": 2}  # AUC 10.5/12
    assert c == {"precision": 1.0, "recall": 0.6667, "f1": 0.8, "auc": 0.9667, "support": 3}  # AUC 14.5/15
    assert d["precision"] == 0.0 and d["f1"] == 0.0 and d["support"] == 0  # predicted once, never true
    assert math.isnan(d["recall"]) and math.isnan(d["auc"])
    # macro figures average over the classes present: a, b, c
    assert m["balanced_accuracy"] == round((2 / 3 + 1 / 2 + 2 / 3) / 3, 4) == 0.6111
    assert m["macro_f1"] == round((2 / 3 + 1 / 2 + 0.8) / 3, 4) == 0.6556
    assert m["macro_auc"] == round((12.5 / 15 + 10.5 / 12 + 14.5 / 15) / 3, 4) == 0.8917
    assert "melanoma_recall" not in m


def test_roc_curve_has_one_point_per_distinct_score_and_its_area_is_the_auc():
    fpr, tpr = roc_curve(Y == 0, PROBS[:, 0])  # scores 0.7 (P), 0.5 (P, N), 0.2 (P, N, N), 0.1 (N, N)
    assert fpr.tolist() == pytest.approx([0.0, 0.0, 0.2, 0.6, 1.0])
    assert tpr.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0, 1.0])
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(Y == 0, PROBS[:, 0])) == pytest.approx(12.5 / 15)
    fpr, tpr = roc_curve(Y == 3, PROBS[:, 3])  # no positives: the true positive rate stays 0, not undefined
    assert tpr.tolist() == [0.0, 0.0, 0.0] and fpr.tolist() == pytest.approx([0.0, 1 / 8, 1.0])
    assert math.isnan(roc_auc(Y == 3, PROBS[:, 3])) and math.isnan(roc_auc(Y >= 0, PROBS[:, 0]))


def test_roc_auc_equals_pair_counting_with_ties():
    rng = np.random.default_rng(3)
    for _ in range(20):
        score = np.round(rng.random(60), 1)  # few distinct values: many ties
        positive = rng.random(60) < 0.3
        pos, neg = score[positive][:, None], score[~positive][None, :]
        by_hand = ((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size)
        assert roc_auc(positive, score) == pytest.approx(by_hand, abs=1e-12)
        fpr, tpr = roc_curve(positive, score)
        assert len(fpr) == len(np.unique(score)) + 1 and np.trapezoid(tpr, fpr) == pytest.approx(by_hand)


def test_calibration_bins_put_a_confidence_on_an_edge_into_the_upper_bin():
    # confidences 0.7 0.5 0.5 0.6 0.5 0.7 0.5 0.6, five right: with 4 bins all fall in [0.5, 0.75)
    rows = calibration_bins(PROBS, Y, bins=4)
    assert [n for _, _, n in rows] == [0, 0, 8, 0]
    assert rows[2][:2] == pytest.approx((4.6 / 8, 5 / 8))
    assert all(math.isnan(conf) and math.isnan(acc) for conf, acc, n in rows if not n)
    assert expected_calibration_error(PROBS, Y, bins=4) == pytest.approx(0.05)
