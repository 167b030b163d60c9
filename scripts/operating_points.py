"""What another decision rule would cost: the served probabilities of a model (from a feature cache of its graph)
decided with a stronger prior correction (``--tau``) or an extra bias towards melanoma (``--melanoma``), on the
validation and test splits. The probabilities, their AUCs and the conformal sets do not change with the rule.

    .venv/bin/python -m classifier.training.feature_cache --model model --data ../shared/data/ham10000 \\
        --out runs/features_c10.npz --splits val test
    .venv/bin/python -m scripts.operating_points --features runs/features_c10.npz --model model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from classifier.data import DataError
from classifier.errors import ArgumentError, exit_status
from classifier.evaluation.metrics import classification_metrics
from classifier.explain import decided_classes, served
from classifier.model_folder import read_config
from classifier.training.feature_cache import load_cache_split


def decision_figures(config, view_logits: np.ndarray, labels: np.ndarray, bias: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, their mean and melanoma recall and precision of the decisions under ``bias``."""
    probs, _ = served(config.calibration, view_logits)
    decisions = decided_classes(view_logits, config.calibration.temperature, bias)
    m = classification_metrics(probs, labels, config.codes, predicted=decisions)
    mel = m["per_class"]["mel"]
    return {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "criterion": round((m["accuracy"] + m["balanced_accuracy"]) / 2, 4),
            "melanoma_recall": mel["recall"], "melanoma_precision": mel["precision"]}


def cache_split(path: Path, split: str, model: Path) -> dict:
    """One split's view logits and labels from the feature cache, or a DataError that says how to make it."""
    how = f"make one with python -m classifier.training.feature_cache --model {model} --splits val test"
    try:
        arrays = load_cache_split(path, split, model)
    except (ValueError, OSError) as exc:
        if not Path(path).is_file():
            raise
        raise DataError(f"{path}: not a feature cache ({exc.__class__.__name__}); {how}") from exc
    if not {"logits", "label"} <= set(arrays):
        raise DataError(f"{path}: holds no {split} split; {how}")
    return arrays


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, required=True, help="feature_cache output with the val and test splits")
    p.add_argument("--model", type=Path, default=Path("model"), help="the model folder the cache was made with")
    p.add_argument("--tau", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6])
    p.add_argument("--melanoma", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    args = p.parse_args(argv)
    config = read_config(args.model)
    calibration = config.calibration
    if calibration.decision_bias is None or not calibration.prior_correction_tau:
        raise ArgumentError(f"{args.model}: no decision-only prior correction to vary")
    log_prior = -np.asarray(calibration.decision_bias) / calibration.prior_correction_tau
    if "mel" not in config.codes:
        raise ArgumentError(f"{args.model}: no melanoma class (mel) to bias towards")
    splits = {s: cache_split(args.features, s, args.model) for s in ("val", "test")}
    mel = config.codes.index("mel")
    rules = [("tau", tau, -tau * log_prior) for tau in args.tau]
    rules += [("melanoma", extra, np.asarray(calibration.decision_bias) + extra * np.eye(len(config.codes))[mel])
              for extra in args.melanoma]
    for kind, value, bias in rules:
        row = {kind: value, **{split: decision_figures(config, arrays["logits"], arrays["label"], bias)
                               for split, arrays in splits.items()}}
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
