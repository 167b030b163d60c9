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


def prediction_sets(probs: np.ndarray, threshold: float, decisions=None) -> list[list[int]]:
    """For each row, the classes whose score 1 - p is within ``threshold``, most probable first; at least the
    top class (so a set is never empty). With ``decisions`` (a class per row, from a decision-only prior
    correction) each set also holds its row's decision, in its probability's place: the answer shown is never
    outside the set shown beside it. A larger set only covers more, so the coverage guarantee stands."""
    rows = np.atleast_2d(probs)
    decided_rows = [None] * len(rows) if decisions is None else [int(d) for d in np.asarray(decisions).reshape(-1)]
    sets = []
    for row, decided in zip(rows, decided_rows, strict=True):
        order = np.argsort(-row, kind="stable")
        inside = {int(i) for i in order if 1.0 - row[i] <= threshold + 1e-9} or {int(order[0])}  # float tolerance
        sets.append([int(i) for i in order if int(i) in inside or int(i) == decided])
    return sets


def set_metrics(probs: np.ndarray, labels: np.ndarray, threshold: float, decisions=None) -> dict:
    """Empirical coverage and mean set size of the prediction sets (with ``decisions``: each holding its row's
    decision, as served) on labelled images."""
    sets = prediction_sets(probs, threshold, decisions)
    covered = [int(y) in s for s, y in zip(sets, labels, strict=True)]
    sizes = [len(s) for s in sets]
    return {"coverage": round(float(np.mean(covered)), 4), "mean_set_size": round(float(np.mean(sizes)), 3),
            "singleton_rate": round(float(np.mean([n == 1 for n in sizes])), 4), "n": len(sets)}
