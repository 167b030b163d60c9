"""Choose what a training run ships, on the validation split: its best epoch, or the mean of the weights of
its last N epochs (a cheap stochastic weight average). Prints one markdown row per candidate with the raw
network's validation figures (argmax, no calibration). Needs TensorFlow (training requirements).

    python -m scripts.compare_checkpoints --work runs/RUN --data ../shared/data/ham10000 --average 2 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--average", type=int, nargs="*", default=[2, 3], help="numbers of last epochs to average")
    args = parser.parse_args(argv)
    if not (args.work / "state.json").is_file():
        parser.error(f"{args.work}: not a training run (no state.json); give the --work folder of `train`")

    from classifier.data import in_split, load_split, read_metadata, resolve_images
    from classifier.errors import ClassifierError
    from classifier.evaluation.metrics import classification_metrics
    from classifier.labels import CODES
    from classifier.training.fit import load_arrays
    from classifier.training.network import average_weights, build_classifier

    state = json.loads((args.work / "state.json").read_text())
    settings = state["settings"]
    try:
        records = read_metadata(args.data)
    except ClassifierError as exc:
        parser.error(str(exc))
    split = load_split(args.work / "split.json")
    val = in_split(records, split, "val")
    paths = resolve_images(val, args.data)
    x = load_arrays([paths[r.image_id] for r in val], settings["size"]).astype("float32")
    y = np.array([CODES.index(r.dx) for r in val])
    model = build_classifier(settings["backbone"], settings["size"], len(CODES), imagenet=False)

    candidates = {f"best epoch ({state['best_epoch']})": [args.work / "best.weights.h5"]}
    last = state["epoch"]
    for n in args.average:
        if last - n + 1 >= 1:
            candidates[f"mean of epochs {last - n + 1}-{last}"] = [args.work / f"epoch{e}.weights.h5"
                                                                  for e in range(last - n + 1, last + 1)]
    print("| candidate | val accuracy | val balanced accuracy | val melanoma recall | val macro AUC "
          "| val melanoma AUC |\n| --- | --- | --- | --- | --- | --- |")
    for name, files in candidates.items():
        model.set_weights(average_weights(model, files))
        m = classification_metrics(model.predict(x, batch_size=64, verbose=0), y, CODES)
        print(f"| {name} | {m['accuracy']:.4f} | {m['balanced_accuracy']:.4f} | {m['melanoma_recall']:.4f} | "
              f"{m['macro_auc']:.4f} | {m['per_class']['mel']['auc']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
