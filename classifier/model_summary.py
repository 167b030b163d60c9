"""The model in words, from its typed config: one source for the page's prose about the model and for the model
card (``classifier.documents.card``).

The first part takes a :class:`~classifier.model_folder.ModelConfig`: the model's name, version and training data,
its headline figures, how a prediction is served, the training recipe and the command that reproduces it. The
second is what the page shows a visitor (Markdown; no Gradio): the summary, the classes, the technical details, the
card and where to read it, from the loaded classifier. Every name, class, malignancy flag and figure comes from the
model's config, never from the fixed ``classifier.labels.CLASSES`` (whose descriptions of HAM10000's seven classes
are added where a code is one of them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from classifier.labels import BY_CODE
from classifier.web_input import inside

if TYPE_CHECKING:
    from classifier.api import Classifier
    from classifier.config_sections import LabelSet
    from classifier.model_folder import ModelConfig

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")


def in_words(count: int) -> str:
    """A small count as a word ("seven"), a larger one in digits."""
    return NUMBER_WORDS[count] if 0 <= count < len(NUMBER_WORDS) else str(count)


def malignant_score(labels: LabelSet) -> str:
    """What P(malignant) sums, e.g. "P(akiec)+P(bcc)+P(mel)"."""
    return "+".join(f"P({code})" for code in labels.malignant_codes)


def model_version(config: ModelConfig, source=None) -> str:
    """A recorded ``version``, else the Hub commit, else the start of the served file's SHA-256."""
    if config.version:
        return str(config.version)
    if source is not None and source.commit:
        return source.commit[:10]
    entry = config.files.get("tflite") or config.files.get("keras")
    return entry.sha256[:10] if entry is not None and entry.sha256 else "unknown"


def model_name(config: ModelConfig) -> str:
    backbone = config.architecture.backbone
    return str(config.name or ("Skin-lesion classifier" + (f" ({backbone})" if backbone else "")))


def trained_on(config: ModelConfig) -> str:
    """The training data in words, from the config's ``training`` record."""
    data = str(config.training.get("dataset") or config.training.get("data") or "")
    if "ham10000" in data.lower():
        return ("HAM10000: 10,015 dermatoscopic photographs of pigmented skin lesions, mostly of fair skin, from "
                "two clinics (Vienna and Queensland)")
    return data or "an unrecorded data set"


def headline_figures(config: ModelConfig) -> dict | None:
    """Balanced accuracy, melanoma recall and the number of test images, read from the config's ``metrics.test``
    (None if the model records none)."""
    test = config.metrics.test
    if "balanced_accuracy" not in test:
        return None
    recall = test.get("melanoma_recall", test.get("per_class", {}).get("mel", {}).get("recall"))
    return {"balanced_accuracy": test["balanced_accuracy"], "melanoma_recall": recall, "images": test.get("n")}


def serving_text(config: ModelConfig) -> str:
    """How a prediction is made: the graph served, its quantization and the views averaged."""
    serving, views = config.serving, config.serving.views
    text = f"Served by {serving.runtime or 'LiteRT (model.tflite), float32'}; "
    text += (f"every prediction is the mean of the calibrated probabilities over {len(views)} views of the image "
             f"({', '.join(views)})." if len(views) > 1 else "every prediction is of the image as it is (one view).")
    quantization = serving.quantization
    if quantization:
        text += (f" Quantization: {quantization.scheme}, activation ranges from {quantization.calibration_images}"
                 f" images of the {quantization.calibration_from}")
        agreement = quantization.val_top1_agreement_with_float
        text += (f"; on the validation split its top class is the float Keras model's (`model.keras`) for "
                 f"{agreement:.1%} of the images (one view each)." if agreement is not None else ".")
    return text


AUGMENTATIONS = {
    "reference": "flips, any rotation, ±20% shifts, shear, zoom in 30%/out 20% (nearest fill), brightness and "
                 "contrast jitter",
    "gentle": "the eight symmetries of the square, zoom in 15%/out 10% and ±6% shifts (reflect fill), brightness, "
              "contrast and saturation jitter, and on a quarter of the batches the softness of a 150-px source",
}


def training_recipe(training: Mapping) -> str:
    """The training settings recorded in config.json, in words."""
    optimizer = "AdamW" if training.get("optimizer") == "adamw" else "Adam"
    if training.get("schedule") == "constant":
        text = f"{optimizer} at a constant lr {training.get('learning_rate')} for {training.get('epochs')} epochs"
    elif training.get("schedule") == "cosine":
        text = (f"{optimizer}, one warm-up epoch to lr {training.get('learning_rate')}, then cosine decay to 0 over "
                f"{training.get('epochs')} epochs")
    else:
        text = (f"{optimizer} from lr {training.get('learning_rate')}, ReduceLROnPlateau on validation loss "
                f"(x0.3 after {training.get('lr_patience')} epoch(s) without improvement), early stopping after "
                f"{training.get('stop_patience')} epochs without a better validation (accuracy + balanced "
                "accuracy) / 2")
    weights = training.get("weights") or (f"the epoch with the best validation (accuracy + balanced accuracy) / 2 "
                                          f"({training.get('best_epoch')})")
    text += f"; kept: {weights}, of {training.get('epochs_run')} epochs run"
    if training.get("init_from"):
        text += f"; started from the mean of the weights {', '.join(training['init_from'])} (an earlier run's epochs)"
    if training.get("small_size"):
        text += (f"; progressive resizing: the first {training.get('small_epochs')} epochs at "
                 f"{training.get('small_size')} px, then {training.get('size')} px")
    smoothing = training.get("label_smoothing") or 0
    text += (f"; batch {training.get('batch_size')}; categorical cross-entropy"
             + (f" with label smoothing {smoothing}" if smoothing else "")
             + f" and softened class weights (n_max/n_c)^{training.get('class_weight_power', 0.5)}; augmentation: "
             + AUGMENTATIONS[training.get("augment", "reference")] + ".")
    return text


def train_command(training: Mapping) -> str:
    """The `train` command line that reproduces the recorded settings."""
    parts = ["python -m classifier train --data DATA --out model", f"--size {training.get('size')}",
             f"--epochs {training.get('epochs')}", f"--lr {training.get('learning_rate')}",
             f"--schedule {training.get('schedule', 'plateau')}"]
    if training.get("small_size"):
        parts.append(f"--small-size {training['small_size']} --small-epochs {training.get('small_epochs')}")
    if training.get("init_from"):
        parts.append("--init-from " + " ".join(training["init_from"]))
    for key, flag, default in (("augment", "--augment", "reference"), ("optimizer", "--optimizer", "adam"),
                               ("label_smoothing", "--label-smoothing", 0.0),
                               ("class_weight_power", "--class-weight-power", 0.5),
                               ("jpeg_share", "--jpeg-augment", 0.0), ("jpeg_consistency", "--jpeg-consistency", 0.0),
                               ("shades_of_gray_power", "--shades-of-gray", None)):
        if training.get(key, default) != default:
            parts.append(f"{flag} {training[key]}")
    if str(training.get("weights", "")).startswith("mean of epochs"):
        first, last = training["weights"].removeprefix("mean of epochs ").split("-")
        parts.append(f"--work RUN` then `python -m classifier export --work RUN --data DATA --out model "
                     f"--average-last {int(last) - int(first) + 1}")
    return " ".join(parts)


# --- the page ---------------------------------------------------------------------------------------------


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


def model_markdown(classifier: Classifier, environ=os.environ) -> str:
    """Name, version, training data, honest headline figures and the model card link, for a visitor."""
    config = classifier.config
    figures = headline_figures(config)
    classes = len(config.labels)
    lines = [f"**{escape(model_name(config))}**, version `{model_version(config, classifier.source)}`. "
             f"Trained on {trained_on(config)}."]
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
    served, tta = classifier.config.serving.views, classifier.config.tta.views
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
    arch, size, threshold = config.architecture, config.input.size, config.ood.energy_threshold
    rows = [
        ("Source", where),
        ("Network", f"{arch.backbone or '?'} + {arch.head or '?'}"),
        ("Runtime", f"{classifier.runtime.name}" + (", int8" if config.serving.quantization else "")
                    + " (TensorFlow is never imported to serve)"),
        ("Input", f"{size}x{size} RGB: the largest centred square of the image"),
        ("Views per prediction", f"{len(config.serving.views)}: {', '.join(config.serving.views)}"),
        ("Test-time augmentation", f"{len(config.tta.views)} views: {', '.join(config.tta.views)}"),
        ("Calibration", f"temperature {config.calibration.temperature:g}"
                        + (", and a per-class prior correction on the decision only (the probabilities are without it)"
                           if config.calibration.decision_bias is not None else
                           " and a per-class prior correction" if any(config.calibration.class_bias or ()) else "")),
        ("Out-of-distribution threshold", "none" if threshold is None else f"energy score above {threshold:g}"),
        ("Classes", ", ".join(config.codes)),
    ]
    return "| Detail | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
