"""What the Gradio demo shows, as plain functions of a classifier and its inputs (no Gradio needed to test them)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from html import escape

from PIL import Image

from classifier.api import MALIGNANT_NOTE, Classifier, Prediction
from classifier.labels import BY_CODE, CLASSES, CODES, DISCLAIMER
from classifier.preprocessing import ImageError

PREDICTED = "predicted"
HEATMAP_CHOICES = [("predicted class", PREDICTED)] + [(f"{c.code} — {c.name}", c.code) for c in CLASSES]
HEATMAP_DISPLAY_SIZE = 256  # small model inputs are enlarged so the overlay is readable on the page
NO_IMAGE = "Upload, paste or photograph an image (or pick an example) to classify it."
NO_EXAMPLES = (
    "No example images here yet. They are HAM10000 images (CC BY-NC-SA 4.0) and are not committed: "
    "fetch them with `python -m classifier examples --from DIR` (a local copy of HAM10000) "
    "or `python -m classifier examples --download` (the ISIC Archive)."
)


@dataclass
class Shown:
    """Everything the page shows for one request; ``problem`` is set when the input could not be classified."""

    message: str
    labels: dict[str, float] | None
    malignancy: str
    heatmap: Image.Image | None
    result: dict | None
    problem: str | None = None


def disclaimer_html() -> str:
    """The disclaimer as a prominent box (inline styles, so it needs no custom CSS)."""
    return (
        '<div id="disclaimer" role="note" style="border:2px solid #b91c1c; background:#fef2f2; color:#7f1d1d; '
        'border-radius:8px; padding:10px 14px; font-size:1.05em; line-height:1.4">'
        f"<strong>⚠️ {escape(DISCLAIMER)}</strong></div>"
    )


def image_source(value):
    """What ``Classifier.classify`` reads from a Gradio image value: a path, bytes, or the value itself.

    The demo turns Gradio's preprocessing off so that every upload goes through the project's own loader;
    the value is then Gradio's file dict (``path``, or a ``data:`` URL for some webcam captures).
    """
    if not isinstance(value, dict):
        return value
    if value.get("path"):
        return value["path"]
    url = value.get("url") or ""
    if url.startswith("data:") and "," in url:
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("the image data sent by the browser is not valid base64") from None
    return None


def top_k_value(top_k) -> int:
    """``top_k`` from a slider or an API call (which may send a float or a string) as an int."""
    try:
        value = float(top_k)
    except (TypeError, ValueError):
        raise ValueError(f"top_k must be a whole number between 1 and {len(CODES)}, not {top_k!r}") from None
    if not value.is_integer():
        raise ValueError(f"top_k must be a whole number between 1 and {len(CODES)}, not {top_k!r}")
    return int(value)


def heatmap_code(choice: str | None) -> str | None:
    """The class code the heatmap is for (None: the predicted class)."""
    return None if choice in (None, "", PREDICTED) else choice


def label_dict(prediction: Prediction) -> dict[str, float]:
    """The top-k classes as ``"code — full name" -> probability``, for ``gr.Label``."""
    return {f"{p.code} — {p.name}": p.probability for p in prediction.top}


def malignancy_markdown(prediction: Prediction) -> str:
    codes = " + ".join(c.code for c in CLASSES if c.malignant)
    return f"**P(malignant) = {prediction.malignant_probability:.1%}** ({codes})\n\n_{MALIGNANT_NOTE}_"


def warning_markdown(prediction: Prediction) -> str:
    """The out-of-distribution warning, or an empty string when the image passed the checks."""
    return f"### ⚠️ Warning\n{prediction.warning}" if prediction.warning else ""


def classify(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED) -> dict:
    """The full result (``Prediction.to_dict``); raises ImageError or ValueError for bad input."""
    return predict(classifier, image, top_k, tta, heatmap_class, heatmap=False).to_dict()


def predict(classifier: Classifier, image, top_k=3, tta: bool = False,
            heatmap_class: str | None = PREDICTED, heatmap: bool = True) -> Prediction:
    """Classify a Gradio image value (with a heatmap unless asked not to); raises ImageError or ValueError."""
    source = image_source(image)
    if source is None:
        raise ImageError(NO_IMAGE)
    return classifier.classify(source, top_k=top_k_value(top_k), tta=bool(tta), heatmap=heatmap,
                               heatmap_class=heatmap_code(heatmap_class))


def show(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED) -> Shown:
    """What the page shows for one request; bad input becomes a message, never an exception."""
    if image_source(image) is None:
        return Shown(NO_IMAGE, None, "", None, None)
    try:
        prediction = predict(classifier, image, top_k, tta, heatmap_class)
    except ValueError as err:  # ImageError is a ValueError
        problem = f"Cannot classify this input: {err}"
        return Shown(f"### ⚠️ {problem}", None, "", None, None, problem=problem)
    heatmap = prediction.heatmap_image()
    if heatmap.width < HEATMAP_DISPLAY_SIZE:
        heatmap = heatmap.resize((HEATMAP_DISPLAY_SIZE, HEATMAP_DISPLAY_SIZE), Image.BILINEAR)
    return Shown(warning_markdown(prediction), label_dict(prediction), malignancy_markdown(prediction), heatmap,
                 prediction.to_dict())


def examples() -> list:
    """The example images present (``classifier.examples.available_examples``); none if the manifest is unusable."""
    from classifier.data import DataError
    from classifier.examples import available_examples

    try:
        return available_examples()
    except (OSError, DataError):
        return []


def example_caption(example) -> str:
    """The true diagnosis of an example image, as shown beside it."""
    lesion = BY_CODE[example.dx]
    return f"{lesion.code} ({example.dx_type}) — {lesion.name}"


def classes_markdown() -> str:
    rows = "\n".join(f"| `{c.code}` | {c.name} | {'yes' if c.malignant else 'no'} | {c.description} |"
                     for c in CLASSES)
    return "| Code | Class | Malignant | Description |\n|---|---|---|---|\n" + rows


def model_markdown(classifier: Classifier) -> str:
    """One line on which model is serving, plus the source's notice (e.g. a cached copy) when there is one."""
    source = classifier.source
    if source is not None and source.repo_id:
        where = f"`{source.repo_id}`" + (f" @ `{source.commit[:10]}`" if source.commit else "")
    else:
        where = f"`{classifier.config.folder.name if source is None else source.path.name}`"
    text = (f"Model {where}: {classifier.size} px input, {classifier.runtime.name} runtime, "
            f"{len(classifier.config.tta_views)} test-time-augmentation views.")
    if source is not None and source.notice:
        text += f"\n\n**Note:** {source.notice}"
    return text
