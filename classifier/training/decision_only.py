"""Issue 16, item 4: the prior correction applied to the decision only, measured on cached logits.

    python -m classifier.training.decision_only --features runs/features.npz [--split test]

"as served": the calibrated probabilities are softmax((logits + class_bias) / T), with the prior correction
(class_bias) inside, and the conformal sets are fitted on them. "decision only": the probabilities are
softmax(logits / T0) with T0 fitted without the correction, the conformal threshold is fitted on those, and only
the top class is chosen with the correction (argmax of logits + class_bias, per view's mean as served). Both are
fitted on validation (tau by the export's rule) and measured on ``--split``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from classifier.errors import exit_status
from classifier.evaluation.fitting import fit_prior_correction, fit_temperature, mean_probabilities, prior_bias
from classifier.evaluation.metrics import classification_metrics
from classifier.labels import CODES
from classifier.uncertainty import fit_conformal_threshold, set_metrics


def compare(cache: dict, split: str = "test") -> list[dict]:
    y_train, y_val, y = cache["train_label"], cache["val_label"], cache[f"{split}_label"]
    counts = np.bincount(y_train, minlength=len(CODES))
    val_logits, logits = cache["val_logits"], cache[f"{split}_logits"]
    tau = fit_prior_correction(val_logits, y_val, counts)
    bias = prior_bias(tau, counts)
    rows = []
    for name, probability_bias in (("as served (correction inside the probabilities)", bias),
                                   ("decision only (probabilities without it)", None)):
        temperature = fit_temperature(val_logits, y_val, probability_bias)
        threshold = fit_conformal_threshold(mean_probabilities(val_logits, temperature, probability_bias), y_val)
        probs = mean_probabilities(logits, temperature, probability_bias)
        decided = mean_probabilities(logits, temperature, bias).argmax(axis=1)  # the same decisions in both
        m = classification_metrics(probs, y, CODES, predicted=decided)
        sets = set_metrics(probs, y, threshold)
        rows.append({"variant": name, "tau": tau, "temperature": temperature,
                     "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                     "top_probability_is_decision": round(float(np.mean(probs.argmax(axis=1) == decided)), 4),
                     "macro_auc": m["macro_auc"], "melanoma_auc": m["per_class"]["mel"]["auc"], "nll": m["nll"],
                     "ece": m["ece"], "set_coverage": sets["coverage"], "set_size": sets["mean_set_size"],
                     "split": split, **disagreements(probs, decided)})
    return rows


def disagreements(probs: np.ndarray, decided: np.ndarray) -> dict:
    """Where the chosen class is not the most probable one: how often, which pairs, and their probabilities."""
    top = probs.argmax(axis=1)
    differ = np.flatnonzero(top != decided)
    pairs: dict[str, int] = {}
    for i in differ:
        key = f"{CODES[decided[i]]} over {CODES[top[i]]}"
        pairs[key] = pairs.get(key, 0) + 1
    medians = ({"median_chosen_probability": round(float(np.median(probs[differ, decided[differ]])), 3),
                "median_top_probability": round(float(np.median(probs[differ].max(axis=1))), 3)} if len(differ) else {})
    return {"disagreements": len(differ), "pairs": dict(sorted(pairs.items(), key=lambda kv: -kv[1])), **medians}


def main(argv: list[str] | None = None) -> int:
    from classifier.training.feature_cache import load_cache

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, default=Path("runs/features.npz"))
    p.add_argument("--split", choices=("val", "test"), default="test")
    args = p.parse_args(argv)
    for row in compare(load_cache(args.features), args.split):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
