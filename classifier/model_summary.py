"""The model, for a person: its name, version, training data and honest headline figures, its classes, the
model card, and the technical details, as the page shows them (Markdown; no Gradio).

Everything here is read from the loaded model's ``config.json`` and its folder's README.md, never from the fixed
``classifier.labels.CLASSES``.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

from classifier.api import Classifier
from classifier.labels import BY_CODE
from classifier.web_input import inside


def classes_markdown(classifier: Classifier) -> str:
    """The model's classes; descriptions where the code is one of HAM10000's seven."""
    rows = "\n".join(f"| `{lb.code}` | {lb.name} | {'yes' if lb.malignant else 'no'} | "
                     f"{BY_CODE[lb.code].description if lb.code in BY_CODE else ''} |"
                     for lb in classifier.config.labels)
    return "| Code | Class | Malignant | Description |\n|---|---|---|---|\n" + rows


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
    if space and inside(card, root):
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
