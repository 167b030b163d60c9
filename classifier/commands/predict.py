"""``python -m classifier predict``: classify image files and folders, one JSON line (or CSV row) per image."""

import sys
from pathlib import Path

# Folders are searched for these; unsupported image types are listed too, so they get a clear error line.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".mpo",
                  ".ico", ".heic", ".heif", ".avif", ".jp2", ".psd", ".pcx", ".svg"}
BATCH_SIZE = 32


def add_arguments(p):
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument("--top-k", type=int, default=3, help="classes to list per image (default: 3)")
    p.add_argument("--format", choices=("json", "csv"), default="json", help="JSON lines (default) or CSV")
    p.add_argument("--model", help="model folder or Hub repo id (default: MODEL_ID, else model/)")
    p.add_argument("--revision", help="Hub branch, tag or commit (default: MODEL_REVISION, else main)")
    p.add_argument("--tta", action="store_true", help="average over the configured test-time augmentation views")
    p.add_argument("--heatmap", action="store_true", help="add the class-activation heatmap of the top class")
    p.add_argument("--heatmap-dir", type=Path, help="also save heatmap overlays here as PNG (implies --heatmap)")
    p.add_argument("--runtime", choices=("auto", "litert", "keras"), default="auto",
                   help="inference runtime (default: LiteRT when installed)")


def image_paths(paths: list[Path]) -> list[Path]:
    """Files as given; folders expanded recursively to their image files, sorted."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args):
    import time
    import warnings

    from PIL import Image

    from classifier.api import load_classifier
    from classifier.evaluation import progress
    from classifier.labels import DISCLAIMER
    from classifier.model_folder import ModelFolderError
    from classifier.source import ModelSourceError

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        return fail(f"no such file or folder: {', '.join(missing)}")
    paths = image_paths(args.paths)
    if not paths:
        return fail(f"no image files found in {', '.join(map(str, args.paths))}")
    if args.top_k < 1:
        return fail("--top-k must be at least 1")
    try:
        classifier = load_classifier(args.model, args.revision, args.runtime)
    except (ModelSourceError, ModelFolderError, ImportError, ValueError, OSError) as exc:
        return fail(f"could not load the model: {exc}")
    if classifier.source is not None and classifier.source.notice:
        print(f"note: {classifier.source.notice}", file=sys.stderr)
    if args.top_k > len(classifier.labels):
        return fail(f"--top-k must be at most {len(classifier.labels)} (the number of classes)")
    heatmap = args.heatmap or args.heatmap_dir is not None
    if args.heatmap_dir is not None:
        try:
            args.heatmap_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail(f"cannot create --heatmap-dir: {exc}")
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # such images get an error line

    writer = Writer(args.format, args.top_k, args.heatmap_dir is not None)
    if args.format == "csv":
        print(DISCLAIMER, file=sys.stderr)
    overlays = Overlays(args.heatmap_dir)
    failed = 0
    started = time.time()
    try:
        if args.tta or heatmap:
            for done, path in enumerate(paths, 1):
                try:
                    prediction = classifier.classify(path, top_k=args.top_k, tta=args.tta, heatmap=heatmap)
                    writer.write(path, prediction=prediction, heatmap=heatmap, overlay=overlays.save(path, prediction))
                except Exception as exc:  # ImageError, or a failure writing the overlay: report, go on
                    writer.write(path, error=_message(exc))
                    failed += 1
                progress(done, len(paths), started)
        else:
            for start in range(0, len(paths), BATCH_SIZE):
                chunk = paths[start:start + BATCH_SIZE]
                failed += classify_chunk(classifier, chunk, args.top_k, writer)
                progress(start + len(chunk), len(paths), started)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 1
    return 1 if failed else 0


def classify_chunk(classifier, paths: list[Path], top_k: int, writer) -> int:
    """Classify a chunk through the Classifier's batch path; a bad file only costs its own line."""
    failed = 0
    for path, result in zip(paths, classifier.classify_each(paths, top_k=top_k, batch_size=BATCH_SIZE), strict=True):
        if isinstance(result, Exception):
            writer.write(path, error=_message(result))
            failed += 1
        else:
            writer.write(path, prediction=result)
    return failed


def _message(exc: Exception) -> str:
    from classifier.preprocessing import ImageError

    return str(exc) if isinstance(exc, ImageError) else f"{type(exc).__name__}: {exc}"


class Overlays:
    """Saves heatmap overlays as ``<stem>_heatmap.png``, numbering repeated stems."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.used = set()

    def save(self, path: Path, prediction) -> str | None:
        if self.folder is None or prediction.heatmap is None:
            return None
        name, n = f"{path.stem}_heatmap.png", 1
        while name in self.used:
            n += 1
            name = f"{path.stem}_heatmap-{n}.png"
        self.used.add(name)
        out = self.folder / name
        prediction.heatmap_image().save(out)
        return str(out)


class Writer:
    """JSON lines or CSV rows on stdout, one per image, flushed as they come."""

    def __init__(self, fmt: str, top_k: int, with_overlay: bool):
        import csv

        self.fmt = fmt
        self.top_k = top_k
        self.with_overlay = with_overlay
        if fmt == "csv":
            self.csv = csv.writer(sys.stdout, lineterminator="\n")
            header = ["path", "label"]
            for i in range(1, top_k + 1):
                header += [f"top{i}_code", f"top{i}_probability"]
            header += ["malignant_probability", "warning"] + (["heatmap_path"] if with_overlay else []) + ["error"]
            self.csv.writerow(header)

    def write(self, path: Path, prediction=None, error: str | None = None, heatmap: bool = False,
              overlay: str | None = None) -> None:
        import json

        if self.fmt == "json":
            if prediction is None:
                record = {"path": str(path), "error": error}
            else:
                record = {"path": str(path), **prediction.to_dict(include_heatmap=heatmap)}
                if overlay is not None:
                    record["heatmap_path"] = overlay
            print(json.dumps(record), flush=True)
        else:
            row = [str(path)]
            if prediction is None:
                row += [""] * (1 + 2 * self.top_k + 2)
            else:
                row.append(prediction.label)
                for p in prediction.top:
                    row += [p.code, f"{p.probability:.6f}"]
                row += [f"{prediction.malignant_probability:.6f}", prediction.warning or ""]
            if self.with_overlay:
                row.append(overlay or "")
            self.csv.writerow(row + [error or ""])
            sys.stdout.flush()
