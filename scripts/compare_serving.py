"""Choose how a model is served, on the validation split: which graph (e.g. the float32 and the int8 export of
the same weights) and how many views of each image to average. For each model folder and each view set, the
prior correction and the temperature are fitted on validation for exactly that (as `export` does) and the
served validation figures are printed, one markdown row each; the export's criterion is
(accuracy + balanced accuracy) / 2. Serving requirements only (no TensorFlow).

    python -m classifier export --from-model model --data DATA --out runs/float --float   # a float32 twin
    python scripts/compare_serving.py --models runs/float model --data ../shared/data/ham10000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VIEW_SETS = {1: ("identity",), 2: ("identity", "flip_h"), 4: ("identity", "flip_h", "flip_v", "rot180")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="model folders to compare")
    parser.add_argument("--data", type=Path, required=True, help="HAM10000 folder (metadata CSV and images)")
    parser.add_argument("--split", default="val", choices=("val", "test"),
                        help="where to fit and measure (choose on val; test only for a chosen candidate)")
    args = parser.parse_args(argv)

    from classifier.api import Classifier
    from classifier.data import load_split, read_metadata, resolve_images
    from classifier.errors import ClassifierError
    from classifier.labels import CODES
    from classifier.reporting.evaluation import (
        fit_prior_correction,
        fit_temperature,
        mean_probabilities,
        predict_logits,
    )
    from classifier.reporting.metrics import classification_metrics
    from classifier.tta import VIEWS

    try:
        classifiers = [Classifier(folder) for folder in args.models]
        for folder, classifier in zip(args.models, classifiers, strict=True):
            if classifier.config.file("split") is None:
                parser.error(f"{folder}: no split.json, so no validation split to fit and measure on")
        records = read_metadata(args.data)
        paths = resolve_images(records, args.data)
    except ClassifierError as exc:
        parser.error(str(exc))
    label_of = {r.image_id: CODES.index(r.dx) for r in records}
    print(f"| model | views | tau | T | {args.split} (acc + bal. acc) / 2 | accuracy | balanced accuracy | "
          "melanoma recall | macro AUC | melanoma AUC | NLL |\n| --- | --- | --- | --- | --- | --- | --- | --- "
          "| --- | --- | --- |")
    all_views = tuple(VIEWS)
    for folder, classifier in zip(args.models, classifiers, strict=True):
        split = load_split(classifier.config.file("split"))
        ids = {s: sorted(i for i, v in split.items() if v == s and i in label_of) for s in ("train", args.split)}
        counts = np.bincount([label_of[i] for i in ids["train"]], minlength=len(CODES))
        y = np.array([label_of[i] for i in ids[args.split]])
        logits = predict_logits(classifier, [paths[i] for i in ids[args.split]], views=all_views)
        for name, views in {**VIEW_SETS, 8: all_views}.items():
            chosen = logits[:, [all_views.index(v) for v in views]]
            tau = fit_prior_correction(chosen, y, counts)
            bias = -tau * np.log(np.maximum(counts, 1) / counts.sum())
            temperature = fit_temperature(chosen, y, bias)
            m = classification_metrics(mean_probabilities(chosen, temperature, bias), y, CODES)
            print(f"| {folder} ({classifier.config.raw.get('serving', {}).get('runtime', 'float32')}) | {name} | "
                  f"{tau} | {temperature} | {(m['accuracy'] + m['balanced_accuracy']) / 2:.4f} | {m['accuracy']:.4f} "
                  f"| {m['balanced_accuracy']:.4f} | {m['melanoma_recall']:.4f} | {m['macro_auc']:.4f} | "
                  f"{m['per_class']['mel']['auc']:.4f} | {m['nll']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
