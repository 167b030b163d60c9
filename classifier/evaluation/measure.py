"""The test figures of a model, measured one way: ``measure()`` is what ``python -m classifier evaluate`` prints
and what the export stores as config.json ``metrics.test`` (and the model card shows), under the same names.

Names (all computed on the served probabilities: the mean over the views of softmax((logits + class bias) / T);
for a model with a decision-only prior correction, ``calibration.decision_bias``, the figures of the decisions
score the served decisions, as the ``label``):

- ``n``, ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``macro_auc``, ``nll``, ``ece``, ``per_class``,
  ``confusion_matrix``, ``melanoma_recall``: :func:`classification_metrics` (accuracy, balanced accuracy, F1,
  per-class precision and recall and the confusion matrix of the decisions; AUC, NLL and ECE of the
  probabilities);
- ``top_probability_is_decision``: only for a model with ``decision_bias``, the share of images whose decision is
  their most probable class;
- ``malignant_auc``: ROC AUC of P(malignant) (the sum over the malignant classes) for malignant vs benign;
- ``ood_warning_rate``: share of the images for which the served out-of-distribution rule on the model's scores
  (:func:`classifier.ood.ood_flags`: energy above its threshold or feature distance above its threshold) raises
  the warning; ``ood_warning_rate_energy`` and ``ood_warning_rate_features``: each score alone. Only for a model
  with such thresholds. The image checks (uniform, colourless, noise-like pictures) are not part of it;
- ``conformal``: ``nominal_coverage`` and the measured ``coverage``, ``mean_set_size``, ``singleton_rate`` and
  ``n`` of the conformal prediction sets, for a model with them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from classifier.evaluation.metrics import classification_metrics, malignant_auc
from classifier.explain import served
from classifier.model_folder import ModelFolderError
from classifier.ood import ood_flags


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


def measure(config, view_logits: np.ndarray, labels, features: np.ndarray | None = None,
            feature_statistics: dict[str, np.ndarray] | None = None) -> dict:
    """The figures named in the module docstring, for labelled images.

    ``config`` is the model's :class:`~classifier.model_folder.ModelConfig`; ``view_logits`` (N, V, K) the
    per-view logits (the out-of-distribution rule reads the mean of their energies); ``features`` (N, D)
    the views' mean pooled features and ``feature_statistics`` the model's feature statistics, both needed when
    the model has a feature threshold (without them the measured rate would not be the served one).
    """
    view_logits = np.asarray(view_logits)
    y = np.asarray(labels)
    probs, decisions = served(config.calibration, view_logits)
    metrics = classification_metrics(probs, y, config.codes, predicted=decisions)
    if decisions is not None:
        metrics["top_probability_is_decision"] = _rate(probs.argmax(axis=1) == decisions)
    malignant = malignant_auc(probs, y, config.labels.malignant)
    if malignant is not None:
        metrics["malignant_auc"] = malignant
    has_energy, has_features = config.ood.energy_threshold is not None, config.ood.feature_threshold is not None
    if has_features and (features is None or feature_statistics is None):
        raise ValueError("the model flags images by their feature distance too: measure() needs the pooled "
                         "features and the feature statistics to measure its out-of-distribution warning")
    if has_energy or has_features:
        flags = ood_flags(config, view_logits, features, feature_statistics)
        metrics["ood_warning_rate"] = _rate(flags["warned"])
        if has_energy:
            metrics["ood_warning_rate_energy"] = _rate(flags["by_energy"])
        if has_features:
            metrics["ood_warning_rate_features"] = _rate(flags["by_features"])
    if config.conformal.threshold is not None:
        from classifier.uncertainty import set_metrics

        metrics["conformal"] = {"nominal_coverage": config.conformal.coverage,
                                **set_metrics(probs, y, config.conformal.threshold, decisions)}
    return metrics


def predict_for_measure(classifier, paths, tta: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(per-view logits (N, V, K), the views' mean pooled features (N, D) or None when the model has no feature score)
    of image files: what :func:`measure` needs, in one pass."""
    if classifier.feature_statistics is None:
        return predict_logits(classifier, paths, tta=tta), None
    return predict_logits(classifier, paths, tta=tta, with_features=True)


def _rate(flags: np.ndarray) -> float:
    return round(float(np.mean(flags)), 4) if len(flags) else 0.0
