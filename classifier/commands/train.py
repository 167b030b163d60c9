"""``python -m classifier train``."""

from pathlib import Path


def add_arguments(p):
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder: metadata CSV and images (any layout)")
    p.add_argument("--out", type=Path, default=Path("model"), help="model folder to write (default: model/)")
    p.add_argument("--backbone", choices=("lite1", "b1"), default="lite1")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--resume", action="store_true", help="continue the run in --work after a stop")
    p.add_argument("--work", type=Path, default=Path("runs/train"), help="checkpoints, logs and split")
    p.add_argument("--size", type=int, default=160, help="input side in pixels")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="initial (plateau) or peak (cosine) Adam learning rate")
    p.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                   help="plateau: the reference's ReduceLROnPlateau + early stopping; cosine: warm-up then decay")
    p.add_argument("--weights", choices=("imagenet", "none"), default="imagenet", help="backbone initialisation")


def run(args):
    import sys

    from classifier.data import DataError
    from classifier.preprocessing import ImageError
    from classifier.train import train

    try:
        out = train(args.data, args.out, backbone=args.backbone, epochs=args.epochs, resume=args.resume,
                    work_dir=args.work, size=args.size, batch_size=args.batch_size, learning_rate=args.lr,
                    schedule=args.schedule, imagenet=args.weights == "imagenet")
    except (DataError, ImageError, RuntimeError) as exc:  # RuntimeError: backbone weights unavailable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"model folder written to {out}")
