"""Classification metrics in plain numpy: accuracy, balanced accuracy, P/R/F1, AUC, calibration."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve via the rank (Mann-Whitney) statistic; ties count one half."""
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = np.asarray(score)[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every threshold, from (0, 0) to (1, 1)."""
    order = np.argsort(-np.asarray(score), kind="mergesort")
    pos = np.asarray(is_positive, dtype=bool)[order]
    tpr = np.concatenate([[0.0], np.cumsum(pos) / max(pos.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~pos) / max((~pos).sum(), 1)])
    return fpr, tpr


def calibration_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = 15):
    """Per confidence bin: (mean confidence, accuracy, count), for the top-1 prediction."""
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


def classification_metrics(probs: np.ndarray, y_true: np.ndarray, codes: tuple[str, ...]) -> dict:
    """Everything the evaluation reports, as plain JSON-ready values."""
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(axis=1)
    k = len(codes)
    matrix = confusion_matrix(y_true, y_pred, k)
    per_class = {}
    recalls, f1s, aucs = [], [], []
    for i, code in enumerate(codes):
        tp = matrix[i, i]
        support = int(matrix[i].sum())
        predicted = int(matrix[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else float("nan")
        f1 = 2 * precision * recall / (precision + recall) if support and (precision + recall) else 0.0
        auc = roc_auc(y_true == i, probs[:, i])
        per_class[code] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "auc": round(auc, 4), "support": support}
        if support:
            recalls.append(recall)
            f1s.append(f1)
            aucs.append(auc)
    result = {
        "n": int(len(y_true)),
        "accuracy": round(float((y_pred == y_true).mean()), 4),
        "balanced_accuracy": round(float(np.mean(recalls)), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "macro_auc": round(float(np.nanmean(aucs)), 4),
        "nll": round(negative_log_likelihood(probs, y_true), 4),
        "ece": round(expected_calibration_error(probs, y_true), 4),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }
    if "mel" in codes:
        result["melanoma_recall"] = per_class["mel"]["recall"]
    return result
