"""``python -m classifier examples``: refresh the images named in examples/manifest.csv (re-encoded JPEGs)."""

import sys
from pathlib import Path

from classifier.data import DataError
from classifier.errors import ArgumentError


def add_arguments(p):
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", type=Path, metavar="DIR",
                        help="local HAM10000 folder, any layout (Kaggle's part_1/part_2, one folder, ...)")
    source.add_argument("--download", action="store_true",
                        help="fetch from the public ISIC Archive API (base URL: env ISIC_API_URL)")
    p.add_argument("--force", action="store_true",
                   help="with --download: fetch every image again, even those already present and readable")
    p.add_argument("--dest", type=Path, default=None, help="folder to fill (default: examples/)")
    p.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: examples/manifest.csv)")


def run(args):
    from classifier import example_images as examples

    dest = args.dest or examples.EXAMPLES_DIR
    manifest = args.manifest or examples.MANIFEST
    if args.source is not None and not args.source.is_dir():
        raise ArgumentError(f"--from {args.source}: not a folder")
    if not manifest.is_file():
        raise ArgumentError(f"{manifest}: no such manifest")
    try:
        if args.source is not None:
            report = examples.copy_from(args.source, dest, manifest=manifest)
        else:
            report = examples.download(dest, manifest=manifest, force=args.force)
    except OSError as e:  # e.g. --dest not writable (a DataError, an unusable manifest, goes to cli.main)
        raise DataError(str(e)) from e
    verb = "copied" if args.source is not None else "downloaded"
    print(f"{verb} {len(report.written)}, already present {len(report.skipped)}, failed {len(report.failed)} "
          f"-> {dest}")
    for image_id, reason in report.failed.items():
        print(f"  {image_id}: {reason}", file=sys.stderr)
    return 0 if report.ok else 1
