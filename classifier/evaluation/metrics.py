"""Classification metrics: accuracy, balanced accuracy, P/R/F1, AUC, calibration.

scikit-learn computes the confusion matrix, precision/recall/F1 and the ROC curve and AUC; what it has no
function for stays here in numpy: the top-1 calibration bins (with their counts), the expected calibration
error, the negative log-likelihood, and the conventions this project reports (nan AUC for an absent class,
nan recall for a class without support, macro averages over the classes present). Evaluation and training
only: the serving path never imports classifier.evaluation.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as sk
from sklearn.exceptions import UndefinedMetricWarning


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    return sk.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes)).astype(np.int64)


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); nan when either side is empty."""
    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        return float("nan")
    return float(sk.roc_auc_score(is_positive, score))


def malignant_auc(probs: np.ndarray, y_true: np.ndarray, malignant) -> float | None:
    """ROC AUC of P(malignant), the sum of the probabilities of the classes flagged in ``malignant`` (one flag per
    class, the model's ``labels.malignant``), for malignant vs benign images, rounded as reported; None for a
    label set without malignant classes, nan when the images are all of one side."""
    malignant = np.asarray(malignant, dtype=bool)
    if not malignant.any():
        return None
    return round(roc_auc(malignant[np.asarray(y_true)], np.asarray(probs)[:, malignant].sum(axis=1)), 4)


def roc_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1).
    A rate whose side is empty (no positives, or no negatives) is 0 throughout rather than undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, _ = sk.roc_curve(np.asarray(is_positive, dtype=bool), score, drop_intermediate=False)
    return np.nan_to_num(fpr, nan=0.0), np.nan_to_num(tpr, nan=0.0)


def calibration_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = 15):
    """Per confidence bin: (mean confidence, accuracy, count), for the top-1 prediction.

    Not sklearn.calibration.calibration_curve: that one bins a binary problem's probabilities, returns no
    counts and drops empty bins, and puts a confidence equal to an inner edge into the lower bin (this one,
    and the ECE figures reported so far, into the upper)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        rows.append((float(confidence[mask].mean()) if n else float("nan"),
                     float(correct[mask].mean()) if n else float("nan"), n))
    return rows


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    total = len(y_true)
    return float(sum(n / total * abs(conf - acc) for conf, acc, n in calibration_bins(probs, y_true, bins) if n))


def negative_log_likelihood(probs: np.ndarray, y_true: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, 1.0))))


def classification_metrics(probs: np.ndarray, y_true: np.ndarray, codes: tuple[str, ...],
                           predicted: np.ndarray | None = None) -> dict:
    """Everything the evaluation reports, as plain JSON-ready values. Balanced accuracy, macro F1 and macro
    AUC average over the classes present in ``y_true``; an absent class shows recall and AUC nan.

    ``predicted``: the decisions (class indices), when they are not the most probable classes (a prior correction
    on the decision only): accuracy, balanced accuracy, precision/recall/F1 and the confusion matrix score them,
    while AUC, NLL and ECE score the probabilities. Default: the argmax of ``probs``."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1) if predicted is None else np.asarray(predicted)
    labels = np.arange(len(codes))
    matrix = confusion_matrix(y_true, y_pred, len(codes))
    precision, recall, f1, support = sk.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                                        zero_division=0)
    present = support > 0
    recall = np.where(present, recall, np.nan)
    aucs = np.array([roc_auc(y_true == i, probs[:, i]) for i in labels])
    per_class = {code: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                        "f1": round(float(f1[i]), 4), "auc": round(float(aucs[i]), 4), "support": int(support[i])}
                 for i, code in enumerate(codes)}
    result = {
        "n": int(len(y_true)),
        "accuracy": round(float(sk.accuracy_score(y_true, y_pred)), 4),
        "balanced_accuracy": round(float(np.mean(recall[present])), 4),
        "macro_f1": round(float(np.mean(f1[present])), 4),
        "macro_auc": round(float(np.nanmean(aucs[present])), 4),
        "nll": round(negative_log_likelihood(probs, y_true), 4),
        "ece": round(expected_calibration_error(probs, y_true), 4),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }
    if "mel" in codes:
        result["melanoma_recall"] = per_class["mel"]["recall"]
    return result
