"""Honest uncertainty for one prediction, in plain numpy (serving-safe): a conformal prediction set (split
conformal with the least-ambiguous-set score 1 - p(true class); Sadinle et al., 2019). With the level fitted on
validation, the true class is in the set for that share of images like the validation ones. (Deterministic APS,
tried first, over-covered: 0.999 at a nominal 0.9 with 4.7 classes per set on the old model, because confident
mistakes push its scores to 1.)

The out-of-distribution scores are in :mod:`classifier.ood`.
"""

from __future__ import annotations

import math

import numpy as np


def conformity_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Non-conformity of each labelled image: 1 - the probability given to its true class."""
    return 1.0 - np.asarray(probs)[np.arange(len(probs)), np.asarray(labels)]


def fit_conformal_threshold(probs: np.ndarray, labels: np.ndarray, coverage: float = 0.9) -> float:
    """The split-conformal quantile of the validation scores: the ceil((n+1) * coverage)-th smallest."""
    scores = np.sort(conformity_scores(probs, labels))
    n = len(scores)
    rank = min(math.ceil((n + 1) * coverage), n)
    return float(scores[rank - 1])


def prediction_sets(probs: np.ndarray, threshold: float) -> list[list[int]]:
    """For each row, the classes whose score 1 - p is within ``threshold``, most probable first; at least the
    top class (so a set is never empty)."""
    sets = []
    for row in np.atleast_2d(probs):
        order = np.argsort(-row, kind="stable")
        inside = [int(i) for i in order if 1.0 - row[i] <= threshold + 1e-9]  # float tolerance at equality
        sets.append(inside or [int(order[0])])
    return sets


def set_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Empirical coverage and mean set size of the prediction sets on labelled images."""
    sets = prediction_sets(probs, threshold)
    covered = [int(y) in s for s, y in zip(sets, labels, strict=True)]
    sizes = [len(s) for s in sets]
    return {"coverage": round(float(np.mean(covered)), 4), "mean_set_size": round(float(np.mean(sizes)), 3),
            "singleton_rate": round(float(np.mean([n == 1 for n in sizes])), 4), "n": len(sets)}
