"""``python -m classifier describe``."""

from pathlib import Path


def add_arguments(p):
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder (or the metadata CSV itself)")
    p.add_argument("--out", type=Path, default=Path("reports/dataset"), help="folder to write")
    p.add_argument("--split", type=Path, help="split.json: also count classes per train/val/test split")


def run(args):
    from classifier.documents.dataset_summary import describe

    print(describe(args.data, args.out, args.split))  # a DataError becomes `error: ...`, exit 2 (cli.main)
