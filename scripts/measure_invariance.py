"""Same lesion, same answer: how far the served prediction moves when the same test-split picture arrives turned or
mirrored, or in another format, size, orientation tag or colour mode (classifier.evaluation.robustness).

    .venv/bin/python -m scripts.measure_invariance --model model --data ../shared/data/ham10000 [--images 60]
        [--runtime litert|keras] [--tta] [--split val|test] [--out runs/invariance.json]

Three groups of test-split (or ``--split val``) pictures: ``--images`` full frames (200x150), as many 224x224
centre crops, and every 600x450 JPEG of the split, whose file is also compared with its own fully decoded
pixels. Prints one line per comparison (mean, p95 and largest change of any class probability, top-class
changes) and the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.api import Classifier
from classifier.data import load_split, read_metadata
from classifier.errors import exit_status
from classifier.evaluation.robustness import (
    delivery_shifts,
    invariance_groups,
    jpeg_summary,
    shift,
    summary,
    symmetry_shifts,
)
from classifier.model_options import add_model_arguments, open_model


def measure(classifier: Classifier, groups: dict[str, list[Path]], tta: bool) -> dict:
    results = {}
    for group, paths in groups.items():
        per_kind: dict[str, tuple[list[float], list[bool]]] = {}

        def add(kind: str, value: tuple[float, bool], per_kind=per_kind) -> None:
            shifts, changed = per_kind.setdefault(kind, ([], []))
            shifts.append(value[0])
            changed.append(value[1])

        for path in paths:
            with Image.open(path) as opened:
                upright = opened.convert("RGB")  # fully decoded: no draft
            for value in symmetry_shifts(classifier, upright, tta=tta).values():
                add("symmetries (7 per picture)", value)
            for kind, value in delivery_shifts(classifier, upright, tta=tta).items():
                add(kind, value)
                add("all deliveries", value)
            add("the file itself", shift(classifier.classify(np.asarray(upright), tta=tta),
                                         classifier.classify(path, tta=tta)))
        results[group] = {kind: summary(*values) for kind, values in per_kind.items()}
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder")
    p.add_argument("--images", type=int, default=60, help="test-split pictures per small-image folder")
    p.add_argument("--tta", action="store_true", help="classify with the test-time augmentation views")
    p.add_argument("--split", default="test", choices=("val", "test"), help="which split's pictures (default test)")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = p.parse_args(argv)
    read_metadata(args.data)  # a clear error for a folder that is not the data set, before the model loads
    classifier = open_model(args)
    split = load_split(classifier.config.file("split"))
    groups = invariance_groups(args.data, split, args.images, args.split)
    results = {"model": str(classifier.source.path), "runtime": classifier.runtime.name,
               "views": list(classifier.views(args.tta)), "split": args.split,
               "groups": measure(classifier, groups, args.tta)}
    results["jpeg"] = jpeg_summary(results["groups"])
    for group, kinds in results["groups"].items():
        print(f"{group} ({len(groups[group])} pictures)")
        for kind, s in kinds.items():
            print(f"  {kind:28s} n={s['n']:4d} mean={s['mean']:.4f} p95={s['p95']:.4f} max={s['max']:.4f} "
                  f"top class changed {s['top_class_changed']}")
    jpeg = results["jpeg"]
    if jpeg["n"]:
        print(f"JPEG deliveries (mean over groups of the p95): mean p95={jpeg['mean_p95']:.4f} max={jpeg['max']:.4f} "
              f"top class changed {jpeg['top_class_changed']} of {jpeg['n']}")
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
