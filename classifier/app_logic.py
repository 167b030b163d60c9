"""What the "One image" tab shows, as plain functions of a classifier and its inputs (no Gradio needed to test
them): the decision, the probabilities, P(malignant), warnings, the heatmap, the patient-context note and the similar
confirmed cases, and the files the page is sent.

Every name, malignancy flag and class list shown comes from the loaded model's ``config.json``
(``classifier.config.labels``), never from the fixed ``classifier.labels.CLASSES``. The checks of what a web
caller sends live in ``classifier.web_input``; the model's description in ``classifier.model_summary``; the
"Many images" tab in ``classifier.batch_tab``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from PIL import Image

from classifier.api import Classifier, Prediction
from classifier.context import SEXES, SITES, ContextError
from classifier.errors import ClassifierError
from classifier.labels import DISCLAIMER
from classifier.preprocessing import ImageError
from classifier.similar import ATTRIBUTION, SimilarCase
from classifier.web_input import PREDICTED, heatmap_code, image_source

HEATMAP_DISPLAY_SIZE = 256  # small model inputs are enlarged so the overlay is readable on the page
NO_IMAGE = "Upload, paste or photograph an image (or pick an example) to classify it."
NO_EXAMPLES = ("No example images found in examples/ (they are committed with the code; "
               "`python -m classifier examples --from DIR` or `--download` writes them again).")
HEATMAP_CAPTION = ("Yellow to red tint: where the image most raised the model's score for **{name}**; untinted "
                   "areas mattered less. It shows where the model looked, not why.")
# The patient-context dropdowns: "not given" sends "unknown", which classifier.context reads as not given (as it
# reads HAM10000's own "unknown"); an API caller may also send None or "".
NOT_GIVEN = "unknown"
SEX_CHOICES = [("not given", NOT_GIVEN), *((sex, sex) for sex in SEXES)]
SITE_CHOICES = [("not given", NOT_GIVEN), *((site, site) for site in SITES)]
CONTEXT_INFO = ("All optional, and used only for this request. Given any of them, a head trained on HAM10000's "
                "metadata answers, and a note under the probabilities says how the context moved them.")
SIMILAR_LABEL = "Similar confirmed cases (training images)"
SIMILAR_EVIDENCE = ("These are the training lesions whose images the model places nearest to this one (on each: "
                    "the confirmed diagnosis · how it was confirmed · the distance, smaller is more alike): evidence "
                    "to weigh beside the probabilities, not a diagnosis.")


# --- the model's labels -------------------------------------------------------------------------------------

def heatmap_choices(classifier: Classifier) -> list[tuple[str, str]]:
    return [("predicted class", PREDICTED)] + [(f"{lb.code} — {lb.name}", lb.code) for lb in classifier.config.labels]


def malignant_codes(classifier: Classifier) -> list[str]:
    return [label.code for label in classifier.config.labels if label.malignant]


# --- one image ----------------------------------------------------------------------------------------------

@dataclass
class Shown:
    """Everything the page shows for one request; ``problem`` is set when the input could not be classified.

    ``heatmap`` is the overlay and ``view`` the model's view without it (both enlarged for the page; images, or
    their JPEG files after ``as_files``). ``similar`` holds the similar cases' thumbnails (their JPEG bytes, or
    files after ``as_files``) with their captions, for ``gr.Gallery``; ``similar_text`` what stands under them."""

    message: str
    labels: dict[str, float] | None
    malignancy: str
    heatmap: Image.Image | str | None
    result: dict | None
    problem: str | None = None
    view: Image.Image | str | None = None
    caption: str = ""
    context_note: str = ""
    similar: list[tuple[bytes | str, str]] = field(default_factory=list)
    similar_text: str = ""
    decision: str = ""  # the decision line beside the probabilities (decision_markdown); empty: none to show


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


def decision_markdown(prediction: Prediction) -> str:
    """The decision, named apart from the probabilities, for a model that chooses it with its prior correction
    (``Prediction.decision``): gr.Label's headline would be the most probable class, which may be another. When
    they differ, the line names both and says why. Empty for a model whose decision is the most probable class."""
    if prediction.decision is None:
        return ""
    names = {p.code: f"{p.code} — {p.name}" for p in prediction.probabilities}
    line = f"**Decision: {names[prediction.label]}**"
    if prediction.decision_note is None:
        return line + ", also the most probable class (a research model's output, not a diagnosis)"
    return (f"{line} · most probable: {names[prediction.most_probable]}\n\n"
            f"{escape(prediction.decision_note)} A research model's output, not a diagnosis.")


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


def similar_caption(case: SimilarCase) -> str:
    """What fits under a thumbnail: ``nv · histopathology · 0.21`` (diagnosis, how confirmed, distance)."""
    return f"{case.code} · {case.confirmed_by} · {case.distance:.2f}"


def similar_markdown(cases: list[SimilarCase]) -> str:
    """Under the similar cases: their diagnoses counted with full names, what they are, and the attribution."""
    if not cases:
        return ""
    counts = Counter((case.code, case.name) for case in cases)
    tally = "; ".join(f"{n} {code} — {name}" for (code, name), n in counts.most_common())
    return f"Of the {len(cases)} nearest: {tally}. {SIMILAR_EVIDENCE}\n\n<small>{escape(ATTRIBUTION)}</small>"


def predict(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED,
            heatmap: bool = True, max_bytes: int | None = None, upload_dir=None, age=None, sex=None,
            site=None) -> Prediction:
    """Classify an image value (with a heatmap unless asked not to) and the optional patient context; raises
    ImageError, ContextError or ArgumentError (a bad top_k or heatmap class)."""
    source = image_source(image, max_bytes, upload_dir)
    if source is None:
        raise ImageError(NO_IMAGE)
    return _classify_source(classifier, source, top_k, tta, heatmap_class, heatmap, age, sex, site)


def _classify_source(classifier: Classifier, source, top_k, tta, heatmap_class, heatmap: bool, age, sex,
                     site) -> Prediction:
    return classifier.classify(source, top_k=top_k, tta=bool(tta), heatmap=heatmap,
                               heatmap_class=heatmap_code(heatmap_class), age=age, sex=sex, site=site)


def classify(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED,
             max_bytes: int | None = None, upload_dir=None, age=None, sex=None, site=None) -> dict:
    """The full result (``Prediction.to_dict``); raises a ClassifierError (ImageError, ContextError,
    ArgumentError) for bad input."""
    return predict(classifier, image, top_k, tta, heatmap_class, False, max_bytes, upload_dir, age, sex,
                   site).to_dict()


def _enlarged(image: Image.Image) -> Image.Image:
    if image.width >= HEATMAP_DISPLAY_SIZE:
        return image
    return image.resize((HEATMAP_DISPLAY_SIZE, HEATMAP_DISPLAY_SIZE), Image.BICUBIC)


def show(classifier: Classifier, image, top_k=3, tta: bool = False, heatmap_class: str | None = PREDICTED,
         max_bytes: int | None = None, upload_dir=None, age=None, sex=None, site=None) -> Shown:
    """What the page shows for one request; a bad image or option (a ClassifierError) becomes a message. A bad
    patient-context value raises its ContextError: the page shows it as an error and keeps the last result.
    Anything else is a bug and is raised as it is, never shown as bad input."""
    try:
        source = image_source(image, max_bytes, upload_dir)
        if source is None:
            return Shown(NO_IMAGE, None, "", None, None)
        prediction = _classify_source(classifier, source, top_k, tta, heatmap_class, True, age, sex, site)
    except ContextError:
        raise
    except ClassifierError as err:  # ImageError, or ArgumentError: a bad top_k or heatmap class
        problem = f"Cannot classify this input: {err}"
        return Shown(f"### ⚠️ {problem}", None, "", None, None, problem=problem)
    cases = prediction.similar_cases
    return Shown(warning_markdown(prediction), label_dict(prediction), malignancy_markdown(prediction, classifier),
                 _enlarged(prediction.heatmap_image()), prediction.to_dict(),
                 view=_enlarged(Image.fromarray(prediction.image)),
                 caption=HEATMAP_CAPTION.format(name=prediction.heatmap_class),
                 context_note=prediction.context_note or "",  # how the patient context moved the answer
                 similar=[(case.thumbnail_jpeg, similar_caption(case)) for case in cases],
                 similar_text=similar_markdown(cases), decision=decision_markdown(prediction))


def displayed_image(shown: Shown | None, with_heatmap: bool) -> Image.Image | str | None:
    """The overlay, or the model's view alone."""
    if shown is None:
        return None
    return shown.heatmap if with_heatmap else shown.view


def stored_file(data: bytes, folder: str | os.PathLike, name: str) -> str:
    """``data`` as a file in ``folder`` (Gradio's cache): ``<sha256>/<name>``, written once, atomically.

    Gradio's own cache of a returned PIL image rewrites ``<hash>/image.jpeg`` in place (truncate, then write) on
    every request that returns the same picture, so a browser downloading it meanwhile got a cut-off or empty
    response. Here the bytes go to a temporary file that is renamed into place; an existing copy is only touched
    (Gradio's ``delete_cache`` ages files by ctime)."""
    target = Path(folder) / hashlib.sha256(data).hexdigest() / name
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


def jpeg_file(image: Image.Image, folder: str | os.PathLike, name: str = "image") -> str:
    """``image`` as ``<sha256>/<name>.jpeg`` in ``folder``, written once (``stored_file``)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")  # Pillow's defaults, as Gradio's own encoder used them
    return stored_file(buffer.getvalue(), folder, f"{name}.jpeg")


def as_files(shown: Shown, folder: str | os.PathLike) -> Shown:
    """``shown`` with its pictures as JPEG files in ``folder``: the heatmap and the view (``jpeg_file``) and the
    similar cases' thumbnails, their stored JPEG bytes as they are (``stored_file``, never decoded). What the
    page sends, and what its per-visitor state keeps (paths instead of images)."""
    if shown.heatmap is None:
        return shown
    similar = [(stored_file(data, folder, "case.jpeg"), caption) for data, caption in shown.similar]
    return dataclasses.replace(shown, heatmap=jpeg_file(shown.heatmap, folder, "heatmap"),
                               view=jpeg_file(shown.view, folder, "view") if shown.view is not None else None,
                               similar=similar)


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
