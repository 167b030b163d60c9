"""The "Many images" tab: uploaded images and zips of images as batch items, the count and size caps checked on
sizes before anything is read or decoded, classification through ``Classifier.classify_each`` (a bad file
becomes an error row, never a failed batch), and the rows, summary and CSV the tab shows (no Gradio).
"""

from __future__ import annotations

import csv
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from classifier.api import Classifier, Prediction
from classifier.errors import ClassifierError
from classifier.preprocessing import IMAGE_SUFFIXES, ImageError
from classifier.web_input import human_size

MAX_BATCH_FILES = 100  # images per batch, counting each image inside a zip
MAX_BATCH_BYTES = 50 * 1024 * 1024  # all images of a batch together, zip contents uncompressed
BATCH_CHUNK = 16  # images per Classifier.classify_each call: the progress bar moves after each
BATCH_HEADERS = ["file", "top-1 (probability)", "P(malignant)", "warning or error"]
CSV_COLUMNS = ["file", "label", "name", "probability", "malignant_probability", "warning", "error"]


def batch_limits_text(max_file_bytes: int) -> str:
    return (f"Up to **{MAX_BATCH_FILES} images** (a zip counts its images), **{human_size(MAX_BATCH_BYTES)} in "
            f"all**; each uploaded file at most {human_size(max_file_bytes)}. No test-time augmentation or heatmaps "
            "here.")


class BatchTooLarge(ClassifierError):
    """A batch over the count or total-size cap (nothing of it is classified)."""


@dataclass
class BatchItem:
    """One image of a batch: its name and what to classify (a path or bytes), or why it cannot be."""

    name: str
    source: str | bytes | None = None
    error: str | None = None


def _display_name(path: str) -> str:
    return Path(path).name


def _zip_items(path: str, name: str, budget: list[int]) -> list[BatchItem]:
    """The image entries of a zip, sizes counted from its directory before anything is read."""
    items = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                inner = PurePosixPath(info.filename)
                if info.is_dir() or inner.name.startswith(".") or "__MACOSX" in inner.parts:
                    continue
                label = f"{name}/{info.filename}"
                budget[0] += 1
                budget[1] += info.file_size
                _check_budget(budget)
                if inner.suffix.lower() not in IMAGE_SUFFIXES:
                    items.append(BatchItem(label, error="not an image file (by its name)"))
                    continue
                try:
                    with archive.open(info) as entry:
                        data = entry.read(info.file_size + 1)  # never more than the directory promised
                except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                    items.append(BatchItem(label, error=f"cannot read it from the zip ({exc})"))
                    continue
                if len(data) > info.file_size:
                    items.append(BatchItem(label, error="larger than the zip's directory says"))
                    continue
                items.append(BatchItem(label, source=data))
    except (zipfile.BadZipFile, OSError) as exc:
        budget[0] += 1
        _check_budget(budget)
        return [BatchItem(name, error=f"not a readable zip ({exc})")]
    return items


def _check_budget(budget: list[int]) -> None:
    count, total = budget
    if count > MAX_BATCH_FILES:
        raise BatchTooLarge(f"more than {MAX_BATCH_FILES} images: classify them in several batches")
    if total > MAX_BATCH_BYTES:
        raise BatchTooLarge(f"more than {human_size(MAX_BATCH_BYTES)} of images in all: split the batch")


def batch_items(paths: list[str], names: list[str] | None = None) -> list[BatchItem]:
    """Uploaded files (images and zips of images) as batch items; BatchTooLarge over the caps, checked on sizes
    before any image is read or decoded."""
    names = names or [_display_name(p) for p in paths]
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
            items.append(BatchItem(name, error="the uploaded file is gone; upload it again"))
            continue
        _check_budget(budget)
        items.append(BatchItem(name, source=path))
    return items


@dataclass
class BatchResult:
    """Rows for the page (``BATCH_HEADERS``), records for the CSV (``CSV_COLUMNS``) and a one-line summary."""

    rows: list[list[str]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    summary: str = ""


def _error_text(exc: Exception, item: BatchItem) -> str:
    """The loader's message without its file-name prefix (the row names the file)."""
    text = str(exc) or type(exc).__name__
    prefix = f"{Path(item.source).name}: " if isinstance(item.source, str) else "upload: "  # bytes: "upload"
    return text.removeprefix(prefix)


def classify_batch(classifier: Classifier, items: list[BatchItem], top_k: int = 1,
                   progress: Callable[[int, int], None] | None = None) -> BatchResult:
    """Classify the items through ``Classifier.classify_each`` (the one batch path), ``BATCH_CHUNK`` at a time so
    that ``progress(done, total)`` can be told; a bad file becomes an error row, never a failed batch."""
    result = BatchResult()
    good = [item for item in items if item.error is None]
    outcomes: dict[int, Prediction | Exception] = {}
    for start in range(0, len(good), BATCH_CHUNK):
        chunk = good[start:start + BATCH_CHUNK]
        for item, outcome in zip(chunk, classifier.classify_each([i.source for i in chunk], top_k=top_k,
                                                                 batch_size=BATCH_CHUNK), strict=True):
            outcomes[id(item)] = outcome
        if progress is not None:
            progress(min(start + BATCH_CHUNK, len(good)), len(good))
    failed = 0
    for item in items:
        outcome = outcomes.get(id(item), ImageError(item.error or "not classified"))
        if isinstance(outcome, Exception):
            failed += 1
            error = _error_text(outcome, item)
            result.rows.append([item.name, "", "", f"error: {error}"])
            result.records.append(dict.fromkeys(CSV_COLUMNS, "") | {"file": item.name, "error": error})
            continue
        best = outcome.probabilities[0]
        result.rows.append([item.name, f"{best.code} — {best.name} ({best.probability:.1%})",
                            f"{outcome.malignant_probability:.1%}", f"⚠️ {outcome.warning}" if outcome.warning else ""])
        result.records.append({"file": item.name, "label": best.code, "name": best.name,
                               "probability": best.probability, "malignant_probability": outcome.malignant_probability,
                               "warning": outcome.warning or "", "error": ""})
    result.summary = f"{len(items) - failed} of {len(items)} images classified" + (
        f"; {failed} could not be (see their rows)" if failed else "") + "."
    return result


def write_csv(records: list[dict], folder: str | os.PathLike | None = None) -> str:
    """The batch records as a CSV file (in a new temporary folder unless given one); returns its path."""
    folder = Path(folder or tempfile.mkdtemp(prefix="lesion-batch-"))
    path = folder / "classifications.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return str(path)
