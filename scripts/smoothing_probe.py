"""Exploration for issue 16 (nothing served uses it): smooth the prepared image (a Gaussian of ``--sigma`` px,
reflected edges, both filter orders averaged so that turning the image still turns the pixels exactly, rounded to
8 bits) before the shipped network, without retraining. Prints one JSON line: the JPEG deliveries' reaction on
validation pictures (as ``scripts.measure_invariance --split val --images 30``), the symmetries' largest shift,
and the validation figures at the model's prior correction.

    .venv/bin/python -m scripts.smoothing_probe --model model --data ../shared/data/ham10000 --sigma 0.7
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
from scripts.measure_invariance import measure, split_pictures

JPEG_KINDS = ("jpeg_q95", "jpeg_q95_2x", "jpeg_exif_orientation", "cmyk_jpeg")


class SmoothedClassifier(Classifier):
    """The served classifier with the prepared pixels smoothed first."""

    sigma = 0.0

    def prepare(self, image) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        prepared = super().prepare(image)
        if self.sigma == 0:
            return prepared
        x, s = prepared.astype(np.float64), (self.sigma, self.sigma, 0)
        both = (gaussian_filter(x, s, mode="reflect")
                + gaussian_filter(x.transpose(1, 0, 2), s, mode="reflect").transpose(1, 0, 2)) / 2
        return np.clip(np.round(both), 0, 255).astype(np.uint8)


def probe(folder: Path, data: Path, sigma: float, pictures: int = 30) -> dict:
    classifier = SmoothedClassifier(folder)
    classifier.sigma = sigma
    split = load_split(classifier.config.file("split"))
    groups = {"200x150": split_pictures(data, split, "images_200x150", pictures, "val"),
              "224 crops": split_pictures(data, split, "images_center224", pictures, "val"),
              "600x450": split_pictures(data, split, "images_600x450", None, "val")}
    shifts = measure(classifier, groups, False)
    records, codes = read_metadata(data), classifier.config.codes
    val, train = in_split(records, split, "val"), in_split(records, split, "train")
    if not val or not train:
        raise DataError(f"{data}: no images of the model's training and validation split in its metadata")
    paths = resolve_images(val, data)
    labels = np.array([codes.index(r.dx) for r in val])
    counts = np.bincount([codes.index(r.dx) for r in train], minlength=len(codes)).astype(float)
    logits = predict_logits(classifier, [paths[r.image_id] for r in val], show_progress=False)
    bias = prior_bias(classifier.config.calibration.prior_correction_tau or 0.0, counts)
    m = classification_metrics(mean_probabilities(logits, fit_temperature(logits, labels, bias), bias), labels, codes)
    return {"sigma": sigma,
            "jpeg_mean_p95": round(float(np.mean([shifts[g][k]["p95"] for g in shifts for k in JPEG_KINDS])), 4),
            "jpeg_max": max(shifts[g][k]["max"] for g in shifts for k in JPEG_KINDS),
            "symmetry_max": max(shifts[g]["symmetries (7 per picture)"]["max"] for g in shifts),
            "criterion": round((m["accuracy"] + m["balanced_accuracy"]) / 2, 4),
            **{key: m[key] for key in ("accuracy", "balanced_accuracy", "melanoma_recall", "macro_auc")}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("model"))
    p.add_argument("--data", type=Path, default=HAM_DIR)
    p.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.7])
    args = p.parse_args(argv)
    for sigma in args.sigma:
        print(json.dumps(probe(args.model, args.data, sigma)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
