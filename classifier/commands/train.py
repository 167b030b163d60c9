"""``python -m classifier train``."""

from pathlib import Path


def add_arguments(p):
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder: metadata CSV and images (any layout)")
    p.add_argument("--out", type=Path, default=Path("model"), help="model folder to write (default: model/)")
    p.add_argument("--backbone", choices=("lite1", "b1", "tiny"), default="lite1",
                   help="tiny: three convolutions, for tests only")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--resume", action="store_true", help="continue the run in --work after a stop")
    p.add_argument("--work", type=Path, default=Path("runs/train"), help="checkpoints, logs and split")
    p.add_argument("--size", type=int, default=160, help="input side in pixels")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="initial (plateau) or peak (cosine) Adam learning rate")
    p.add_argument("--schedule", choices=("plateau", "cosine", "constant"), default="plateau",
                   help="plateau: the reference's ReduceLROnPlateau + early stopping; cosine: warm-up then decay; "
                        "constant: fixed rate (weight-averaging phase after --init-from)")
    p.add_argument("--weights", choices=("imagenet", "none"), default="imagenet", help="backbone initialisation")
    p.add_argument("--augment", choices=("reference", "gentle"), default="reference",
                   help="reference: ±20%% nearest-fill shifts, shear, zoom, any rotation; gentle: symmetries of the "
                        "square, mild reflect-filled zoom/shift, colour jitter, occasional 150-px softness")
    p.add_argument("--optimizer", choices=("adam", "adamw"), default="adam")
    p.add_argument("--weight-decay", type=float, default=0.004, help="AdamW weight decay")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--class-weight-power", type=float, default=0.5,
                   help="class weights (n_max / n_c) ** power; 0 turns them off, 1 is full inverse frequency")
    p.add_argument("--small-size", type=int, default=None, help="progressive resizing: early epochs at this side")
    p.add_argument("--small-epochs", type=int, default=0, help="how many early epochs use --small-size")
    p.add_argument("--init-from", type=Path, nargs="+", default=None, metavar="WEIGHTS",
                   help="start from these epoch weights files (averaged) instead of ImageNet, e.g. to continue a "
                        "finished run with --schedule constant")
    p.add_argument("--jpeg-augment", type=float, default=0.0, metavar="SHARE",
                   help="share of training images re-encoded as JPEG at a random quality 60-95 in each batch")
    p.add_argument("--jpeg-consistency", type=float, default=0.0, metavar="WEIGHT",
                   help="train on pairs (each augmented picture and its JPEG re-encoding, half a batch each) with "
                   "this weight on the Jensen-Shannon divergence of their probabilities (0: off; AugMix used 12)")
    p.add_argument("--shades-of-gray", type=int, default=None, metavar="POWER",
                   help="shades-of-gray colour constancy of this Minkowski power (6 in the ISIC challenge winners) on "
                   "every training and validation picture; the exported model folder serves it too")


def run(args):
    """Train (or resume) the run in --work, then export it to --out where TensorFlow is installed."""
    from classifier.errors import ArgumentError, ClassifierError
    from classifier.training.fit import log_line, train

    if not 0.0 <= args.jpeg_augment <= 1.0:
        raise ArgumentError(f"--jpeg-augment is a share of each batch, between 0 and 1 (got {args.jpeg_augment:g})")
    if args.shades_of_gray is not None and not 1 <= args.shades_of_gray <= 16:
        raise ArgumentError(f"--shades-of-gray is a power, 1 to 16 (got {args.shades_of_gray})")
    if args.jpeg_consistency < 0:
        raise ArgumentError(f"--jpeg-consistency is a weight, 0 or more (got {args.jpeg_consistency:g})")

    try:
        work = train(args.data, backbone=args.backbone, epochs=args.epochs, resume=args.resume,
                     work_dir=args.work, size=args.size, batch_size=args.batch_size, learning_rate=args.lr,
                     schedule=args.schedule, imagenet=args.weights == "imagenet", augment=args.augment,
                     optimizer=args.optimizer, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                     class_weight_power=args.class_weight_power, small_size=args.small_size,
                     small_epochs=args.small_epochs, init_from=args.init_from, jpeg_share=args.jpeg_augment,
                     jpeg_consistency=args.jpeg_consistency, shades_of_gray=args.shades_of_gray)
    except RuntimeError as exc:  # backbone weights unavailable (a ClassifierError goes to cli.main)
        raise ClassifierError(str(exc)) from exc
    try:
        import tensorflow  # noqa: F401  (the LiteRT export needs it; training itself runs on any Keras backend)
    except ImportError:  # e.g. Keras on JAX on a GPU machine: the run is trained, not exported
        message = (f"TensorFlow is not installed here: export the run where it is, with `python -m classifier "
                   f"export --work {work} --data DATA --out MODEL_FOLDER`")
        log_line(work, message)
        print(f"training run in {work}; {message}")
        return 0
    from classifier.training.export_model import export_run

    export_run(work, args.data, args.out)
    print(f"model folder written to {args.out}")
