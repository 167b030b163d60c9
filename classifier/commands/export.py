"""``python -m classifier export``: turn a training run (or an existing model folder's Keras model) into a
model folder: LiteRT graph, calibration, conformal sets, out-of-distribution statistics, metrics and card.
Needs TensorFlow (training requirements)."""

from pathlib import Path


def add_arguments(p):
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--work", type=Path, help="training run folder (checkpoints from `train --work`)")
    source.add_argument("--from-model", type=Path, help="model folder whose model.keras to export again")
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder (metadata CSV and images)")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--average-last", type=int, default=1,
                   help="with --work: average the weights of the last N epochs instead of taking the best epoch")
    p.add_argument("--float", dest="quantize", action="store_false",
                   help="write a float32 LiteRT graph (default: int8, calibrated on 300 training images)")
    p.add_argument("--prior-correction", choices=("decision", "probabilities"), default="decision",
                   help="where the prior correction fitted on validation acts: on the decision only (default: the "
                        "probabilities, their temperature and the conformal sets are fitted without it; "
                        "calibration.decision_bias), or inside the probabilities (calibration.class_bias, the "
                        "older form)")


def run(args):
    # A ClassifierError or a missing file (no checkpoints, no split.json) is `error: ...`, status 2 (cli.main)
    if args.work:
        from classifier.training.export_model import export_run

        export_run(args.work, args.data, args.out, average_last=args.average_last, quantize=args.quantize,
                   prior_correction=args.prior_correction)
    else:
        from classifier.data import read_metadata, resolve_images
        from classifier.training.export_model import export_keras_folder

        records = read_metadata(args.data)
        export_keras_folder(args.from_model, args.out, records, resolve_images(records, args.data),
                            quantize=args.quantize, prior_correction=args.prior_correction)
    print(f"model folder written to {args.out}")
