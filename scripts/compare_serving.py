"""Choose how a model is served, on the validation split: which graph (e.g. the float32 and the int8 export of
the same weights) and how many views of each image to average. For each model folder and each view set, the
prior correction and the temperature are fitted on validation for exactly that (as `export` does) and the
served validation figures are printed, one markdown row each; the export's criterion is
(accuracy + balanced accuracy) / 2. Serving requirements only (no TensorFlow).

    python -m classifier export --from-model model --data DATA --out runs/float --float   # a float32 twin
    python -m scripts.compare_serving --models runs/float model --data ../shared/data/ham10000
    python -m scripts.compare_serving --models model OTHER_MODEL --ensemble --data ../shared/data/ham10000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

VIEW_SETS = {1: ("identity",), 2: ("identity", "flip_h"), 4: ("identity", "flip_h", "flip_v", "rot180")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="model folders to compare")
    parser.add_argument("--data", type=Path, required=True, help="HAM10000 folder (metadata CSV and images)")
    parser.add_argument("--ensemble", action="store_true",
                        help="with two models: also their probabilities averaged, 2 + 2 and 4 + 4 views")
    parser.add_argument("--split", default="val", choices=("val", "test"),
                        help="where to fit and measure (choose on val; test only for a chosen candidate)")
    args = parser.parse_args(argv)

    from classifier.api import Classifier
    from classifier.data import load_split, read_metadata, resolve_images
    from classifier.errors import ClassifierError
    from classifier.evaluation.fitting import fit_prior_correction, fit_temperature, mean_probabilities, prior_bias
    from classifier.evaluation.measure import predict_logits
    from classifier.evaluation.metrics import classification_metrics
    from classifier.labels import CODES
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
    if args.ensemble and len(args.models) != 2:
        parser.error("--ensemble compares exactly two models")
    all_views = tuple(VIEWS)

    def row(name, views, logits, y, counts):
        tau = fit_prior_correction(logits, y, counts)
        bias = prior_bias(tau, counts)
        temperature = fit_temperature(logits, y, bias)
        m = classification_metrics(mean_probabilities(logits, temperature, bias), y, CODES)
        print(f"| {name} | {views} | {tau} | {temperature} | {(m['accuracy'] + m['balanced_accuracy']) / 2:.4f} | "
              f"{m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} | {m['melanoma_recall']:.4f} | "
              f"{m['macro_auc']:.4f} | {m['per_class']['mel']['auc']:.4f} | {m['nll']:.4f} |", flush=True)

    per_model = []
    for folder, classifier in zip(args.models, classifiers, strict=True):
        split = load_split(classifier.config.file("split"))
        ids = {s: sorted(i for i, v in split.items() if v == s and i in label_of) for s in ("train", args.split)}
        counts = np.bincount([label_of[i] for i in ids["train"]], minlength=len(CODES))
        y = np.array([label_of[i] for i in ids[args.split]])
        logits = predict_logits(classifier, [paths[i] for i in ids[args.split]], views=all_views)
        per_model.append((ids[args.split], y, logits))
        name = f"{folder} ({classifier.config.serving.runtime or 'float32'})"
        for count, views in {**VIEW_SETS, 8: all_views}.items():
            row(name, count, logits[:, [all_views.index(v) for v in views]], y, counts)
    if args.ensemble:
        (ids_a, y, logits_a), (ids_b, _, logits_b) = per_model
        if ids_a != ids_b:
            parser.error("--ensemble needs two models with the same split")
        for count in (2, 4):
            chosen = [all_views.index(v) for v in VIEW_SETS[count]]
            row(f"mean of {args.models[0]} and {args.models[1]}", f"{count} + {count}",
                np.concatenate([logits_a[:, chosen], logits_b[:, chosen]], axis=1), y, counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
