"""``python -m classifier predict``: classify image files and folders, one JSON line (or CSV row) per image.

One row per input, in input order: a folder stands for its image files, sorted, in its place; an input that
cannot be classified (missing, not a file, broken) gets an error row in its place.

Two engines give the same rows: ``local`` (default) classifies in this process; ``ray`` spreads the work over
Ray Data actors, on this machine or a cluster (classifier/scale.py). ``--out`` writes .jsonl, .csv or .parquet
instead of stdout, and a second run with the same ``--out`` skips the images it already holds.
"""

import sys
import time
from pathlib import Path

# Folders are searched for these; unsupported image types are listed too, so they get a clear error line.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".mpo",
                  ".ico", ".heic", ".heif", ".avif", ".jp2", ".psd", ".pcx", ".svg"}
BATCH_SIZE = 32


def add_arguments(p):
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files or folders (searched recursively); with --engine ray also URIs such as "
                   "s3://bucket/prefix or hf://datasets/owner/name/folder")
    p.add_argument("--top-k", type=int, default=3, help="classes to list per image (default: 3)")
    p.add_argument("--format", choices=("json", "csv"),
                   help="stdout format: JSON lines (default) or CSV; --out takes its format from its suffix")
    p.add_argument("--out", type=Path, help="write rows to this .jsonl, .csv or .parquet (a folder of part files) "
                   "instead of stdout; if it exists, the images it holds are skipped and new rows appended")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: in this process (default); ray: Ray Data actors, one model per actor")
    p.add_argument("--address", help="--engine ray: the Ray cluster to join (e.g. ray://head:10001 or auto; "
                   "default: $RAY_ADDRESS, else a local Ray started and stopped for this run)")
    p.add_argument("--num-cpus", type=int, help="--engine ray: CPUs of the local Ray it starts (default: all)")
    p.add_argument("--model", help="model folder or Hub repo id (default: MODEL_ID, else model/)")
    p.add_argument("--revision", help="Hub branch, tag or commit (default: MODEL_REVISION, else main)")
    p.add_argument("--tta", action="store_true", help="average over the configured test-time augmentation views")
    p.add_argument("--heatmap", action="store_true", help="add the class-activation heatmap of the top class")
    p.add_argument("--heatmap-dir", type=Path, help="also save heatmap overlays here as PNG (implies --heatmap)")
    p.add_argument("--runtime", choices=("auto", "litert", "keras"), default="auto",
                   help="inference runtime (default: LiteRT when installed)")


def image_paths(paths: list[Path]) -> list[Path]:
    """Files as given, in order; each folder in its place, expanded recursively to its image files, sorted."""
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
    import warnings

    from PIL import Image

    from classifier import scale
    from classifier.api import load_classifier
    from classifier.labels import DISCLAIMER
    from classifier.results import OutputError, open_output, out_format, printable, record_of

    ray_engine = args.engine == "ray"
    heatmap = args.heatmap or args.heatmap_dir is not None
    if ray_engine and (args.tta or heatmap):
        return fail("--tta, --heatmap and --heatmap-dir work with --engine local only")
    if not ray_engine and (args.address or args.num_cpus is not None):
        return fail("--address and --num-cpus are options of --engine ray")
    if args.num_cpus is not None and args.num_cpus < 1:
        return fail("--num-cpus must be at least 1")
    if args.num_cpus is not None and args.address:
        return fail("--num-cpus sizes a local Ray; the cluster at --address has its own CPUs")
    if args.top_k < 1:
        return fail("--top-k must be at least 1")
    written_as = args.format or "json"  # on stdout; an --out file by its suffix
    if args.out is not None:
        try:
            written_as = out_format(args.out)
        except OutputError as exc:
            return fail(str(exc))
        if args.format is not None and args.format != written_as:
            return fail(f"--format {args.format} is for stdout; --out {args.out} is written as {written_as}")
    if ray_engine and not scale.ray_available():
        return fail(scale.RAY_MISSING)

    uris = [p for p in args.paths if scale.is_uri(p)]
    if uris and not ray_engine:
        return fail(f"URIs such as {uris[0]} are read by --engine ray; the local engine reads local files")
    if uris and len(uris) < len(args.paths):
        return fail("give either local paths or URIs, not both")
    if not uris:
        inputs = scale.local_inputs(image_paths([Path(p) for p in args.paths]))
    else:
        try:
            inputs = scale.uri_inputs(uris, IMAGE_SUFFIXES)
        except scale.InputError as exc:
            return fail(str(exc))
    if not inputs.ids:
        return fail(f"no image files found in {', '.join(map(str, args.paths))}")

    try:
        classifier = load_classifier(args.model, args.revision, args.runtime)
    except (ImportError, ValueError, OSError) as exc:  # ValueError: ModelSourceError, ModelFolderError
        return fail(f"could not load the model: {exc}")
    if classifier.source is not None and classifier.source.notice:
        print(f"note: {classifier.source.notice}", file=sys.stderr)
    if args.top_k > len(classifier.labels):
        return fail(f"--top-k must be at most {len(classifier.labels)} (the number of classes)")
    if args.heatmap_dir is not None:
        try:
            args.heatmap_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return fail(f"cannot create --heatmap-dir: {exc}")
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # such images get an error line

    try:
        writer, done = open_output(args.out, args.format or "json", args.top_k, classifier.config.codes,
                                   args.heatmap_dir is not None)
    except OutputError as exc:
        return fail(str(exc))
    # An --out CSV or Parquet holds each path as printable text (results.printable); JSON holds it as it is.
    todo = inputs.without({i for i in inputs.ids if i in done or printable(i) in done})
    if done:
        print(f"note: {len(inputs.ids) - len(todo.ids)} of {len(inputs.ids)} images are already in {args.out}; "
              f"scoring the other {len(todo.ids)}", file=sys.stderr)
    if written_as != "json":  # JSON records carry the notice themselves
        print(DISCLAIMER, file=sys.stderr)
    try:
        unreadable = {} if uris else unreadable_files(todo.ids, ray_engine)
        known = {position: record_of(path, unreadable[path])  # an error row each, in its place
                 for position, path in enumerate(todo.ids) if path in unreadable}
        if ray_engine:
            result = score_ray(classifier, todo, writer, args, known)
        else:
            result = score_local(classifier, [Path(p) for p in todo.ids], writer, args.top_k, args.tta, heatmap,
                                 Overlays(args.heatmap_dir), known)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 1
    except RayRunError as exc:
        return fail(str(exc))
    finally:  # keep every row written so far, also when interrupted: the next run resumes after them
        try:
            writer.close()
        except OSError:  # BrokenPipeError included
            pass
    print(result.summary(), file=sys.stderr)
    return 1 if result.errors else 0


def unreadable_files(paths: list[str], ray_engine: bool) -> dict[str, Exception]:
    """The local paths that cannot be scored, each with the ImageError that says why: those that are not regular
    files (missing, a folder, a pipe or a device), and for Ray, file names that are not valid UTF-8, which its
    file system cannot open. Checked before scoring, as Ray would fail the whole run or wait forever on a pipe."""
    from classifier.preprocessing import ImageError, check_regular_file
    from classifier.results import printable

    problems = {}
    for path in paths:
        try:
            check_regular_file(Path(path))
            if ray_engine and printable(path) != path:
                raise ImageError(f"{path}: --engine ray reads only file names that are valid UTF-8; rename the "
                                 "file or use --engine local")
        except ImageError as exc:
            problems[path] = exc
    return problems


class RayRunError(RuntimeError):
    """The Ray run failed as a whole (cluster unreachable, workers unable to load the model, ...)."""


def score_ray(classifier, inputs, writer, args, known: dict[int, dict]):
    """Score on Ray with the model source the driver resolved, so every worker loads the same model; ``known``:
    the records of inputs not to score (by position), written in their place."""
    from classifier import scale

    source = classifier.source
    if source is not None and source.repo_id is not None:
        model, revision = source.repo_id, source.commit or source.revision  # the commit the driver got
    else:
        model, revision = (str(source.path) if source is not None else args.model), None
    try:
        return scale.score_on_ray(inputs, writer.write, model, revision, args.runtime, args.top_k,
                                  address=args.address, num_cpus=args.num_cpus, flush=writer.flush, known=known)
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception as exc:  # Ray raises many types (RayTaskError wraps the worker's own); report its first line
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise RayRunError(f"the Ray run failed: {lines[0] if lines else type(exc).__name__}") from exc


def score_local(classifier, paths: list[Path], writer, top_k: int, tta: bool, heatmap: bool, overlays,
                known: dict[int, dict] | None = None):
    """Score in this process through the Classifier's batch path (one image at a time with TTA or heatmaps);
    one record per path, in order. ``known``: the records of paths not to score (by position), e.g. error rows."""
    from tqdm import tqdm

    from classifier.results import InOrder, record_of
    from classifier.scale import EngineRun

    known = known or {}
    result = EngineRun(engine="local")
    clock = time.perf_counter()
    ordered = InOrder(writer, len(paths))
    for position, record in sorted(known.items()):
        ordered.put(position, record)
    todo = [(position, path) for position, path in enumerate(paths) if position not in known]
    bar = tqdm(total=len(todo), unit="img", disable=True if len(todo) < 20 else None)  # None: off when not a TTY
    if tta or heatmap:
        for position, path in todo:
            try:
                prediction = classifier.classify(path, top_k=top_k, tta=tta, heatmap=heatmap)
                record = record_of(str(path), prediction, heatmap=heatmap, overlay=overlays.save(path, prediction))
            except Exception as exc:  # ImageError, or a failure writing the overlay: report, go on
                record = record_of(str(path), exc)
            ordered.put(position, record)
            bar.update()
    else:
        for start in range(0, len(todo), BATCH_SIZE):
            chunk = todo[start:start + BATCH_SIZE]
            outcomes = classifier.classify_each([path for _, path in chunk], top_k=top_k, batch_size=BATCH_SIZE)
            for (position, path), outcome in zip(chunk, outcomes, strict=True):
                ordered.put(position, record_of(str(path), outcome))
            writer.flush()
            bar.update(len(chunk))
    bar.close()
    assert not ordered.missing, ordered.missing  # every position was put
    result.images, result.errors = ordered.written, ordered.errors
    result.seconds = time.perf_counter() - clock
    return result


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
