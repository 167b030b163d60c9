"""Conformal prediction sets, on generated numbers."""

import numpy as np
import pytest

from classifier.uncertainty import (
    conformity_scores,
    fit_conformal_threshold,
    prediction_sets,
    set_metrics,
)


def test_score_is_one_minus_the_probability_of_the_true_class():
    probs = np.array([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1]])
    assert conformity_scores(probs, np.array([0, 2])) == pytest.approx([0.4, 0.9])


def test_prediction_set_holds_the_classes_within_the_threshold_and_never_is_empty():
    probs = np.array([[0.1, 0.6, 0.3], [0.05, 0.9, 0.05]])
    assert prediction_sets(probs, 0.75) == [[1, 2], [1]]
    assert prediction_sets(probs, 0.7) == [[1, 2], [1]]  # 1 - 0.3 equals the threshold: inside
    assert prediction_sets(probs, 0.0) == [[1], [1]]  # nothing within: the top class
    assert prediction_sets(probs, 1.0) == [[1, 2, 0], [1, 0, 2]]


def test_a_decision_moved_by_the_prior_correction_is_always_in_the_set():
    probs = np.array([[0.1, 0.6, 0.3], [0.05, 0.9, 0.05]])
    assert prediction_sets(probs, 0.75, decisions=[0, 1]) == [[1, 2, 0], [1]]  # class 0 added in its place
    assert prediction_sets(probs, 0.0, decisions=[2, 1]) == [[1, 2], [1]]  # at least the top class and the decision
    labels = np.array([0, 1])
    before, after = set_metrics(probs, labels, 0.75), set_metrics(probs, labels, 0.75, decisions=[0, 1])
    assert (before["coverage"], after["coverage"]) == (0.5, 1.0)  # a larger set only covers more
    assert (before["mean_set_size"], after["mean_set_size"]) == (1.5, 2.0)


def test_split_conformal_covers_the_nominal_share_of_exchangeable_images():
    rng = np.random.default_rng(0)

    def sample(n):
        logits = rng.normal(0, 1.5, (n, 5))
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = np.array([rng.choice(5, p=p) for p in probs])  # labels drawn from the model: calibrated
        return probs, labels

    threshold = fit_conformal_threshold(*sample(2000), coverage=0.9)
    metrics = set_metrics(*sample(4000), threshold)
    assert 0.88 <= metrics["coverage"] <= 0.93
    assert 1 < metrics["mean_set_size"] < 5
    assert fit_conformal_threshold(*sample(500), coverage=0.5) < threshold
