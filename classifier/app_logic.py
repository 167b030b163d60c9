"""What the Gradio demo shows, as plain functions of a classifier and its inputs (no Gradio needed to test them).

Every name, malignancy flag and class list shown comes from the loaded model's ``config.json``
(``classifier.config.labels``), never from the fixed ``classifier.labels.CLASSES``.
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import hashlib
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path, PurePosixPath

from PIL import Image

from classifier.api import Classifier, Prediction
from classifier.labels import BY_CODE, DISCLAIMER
from classifier.preprocessing import ImageError

PREDICTED = "predicted"
DEFAULT_MAX_FILE_SIZE = "10mb"
HEATMAP_DISPLAY_SIZE = 256  # small model inputs are enlarged so the overlay is readable on the page
NO_IMAGE = "Upload, paste or photograph an image (or pick an example) to classify it."
NO_EXAMPLES = ("No example images found in examples/ (they are committed with the code; "
               "`python -m classifier examples --from DIR` or `--download` writes them again).")
HEATMAP_CAPTION = ("Yellow to red tint: where the image most raised the model's score for **{name}**; untinted "
                   "areas mattered less. It shows where the model looked, not why.")
MAX_BATCH_FILES = 100  # images per batch, counting each image inside a zip
MAX_BATCH_BYTES = 50 * 1024 * 1024  # all images of a batch together, zip contents uncompressed
BATCH_CHUNK = 16  # images per Classifier.classify_each call: the progress bar moves after each
BATCH_HEADERS = ["file", "top-1 (probability)", "P(malignant)", "warning or error"]
CSV_COLUMNS = ["file", "label", "name", "probability", "malignant_probability", "warning", "error"]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


# --- inputs and the upload cap ------------------------------------------------------------------------------

def parse_size(size: str | int) -> int:
    """Bytes in a size such as ``"10mb"`` (Gradio's ``max_file_size`` rule: units of 1024)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", str(size).strip())
    unit = (match.group(2) or "B").upper() if match else ""
    if not match or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {size!r} (examples: 10mb, 500kb)")
    return int(match.group(1)) * _SIZE_UNITS[unit]


def human_size(n: int) -> str:
    """``n`` bytes for a person: 10 MB, 12.1 MB, 512 KB."""
    for unit in ("GB", "MB", "KB"):
        if n >= _SIZE_UNITS[unit]:
            return f"{n / _SIZE_UNITS[unit]:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def too_large(n: int, max_bytes: int) -> ImageError:
    return ImageError(f"the image is {human_size(n)}, over the upload limit of {human_size(max_bytes)}")


def _inside(path: Path, folder: str | os.PathLike) -> bool:
    folder = Path(folder).resolve()
    return path == folder or folder in path.parents


def image_source(value, max_bytes: int | None = None, upload_dir: str | os.PathLike | None = None):
    """What ``Classifier.classify`` reads from an image value, its size checked against ``max_bytes`` before
    anything is decoded; None when there is no image.

    The page and the API send Gradio's file dict: ``path`` (an upload) or a base64 ``data:`` URL (some webcam
    captures and API calls). With ``upload_dir`` (the web handlers), only dicts are accepted and a path must lie
    in that folder, so a caller cannot make the app read the server's own files. Python callers may also pass a
    path, bytes, a PIL image or an array.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        if upload_dir is not None:
            raise ImageError("send the image as a file (gradio_client: handle_file(path)), not as "
                             f"{type(value).__name__}")
        if isinstance(value, (str, os.PathLike)) and max_bytes is not None and os.path.isfile(value):
            if (size := os.path.getsize(value)) > max_bytes:
                raise too_large(size, max_bytes)
        if isinstance(value, (bytes, bytearray)) and max_bytes is not None and len(value) > max_bytes:
            raise too_large(len(value), max_bytes)
        return value
    if value.get("path"):
        path = Path(value["path"]).resolve()
        if upload_dir is not None and not _inside(path, upload_dir):
            raise ImageError("the image file was not uploaded to this app")
        if not path.is_file():
            raise ImageError("the uploaded image file is gone; upload it again")
        if max_bytes is not None and (size := path.stat().st_size) > max_bytes:
            raise too_large(size, max_bytes)
        return str(path)
    url = value.get("url") or ""
    if url.startswith("data:") and "," in url:
        payload = url.split(",", 1)[1]
        decoded_size = len(payload) * 3 // 4 - payload[-2:].count("=")  # base64: 4 characters per 3 bytes
        if max_bytes is not None and decoded_size > max_bytes:
            raise too_large(decoded_size, max_bytes)
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("the image data sent by the browser is not valid base64") from None
    return None


def top_k_value(top_k, count: int) -> int:
    """``top_k`` from a slider or an API call (which may send a float or a string) as an int in 1..count."""
    try:
        value = float(top_k)
    except (TypeError, ValueError):
        value = float("nan")
    if not value.is_integer() or not 1 <= value <= count:
        raise ValueError(f"top_k must be a whole number between 1 and {count}, not {top_k!r}")
    return int(value)


def heatmap_code(choice: str | None) -> str | None:
    """The class code the heatmap is for (None: the predicted class)."""
    return None if choice in (None, "", PREDICTED) else choice


# --- the model's labels -------------------------------------------------------------------------------------

def label_names(classifier: Classifier) -> dict[str, str]:
    """Code -> full name, in the model's output order."""
    return {label.code: label.name for label in classifier.config.labels}


def heatmap_choices(classifier: Classifier) -> list[tuple[str, str]]:
    return [("predicted class", PREDICTED)] + [(f"{lb.code} — {lb.name}", lb.code) for lb in classifier.config.labels]


def malignant_codes(classifier: Classifier) -> list[str]:
    return [label.code for label in classifier.config.labels if label.malignant]


def classes_markdown(classifier: Classifier) -> str:
    """The model's classes; descriptions where the code is one of HAM10000's seven."""
    rows = "\n".join(f"| `{lb.code}` | {lb.name} | {'yes' if lb.malignant else 'no'} | "
                     f"{BY_CODE[lb.code].description if lb.code in BY_CODE else ''} |"
                     for lb in classifier.config.labels)
    return "| Code | Class | Malignant | Description |\n|---|---|---|---|\n" + rows


# --- one image ----------------------------------------------------------------------------------------------

@dataclass
class Shown:
    """Everything the page shows for one request; ``problem`` is set when the input could not be classified.

    ``heatmap`` is the overlay and ``view`` the model's view without it (both enlarged for the page; images, or
    their JPEG files after ``as_files``)."""

    message: str
    labels: dict[str, float] | None
    malignancy: str
    heatmap: Image.Image | str | None
    result: dict | None
    problem: str | None = None
    view: Image.Image | str | None = None
    caption: str = ""


def disclaimer_html() -> str:
    """The disclaimer as a prominent box (inline styles, so it needs no custom CSS)."""
    return (
        '<div id="disclaimer" role="note" style="border:2px solid #b91c1c; background:#fef2f2; color:#7f1d1d; '
        'border-radius:8px; padding:6px 12px; line-height:1.35">'
        f"<strong>⚠️ {escape(DISCLAIMER)}</strong></div>"
    )


def label_dict(prediction: Prediction) -> dict[str, float]:
    """The top-k classes as ``"code — full name" -> probability``, for ``gr.Label``."""
    return {f"{p.code} — {p.name}": p.probability for p in prediction.top}


def malignancy_markdown(prediction: Prediction, classifier: Classifier) -> str:
    codes = " + ".join(malignant_codes(classifier))
    text = (f"**P(malignant) = {prediction.malignant_probability:.1%}** <small>(= P({codes}): a model output on a "
            "research data set, not a risk estimate for a person)</small>")
    statement = getattr(prediction, "set_statement", None)  # conformal set, when the model has one
    return text + (f"\n\n{statement}" if statement else "")


def warning_markdown(prediction: Prediction) -> str:
    """The out-of-distribution warning and the photo-quality advice (each finding's sentence), or an empty
    string when the image passed the checks. Shown above the result, which still shows."""
    parts = [f"### ⚠️ Warning\n{prediction.warning}"] if prediction.warning else []
    findings = getattr(prediction, "quality", None) or []
    if findings:
        parts.append("### 📷 Photo quality\n" + "\n".join(f"- {f.message}" for f in findings)
                     + "\n\nThe answer below is for this photo as it is; a better photo may change it.")
    return "\n\n".join(parts)


def predict(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED,
            heatmap: bool = True, max_bytes: int | None = None, upload_dir=None) -> Prediction:
    """Classify an image value (with a heatmap unless asked not to); raises ImageError or ValueError."""
    source = image_source(image, max_bytes, upload_dir)
    if source is None:
        raise ImageError(NO_IMAGE)
    return _classify_source(classifier, source, top_k, tta, heatmap_class, heatmap)


def _classify_source(classifier: Classifier, source, top_k, tta, heatmap_class, heatmap: bool) -> Prediction:
    return classifier.classify(source, top_k=top_k_value(top_k, len(classifier.config.labels)), tta=bool(tta),
                               heatmap=heatmap, heatmap_class=heatmap_code(heatmap_class))


def classify(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED,
             max_bytes: int | None = None, upload_dir=None) -> dict:
    """The full result (``Prediction.to_dict``); raises ImageError or ValueError for bad input."""
    return predict(classifier, image, top_k, tta, heatmap_class, False, max_bytes, upload_dir).to_dict()


def _enlarged(image: Image.Image) -> Image.Image:
    if image.width >= HEATMAP_DISPLAY_SIZE:
        return image
    return image.resize((HEATMAP_DISPLAY_SIZE, HEATMAP_DISPLAY_SIZE), Image.BICUBIC)


def show(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED,
         max_bytes: int | None = None, upload_dir=None) -> Shown:
    """What the page shows for one request; bad input becomes a message, never an exception."""
    try:
        source = image_source(image, max_bytes, upload_dir)
        if source is None:
            return Shown(NO_IMAGE, None, "", None, None)
        prediction = _classify_source(classifier, source, top_k, tta, heatmap_class, True)
    except ValueError as err:  # a ClassifierError (ImageError) or a bad top_k or heatmap class
        problem = f"Cannot classify this input: {err}"
        return Shown(f"### ⚠️ {problem}", None, "", None, None, problem=problem)
    return Shown(warning_markdown(prediction), label_dict(prediction), malignancy_markdown(prediction, classifier),
                 _enlarged(prediction.heatmap_image()), prediction.to_dict(),
                 view=_enlarged(Image.fromarray(prediction.image)),
                 caption=HEATMAP_CAPTION.format(name=prediction.heatmap_class))


def displayed_image(shown: Shown | None, with_heatmap: bool) -> Image.Image | str | None:
    """The overlay, or the model's view alone."""
    if shown is None:
        return None
    return shown.heatmap if with_heatmap else shown.view


def jpeg_file(image: Image.Image, folder: str | os.PathLike, name: str = "image") -> str:
    """``image`` as a JPEG in ``folder`` (Gradio's cache): ``<sha256>/<name>.jpeg``, written once, atomically.

    Gradio's own cache of a returned PIL image rewrites ``<hash>/image.jpeg`` in place (truncate, then write) on
    every request that returns the same picture, so a browser downloading it meanwhile got a cut-off or empty
    response. Here the bytes go to a temporary file that is renamed into place; an existing copy is only touched
    (Gradio's ``delete_cache`` ages files by ctime)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")  # Pillow's defaults, as Gradio's own encoder used them
    data = buffer.getvalue()
    target = Path(folder) / hashlib.sha256(data).hexdigest() / f"{name}.jpeg"
    if target.exists():
        try:
            os.utime(target)
            return str(target)
        except OSError:  # deleted meanwhile: write it again
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
    return str(target)


def as_files(shown: Shown, folder: str | os.PathLike) -> Shown:
    """``shown`` with its two pictures as JPEG files in ``folder`` (``jpeg_file``): what the page sends, and what
    its per-visitor state keeps (two paths instead of two decoded images)."""
    if shown.heatmap is None:
        return shown
    return dataclasses.replace(shown, heatmap=jpeg_file(shown.heatmap, folder, "heatmap"),
                               view=jpeg_file(shown.view, folder, "view") if shown.view is not None else None)


def heatmap_label(with_heatmap: bool) -> str:
    """The label of the picture: it is always the model's view (the largest centred square of the image)."""
    return "Heatmap" if with_heatmap else "Image alone"


# --- examples -----------------------------------------------------------------------------------------------

def examples() -> list:
    """The example images present (``example_images.available_examples``); none if the manifest is unusable."""
    from classifier.data import DataError
    from classifier.example_images import available_examples

    try:
        return available_examples()
    except (OSError, DataError):
        return []


def gallery_items(found: list) -> list[tuple[str, str]]:
    """(path, caption) of each example, for ``gr.Gallery``: the caption is the true diagnosis's code, which fits
    under a thumbnail (the result then shows code and full name)."""
    return [(str(e.path), e.dx) for e in found]


# --- the model, for a person --------------------------------------------------------------------------------

def _front_matter_stripped(text: str) -> str:
    if text.startswith("---\n") and "\n---\n" in text[4:]:
        return text[4:].split("\n---\n", 1)[1].lstrip()
    return text


def model_card_markdown(classifier: Classifier) -> str:
    """The model card (README.md of the model folder) without its YAML header; empty if there is none."""
    path = classifier.config.folder / "README.md"
    try:
        return _front_matter_stripped(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return ""


def model_card_url(classifier: Classifier, environ=os.environ) -> str:
    """Where a visitor reads the model card: the Hub repo, the Space's copy, or the card further down the page."""
    source = classifier.source
    if source is not None and source.repo_id:
        return f"https://huggingface.co/{source.repo_id}" + (f"/blob/{source.commit}/README.md" if source.commit
                                                               else "")
    space, root = environ.get("SPACE_ID"), Path(__file__).resolve().parent.parent
    card = (classifier.config.folder / "README.md").resolve()
    if space and _inside(card, root):
        return f"https://huggingface.co/spaces/{space}/blob/main/{card.relative_to(root).as_posix()}"
    return "#model-card"


def model_version(classifier: Classifier) -> str:
    """A recorded ``version``, else the Hub commit, else the start of the served file's SHA-256."""
    raw, source = classifier.config.raw, classifier.source
    if raw.get("version"):
        return str(raw["version"])
    if source is not None and source.commit:
        return source.commit[:10]
    files = raw.get("files", {})
    digest = (files.get("tflite") or files.get("keras") or {}).get("sha256")
    return digest[:10] if digest else "unknown"


def model_name(classifier: Classifier) -> str:
    raw = classifier.config.raw
    backbone = raw.get("architecture", {}).get("backbone")
    return str(raw.get("name") or ("Skin-lesion classifier" + (f" ({backbone})" if backbone else "")))


def trained_on(classifier: Classifier) -> str:
    """The training data in words, from the config's ``training`` record."""
    training = classifier.config.raw.get("training", {})
    data = str(training.get("dataset") or training.get("data") or "")
    if "ham10000" in data.lower():
        return ("HAM10000: 10,015 dermatoscopic photographs of pigmented skin lesions, mostly of fair skin, from "
                "two clinics (Vienna and Queensland)")
    return data or "an unrecorded data set"


def headline_figures(classifier: Classifier) -> dict | None:
    """Balanced accuracy, melanoma recall and the number of test images, read from the config's ``metrics.test``
    (None if the model records none)."""
    test = classifier.config.raw.get("metrics", {}).get("test", {})
    if "balanced_accuracy" not in test:
        return None
    recall = test.get("melanoma_recall", test.get("per_class", {}).get("mel", {}).get("recall"))
    return {"balanced_accuracy": test["balanced_accuracy"], "melanoma_recall": recall, "images": test.get("n")}


def model_markdown(classifier: Classifier, environ=os.environ) -> str:
    """Name, version, training data, honest headline figures and the model card link, for a visitor."""
    figures = headline_figures(classifier)
    classes = len(classifier.config.labels)
    lines = [f"**{escape(model_name(classifier))}**, version `{model_version(classifier)}`. "
             f"Trained on {trained_on(classifier)}."]
    if figures:
        held_out = f"{figures['images']:,} held-out test images" if figures["images"] else "held-out test images"
        text = (f"On {held_out} of lesions it never saw in training: **balanced accuracy "
                f"{figures['balanced_accuracy']:.0%}** (the mean of the {classes} per-class recalls; guessing "
                f"scores {1 / classes:.0%})")
        if figures["melanoma_recall"] is not None:
            recall = figures["melanoma_recall"]
            text += (f", **melanoma recall {recall:.0%}** (it names {round(recall * 100)} of every 100 melanomas; "
                     "it misses the rest)")
        lines.append(text + ".")
    else:
        lines.append("This model's configuration records no held-out test figures.")
    url = model_card_url(classifier, environ)
    lines.append(f"[Model card]({url}){' (below)' if url.startswith('#') else ''}: how it was trained and tested, "
                 "and its limits.")
    text = " ".join(lines)
    source = classifier.source
    if source is not None and source.notice:
        text += f"\n\n**Note:** {source.notice}"
    return text


def tta_info(classifier: Classifier) -> str:
    """What the test-time augmentation box changes, in the model's own view counts."""
    served, tta = classifier.config.served_views, classifier.config.tta_views
    if set(tta) <= set(served):
        return (f"every prediction already averages all {len(served)} turns and mirror images, so that the "
                "answer does not depend on how the photo was held; this box changes nothing")
    return (f"average over {len(tta)} flips and rotations instead of {len(served)} (slower)" if len(served) > 1
            else f"average over {len(tta)} flips and rotations (slower)")


def technical_markdown(classifier: Classifier) -> str:
    """Runtime, input size, test-time-augmentation views, calibration, thresholds and where the model is from."""
    config, source = classifier.config, classifier.source
    where = (f"Hub repo `{source.repo_id}`" + (f" @ `{source.commit}`" if source.commit else "")
             if source is not None and source.repo_id else f"folder `{config.folder.name}/`")
    arch = config.raw.get("architecture", {})
    rows = [
        ("Source", where),
        ("Network", f"{arch.get('backbone', '?')} + {arch.get('head', '?')}"),
        ("Runtime", f"{classifier.runtime.name}"
                    + (", int8" if "quantization" in config.raw.get("serving", {}) else "")
                    + " (TensorFlow is never imported to serve)"),
        ("Input", f"{config.input_size}x{config.input_size} RGB: the largest centred square of the image"),
        ("Views per prediction", f"{len(config.served_views)}: {', '.join(config.served_views)}"),
        ("Test-time augmentation", f"{len(config.tta_views)} views: {', '.join(config.tta_views)}"),
        ("Calibration", f"temperature {config.temperature:g} and a per-class prior correction"),
        ("Out-of-distribution threshold", "none" if config.ood_threshold is None else
         f"energy score above {config.ood_threshold:g}"),
        ("Classes", ", ".join(config.codes)),
    ]
    return "| Detail | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


# --- batch --------------------------------------------------------------------------------------------------

def batch_limits_text(max_file_bytes: int) -> str:
    return (f"Up to **{MAX_BATCH_FILES} images** (a zip counts its images), **{human_size(MAX_BATCH_BYTES)} in "
            f"all**; each uploaded file at most {human_size(max_file_bytes)}. No test-time augmentation or heatmaps "
            "here.")


class BatchTooLarge(ValueError):
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

