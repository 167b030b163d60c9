"""The fits made on the validation split: temperature and prior correction (the out-of-distribution thresholds
are fitted by :mod:`classifier.ood`)."""

from __future__ import annotations

import numpy as np

from classifier.evaluation.metrics import negative_log_likelihood
from classifier.explain import softmax


def mean_probabilities(view_logits: np.ndarray, temperature: float, class_bias=None) -> np.ndarray:
    """Average of the per-view calibrated probabilities: (N, V, K) -> (N, K)."""
    return softmax(view_logits, temperature, class_bias).mean(axis=1)


def fit_prior_correction(logits: np.ndarray, labels: np.ndarray, train_counts: np.ndarray) -> float:
    """Strength tau of the logit adjustment -tau * log(training class prior) (Menon et al., 2021) that maximises
    (accuracy + balanced accuracy) / 2 on validation: it trades a little accuracy on the common class for
    recall on the rare ones. 0 leaves the model's own decisions. ``logits`` (N, K), or per view (N, V, K):
    then the decision is that of the mean probabilities, as served."""
    view_logits = logits if logits.ndim == 3 else logits[:, None]
    best_tau, best_score = 0.0, -1.0
    for tau in np.round(np.arange(0.0, 1.01, 0.05), 2):
        predicted = mean_probabilities(view_logits, 1.0, prior_bias(tau, train_counts)).argmax(axis=1)
        recalls = [np.mean(predicted[labels == k] == k) for k in np.unique(labels)]
        score = (np.mean(predicted == labels) + np.mean(recalls)) / 2
        if score > best_score + 1e-9:
            best_tau, best_score = float(tau), score
    return best_tau


def prior_bias(tau: float, train_counts: np.ndarray) -> np.ndarray:
    """The class bias of the prior correction: -tau * log(training class frequency)."""
    return -tau * np.log(np.maximum(train_counts, 1) / np.sum(train_counts))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, class_bias=None) -> float:
    """The temperature minimising validation negative log-likelihood (golden-section search on log T) of
    softmax((logits + class_bias) / T); for per-view logits (N, V, K), of the mean of the views' probabilities."""
    view_logits = logits if logits.ndim == 3 else logits[:, None]

    def nll(log_t):
        return negative_log_likelihood(mean_probabilities(view_logits, float(np.exp(log_t)), class_bias), labels)

    lo, hi = np.log(0.05), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return round(float(np.exp((lo + hi) / 2)), 4)
