"""Writing a model folder from a trained Keras model: weights, LiteRT export, config, calibration,
measured metrics and model card."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from classifier.config_sections import Calibration, Conformal, Metrics, Quantization
from classifier.data import Record, in_split, load_split
from classifier.labels import CLASSES, CODES
from classifier.model_folder import FORMAT_VERSION, ModelConfig, file_entry, read_config, write_config
from classifier.preprocessing import load_and_prepare
from classifier.tta import SERVED_VIEWS, TTA_VIEWS

# Where an export puts the prior correction: into the decision only (the default; the probabilities, their
# temperature and the conformal sets are fitted without it), or into the probabilities (the older form).
PRIOR_CORRECTIONS = ("decision", "probabilities")
FIGURES_OF_A_FORM = ("accuracy", "balanced_accuracy", "macro_auc", "melanoma_recall", "nll", "ece",
                     "top_probability_is_decision")


def base_config(settings: dict, dropout: float = 0.3) -> dict:
    """The JSON document of a new model folder's config (``write_model_files`` adds its files and writes it)."""
    backbone = {"lite1": "EfficientNet-Lite1", "b1": "EfficientNetB1",
                "tiny": "tiny (three Conv2D layers; a test fixture)"}[settings["backbone"]]
    power = settings.get("shades_of_gray_power")
    return {
        "format_version": FORMAT_VERSION,
        "task": "image-classification",
        "architecture": {
            "backbone": backbone,
            "head": f"GlobalAveragePooling2D + Dropout({dropout}) + Dense({len(CODES)}, softmax)",
            "feature_layer": "features",
            "head_layer": "predictions",
            "pretrained": "ImageNet" if settings.get("imagenet", True) else "none",
        },
        "input": {"size": settings["size"], "channels": 3, "layout": "NHWC", "dtype": "float32",
                  "pixel_range": [0, 255]},
        "preprocessing": {
            "function": "classifier.preprocessing.prepare",
            "steps": ["EXIF orientation applied", "RGB (alpha flattened onto black)", "largest centred square",
                      f"bicubic resize to {settings['size']}x{settings['size']}"]
            + ([f"shades-of-gray colour constancy (power {power})"] if power else []),
            "normalization": "inside the model" + (": (x - 127) / 128" if settings["backbone"] != "b1" else ""),
            **({"shades_of_gray_power": power} if power else {}),
        },
        "labels": [{"code": c.code, "name": c.name, "malignant": c.malignant} for c in CLASSES],
        "calibration": {"temperature": 1.0, "fitted_on": None},
        "ood": {"score": "energy = -logsumexp(logits), the mean over the served views", "energy_threshold": None},
        "serving": {"views": list(SERVED_VIEWS), "runtime": "LiteRT (model.tflite), float32"},
        "tta": {"views": list(TTA_VIEWS)},
        "training": settings,
        "files": {},
    }


def write_model_files(model, out: Path, document: dict, split_path: Path | None,
                      quantize_with: np.ndarray | None = None) -> ModelConfig:
    """Save ``model.keras`` (no optimizer), ``model.tflite`` (logits + CAM + pooled features) and config.json
    (``document``, from :func:`base_config`, with the files) into ``out``; returns the config written. With
    ``quantize_with``, prepared images (N, size, size, 3), the LiteRT graph is quantized to int8 (weights and
    activations; float input and outputs), its activation ranges measured on those images."""
    import keras

    from classifier.runtime.keras import logits_and_cam_model

    out.mkdir(parents=True, exist_ok=True)
    clean = keras.models.clone_model(model)
    clean.set_weights(model.get_weights())
    clean.save(out / "model.keras")
    with tempfile.TemporaryDirectory() as tmp:
        serving = logits_and_cam_model(clean)
        if quantize_with is None:
            serving.export(str(Path(tmp) / "model.tflite"), format="litert", verbose=False)
        else:
            (Path(tmp) / "model.tflite").write_bytes(int8_tflite(serving, quantize_with, Path(tmp)))
        shutil.copy(Path(tmp) / "model.tflite", out / "model.tflite")
    names = {"keras": "model.keras", "tflite": "model.tflite"}
    if split_path is not None:
        if Path(split_path).resolve() != (out / "split.json").resolve():
            shutil.copy(split_path, out / "split.json")
        names["split"] = "split.json"
    config = ModelConfig.from_dict({**document, "files": {role: file_entry(out, name) for role, name in names.items()}},
                                   out)
    if quantize_with is not None:
        config = config.with_sections(serving=replace(
            config.serving, runtime="LiteRT (model.tflite), int8", quantization=Quantization(
                scheme="full-integer post-training quantization: int8 weights (per channel) and activations, "
                       "float32 input and outputs",
                calibration_images=len(quantize_with), calibration_from="training split (seeded random choice)")))
    write_config(config)
    return config


def int8_tflite(serving_model, images: np.ndarray, tmp: Path) -> bytes:
    """The serving graph as a full-integer LiteRT model. On 2 CPU cores it runs about 3x faster than float32,
    which is what lets every prediction average the eight symmetries within the latency budget."""
    import tensorflow as tf

    saved = tmp / "saved_model"
    serving_model.export(str(saved), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in images)
    return converter.convert()


def calibration_images(records: list[Record], paths: dict[str, Path], split: dict[str, str], size: int,
                       count: int = 300, seed: int = 0, power: int | None = None) -> np.ndarray:
    """``count`` training-split images (a seeded random choice), prepared at ``size`` (with the shades-of-gray
    step of ``power``, where the model has one): the int8 ranges' sample."""
    train = sorted(r.image_id for r in in_split(records, split, "train") if r.image_id in paths)
    chosen = np.random.default_rng(seed).choice(len(train), min(count, len(train)), replace=False)
    return np.stack([load_and_prepare(paths[train[i]], size, power) for i in sorted(chosen)])


def fit_uncertainty(config: ModelConfig, val_probs: np.ndarray, y_val: np.ndarray, train_features: np.ndarray,
                    y_train: np.ndarray, val_features: np.ndarray, coverage: float = 0.9) -> ModelConfig:
    """Fit the conformal prediction sets (on validation probabilities) and the Mahalanobis feature score (on
    training features, its threshold on validation): ``ood_features.npz`` in the folder, and the config with them."""
    from classifier.ood import feature_threshold, fit_mahalanobis
    from classifier.uncertainty import fit_conformal_threshold

    fitted = fit_mahalanobis(train_features, y_train, len(config.labels))
    np.savez(config.folder / "ood_features.npz", **fitted)
    return config.with_file("ood_features", "ood_features.npz").with_sections(
        conformal=Conformal(method="split conformal, least ambiguous sets (score 1 - p of the true class)",
                            coverage=coverage, threshold=round(fit_conformal_threshold(val_probs, y_val, coverage), 6),
                            fitted_on="validation split, calibrated probabilities (mean over the served views)"),
        ood=replace(config.ood, feature_score="Mahalanobis distance of the L2-normalised pooled features (mean over "
                    "the served views) to the nearest class mean, shared covariance of the training features "
                    "(squared, per dimension)",
                    feature_threshold=feature_threshold(val_features, fitted, 0.97),
                    feature_quantile=0.97, chosen_on="validation split: 99% of in-distribution images stay under the "
                    "energy threshold, 97% under the feature threshold"))


def fit_calibration(val_views: np.ndarray, y_val: np.ndarray, train_counts: np.ndarray,
                    prior_correction: str = "decision") -> Calibration:
    """The calibration section fitted on validation's per-view logits (N, V, K): tau of the prior correction
    (``fit_prior_correction``), its bias -tau * log(training class frequency) as ``decision_bias`` (the decision
    only) or as ``class_bias`` (inside the probabilities, ``prior_correction="probabilities"``), and the
    temperature minimising the NLL of the probabilities served (with the bias only in the second form)."""
    from classifier.evaluation.fitting import fit_prior_correction, fit_temperature, prior_bias

    if prior_correction not in PRIOR_CORRECTIONS:
        raise ValueError(f"prior_correction must be one of {', '.join(PRIOR_CORRECTIONS)}, not {prior_correction!r}")
    tau = fit_prior_correction(val_views, y_val, train_counts)
    bias = tuple(np.round(prior_bias(tau, train_counts), 4).tolist())
    inside = prior_correction == "probabilities"
    rule = ("-tau * log(training class frequency) with tau maximising (accuracy + balanced accuracy) / 2 of the "
            "decisions")
    return Calibration(
        temperature=fit_temperature(val_views, y_val, bias if inside else None),
        class_bias=bias if inside else None, decision_bias=None if inside else bias, prior_correction_tau=tau,
        fitted_on="validation split, on the mean probabilities of the served views: " + (
            f"class_bias = {rule}, then the temperature minimising negative log-likelihood" if inside else
            f"decision_bias = {rule} (the decision only), and the temperature minimising the negative "
            "log-likelihood of the probabilities without it"))


def prior_correction_forms(val_views, y_val, test_views, y_test, train_counts, codes, served_form: str,
                           coverage: float = 0.9) -> dict:
    """Both forms of the prior correction, each fitted on validation (``fit_calibration`` and its conformal
    threshold) and measured on the test split: the figures of ``FIGURES_OF_A_FORM`` and the conformal sets'
    coverage and mean size (the "before and after" of serving the correction on the decision only)."""
    from classifier.evaluation.metrics import classification_metrics
    from classifier.explain import served
    from classifier.uncertainty import fit_conformal_threshold, set_metrics

    forms = {"served": served_form}
    for form in PRIOR_CORRECTIONS:
        calibration = fit_calibration(val_views, y_val, train_counts, form)
        threshold = fit_conformal_threshold(served(calibration, val_views)[0], y_val, coverage)
        probs, decisions = served(calibration, test_views)
        figures = classification_metrics(probs, y_test, codes, predicted=decisions)
        decided = probs.argmax(axis=1) if decisions is None else decisions
        figures["top_probability_is_decision"] = round(float(np.mean(probs.argmax(axis=1) == decided)), 4)
        sets = set_metrics(probs, y_test, threshold, decisions)
        forms["tau"] = calibration.prior_correction_tau  # the same rule, so the same tau, in both forms
        forms[form] = {"temperature": calibration.temperature,
                       **{k: figures[k] for k in FIGURES_OF_A_FORM if k in figures},
                       "conformal_coverage": sets["coverage"], "conformal_mean_set_size": sets["mean_set_size"]}
    return forms


def calibrate_and_measure(out: Path, records: list[Record], paths: dict[str, Path],
                          prior_correction: str = "decision") -> Metrics:
    """Fit the prior correction (on the decision only, or with ``prior_correction="probabilities"`` inside the
    probabilities: ``fit_calibration``), the temperature, the conformal sets and the out-of-distribution
    thresholds on validation (the feature statistics on training images), then measure the test split (plain and
    with TTA, before and after; both forms of the prior correction in ``metrics.prior_correction``); store all of
    it in config.json and the card. ``metrics.test`` is what ``python -m classifier evaluate --split test`` prints
    (``measure()``)."""
    from classifier.api import Classifier
    from classifier.documents.card import write_model_card
    from classifier.evaluation.fitting import fit_temperature, mean_probabilities
    from classifier.evaluation.measure import measure, predict_for_measure, predict_logits
    from classifier.evaluation.metrics import classification_metrics
    from classifier.explain import served
    from classifier.ood import energy_threshold

    config = read_config(out)
    split = load_split(config.file("split"))
    label_of = {r.image_id: config.codes.index(r.dx) for r in records}
    ids = {s: sorted(i for i, v in split.items() if v == s and i in label_of) for s in ("train", "val", "test")}
    y = {s: np.array([label_of[i] for i in ids[s]]) for s in ids}

    classifier = Classifier(out)
    val_paths = [paths[i] for i in ids["val"]]
    # the served views' logits, every view's pooled features (the context head trains on them)
    val_views, val_view_features = predict_logits(classifier, val_paths, with_features=True, per_view=True)
    _, train_view_features = predict_logits(classifier, [paths[i] for i in ids["train"]], with_features=True,
                                            per_view=True)
    val_features, train_features = val_view_features.mean(axis=1), train_view_features.mean(axis=1)
    train_counts = np.bincount(y["train"], minlength=len(config.codes))
    config = config.with_sections(
        calibration=fit_calibration(val_views, y["val"], train_counts, prior_correction),
        ood=replace(config.ood, energy_threshold=energy_threshold(val_views, 0.99), energy_quantile=0.99))
    temperature, tau = config.calibration.temperature, config.calibration.prior_correction_tau
    config = fit_uncertainty(config, served(config.calibration, val_views)[0], y["val"], train_features,
                             y["train"], val_features)
    config = add_evidence(config, records, paths, ids, (train_view_features, val_view_features), y, train_counts)
    quantization = config.serving.quantization
    if quantization is not None:
        config = config.with_sections(serving=replace(config.serving, quantization=replace(
            quantization, val_top1_agreement_with_float=_float_agreement(out, val_paths, val_views[:, 0]))))
    write_config(config)
    classifier = Classifier(out)  # with the fitted uncertainty

    started = time.time()
    test_paths = [paths[i] for i in ids["test"]]
    test_tta, test_features = predict_for_measure(classifier, test_paths, tta=True)
    seconds = time.time() - started
    if set(classifier.views()) <= set(classifier.views(tta=True)):
        plain = test_tta[:, [classifier.views(tta=True).index(v) for v in classifier.views()]]
    else:
        plain, _ = predict_for_measure(classifier, test_paths)
    plain_temperature = fit_temperature(val_views, y["val"])

    def measured(view_logits):  # what `evaluate` prints for these views (TTA or not)
        return measure(classifier.config, view_logits, y["test"], test_features, classifier.feature_statistics)

    test_metrics, tta_metrics = measured(plain), measured(test_tta)
    uncalibrated, temperature_only = (classification_metrics(mean_probabilities(plain, t), y["test"], config.codes)
                                      for t in (1.0, plain_temperature))
    headline = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "melanoma_recall", "nll", "ece")
    config = config.with_sections(metrics=Metrics(
        split="test", n=test_metrics["n"], test=test_metrics,
        test_tta={k: tta_metrics[k] for k in headline if k in tta_metrics},
        test_without_prior_correction={k: temperature_only[k] for k in headline if k in temperature_only},
        prior_correction=prior_correction_forms(val_views, y["val"], plain, y["test"], train_counts, config.codes,
                                                prior_correction, config.conformal.coverage),
        calibration={"temperature": temperature, "prior_correction_tau": tau, "prior_correction": prior_correction,
                     "before": {k: uncalibrated[k] for k in ("nll", "ece")},
                     "after": {k: test_metrics[k] for k in ("nll", "ece")}},
        tta_seconds_per_image_eval=round(seconds / max(len(ids["test"]), 1), 4),
        measured_with="python -m classifier evaluate --model model --data DATA --split test"))
    write_config(config)
    write_model_card(config)
    return config.metrics


def add_evidence(config: ModelConfig, records: list[Record], paths: dict[str, Path], ids: dict, view_features,
                 y: dict, train_counts: np.ndarray) -> ModelConfig:
    """The similar-cases index (one image per training lesion), the patient-context head (trained on the
    training split's features and metadata, calibrated on validation) and the learned lesion-size check, written
    into the folder; returns the config that lists them."""
    from classifier.api import Classifier
    from classifier.context import encode_many
    from classifier.training.context_head import averaged_head, calibrate, write_head
    from classifier.training.quality_probe import build_probe, write_probe
    from classifier.training.similar_index import write_index

    train_views, val_views = view_features
    config = write_index(config, train_views.mean(axis=1), ids["train"], records, paths)
    by_id = {r.image_id: r for r in records}

    def context_of(split):
        chosen = [by_id[i] for i in ids[split]]
        return encode_many([r.age for r in chosen], [r.sex for r in chosen], [r.localization for r in chosen])

    head = averaged_head(train_views, context_of("train"), y["train"], len(config.labels))
    config = write_head(config, head, calibrate(head, val_views, context_of("val"), y["val"], train_counts))
    probe = build_probe(Classifier(config.folder), [paths[i] for i in ids["train"]], train_views.mean(axis=1),
                        [paths[i] for i in ids["val"]], val_views.mean(axis=1), images=min(2000, len(ids["train"])))
    return write_probe(config, probe, probe["note"])


def _float_agreement(out: Path, paths: list[Path], litert_logits: np.ndarray) -> float:
    """Share of images whose top class under the int8 LiteRT graph (identity view) is that of the float Keras
    model: what the quantization changes."""
    from classifier.api import Classifier
    from classifier.evaluation.measure import predict_logits

    keras_logits = predict_logits(Classifier(out, runtime="keras"), paths, views=("identity",))[:, 0]
    return round(float(np.mean(keras_logits.argmax(axis=1) == litert_logits.argmax(axis=1))), 4)


def export_from_training(work: Path, out: Path, records: list[Record], paths: dict[str, Path],
                         average_last: int = 1, quantize: bool = True, prior_correction: str = "decision") -> Path:
    """Turn a finished training run (``work``) into a model folder at ``out``: the best epoch's weights, or
    with ``average_last`` N > 1 the mean of the last N epochs' weights (a cheap stochastic weight average).
    ``quantize``: an int8 LiteRT graph (else float32); ``prior_correction``: see ``calibrate_and_measure``."""
    import keras

    from classifier.training.network import average_weights, build_classifier

    state = json.loads((work / "state.json").read_text())
    settings = state["settings"]
    model = build_classifier(settings["backbone"], settings["size"], len(CODES), imagenet=False)
    if average_last > 1:
        epochs = list(range(state["epoch"] - average_last + 1, state["epoch"] + 1))
        files = [work / f"epoch{e}.weights.h5" for e in epochs]
        missing = [f.name for f in files if not f.is_file()]
        if epochs[0] < 1 or missing:
            raise FileNotFoundError(f"{work}: cannot average the last {average_last} epochs (missing "
                                    f"{', '.join(missing) or 'epochs'})")
        model.set_weights(average_weights(model, files))
        chosen = {"weights": f"mean of epochs {epochs[0]}-{epochs[-1]}"}
    else:
        model.load_weights(work / "best.weights.h5")
        chosen = {"weights": f"best epoch on validation ({state['best_epoch']})"}
    settings = {**settings, "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], **chosen,
                "history": [json.loads(line) for line in (work / "history.jsonl").read_text().splitlines()]}
    images = (calibration_images(records, paths, load_split(work / "split.json"), settings["size"],
                                 power=settings.get("shades_of_gray_power")) if quantize else None)
    write_model_files(model, Path(out), base_config(settings), work / "split.json", images)
    keras.backend.clear_session()
    calibrate_and_measure(Path(out), records, paths, prior_correction)
    return Path(out)


def export_keras_folder(source: Path, out: Path, records: list[Record], paths: dict[str, Path],
                        quantize: bool = True, prior_correction: str = "decision") -> Path:
    """Export an existing model folder's ``model.keras`` again (new LiteRT graph, int8 with ``quantize``, fits,
    metrics, card) into ``out``."""
    import keras

    config = read_config(source)
    model = keras.models.load_model(config.file("keras"), safe_mode=True, compile=False)
    # the shades-of-gray step is the folder's (a head retrained on its features), kept with the weights
    power = {"shades_of_gray_power": config.shades_of_gray_power} if config.shades_of_gray_power else {}
    document = base_config({**config.to_dict()["training"], **power})
    split = config.file("split")
    if split is not None and Path(out).resolve() != Path(source).resolve():
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(split, Path(out) / "split.json")
    if quantize and split is None:
        raise FileNotFoundError(f"{source}: no split.json, so no training images to quantize with; export with --float")
    images = (calibration_images(records, paths, load_split(split), config.input.size,
                                 power=config.shades_of_gray_power) if quantize else None)
    write_model_files(model, Path(out), document, Path(out) / "split.json" if split is not None else None, images)
    keras.backend.clear_session()
    calibrate_and_measure(Path(out), records, paths, prior_correction)
    return Path(out)


def export_run(work: Path, data_dir: Path, out: Path, average_last: int = 1, quantize: bool = True,
               prior_correction: str = "decision") -> Path:
    """:func:`export_from_training` with the data set's records and image paths read from ``data_dir``: what the
    ``train`` and ``export`` commands run."""
    from classifier.data import read_metadata, resolve_images

    records = read_metadata(data_dir)
    return export_from_training(Path(work), Path(out), records, resolve_images(records, data_dir),
                                average_last=average_last, quantize=quantize, prior_correction=prior_correction)
