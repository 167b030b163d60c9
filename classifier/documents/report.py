"""The evaluation report: markdown tables, figures, the most confident errors and near-identical images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from classifier.evaluation.metrics import (
    calibration_bins,
    confusion_matrix,
    expected_calibration_error,
    malignant_auc,
    negative_log_likelihood,
    roc_auc,
    roc_curve,
)

TOP_ERRORS = 20
NEAR_IDENTICAL_BITS = 2


def image_hash(path: Path, side: int = 16) -> np.ndarray:
    """Difference hash of the centre square: ``side * side`` bits, packed into uint64 words."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L")
        w, h = img.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s)).resize((side + 1, side), Image.Resampling.BOX)
    pixels = np.asarray(img, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    return np.packbits(bits).view(np.uint64) if bits.size % 64 == 0 else np.packbits(bits)


def near_identical_pairs(hashes: np.ndarray, max_bits: int = NEAR_IDENTICAL_BITS, block: int = 256):
    """Index pairs (i < j, distance) whose hashes differ in at most ``max_bits`` bits."""
    hashes = np.asarray(hashes)
    pairs = []
    for start in range(0, len(hashes), block):
        chunk = hashes[start:start + block]
        distance = np.bitwise_count(chunk[:, None, :] ^ hashes[None, :, :]).sum(axis=-1)
        for i, j in zip(*np.nonzero(distance <= max_bits), strict=True):
            if start + i < j:
                pairs.append((int(start + i), int(j), int(distance[i, j])))
    return pairs


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float | np.floating):
        return f"{value:.{digits}f}"
    return str(value)


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _table(header: list[str], rows: list[list], align: str = "") -> list[str]:
    """Markdown table lines; ``align`` has one 'l' or 'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |",
            *["| " + " | ".join(str(c) for c in row) + " |" for row in rows]]


def _plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion_matrix(matrix: np.ndarray, codes: tuple[str, ...], path: Path) -> None:
    plt = _plots()
    matrix = np.asarray(matrix)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(codes), 0.8 + 0.8 * len(codes)))
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(codes)):
        for j in range(len(codes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=9,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(codes)), codes)
    ax.set_yticks(range(len(codes)), codes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (colour: share of true class)")
    _save(plt, fig, path)


def plot_per_class_prf(per_class: dict, path: Path) -> None:
    plt = _plots()
    codes = list(per_class)
    x = np.arange(len(codes))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(codes), 4))
    for k, key in enumerate(("precision", "recall", "f1")):
        values = [per_class[c][key] if per_class[c][key] == per_class[c][key] else 0 for c in codes]
        ax.bar(x + (k - 1) * 0.27, values, 0.27, label=key)
    ax.set_xticks(x, codes)
    ax.set_ylim(0, 1.05)
    ax.set_title("Per-class precision, recall and F1")
    ax.legend(loc="lower right")
    _save(plt, fig, path)


def plot_roc_curves(probs: np.ndarray, y_true: np.ndarray, codes: tuple[str, ...], path: Path) -> None:
    plt = _plots()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for i, code in enumerate(codes):
        positive = y_true == i
        if positive.all() or not positive.any():
            continue
        fpr, tpr = roc_curve(positive, probs[:, i])
        ax.plot(fpr, tpr, label=f"{code} (AUC {roc_auc(positive, probs[:, i]):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, one class vs rest")
    ax.legend(loc="lower right", fontsize=8)
    _save(plt, fig, path)


def plot_malignant_roc(positive: np.ndarray, score: np.ndarray, label: str, auc: float, path: Path) -> None:
    plt = _plots()
    fig, ax = plt.subplots(figsize=(5, 5))
    fpr, tpr = roc_curve(positive, score)
    ax.plot(fpr, tpr, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate (benign called malignant)")
    ax.set_ylabel("true positive rate (malignant found)")
    ax.set_title(f"Malignant vs benign\nscore = {label}", fontsize=10)
    ax.legend(loc="lower right")
    _save(plt, fig, path)


def plot_reliability(curves: dict[str, np.ndarray], y_true: np.ndarray, path: Path) -> None:
    """Reliability diagram; ``curves`` maps a label (e.g. "before", "after") to probabilities."""
    plt = _plots()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    eces = []
    for label, probs in curves.items():
        rows = [(c, a) for c, a, n in calibration_bins(probs, y_true) if n]
        ece = expected_calibration_error(probs, y_true)
        eces.append(f"{label} {ece:.3f}" if len(curves) > 1 else f"{ece:.3f}")
        ax.plot([c for c, _ in rows], [a for _, a in rows], "o-", label=f"{label} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability, ECE " + " → ".join(eces))
    ax.legend(loc="upper left", fontsize=8)
    _save(plt, fig, path)


def plot_gallery(items: list[dict], paths: list[Path], path: Path, columns: int = 5) -> None:
    """Thumbnails of the confident errors, each titled with id, truth, prediction and probability."""
    from PIL import Image

    plt = _plots()
    rows = max(1, math.ceil(len(items) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, item, image_path in zip(axes.ravel(), items, paths, strict=False):
        try:
            with Image.open(image_path) as img:
                img.thumbnail((200, 200))
                ax.imshow(np.asarray(img.convert("RGB")))
        except OSError:
            ax.text(0.5, 0.5, "unreadable", ha="center", va="center")
        ax.set_title(f"{item['image_id']}\ntrue {item['truth']} → {item['prediction']} ({item['probability']:.2f})",
                     fontsize=7)
    fig.suptitle("Most confident wrong predictions")
    _save(plt, fig, path)


def confident_errors(probs: np.ndarray, y_true: np.ndarray, image_ids: list[str], codes: tuple[str, ...],
                     top: int = TOP_ERRORS, decisions: np.ndarray | None = None) -> list[dict]:
    """The ``top`` wrong decisions (``decisions``, else the most probable class) with the highest probability of
    the class decided, most confident first."""
    y_pred = probs.argmax(axis=1) if decisions is None else np.asarray(decisions)
    confidence = probs[np.arange(len(probs)), y_pred]
    wrong = np.nonzero(y_pred != y_true)[0]
    wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:top]
    return [{"index": int(i), "image_id": image_ids[i], "truth": codes[y_true[i]], "prediction": codes[y_pred[i]],
             "probability": round(float(confidence[i]), 4), "p_truth": round(float(probs[i, y_true[i]]), 4)}
            for i in wrong]


def find_near_identical(image_paths: list[Path], max_bits: int = NEAR_IDENTICAL_BITS) -> tuple[list, list[int]]:
    """(pairs of indices with distance, indices of unreadable images) over all images."""
    hashes, readable, unreadable = [], [], []
    for i, path in enumerate(image_paths):
        try:
            hashes.append(image_hash(path))
            readable.append(i)
        except OSError:
            unreadable.append(i)
    if not hashes:
        return [], unreadable
    pairs = near_identical_pairs(np.stack(hashes), max_bits)
    return [(readable[a], readable[b], d) for a, b, d in pairs], unreadable


def write_report(out_dir: Path, probs: np.ndarray, y_true: np.ndarray, image_ids: list[str],
                 image_paths: list[Path] | None, labels, metrics: dict, title: str = "Evaluation",
                 extra_md: str = "", probs_uncalibrated: np.ndarray | None = None,
                 decisions: np.ndarray | None = None) -> Path:
    """Write report.md, metrics.json and the figures into ``out_dir``; returns the report.md path. ``labels``: the
    model's ``LabelSet`` (codes, names, malignancy); ``metrics``: ``measure()``'s figures (its ``malignant_auc``
    is the one shown); ``decisions``: a decision-only prior correction's classes (else the most probable)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probs.argmax(axis=1) if decisions is None else np.asarray(decisions, dtype=np.int64)
    codes = labels.codes
    per_class = metrics.get("per_class", {})
    if "confusion_matrix" in metrics:
        matrix = np.asarray(metrics["confusion_matrix"])
    else:
        matrix = confusion_matrix(y_true, y_pred, len(codes))

    malignant = np.array(labels.malignant)
    malignant_label = " + ".join(f"P({c})" for c in labels.malignant_codes)
    auc = metrics["malignant_auc"] if "malignant_auc" in metrics else malignant_auc(probs, y_true, malignant)
    if malignant.any():
        is_malignant = malignant[y_true]
        if is_malignant.any() and not is_malignant.all():
            plot_malignant_roc(is_malignant, probs[:, malignant].sum(axis=1), malignant_label, auc,
                               out_dir / "malignant_roc.png")

    curves = {"model": probs}
    calibration = None
    if probs_uncalibrated is not None:
        curves = {"before": np.asarray(probs_uncalibrated, dtype=np.float64), "after": probs}
        calibration = {label: {"nll": round(negative_log_likelihood(p, y_true), 4),
                               "ece": round(expected_calibration_error(p, y_true), 4)} for label, p in curves.items()}

    errors = confident_errors(probs, y_true, image_ids, codes, decisions=decisions)
    pairs, unreadable = ([], []) if image_paths is None else find_near_identical(image_paths)
    error_set = set(np.nonzero(y_pred != y_true)[0].tolist())

    plot_confusion_matrix(matrix, codes, out_dir / "confusion_matrix.png")
    if per_class:
        plot_per_class_prf(per_class, out_dir / "per_class_prf.png")
    plot_roc_curves(probs, y_true, codes, out_dir / "roc_curves.png")
    plot_reliability(curves, y_true, out_dir / "reliability.png")
    if image_paths is not None and errors:
        plot_gallery(errors, [image_paths[e["index"]] for e in errors], out_dir / "confident_errors.png")

    lines = [f"# {title}", "", "## Headline metrics", ""]
    headline = [("n (images)", metrics.get("n", len(y_true))), ("accuracy", metrics.get("accuracy")),
                ("balanced accuracy", metrics.get("balanced_accuracy")), ("macro F1", metrics.get("macro_f1")),
                ("macro AUC (one vs rest)", metrics.get("macro_auc")),
                *([("melanoma recall", metrics["melanoma_recall"])] if "melanoma_recall" in metrics else []),
                ("malignant vs benign AUC", auc),
                ("NLL", metrics.get("nll")), ("ECE (15 bins)", metrics.get("ece"))]
    if metrics.get("ood_warning_rate") is not None:
        headline.append(("out-of-distribution warning rate (model scores)", metrics["ood_warning_rate"]))
    conformal = metrics.get("conformal")
    if conformal:
        headline += [(f"conformal set coverage (nominal {conformal.get('nominal_coverage')})", conformal["coverage"]),
                     ("conformal mean set size", conformal["mean_set_size"])]
    lines += _table(["metric", "value"], [[name, _fmt(value)] for name, value in headline])
    if extra_md:
        lines += ["", extra_md.strip()]
    lines += ["", "## Per class", ""]
    lines += _table(["class", "name", "precision", "recall", "F1", "AUC", "support"],
                    [[c, labels.name_of(c), *(_fmt(v.get(k)) for k in ("precision", "recall",
                      "f1", "auc")), v.get("support", "–")] for c, v in per_class.items()], "llrrrrr")
    lines += ["", "![per-class precision, recall and F1](per_class_prf.png)" if per_class else "",
              "", "## Confusion matrix", "", "Rows are the true class, columns the predicted class.", ""]
    lines += _table(["true \\ predicted", *codes], [[c, *row] for c, row in zip(codes, matrix.tolist(), strict=True)])
    lines += ["", "![confusion matrix](confusion_matrix.png)", "", "## ROC curves", "",
              "![one-vs-rest ROC curves](roc_curves.png)", ""]
    if malignant.any():
        lines += ["### Malignant vs benign", "",
                  f"Score {malignant_label}; malignant-vs-benign AUC **{_fmt(auc)}**.", ""]
        if (out_dir / "malignant_roc.png").exists():
            lines += ["![malignant vs benign ROC](malignant_roc.png)", ""]
    lines += ["## Calibration", ""]
    if calibration:
        lines += _table(["probabilities", "NLL", "ECE"],
                        [[f"{label} calibration", _fmt(v["nll"]), _fmt(v["ece"])] for label, v in calibration.items()])
        lines.append("")
    lines += ["![reliability diagram](reliability.png)", "",
              f"## Most confident errors ({len(errors)} of {len(error_set)} wrong predictions)", ""]
    if errors:
        lines += _table(["rank", "image", "truth", "prediction", "P(prediction)", "P(truth)"],
                        [[k, e["image_id"], e["truth"], e["prediction"], _fmt(e["probability"], 3),
                          _fmt(e["p_truth"], 3)] for k, e in enumerate(errors, start=1)], "rlllrr")
        if image_paths is not None:
            lines += ["", "![most confident errors](confident_errors.png)", "",
                      "The thumbnails are the evaluated images themselves: mind their licence before publishing."]
    else:
        lines.append("No wrong predictions.")
    lines += ["", "## Near-identical pairs", ""]
    if image_paths is None:
        lines.append("Not checked: no image files were given.")
    else:
        lines.append(f"Pairs of evaluated images whose 16x16 difference hash of the centre square (256 bits) differs "
                     f"in at most {NEAR_IDENTICAL_BITS} bits: near-identical photographs. "
                     f"Checked {len(image_paths) - len(unreadable)} images"
                     + (f" ({len(unreadable)} unreadable)" if unreadable else "") + ".")
        lines.append("")
        if pairs:
            lines += _table(["image a", "image b", "bits", "truth a", "truth b", "pred a", "pred b", "an error"],
                            [[image_ids[a], image_ids[b], d, codes[y_true[a]], codes[y_true[b]], codes[y_pred[a]],
                              codes[y_pred[b]], "yes" if a in error_set or b in error_set else ""]
                             for a, b, d in pairs], "llrlllll")
        else:
            lines.append("None found.")
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")

    doc = {"malignant_auc": auc, **metrics, "malignant_codes": list(labels.malignant_codes), "confident_errors": errors,
           "near_identical_pairs": [{"a": image_ids[a], "b": image_ids[b], "bits": d} for a, b, d in pairs]}
    if calibration:
        doc["calibration"] = calibration
    (out_dir / "metrics.json").write_text(json.dumps(_json_safe(doc), indent=2) + "\n")
    return path
