"""Prediction results as records and rows, and the writers that both ``predict`` engines and the page's batch tab
share.

A record is the JSON object ``predict`` prints for one input: ``{"path": ..., **Prediction.to_dict()}``, or
``{"path": ..., "error": ...}`` for an input that could not be classified; one per input, in input order
(:class:`InOrder`). CSV and Parquet hold the same records as flat rows (:func:`flat_row`). An ``--out`` file is
appended to, and read back by the next run with the same ``--out``, so that a stopped run goes on where it
stopped (:func:`open_output`).

The flat columns (:func:`row_columns`), the same with or without patient context, so that runs append to one file:

- ``path``, ``label`` (the decision), ``decision_note`` (below), ``top<i>_code`` and ``top<i>_probability`` for
  i = 1 .. top k, ``malignant_probability``, ``warning`` (the out-of-distribution warning), ``prediction_set``
  (the conformal set's codes, space separated),
  ``quality`` (the photo-quality findings' codes joined by ``;``; empty: none);
- ``age``, ``sex``, ``site``: the patient context the answer used (empty: not given); ``context_note``: how the
  context moved the answer (empty without context); the image-only probabilities stay in the JSON records;
- ``similar_cases``: the similar training cases, nearest first, as ``image_id:code:distance`` joined by ``;``
  (e.g. ``ISIC_0024696:bkl:0.2035;ISIC_0029810:bkl:0.2221``; empty: none);
- ``probability_<code>`` for every class, [``heatmap_path``], ``error`` (empty unless the input failed; then the
  other columns are empty).

``decision_note`` (after ``label``) says why ``label`` is not ``top1_code`` (the most probable class), for a model
that applies its prior correction to the decision only (``Classifier.separate_decision``); it is empty where they
agree and for every other model, so that every model writes the same columns.

Parquet holds the probabilities and ``age`` as float64, the rest as text; CSV writes probabilities with 6 decimals.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import sys
import time
import uuid
from pathlib import Path

from classifier.errors import ClassifierError

TOP_K = 3  # classes per record unless asked otherwise (predict --top-k; the batch tab)
OUT_FORMATS = {".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
PART_ROWS = 10_000  # a Parquet part file holds at most this many rows
PART_SECONDS = 60.0  # and is written at least this often while rows come in


class OutputError(ClassifierError):
    """The --out file cannot be written or resumed; the message says why."""


def error_message(exc: Exception, name: str | None = None) -> str:
    """The error text of a row. ``name``: the file name that messages about raw bytes should carry (the loader
    calls bytes "upload"), so that a file read as bytes reads the same as the file read by path."""
    # ImageError and ContextError messages name the file themselves
    text = str(exc) if isinstance(exc, ClassifierError) else f"{type(exc).__name__}: {exc}"
    if name is not None and text.startswith("upload: "):
        text = f"{name}: {text[len('upload: '):]}"
    return text


def record_of(path: str, result, heatmap: bool = False, overlay: str | None = None) -> dict:
    """The record of one input: a Prediction's fields, or the error of an Exception (named after the file)."""
    if isinstance(result, Exception):
        return {"path": path, "error": error_message(result, posixpath.basename(path.replace("\\", "/")))}
    record = {"path": path, **result.to_dict(include_heatmap=heatmap)}
    if overlay is not None:
        record["heatmap_path"] = overlay
    return record


def printable(text: str) -> str:
    """``text`` as valid UTF-8 text: the bytes of a file name that is not valid UTF-8 (which Python holds as lone
    surrogates) become ``\\xNN``. CSV and Parquet need valid text; JSON escapes such names itself."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


CONTEXT_COLUMNS = ("age", "sex", "site", "context_note", "similar_cases")


def is_number(column: str) -> bool:
    """True for the columns that hold numbers (floats): the probabilities and the age."""
    return "probability" in column or column == "age"


def row_columns(top_k: int, codes, with_overlay: bool = False) -> list[str]:
    """The flat columns: path, label (the decision), decision_note, the top k (code, probability), P(malignant),
    the out-of-distribution warning, the conformal prediction set, the photo-quality findings' codes, the patient
    context (age, sex, site, context_note), the similar cases, every class's probability, [heatmap_path], error."""
    columns = ["path", "label", "decision_note"]
    for i in range(1, top_k + 1):
        columns += [f"top{i}_code", f"top{i}_probability"]
    columns += ["malignant_probability", "warning", "prediction_set", "quality", *CONTEXT_COLUMNS]
    columns += [f"probability_{code}" for code in codes]
    return columns + (["heatmap_path"] if with_overlay else []) + ["error"]


def flat_row(record: dict, top_k: int, codes, with_overlay: bool = False) -> dict:
    """A record as one flat row (``row_columns``): numbers as floats, absent values as None, text printable."""
    row = dict.fromkeys(row_columns(top_k, codes, with_overlay))
    row["path"] = record["path"]
    row["error"] = record.get("error")
    if "label" in record:
        row["label"] = record["label"]
        row["decision_note"] = record.get("decision_note")  # None (empty): the decision is the most probable
        for i, entry in enumerate(record["top_k"][:top_k], 1):
            row[f"top{i}_code"], row[f"top{i}_probability"] = entry["code"], float(entry["probability"])
        row["malignant_probability"] = float(record["malignant_probability"])
        row["warning"] = record["out_of_distribution"]["warning"]
        classes = (record.get("prediction_set") or {}).get("classes")
        row["prediction_set"] = " ".join(classes) if classes is not None else None
        row["quality"] = ";".join(finding["code"] for finding in record.get("quality", []))  # empty: no finding
        context = record.get("context") or {}
        row["age"] = None if context.get("age") is None else float(context["age"])
        row["sex"], row["site"] = context.get("sex"), context.get("site")
        row["context_note"] = record.get("context_note")
        row["similar_cases"] = similar_text(record.get("similar_cases") or [])
        for code in codes:
            row[f"probability_{code}"] = float(record["probabilities"][code])
    if with_overlay:
        row["heatmap_path"] = record.get("heatmap_path")
    return {column: printable(value) if isinstance(value, str) else value for column, value in row.items()}


def similar_text(cases: list[dict]) -> str:
    """Similar cases (``Prediction.to_dict()["similar_cases"]``) as one cell: ``image_id:code:distance``, nearest
    first, joined by ``;``; empty for none."""
    return ";".join(f"{case['image_id']}:{case['code']}:{case['distance']:.4f}" for case in cases)


def csv_cells(row: dict) -> list[str]:
    """A flat row as CSV cells: probabilities with 6 decimals, the age as it is (e.g. 70, 62.5), absent values
    empty."""
    return ["" if v is None else f"{v:g}" if column == "age" else f"{v:.6f}" if isinstance(v, float) else str(v)
            for column, v in row.items()]


class InOrder:
    """Writes the records of inputs ``0 .. count - 1`` to ``writer`` in that order, whatever order they are put
    in: a record waits until those of all earlier inputs are written. So a stopped run leaves a prefix of its
    inputs in an --out file, and the next run appends the rest in order. Counts the records and errors written."""

    def __init__(self, writer, count: int):
        self.writer = writer
        self.count = count
        self.written = 0
        self.errors = 0
        self.waiting: dict[int, dict] = {}

    def put(self, position: int, record: dict) -> None:
        """The record of input ``position``; written now if all earlier ones are, else when they are."""
        if not 0 <= position < self.count or position < self.written or position in self.waiting:
            raise ValueError(f"no record expected for input {position}")
        self.waiting[position] = record
        while self.written in self.waiting:
            record = self.waiting.pop(self.written)
            self.writer.write(record)
            self.written += 1
            self.errors += "error" in record

    @property
    def missing(self) -> int:
        """Inputs whose record is not written yet."""
        return self.count - self.written

    def flush(self) -> None:
        self.writer.flush()


class _StreamWriter:
    """Rows on a text stream: stdout (flushed per row when asked) or a file it closes."""

    def __init__(self, stream, flush_each: bool):
        self.stream = stream
        self.flush_each = flush_each

    def _written(self) -> None:
        if self.flush_each:
            self.stream.flush()

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self.flush()
        if self.stream is not sys.stdout:
            self.stream.close()


class JsonLines(_StreamWriter):
    """One JSON record per line, on stdout (flushed per record) or appended to a file."""

    def write(self, record: dict) -> None:
        self.stream.write(json.dumps(record) + "\n")
        self._written()


class CsvRows(_StreamWriter):
    """Flat rows as CSV (header first, unless appending to a file that has it)."""

    def __init__(self, stream, columns: list[str], row_of, flush_each: bool, header: bool = True):
        super().__init__(stream, flush_each)
        self.row_of = row_of
        self.csv = csv.writer(stream, lineterminator="\n")
        if header:
            self.csv.writerow(columns)

    def write(self, record: dict) -> None:
        self.csv.writerow(csv_cells(self.row_of(record)))
        self._written()


class ParquetParts:
    """Flat rows as a folder of Parquet part files (the layout Ray, Spark and pandas read as one table).

    Rows are buffered and written as a new part every PART_ROWS rows, at a ``flush`` once PART_SECONDS have
    passed, and at ``close``; each part is written under a hidden name and renamed when complete, so a
    stopped run leaves only whole parts behind."""

    def __init__(self, folder: Path, columns: list[str], row_of):
        import pyarrow as pa

        self.folder = folder
        self.row_of = row_of
        self.schema = pa.schema([(c, pa.float64() if is_number(c) else pa.string()) for c in columns])
        # Part names sort in the order written (UTC to the microsecond, then the part's number), so that readers,
        # which take the parts in name order, see the rows in input order, also after resumed runs.
        now = time.time()
        self.run = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}{int(now % 1 * 1e6):06d}Z-{uuid.uuid4().hex[:8]}"
        self.parts = 0
        self.rows: list[dict] = []
        self.last_write = time.monotonic()

    def write(self, record: dict) -> None:
        self.rows.append(self.row_of(record))
        if len(self.rows) >= PART_ROWS:
            self._write_part()

    def flush(self) -> None:
        if self.rows and time.monotonic() - self.last_write >= PART_SECONDS:
            self._write_part()

    def close(self) -> None:
        if self.rows:
            self._write_part()

    def _write_part(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.parts += 1
        name = f"part-{self.run}-{self.parts:05d}.parquet"
        hidden = self.folder / f".{name}.tmp"
        pq.write_table(pa.Table.from_pylist(self.rows, schema=self.schema), hidden)
        os.replace(hidden, self.folder / name)
        self.rows = []
        self.last_write = time.monotonic()


def out_format(out: Path) -> str:
    """The format an --out path asks for, by its suffix."""
    fmt = OUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise OutputError(f"--out {out}: the name must end in {', '.join(OUT_FORMATS)} (it sets the format)")
    return fmt


def open_output(out: Path | None, fmt: str, top_k: int, codes, with_overlay: bool = False):
    """The writer for stdout (``out`` None; ``fmt`` json or csv) or for an --out file, and the paths already in
    that file (a previous run's rows: those inputs are skipped). Raises OutputError."""
    columns = row_columns(top_k, codes, with_overlay)

    def row_of(record):
        return flat_row(record, top_k, codes, with_overlay)

    if out is None:
        if fmt == "json":
            return JsonLines(sys.stdout, flush_each=True), set()
        return CsvRows(sys.stdout, columns, row_of, flush_each=True), set()
    fmt = out_format(out)
    try:
        if fmt == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise OutputError("writing Parquet needs pyarrow: pip install -r requirements-scale.txt") from None
            if out.exists() and not out.is_dir():
                raise OutputError(f"--out {out} is a file; Parquet output is a folder of part files")
            done = _parquet_paths(out, columns) if out.is_dir() else set()
            out.mkdir(parents=True, exist_ok=True)
            return ParquetParts(out, columns, row_of), done
        if out.is_dir():
            raise OutputError(f"--out {out} is a folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        done = _text_paths(out, fmt, columns) if out.exists() else set()
        stream = open(out, "a", encoding="utf-8", newline="")  # noqa: SIM115 (closed by the writer)
        if fmt == "json":
            return JsonLines(stream, flush_each=False), done
        return CsvRows(stream, columns, row_of, flush_each=False, header=out.stat().st_size == 0), done
    except OSError as exc:
        raise OutputError(f"cannot write --out {out}: {exc}") from exc


def _text_paths(out: Path, fmt: str, columns: list[str]) -> set[str]:
    """The paths in an existing JSON-lines or CSV --out; a last line cut off by a stopped run is removed."""
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
        with open(out, "r+b") as stream:
            stream.truncate(len(data))
    text = data.decode("utf-8")
    if fmt == "json":
        done = set()
        for number, line in enumerate(text.splitlines(), 1):
            try:
                done.add(json.loads(line)["path"])
            except (ValueError, KeyError, TypeError):
                raise OutputError(f"--out {out}: line {number} is not a predict record; "
                                  "write to a new file") from None
        return done
    rows = list(csv.reader(text.splitlines()))
    if rows and rows[0] != columns:
        raise OutputError(f"--out {out} has other columns than this run writes (another --top-k, model or "
                          "--heatmap-dir, or an older version of predict?); write to a new file")
    return {row[0] for row in rows[1:] if row}


def _parquet_paths(folder: Path, columns: list[str]) -> set[str]:
    """The paths in the part files of an existing Parquet --out folder."""
    import pyarrow.parquet as pq

    done = set()
    for part in sorted(folder.glob("part-*.parquet")):
        if pq.read_schema(part).names != columns:
            raise OutputError(f"--out {folder}: {part.name} has other columns than this run writes (another "
                              "--top-k or model, or an older version of predict?); write to a new folder")
        done.update(pq.read_table(part, columns=["path"]).column("path").to_pylist())
    return done
