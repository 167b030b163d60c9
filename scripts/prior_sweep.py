"""Validation figures of one or more models as served (all their views) at several prior-correction strengths,
the temperature refitted for each, through the export's own functions: is a model's shortfall its decision rule?

    .venv/bin/python -m scripts.prior_sweep --data ../shared/data/ham10000 model runs/h/model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from classifier.api import Classifier
from classifier.data import HAM_DIR, DataError, in_split, load_split, read_metadata, resolve_images
from classifier.errors import exit_status
from classifier.evaluation.fitting import fit_temperature, mean_probabilities, prior_bias
from classifier.evaluation.measure import predict_logits
from classifier.evaluation.metrics import classification_metrics

STRENGTHS = (0.0, 0.2, 0.35, 0.5)


def sweep(classifier: Classifier, data: Path, strengths=STRENGTHS) -> list[dict]:
    """One row per strength: (accuracy + balanced accuracy) / 2, accuracy, balanced accuracy, melanoma recall,
    macro AUC on the model's validation split (the temperature refitted for each)."""
    codes = classifier.config.codes
    records = read_metadata(data)
    split = load_split(classifier.config.file("split"))
    val, train = in_split(records, split, "val"), in_split(records, split, "train")
    if not val or not train:
        raise DataError(f"{data}: no images of the model's training and validation split in its metadata")
    paths = resolve_images(val, data)
    labels = np.array([codes.index(r.dx) for r in val])
    counts = np.bincount([codes.index(r.dx) for r in train], minlength=len(codes)).astype(float)
    logits = predict_logits(classifier, [paths[r.image_id] for r in val], show_progress=False)
    rows = []
    for tau in strengths:
        bias = prior_bias(tau, counts)
        m = classification_metrics(mean_probabilities(logits, fit_temperature(logits, labels, bias), bias), labels,
                                   codes)
        criterion = round((m["accuracy"] + m["balanced_accuracy"]) / 2, 4)
        rows.append({"model": str(classifier.config.folder), "tau": tau, "criterion": criterion, **{
            key: m[key] for key in ("accuracy", "balanced_accuracy", "melanoma_recall", "macro_auc")}})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", type=Path, nargs="+", help="model folders (each with its split.json)")
    p.add_argument("--data", type=Path, default=HAM_DIR, help="HAM10000 folder")
    args = p.parse_args(argv)
    for folder in args.models:
        for row in sweep(Classifier(folder), args.data):
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
