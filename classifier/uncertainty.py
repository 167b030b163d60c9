"""Honest uncertainty for one prediction, in plain numpy (serving-safe):

- a conformal prediction set (split conformal with the least-ambiguous-set score 1 - p(true class);
  Sadinle et al., 2019): with the level fitted on validation, the true class is in the set for that
  share of images like the validation ones. (Deterministic APS, tried first, over-covered: 0.999 at a
  nominal 0.9 with 4.7 classes per set on the old model, because confident mistakes push its scores
  to 1.);
- a feature-space out-of-distribution score: the Mahalanobis distance of the (L2-normalised) pooled
  features to the nearest class mean under the shared covariance of the training features (Lee et
  al., 2018). Normalising and keeping every direction matter: on the 160-px model, the top 64 or
  256 principal directions caught almost no foreign image, and raw features false-alarmed more.
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


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, num_classes: int, shrinkage: float = 0.01,
                    dims: int | None = None, normalise: bool = True) -> dict[str, np.ndarray]:
    """Class means and a whitening projection of the shared (within-class) covariance of training features,
    each L2-normalised first.

    ``normalise=False`` skips the normalisation (for comparisons). ``shrinkage`` blends the covariance
    with a multiple of the identity (it is nearly singular: ReLU6 features, fewer images per class than
    dimensions). ``dims`` keeps that many principal directions (all by default). Returns arrays for
    :func:`mahalanobis_distance` (stored as the model folder's npz).
    """
    features = (_unit(features) if normalise else np.asarray(features)).astype(np.float64)
    means = np.stack([features[labels == c].mean(axis=0) if np.any(labels == c) else features.mean(axis=0)
                      for c in range(num_classes)])
    centred = features - means[labels]
    covariance = centred.T @ centred / len(features)
    covariance = (1 - shrinkage) * covariance + shrinkage * np.trace(covariance) / len(covariance) * np.eye(
        len(covariance))
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    keep = np.argsort(eigenvalues)[::-1][:dims or len(eigenvalues)]
    projection = eigenvectors[:, keep] / np.sqrt(eigenvalues[keep])
    return {"projection": projection.astype(np.float32), "projected_means": (means @ projection).astype(np.float32)}


def mahalanobis_distance(features: np.ndarray, fitted: dict[str, np.ndarray], normalise: bool = True) -> np.ndarray:
    """Squared Mahalanobis distance of each feature row to the nearest class mean, divided by the number of
    dimensions (about 1 for typical training images; far larger for foreign ones)."""
    features = np.atleast_2d(np.asarray(features, dtype=np.float32))
    # einsum, not @: a BLAS matrix product wakes OpenBLAS's threads, whose spin-wait afterwards takes the cores
    # from the LiteRT interpreter and made the whole single-image call about 1.6x slower on 2 cores.
    z = np.einsum("ij,jk->ik", _unit(features) if normalise else features, fitted["projection"])
    d = ((z[:, None, :] - fitted["projected_means"][None]) ** 2).sum(axis=-1).min(axis=1)
    return d / fitted["projection"].shape[1]


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)
