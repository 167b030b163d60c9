"""The "Many images" tab: uploaded images and zips of images as batch items, the count and size caps checked on
sizes before anything is read or decoded, classification through ``Classifier.classify_each`` (a bad file
becomes an error row, never a failed batch), and the page's table, summary and CSV (no Gradio).

The rows are ``predict``'s (classifier/results.py): one record per image (``record_of``), named by its file name
(a zip's images by ``zip name/path inside``), and a CSV that is what ``predict --out x.csv`` writes for the same
files. A zip reads as the folder it holds would (its image files, sorted, in its place), except that macOS junk
in it (``__MACOSX/``, dot files) is skipped. The table on the page is a compact view of the same records.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from classifier.api import Classifier
from classifier.errors import ClassifierError
from classifier.preprocessing import IMAGE_LIKE_SUFFIXES, ImageError
from classifier.results import TOP_K, open_output, record_of
from classifier.web_input import human_size

MAX_BATCH_FILES = 100  # images per batch, counting each image inside a zip
MAX_BATCH_BYTES = 50 * 1024 * 1024  # all images of a batch together, zip contents uncompressed
BATCH_CHUNK = 16  # images per Classifier.classify_each call: the progress bar moves after each
BATCH_HEADERS = ["file", "top-1 (probability)", "P(malignant)", "warning or error"]


def batch_limits_text(max_file_bytes: int) -> str:
    return (f"Up to **{MAX_BATCH_FILES} images** (a zip counts its images), **{human_size(MAX_BATCH_BYTES)} in "
            f"all**; each uploaded file at most {human_size(max_file_bytes)}. No test-time augmentation or heatmaps "
            "here.")


class BatchTooLarge(ClassifierError):
    """A batch over the count or total-size cap (nothing of it is classified)."""


@dataclass
class BatchItem:
    """One image of a batch: its name and what to classify (a path or bytes), or the ImageError that says why it
    cannot be."""

    name: str
    source: str | bytes | None = None
    error: ImageError | None = None


def _failed(name: str, why: str) -> BatchItem:
    """An item that cannot be classified; its error names the file, as the loader's do."""
    return BatchItem(name, error=ImageError(f"{posixpath.basename(name)}: {why}"))


def _zip_items(path: str, name: str, budget: list[int]) -> list[BatchItem]:
    """The image entries of a zip, sorted as ``predict`` sorts a folder's files; sizes counted from its directory
    before anything is read."""
    items = []
    try:
        with zipfile.ZipFile(path) as archive:
            entries = []
            for info in archive.infolist():
                inner = PurePosixPath(info.filename)
                if (not info.is_dir() and not inner.name.startswith(".") and "__MACOSX" not in inner.parts
                        and inner.suffix.lower() in IMAGE_LIKE_SUFFIXES):
                    entries.append((inner, info))
            for inner, info in sorted(entries, key=lambda entry: entry[0]):
                label = f"{name}/{inner}"
                budget[0] += 1
                budget[1] += info.file_size
                _check_budget(budget)
                try:
                    with archive.open(info) as entry:
                        data = entry.read(info.file_size + 1)  # never more than the directory promised
                except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                    items.append(_failed(label, f"cannot read it from the zip ({exc})"))
                    continue
                if len(data) > info.file_size:
                    items.append(_failed(label, "larger than the zip's directory says"))
                    continue
                items.append(BatchItem(label, source=data))
    except (zipfile.BadZipFile, OSError) as exc:
        budget[0] += 1
        _check_budget(budget)
        return [_failed(name, f"not a readable zip ({exc})")]
    return items


def _check_budget(budget: list[int]) -> None:
    count, total = budget
    if count > MAX_BATCH_FILES:
        raise BatchTooLarge(f"more than {MAX_BATCH_FILES} images: classify them in several batches")
    if total > MAX_BATCH_BYTES:
        raise BatchTooLarge(f"more than {human_size(MAX_BATCH_BYTES)} of images in all: split the batch")


def batch_items(paths: list[str], names: list[str] | None = None) -> list[BatchItem]:
    """Uploaded files (images and zips of images) as batch items, named by their file names; BatchTooLarge over
    the caps, checked on sizes before any image is read or decoded."""
    names = names or [Path(p).name for p in paths]
    budget = [0, 0]  # images, bytes
    items: list[BatchItem] = []
    for path, name in zip(paths, names, strict=True):
        if name.lower().endswith(".zip"):
            items += _zip_items(path, name, budget)
            continue
        budget[0] += 1
        try:
            budget[1] += os.path.getsize(path)
        except OSError:
            items.append(_failed(name, "the uploaded file is gone; upload it again"))
            continue
        _check_budget(budget)
        items.append(BatchItem(name, source=path))
    return items


@dataclass
class BatchResult:
    """``predict``'s records of the batch (one per item, in order), the top k and class codes they were made
    with (for the CSV's columns), and a one-line summary."""

    records: list[dict] = field(default_factory=list)
    top_k: int = TOP_K
    codes: tuple[str, ...] = ()
    summary: str = ""

    @property
    def rows(self) -> list[list[str]]:
        """The page's table (``BATCH_HEADERS``): a compact view of the records."""
        return [table_row(record) for record in self.records]


def table_row(record: dict) -> list[str]:
    """One record as a row of the page's table: file, top-1 (probability), P(malignant), warning or error. Where
    the decision is not the most probable class (``decision_note``), the top-1 cell names both."""
    if "error" in record:
        return [record["path"], "", "", f"error: {record['error']}"]
    best, warning = record["top_k"][0], record["out_of_distribution"]["warning"]
    top = f"{best['code']} — {best['name']} ({best['probability']:.1%})"
    if record.get("decision_note"):
        label = record["label"]
        top = f"decision: {label} ({record['probabilities'][label]:.1%}); most probable: {top}"
    return [record["path"], top, f"{record['malignant_probability']:.1%}", f"⚠️ {warning}" if warning else ""]


def classify_batch(classifier: Classifier, items: list[BatchItem], top_k: int = TOP_K,
                   progress: Callable[[int, int], None] | None = None) -> BatchResult:
    """Classify the items through ``Classifier.classify_each`` (the one batch path), ``BATCH_CHUNK`` at a time so
    that ``progress(done, total)`` can be told; a bad file becomes its error record, never a failed batch."""
    good = [item for item in items if item.error is None]
    outcomes: dict[int, object] = {}
    for start in range(0, len(good), BATCH_CHUNK):
        chunk = good[start:start + BATCH_CHUNK]
        for item, outcome in zip(chunk, classifier.classify_each([i.source for i in chunk], top_k=top_k,
                                                                 batch_size=BATCH_CHUNK), strict=True):
            outcomes[id(item)] = outcome
        if progress is not None:
            progress(min(start + BATCH_CHUNK, len(good)), len(good))
    records = [record_of(item.name, item.error if item.error is not None else outcomes[id(item)]) for item in items]
    failed = sum("error" in record for record in records)
    summary = f"{len(items) - failed} of {len(items)} images classified" + (
        f"; {failed} could not be (see their rows)" if failed else "") + "."
    return BatchResult(records, top_k, tuple(classifier.config.codes), summary)


def write_csv(result: BatchResult, folder: str | os.PathLike | None = None) -> str:
    """The batch's records as ``predict``'s CSV (the same writer) in a new temporary folder unless given one;
    returns its path."""
    path = Path(folder or tempfile.mkdtemp(prefix="lesion-batch-")) / "classifications.csv"
    path.unlink(missing_ok=True)  # the writer appends
    writer, _ = open_output(path, "csv", result.top_k, result.codes)
    try:
        for record in result.records:
            writer.write(record)
    finally:
        writer.close()
    return str(path)
