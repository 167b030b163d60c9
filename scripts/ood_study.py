"""Compare variants of the feature-space out-of-distribution score on one model folder: raw, L2-normalised
or square-rooted pooled features; covariance shrinkage; all or the top principal directions. For each, the
false-alarm rate on the test split and how many of the clearly foreign images of measure_ood.py are caught,
with the threshold at the validation split's 95th and 97th percentiles.

    python scripts/ood_study.py --model model --data ../shared/data/ham10000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def features_by_split(model: str, data: Path) -> dict[str, np.ndarray]:
    from measure_ood import foreign_images

    from classifier.api import Classifier
    from classifier.data import load_split, read_metadata, resolve_images
    from classifier.evaluation.measure import predict_logits

    classifier = Classifier(model)
    records = read_metadata(data)
    paths = resolve_images(records, data)
    split = load_split(classifier.config.file("split"))
    out = {}
    for name in ("train", "val", "test"):
        chosen = [r for r in records if split.get(r.image_id) == name]
        _, out[name] = predict_logits(classifier, [paths[r.image_id] for r in chosen], with_features=True,
                                      show_progress=False)
        out[name + "_y"] = np.array([classifier.config.codes.index(r.dx) for r in chosen])
    _, _, out["foreign"] = classifier.forward(np.stack([classifier.prepare(i) for i in foreign_images().values()]))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model")
    parser.add_argument("--data", type=Path, required=True)
    args = parser.parse_args(argv)

    from classifier.uncertainty import fit_mahalanobis, mahalanobis_distance

    f = features_by_split(args.model, args.data)
    transforms = {"raw": lambda x: x, "sqrt": np.sqrt, "l2": lambda x: x}  # l2: normalised inside the fit
    print("| features | shrinkage | directions | test false alarms @95% | foreign caught @95% "
          "| test false alarms @97% | foreign caught @97% |\n| --- | --- | --- | --- | --- | --- | --- |")
    for name, transform in transforms.items():
        for shrinkage in (0.001, 0.01, 0.1):
            for dims in (None, 256, 64):
                unit = name == "l2"
                fitted = fit_mahalanobis(transform(f["train"]), f["train_y"], len(set(f["train_y"])), shrinkage, dims,
                                         normalise=unit)
                score = {k: mahalanobis_distance(transform(f[k]), fitted, normalise=unit)
                         for k in ("val", "test", "foreign")}
                cells = []
                for q in (0.95, 0.97):
                    threshold = np.quantile(score["val"], q)
                    cells += [f"{np.mean(score['test'] > threshold):.3f}",
                              f"{np.sum(score['foreign'] > threshold)}/{len(score['foreign'])}"]
                print(f"| {name} | {shrinkage} | {dims or 'all'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
