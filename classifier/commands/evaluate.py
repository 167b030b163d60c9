"""``python -m classifier evaluate``: measure a model on the test split or on any labelled folder.

The last line of stdout is one JSON object with the metrics of ``classifier.evaluation.measure.measure`` (the
names of config.json ``metrics.test``); the report folder holds report.md,
the confusion matrix, per-class P/R/F1, ROC curves, the reliability diagram and the most
confident wrong predictions.
"""

import json
import sys
from pathlib import Path

from classifier.data import DataError
from classifier.errors import ArgumentError
from classifier.model_options import add_model_arguments, open_model


def add_arguments(p):
    add_model_arguments(p)
    p.add_argument("--data", type=Path, help="HAM10000 folder (metadata CSV and images)")
    p.add_argument("--split", choices=("train", "val", "test"), default="test",
                   help="which split of the model's split.json to evaluate (with --data)")
    p.add_argument("--images", type=Path, help="folder of images named by id (with --labels)")
    p.add_argument("--labels", type=Path, help="CSV with columns image_id,dx (with --images)")
    p.add_argument("--out", type=Path, default=Path("reports/evaluation"), help="report folder")
    p.add_argument("--tta", action="store_true", help="average over the model's test-time augmentation views")


def _labelled_images(args, classifier):
    """(image ids, paths, true labels) from --data/--split or --images/--labels."""
    from classifier.data import find_images, in_split, lesion_split, load_split, read_metadata, resolve_images

    codes = classifier.config.codes
    if args.data:
        records = read_metadata(args.data)
        split_file = classifier.config.file("split")
        if split_file is not None:
            split = load_split(split_file)
        else:
            print("note: the model has no split.json; using the default lesion-grouped split", file=sys.stderr)
            split = lesion_split(records)
        chosen = in_split(records, split, args.split)
        if not chosen:
            raise DataError(f"no images of the {args.split} split found in {args.data}")
        paths = resolve_images(chosen, args.data)
        return [r.image_id for r in chosen], [paths[r.image_id] for r in chosen], [codes.index(r.dx) for r in chosen]
    import csv

    with open(args.labels, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"image_id", "dx"} <= set(rows[0]):
        raise DataError(f"{args.labels}: needs a header with columns image_id,dx")
    unknown = sorted({row["dx"] for row in rows} - set(codes))
    if unknown:
        raise DataError(f"{args.labels}: unknown diagnoses {', '.join(unknown)}; expected {', '.join(codes)}")
    images = find_images(args.images)
    missing = [row["image_id"] for row in rows if row["image_id"] not in images]
    if missing:
        raise DataError(f"{args.images}: {len(missing)} labelled image(s) not found, e.g. {', '.join(missing[:5])}")
    return ([row["image_id"] for row in rows], [images[row["image_id"]] for row in rows],
            [codes.index(row["dx"]) for row in rows])


def run(args):
    if bool(args.data) == bool(args.images) or bool(args.images) != bool(args.labels):
        raise ArgumentError("give either --data DIR [--split test] or --images DIR --labels CSV")
    import numpy as np

    from classifier.documents.report import write_report
    from classifier.evaluation.fitting import mean_probabilities
    from classifier.evaluation.measure import measure, predict_for_measure
    from classifier.explain import served

    classifier = open_model(args)
    try:
        ids, paths, labels = _labelled_images(args, classifier)
        view_logits, features = predict_for_measure(classifier, paths, tta=args.tta)
    except OSError as exc:  # an unreadable labels file or image folder (a ClassifierError goes to cli.main)
        raise DataError(str(exc)) from exc
    y = np.array(labels)
    config = classifier.config
    calibration = config.calibration
    probs, decisions = served(calibration, view_logits)
    metrics = measure(config, view_logits, y, features, classifier.feature_statistics)
    title = f"Evaluation on {'the ' + args.split + ' split' if args.data else args.labels.name}"
    report = write_report(args.out, probs, y, ids, paths, config.labels, metrics, title=title,
                          extra_md=f"Model: `{_shown(config.folder)}`; TTA: {'on' if args.tta else 'off'}; "
                                   f"temperature {calibration.temperature}; {_bias_text(calibration)}.",
                          probs_uncalibrated=mean_probabilities(view_logits, 1.0), decisions=decisions)
    print(f"report: {report}", file=sys.stderr)
    print(json.dumps(metrics))


def _bias_text(calibration) -> str:
    """Where the prior correction sits, for the report."""
    if calibration.decision_bias is None:
        return f"class bias {list(calibration.class_bias)}"
    return (f"prior correction on the decision only: decision bias {list(calibration.decision_bias)} (the "
            "probabilities, AUC, NLL and ECE are without it; accuracy, recall, the confusion matrix and the most "
            "confident errors (by the decided class's probability) score the decisions)")


def _shown(folder: Path) -> str:
    """The model folder as a reader of the report can use it: relative to here when inside, else its name."""
    folder, here = Path(folder).resolve(), Path.cwd().resolve()
    return str(folder.relative_to(here)) if folder.is_relative_to(here) else folder.name
