"""Out-of-distribution: does an image look like the ones the model was trained on? Its scores, their
thresholds, the served rule and the model folder's statistics live here together, so that serving
(``Classifier.classify``), measuring (``measure()``) and the export fit and apply one and the same rule. Plain
numpy; serving imports it, so it imports nothing from training or evaluation.

- the energy score -logsumexp(logits) (Liu et al., 2020), the mean over the served views;
- the feature score: the Mahalanobis distance of the (L2-normalised) pooled features to the nearest class mean
  under the shared covariance of the training features (Lee et al., 2018), with those statistics stored as the
  model folder's ``ood_features.npz``. Normalising and keeping every direction matter: on the 160-px model, the
  top 64 or 256 principal directions caught almost no foreign image, and raw features false-alarmed more;
- the thresholds, fitted on validation as a quantile of each score;
- the served rule (:func:`ood_flags`: either score above its threshold) and its reasons in words.

The cheap image checks (uniform, colourless or noise-like pictures) are in :mod:`classifier.explain`; they add
their reasons to the same warning.
"""

from __future__ import annotations

import numpy as np

from classifier.model_folder import ModelConfig, ModelFolderError


def energy(logits: np.ndarray) -> np.ndarray:
    """Energy score -logsumexp(logits): higher means less like the training data (Liu et al., 2020)."""
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=-1)
    return -(m + np.log(np.exp(z - m[..., None]).sum(axis=-1)))


def energy_threshold(logits: np.ndarray, in_distribution_rate: float = 0.95) -> float:
    """Energy score that the given share of (validation) images stays under; for per-view logits (N, V, K), the
    mean of the views' energies (what is served)."""
    scores = energy(logits)
    return round(float(np.quantile(scores.mean(axis=1) if scores.ndim == 2 else scores, in_distribution_rate)), 4)


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


def feature_threshold(features: np.ndarray, fitted: dict[str, np.ndarray], in_distribution_rate: float = 0.97) -> float:
    """Feature distance that the given share of (validation) images stays under; ``features`` (N, D) are each
    image's mean pooled features over the served views."""
    return round(float(np.quantile(mahalanobis_distance(features, fitted), in_distribution_rate)), 4)


def load_feature_statistics(config: ModelConfig) -> dict[str, np.ndarray] | None:
    """The training-feature statistics of the feature score (``ood_features.npz``); None if the model has none."""
    if config.ood.feature_threshold is None:
        return None
    path = config.file("ood_features")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {k: stored[k] for k in ("projection", "projected_means")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path}: not readable feature statistics ({exc})") from exc


def ood_flags(config: ModelConfig, logits: np.ndarray, features: np.ndarray | None = None,
              feature_statistics: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The served out-of-distribution rule on the model's own scores, per image (the image checks for uniform,
    colourless or noise-like pictures come on top, in :meth:`Classifier.classify`).

    ``logits`` (N, V, K) are each image's per-view logits (or (N, K) for one view) and ``features`` (N, D) the
    mean of its views' pooled features, so that with the eight symmetries of the square served, the warning,
    like the probabilities, is the same however the image is turned. The energy is the mean of the views'
    energies. Returns
    ``energy`` and ``by_energy`` (energy above ``ood.energy_threshold``; all False without one), ``distance``
    and ``by_features`` (Mahalanobis feature distance above ``ood.feature_threshold``; NaN and False without
    the feature score or features), and ``warned``: either.
    """
    logits = np.asarray(logits)
    scores = energy(logits).mean(axis=1) if logits.ndim == 3 else energy(np.atleast_2d(logits))
    threshold = config.ood.energy_threshold
    by_energy = scores > threshold if threshold is not None else np.zeros(len(scores), bool)
    distance = np.full(len(scores), np.nan)
    by_features = np.zeros(len(scores), bool)
    if feature_statistics is not None and features is not None and config.ood.feature_threshold is not None:
        distance = mahalanobis_distance(features, feature_statistics).astype(np.float64)
        by_features = distance > config.ood.feature_threshold
    return {"energy": scores, "by_energy": by_energy, "distance": distance, "by_features": by_features,
            "warned": by_energy | by_features}


def flag_reasons(config: ModelConfig, flags: dict[str, np.ndarray], index: int = 0) -> list[str]:
    """The reasons, readable by a person, why image ``index`` of :func:`ood_flags`'s answer is flagged by the
    model's scores (empty when it is not)."""
    reasons = []
    if flags["by_energy"][index]:
        reasons.append(f"the model's energy score {float(flags['energy'][index]):.2f} is above the threshold "
                       f"{config.ood.energy_threshold:.2f} that {_share(config.ood.energy_quantile)} validation "
                       "images stay under")
    if flags["by_features"][index]:
        distance = round(float(flags["distance"][index]), 4)  # as the prediction reports it
        reasons.append(f"its features are far from every class of the training images (distance "
                       f"{distance:.2f}, above the threshold {config.ood.feature_threshold:.2f} that "
                       f"{_share(config.ood.feature_quantile)} validation images stay under)")
    return reasons


def _share(quantile: float | None) -> str:
    """'97% of the' for a threshold's fitted quantile, 'the' when the model folder does not say."""
    return "the" if quantile is None else f"{quantile:.0%} of the"
