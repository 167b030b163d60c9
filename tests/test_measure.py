"""measure(): the one set of test figures (evaluate's JSON, config.json metrics.test, the card), on generated
logits and features; its out-of-distribution rate is the served rule's (energy or feature distance)."""

from dataclasses import replace

import numpy as np
import pytest

from classifier.api import Classifier
from classifier.config_sections import Architecture, Metrics
from classifier.documents.card import render_model_card
from classifier.evaluation.fitting import mean_probabilities
from classifier.evaluation.measure import measure
from classifier.evaluation.metrics import classification_metrics, roc_auc
from classifier.labels import CLASSES
from classifier.model_folder import ModelConfig
from classifier.ood import energy, fit_mahalanobis, mahalanobis_distance, ood_flags
from classifier.uncertainty import set_metrics
from tests.conftest import lesion_like

K, D = len(CLASSES), 16
CLASSIFICATION = {"n", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "nll", "ece", "per_class",
                  "confusion_matrix", "melanoma_recall"}


def make_config(energy_threshold=None, feature_threshold=None, conformal=None, temperature=1.3,
                **sections) -> ModelConfig:
    """A config of the seven classes (no files on disk), as read_config would give it."""
    return ModelConfig.from_dict({
        "input": {"size": 32}, "labels": [{"code": c.code, "name": c.name, "malignant": c.malignant} for c in CLASSES],
        "calibration": {"temperature": temperature, "class_bias": [float(b) for b in np.linspace(-0.2, 0.2, K)]},
        "ood": {"energy_threshold": energy_threshold, "energy_quantile": 0.99, "feature_threshold": feature_threshold,
                "feature_quantile": 0.97},
        "tta": {"views": ["identity", "flip_h"]},
        "conformal": {} if conformal is None else {"threshold": conformal, "coverage": 0.9},
        "files": {"tflite": {"path": "model.tflite"}, "ood_features": {"path": "ood_features.npz"}}, **sections}, ".")


@pytest.fixture(scope="module")
def sample():
    """Labels, (N, 2, K) view logits, the views' mean features and the feature statistics of training features:
    most images in distribution, some with flat (high-energy) logits, some with far features, some both."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (K, D))
    y_train = rng.integers(0, K, 700)
    statistics = fit_mahalanobis(centres[y_train] + rng.normal(0, 0.3, (700, D)), y_train, K)
    n = 400
    y = rng.integers(0, K, n)
    logits = rng.normal(0, 1, (n, 2, K))
    logits[np.arange(n), :, y] += 3.0
    features = centres[y] + rng.normal(0, 0.3, (n, D))
    flat, far = np.arange(0, 40), np.arange(30, 80)  # 30..39 are both
    logits[flat] = rng.normal(-4, 0.05, (len(flat), 2, K))
    features[far] = rng.normal(0, 1, (len(far), D)) * 5
    return y, logits, features.astype(np.float32), statistics


def thresholds(sample):
    y, logits, features, statistics = sample
    return (float(np.quantile(energy(logits[40:]).mean(axis=1), 0.99)),
            float(np.quantile(mahalanobis_distance(features[80:], statistics), 0.97)))


def test_classification_names_and_values_are_those_of_the_served_probabilities(sample):
    y, logits, _, _ = sample
    config = make_config()
    metrics = measure(config, logits, y)
    assert set(metrics) == CLASSIFICATION | {"malignant_auc"}  # no thresholds: no rate, no conformal block
    probs = mean_probabilities(logits, config.calibration.temperature, config.calibration.class_bias)
    assert {k: metrics[k] for k in CLASSIFICATION} == classification_metrics(probs, y, config.codes)
    malignant = np.array([c.malignant for c in CLASSES])
    assert metrics["malignant_auc"] == round(roc_auc(malignant[y], probs[:, malignant].sum(axis=1)), 4)


def test_ood_warning_rate_is_the_served_rule_energy_or_features(sample):
    y, logits, features, statistics = sample
    energy_threshold, feature_threshold = thresholds(sample)
    config = make_config(energy_threshold, feature_threshold)
    metrics = measure(config, logits, y, features, statistics)
    by_energy = energy(logits).mean(axis=1) > energy_threshold  # the mean of the views' energies, as served
    by_features = mahalanobis_distance(features, statistics) > feature_threshold
    assert metrics["ood_warning_rate"] == round(float(np.mean(by_energy | by_features)), 4)
    assert metrics["ood_warning_rate_energy"] == round(float(by_energy.mean()), 4)
    assert metrics["ood_warning_rate_features"] == round(float(by_features.mean()), 4)
    # the point: the served rate is not the energy score's alone
    assert metrics["ood_warning_rate"] > metrics["ood_warning_rate_energy"]
    assert metrics["ood_warning_rate"] > metrics["ood_warning_rate_features"]
    assert 0.15 < metrics["ood_warning_rate"] < 0.3
    # every view counts, in no particular order: the mean of the views' energies, as classify serves it
    swapped = logits[:, ::-1]
    assert measure(config, swapped, y, features, statistics)["ood_warning_rate"] == metrics["ood_warning_rate"]
    flattened = logits.copy()
    flattened[:, 1] = 0.0
    assert measure(config, flattened, y, features, statistics)["ood_warning_rate"] != metrics["ood_warning_rate"]


def test_energy_only_model_and_missing_features(sample):
    y, logits, features, statistics = sample
    energy_threshold, feature_threshold = thresholds(sample)
    metrics = measure(make_config(energy_threshold), logits, y)
    assert metrics["ood_warning_rate"] == metrics["ood_warning_rate_energy"]
    assert "ood_warning_rate_features" not in metrics
    with pytest.raises(ValueError, match="pooled features"):  # would silently measure the energy score alone
        measure(make_config(energy_threshold, feature_threshold), logits, y)


def test_conformal_block(sample):
    y, logits, _, _ = sample
    config = make_config(conformal=0.8)
    metrics = measure(config, logits, y)
    probs = mean_probabilities(logits, config.calibration.temperature, config.calibration.class_bias)
    assert metrics["conformal"] == {"nominal_coverage": 0.9, **set_metrics(probs, y, 0.8)}
    assert set(metrics["conformal"]) == {"nominal_coverage", "coverage", "mean_set_size", "singleton_rate", "n"}


def test_served_prediction_warns_on_exactly_the_images_measure_counts(sample):
    """Classifier._prediction (what classify serves) and measure() flag the same images by the model's scores."""
    y, logits, features, statistics = sample
    energy_threshold, feature_threshold = thresholds(sample)
    config = make_config(energy_threshold, feature_threshold)
    served = Classifier.__new__(Classifier)  # no runtime: _prediction works on given logits and features
    served.config, served.labels, served.size, served.feature_statistics = config, config.labels, 32, statistics
    served.context_head = served.similar_index = served.size_probe = None
    image = lesion_like(32)
    warned = []
    for i in range(len(y)):
        prediction = served._prediction(image, logits[i], None, features[i][None], 3, False, None)  # (views, D)
        by_energy = any("energy score" in r for r in prediction.warning_reasons)
        by_features = any("features are far" in r for r in prediction.warning_reasons)
        warned.append(by_energy or by_features)
        assert prediction.feature_distance == pytest.approx(mahalanobis_distance(features[i], statistics)[0],
                                                            abs=1e-4)
    flags = ood_flags(config, logits, features, statistics)
    assert warned == flags["warned"].tolist()
    assert measure(config, logits, y, features, statistics)["ood_warning_rate"] == round(float(np.mean(warned)), 4)


def test_card_reads_the_measured_names(sample):
    y, logits, features, statistics = sample
    energy_threshold, feature_threshold = thresholds(sample)
    config = make_config(energy_threshold, feature_threshold, conformal=0.8)
    test = measure(config, logits, y, features, statistics)
    card = render_model_card(config.with_sections(  # the figures stored as the export stores them
        architecture=Architecture(backbone="EfficientNet-Lite1", head="a head"),
        ood=replace(config.ood, feature_score="a distance"),
        conformal=replace(config.conformal, method="split conformal", fitted_on="validation"),
        metrics=Metrics(test=test)))
    assert (f"raise the warning: {test['ood_warning_rate']:.3f} (energy score alone "
            f"{test['ood_warning_rate_energy']:.3f}; feature score alone "
            f"{test['ood_warning_rate_features']:.3f})") in card
    conformal = test["conformal"]
    assert (f"| nominal 90% | {conformal['coverage']:.3f} | {conformal['mean_set_size']:.3f} | "
            f"{conformal['singleton_rate']:.3f} |") in card
    assert f"| malignant-vs-benign ROC AUC (P(akiec)+P(bcc)+P(mel)) | {test['malignant_auc']:.3f} |" in card
