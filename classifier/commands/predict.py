"""``python -m classifier predict``: classify image files and folders, one JSON line (or CSV row) per image.

One row per input, in input order: a folder stands for its image files, sorted, in its place; an input that
cannot be classified (missing, not a file, broken) gets an error row in its place.

Two engines give the same rows: ``local`` (default) classifies in this process; ``ray`` spreads the work over
Ray Data actors, on this machine or a cluster (classifier/scale.py). ``--out`` writes .jsonl, .csv or .parquet
instead of stdout, and a second run with the same ``--out`` skips the images it already holds.

Patient context (issue 19): ``--age/--sex/--site`` for every input, or ``--context CSV`` with a row per image
(:func:`read_context_csv`, :func:`match_contexts`); an input whose row cannot be used gets an error row in its
place. ``--similar K`` sets how many similar training cases each record carries.
"""

import csv
import os
import posixpath
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from classifier.errors import ArgumentError, ClassifierError, MissingPackage
from classifier.model_options import add_model_arguments, open_model
from classifier.preprocessing import IMAGE_LIKE_SUFFIXES
from classifier.results import TOP_K
from classifier.similar import similar_count

BATCH_SIZE = 32
# --context CSV columns: each field and the names it may have (HAM10000's metadata: image_id, localization)
CONTEXT_COLUMNS = {"image": ("image", "image_id"), "age": ("age",), "sex": ("sex",),
                   "site": ("site", "localization")}


def add_arguments(p):
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files or folders (searched recursively); with --engine ray also URIs such as "
                   "s3://bucket/prefix or hf://datasets/owner/name/folder")
    p.add_argument("--top-k", type=int, default=TOP_K, help=f"classes to list per image (default: {TOP_K})")
    p.add_argument("--format", choices=("json", "csv"),
                   help="stdout format: JSON lines (default) or CSV; --out takes its format from its suffix")
    p.add_argument("--out", type=Path, help="write rows to this .jsonl, .csv or .parquet (a folder of part files) "
                   "instead of stdout; if it exists, the images it holds are skipped and new rows appended")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: in this process (default); ray: Ray Data actors, one model per actor")
    p.add_argument("--address", help="--engine ray: the Ray cluster to join (e.g. ray://head:10001 or auto; "
                   "default: $RAY_ADDRESS, else a local Ray started and stopped for this run)")
    p.add_argument("--num-cpus", type=int, help="--engine ray: CPUs of the local Ray it starts (default: all)")
    add_model_arguments(p)
    p.add_argument("--tta", action="store_true", help="average over the configured test-time augmentation views")
    p.add_argument("--heatmap", action="store_true",
                   help="add the class-activation heatmap of the decision (the label)")
    p.add_argument("--heatmap-dir", type=Path, help="also save heatmap overlays here as PNG (implies --heatmap)")
    p.add_argument("--age", help="patient context for every input: age in years (0-120)")
    p.add_argument("--sex", help="patient context for every input: male or female")
    p.add_argument("--site", help="patient context for every input: body site (e.g. back, face, lower extremity)")
    p.add_argument("--context", type=Path, metavar="CSV",
                   help="patient context per image: a CSV with columns image,age,sex,site (also image_id and "
                   "localization, as in HAM10000's metadata); image is an input's path as given, its file name or "
                   "its stem; inputs without a row are scored on the image alone")
    p.add_argument("--similar", type=int, metavar="K",
                   help="similar training cases per image (default: the model's; 0: none)")


def image_paths(paths: list[Path]) -> list[Path]:
    """Files as given, in order; each folder in its place, expanded recursively to its image files, sorted (image
    types the loader does not read included, so that they get a clear error row)."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_LIKE_SUFFIXES)
        else:
            found.append(path)
    return found


def run(args):
    import warnings

    from PIL import Image

    from classifier import scale
    from classifier.api import top_k_value
    from classifier.context import PatientContext
    from classifier.labels import DISCLAIMER
    from classifier.results import open_output, out_format, printable, record_of

    ray_engine = args.engine == "ray"
    heatmap = args.heatmap or args.heatmap_dir is not None
    # Every check raises a ClassifierError (ArgumentError for the options): `error: ...`, status 2 (cli.main)
    if ray_engine and (args.tta or heatmap):
        raise ArgumentError("--tta, --heatmap and --heatmap-dir work with --engine local only")
    if not ray_engine and (args.address or args.num_cpus is not None):
        raise ArgumentError("--address and --num-cpus are options of --engine ray")
    if args.num_cpus is not None and args.num_cpus < 1:
        raise ArgumentError("--num-cpus must be at least 1")
    if args.num_cpus is not None and args.address:
        raise ArgumentError("--num-cpus sizes a local Ray; the cluster at --address has its own CPUs")
    similar_count(args.similar, "--similar")
    given = given_context(args)
    written_as = args.format or "json"  # on stdout; an --out file by its suffix
    if args.out is not None:
        written_as = out_format(args.out)
        if args.format is not None and args.format != written_as:
            raise ArgumentError(f"--format {args.format} is for stdout; --out {args.out} is written as {written_as}")
    if ray_engine and not scale.ray_available():
        raise MissingPackage(scale.RAY_MISSING)

    uris = [p for p in args.paths if scale.is_uri(p)]
    if uris and not ray_engine:
        raise ArgumentError(f"URIs such as {uris[0]} are read by --engine ray; the local engine reads local files")
    if uris and len(uris) < len(args.paths):
        raise ArgumentError("give either local paths or URIs, not both")
    if not uris:
        inputs = scale.local_inputs(image_paths([Path(p) for p in args.paths]))
    else:
        inputs = scale.uri_inputs(uris, IMAGE_LIKE_SUFFIXES)
    if not inputs.ids:
        raise ArgumentError(f"no image files found in {', '.join(map(str, args.paths))}")
    if args.context is not None:
        context_of, notes = match_contexts(read_context_csv(args.context), inputs, args.context.name, local=not uris)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
    else:
        context_of = dict.fromkeys(inputs.locations, given)

    classifier = open_model(args)
    top_k_value(args.top_k, len(classifier.labels), "--top-k")
    if classifier.context_head is None and any(isinstance(c, PatientContext) for c in context_of.values()):
        raise ArgumentError("this model has no patient-context head: predict without --age, --sex, --site and "
                            "--context")
    if args.similar and classifier.similar_index is None:
        print("note: this model has no similar-cases index; the records list no similar cases", file=sys.stderr)
    if args.heatmap_dir is not None:
        try:
            args.heatmap_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArgumentError(f"cannot create --heatmap-dir: {exc}") from exc
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # such images get an error line

    writer, done = open_output(args.out, args.format or "json", args.top_k, classifier.config.codes,
                               args.heatmap_dir is not None)
    # An --out CSV or Parquet holds each path as printable text (results.printable); JSON holds it as it is.
    todo = inputs.without({i for i in inputs.ids if i in done or printable(i) in done})
    if done:
        print(f"note: {len(inputs.ids) - len(todo.ids)} of {len(inputs.ids)} images are already in {args.out}; "
              f"scoring the other {len(todo.ids)}", file=sys.stderr)
    if written_as != "json":  # JSON records carry the notice themselves
        print(DISCLAIMER, file=sys.stderr)
    try:
        unreadable = {} if uris else unreadable_files(todo.ids, ray_engine)
        contexts = [context_of[location] for location in todo.locations]
        known = {position: record_of(path, unreadable.get(path, context))  # an error row each, in its place
                 for position, (path, context) in enumerate(zip(todo.ids, contexts, strict=True))
                 if path in unreadable or isinstance(context, Exception)}
        contexts = [None if isinstance(context, Exception) else context for context in contexts]
        if ray_engine:
            result = score_ray(classifier, todo, writer, args, known, contexts)
        else:
            result = score_local(classifier, [Path(p) for p in todo.ids], writer, args.top_k, args.tta, heatmap,
                                 Overlays(args.heatmap_dir), known, contexts, args.similar)
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 1
    finally:  # keep every row written so far, also when interrupted or on a RayRunError: the next run resumes
        try:
            writer.close()
        except OSError:  # BrokenPipeError included
            pass
    print(result.summary(), file=sys.stderr)
    return 1 if result.errors else 0


def given_context(args):
    """The context of --age/--sex/--site (None when none is given); ContextError, naming the option, for a bad
    value or for them together with --context."""
    from classifier.context import ContextError, parse_context

    values = {"age": args.age, "sex": args.sex, "site": args.site}
    if args.context is not None and any(value is not None for value in values.values()):
        raise ContextError("give the patient context either per image in --context CSV or for every input with "
                           "--age, --sex and --site, not both")
    for option, value in values.items():
        try:
            parse_context(**{option: value})
        except ContextError as exc:
            raise ContextError(f"--{option}: {exc}") from None
    context = parse_context(**values)
    return context if context.given else None


@dataclass(frozen=True)
class ContextRow:
    """One row of a --context CSV: its line number, the image it names, and its raw age, sex and site."""

    line: int
    image: str
    values: tuple


def read_context_csv(path: Path) -> list[ContextRow]:
    """The rows of a --context CSV (UTF-8, a header naming ``image`` (or ``image_id``) and any of ``age``,
    ``sex``, ``site`` (or ``localization``), other columns ignored). Raises ContextError when the file cannot be
    read or lacks those columns; the values are checked later, per image."""
    from classifier.context import ContextError

    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            header = [name.strip().lower() for name in next(reader, [])]
            where = {}
            for field, names in CONTEXT_COLUMNS.items():
                found = [name for name in names if name in header]
                if len(found) > 1:
                    raise ContextError(f"--context {path}: columns {' and '.join(found)} both give the {field}; "
                                       "keep one")
                if found:
                    where[field] = header.index(found[0])
            if "image" not in where or len(where) == 1:
                raise ContextError(f"--context {path}: the header must name an image column (image or image_id) "
                                   "and at least one of age, sex, site (or localization); it names: "
                                   f"{', '.join(name[:40] for name in header[:8]) or 'nothing'}")
            rows = []
            for cells in reader:
                if not any(cell.strip() for cell in cells):
                    continue

                def cell(field, cells=cells):
                    i = where.get(field)
                    return cells[i] if i is not None and i < len(cells) else None

                rows.append(ContextRow(reader.line_num, (cell("image") or "").strip(),
                                       (cell("age"), cell("sex"), cell("site"))))
    except OSError as exc:
        raise ContextError(f"--context {path}: cannot read it ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ContextError(f"--context {path}: not a UTF-8 CSV file ({exc})") from None
    return rows


def match_contexts(rows: list[ContextRow], inputs, source: str, local: bool = True):
    """Each input's patient context from the --context rows, by input location: a PatientContext, None (no row,
    or a row with no value given), or a ContextError for its error row (a bad value, or an ambiguous match).

    A row names an input by its path as given (for local files also any path to the same file, e.g. absolute),
    its file name, or its file name without the suffix (the stem: HAM10000's image_id). An input matched by more
    than one row, or by a row that also matches another file, is not guessed at: it gets an error row. Returns
    also notes for stderr: rows that match no input, inputs that no row names."""
    from classifier.context import ContextError, parse_context

    by_name: dict[str, list[ContextRow]] = {}
    by_path: dict[str, list[ContextRow]] = {}
    for row in (row for row in rows if row.image):  # a row naming no image matches none
        by_name.setdefault(row.image, []).append(row)
        if local:
            by_path.setdefault(os.path.abspath(row.image), []).append(row)
    matched: dict[str, list[ContextRow]] = {}  # location -> its rows
    files: dict[ContextRow, set[str]] = {}  # row -> the locations it matches
    names: dict[str, str] = {}  # location -> file name
    for text, location in zip(inputs.ids, inputs.locations, strict=True):
        if location in matched:  # the same file given twice
            continue
        name = names[location] = posixpath.basename(text.replace("\\", "/"))
        found = {*by_name.get(text, ()), *by_path.get(location, ()), *by_name.get(name, ()),
                 *by_name.get(posixpath.splitext(name)[0], ())}
        matched[location] = sorted(found, key=lambda row: row.line)
        for row in found:
            files.setdefault(row, set()).add(location)

    context_of = {}
    for location, found in matched.items():
        name = names[location]
        where = f"--context {source}"
        if not found:
            context_of[location] = None
        elif len(found) > 1:
            lines = ", ".join(str(row.line) for row in found)
            context_of[location] = ContextError(f"{name}: {where} lines {lines} each name this image; give it one "
                                                "row")
        elif len(files[found[0]]) > 1:
            context_of[location] = ContextError(
                f"{name}: {where} line {found[0].line} ({found[0].image!r}) matches {len(files[found[0]])} "
                "input files; name the image by its path")
        else:
            try:
                context = parse_context(*found[0].values)
                context_of[location] = context if context.given else None
            except ContextError as exc:
                context_of[location] = ContextError(f"{name}: {where} line {found[0].line}: {exc}")

    notes = []
    unmatched = [row for row in rows if row not in files]
    if unmatched:
        shown = "; ".join(f"line {row.line}: {row.image!r}" for row in unmatched[:3])
        notes.append(f"{len(unmatched)} of the {len(rows)} rows of --context {source} match no input ({shown}"
                     f"{'; ...' if len(unmatched) > 3 else ''})")
    without = sum(not found for found in matched.values())
    if without:
        notes.append(f"{without} of the {len(matched)} input files have no row in --context {source}; they are "
                     "scored on the image alone")
    return context_of, notes


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


class RayRunError(ClassifierError):
    """The Ray run failed as a whole (cluster unreachable, workers unable to load the model, ...)."""


def score_ray(classifier, inputs, writer, args, known: dict[int, dict], contexts=None):
    """Score on Ray with the model source the driver resolved, so every worker loads the same model; ``known``:
    the records of inputs not to score (by position), written in their place; ``contexts``: each input's
    PatientContext or None."""
    from classifier import scale

    source = classifier.source
    if source is not None and source.repo_id is not None:
        model, revision = source.repo_id, source.commit or source.revision  # the commit the driver got
    else:
        model, revision = (str(source.path) if source is not None else args.model), None
    try:
        return scale.score_on_ray(inputs, writer.write, model, revision, args.runtime, args.top_k,
                                  address=args.address, num_cpus=args.num_cpus, flush=writer.flush, known=known,
                                  contexts=contexts, similar=args.similar)
    except (BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception as exc:  # Ray raises many types (RayTaskError wraps the worker's own); report its first line
        lines = [line for line in str(exc).splitlines() if line.strip()]
        raise RayRunError(f"the Ray run failed: {lines[0] if lines else type(exc).__name__}") from exc


def score_local(classifier, paths: list[Path], writer, top_k: int, tta: bool, heatmap: bool, overlays,
                known: dict[int, dict] | None = None, contexts=None, similar: int | None = None):
    """Score in this process through the Classifier's batch path (one image at a time with TTA or heatmaps);
    one record per path, in order. ``known``: the records of paths not to score (by position), e.g. error rows;
    ``contexts``: each path's PatientContext or None; ``similar``: similar cases per record (None: the model's)."""
    from tqdm import tqdm

    from classifier.context import PatientContext
    from classifier.results import InOrder, record_of
    from classifier.scale import EngineRun

    known = known or {}
    result = EngineRun(engine="local")
    clock = time.perf_counter()
    ordered = InOrder(writer, len(paths))
    for position, record in sorted(known.items()):
        ordered.put(position, record)
    contexts = [None] * len(paths) if contexts is None else contexts
    todo = [(position, path) for position, path in enumerate(paths) if position not in known]
    bar = tqdm(total=len(todo), unit="img", disable=True if len(todo) < 20 else None)  # None: off when not a TTY
    if tta or heatmap:
        for position, path in todo:
            try:
                given = contexts[position] or PatientContext()
                prediction = classifier.classify(path, top_k=top_k, tta=tta, heatmap=heatmap, age=given.age,
                                                 sex=given.sex, site=given.site, similar=similar)
                record = record_of(str(path), prediction, heatmap=heatmap, overlay=overlays.save(path, prediction))
            except Exception as exc:  # ImageError, or a failure writing the overlay: report, go on
                record = record_of(str(path), exc)
            ordered.put(position, record)
            bar.update()
    else:
        for start in range(0, len(todo), BATCH_SIZE):
            chunk = todo[start:start + BATCH_SIZE]
            outcomes = classifier.classify_each([path for _, path in chunk], top_k=top_k, batch_size=BATCH_SIZE,
                                                contexts=[contexts[position] for position, _ in chunk],
                                                similar=similar)
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
