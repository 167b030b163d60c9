"""Running a classifier over many labelled images, and the fits made on the validation split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from classifier.explain import energy, softmax
from classifier.model_folder import ModelFolderError
from classifier.reporting.metrics import negative_log_likelihood


def predict_logits(classifier, paths: list[Path], tta: bool = False, batch_size: int = 32,
                   show_progress: bool = True, with_features: bool = False, views: tuple[str, ...] | None = None,
                   per_view: bool = False):
    """Per-view logits (N, V, K) for image files, through the classifier's one batch path: V is the number of
    served views, or of the test-time augmentation views with ``tta``, or of ``views``. With ``with_features``,
    also the mean pooled features of the views, (N, D), or with ``per_view`` every view's, (N, V, D): a tuple is
    returned. A file that cannot be read raises its error (a measurement needs them all)."""
    views = views or classifier.views(tta)
    out, features = [], []
    bar = tqdm(total=len(paths), unit="img", disable=True if not show_progress or len(paths) < 20 else None)
    for item in classifier.run_each(paths, views=views, batch_size=batch_size):
        if isinstance(item, Exception):
            raise item
        _, logits, _, pooled = item
        if with_features and pooled is None:
            raise ModelFolderError("this model has no pooled-features output; export it again")
        out.append(logits)
        features.append(pooled if per_view or pooled is None else pooled.mean(axis=0))
        bar.update()
    bar.close()
    view_logits = np.stack(out) if out else np.zeros((0, len(views), len(classifier.labels)), np.float32)
    if with_features:
        return view_logits, np.stack(features) if features else np.zeros((0, 0), np.float32)
    return view_logits


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


def energy_threshold(logits: np.ndarray, in_distribution_rate: float = 0.95) -> float:
    """Energy score that the given share of (validation) images stays under; for per-view logits (N, V, K), the
    mean of the views' energies (what is served)."""
    scores = energy(logits)
    return round(float(np.quantile(scores.mean(axis=1) if scores.ndim == 2 else scores, in_distribution_rate)), 4)
