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
from classifier.data import HAM_DIR, load_split
from classifier.errors import exit_status
from classifier.evaluation.robustness import invariance_groups, jpeg_summary
from scripts.measure_invariance import measure
from scripts.prior_sweep import sweep


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
    groups = invariance_groups(data, split, pictures, "val")
    shifts = measure(classifier, groups, False)
    tau = classifier.config.calibration.prior_correction_tau or 0.0
    figures = sweep(classifier, data, (tau,))[0]
    jpeg = jpeg_summary(shifts)
    return {"sigma": sigma, "jpeg_mean_p95": jpeg["mean_p95"], "jpeg_max": jpeg["max"],
            "symmetry_max": max(shifts[g]["symmetries (7 per picture)"]["max"] for g in shifts),
            **{key: value for key, value in figures.items() if key not in ("model", "tau")}}


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
