"""A model with another label set (three classes, other codes, one malignant) reports right everywhere: its
measured figures, the evaluation report, the model card and the page's prose about it all read its labels and
malignancy from its config.json, never from HAM10000's seven."""

from types import SimpleNamespace

import numpy as np
import pytest

from classifier import model_summary
from classifier.config_sections import Metrics
from classifier.documents.card import render_model_card
from classifier.documents.report import write_report
from classifier.evaluation.measure import measure
from classifier.evaluation.metrics import roc_auc
from classifier.model_folder import ModelConfig, read_config, write_config
from tests.conftest import BUNDLED_MODEL

LABELS = [{"code": "lent", "name": "Solar lentigo", "malignant": False},
          {"code": "scc", "name": "Squamous cell carcinoma", "malignant": True},
          {"code": "sk", "name": "Seborrhoeic keratosis", "malignant": False}]
HAM10000_ONLY = ("akiec", "bcc", "mel", "melanoma", "seven")


@pytest.fixture
def config(tmp_path) -> ModelConfig:
    """A model folder of the three classes, written and read back through ModelConfig."""
    (tmp_path / "model.tflite").write_bytes(b"a graph of three outputs")
    config = ModelConfig.from_dict({
        "architecture": {"backbone": "EfficientNet-Lite1", "head": "Dense(3, softmax)"}, "input": {"size": 64},
        "labels": LABELS, "calibration": {"temperature": 1.2, "class_bias": [0.1, -0.2, 0.1]},
        "training": {"data": "a clinic's archive", "epochs": 3}, "files": {"tflite": {"path": "model.tflite"}}},
        tmp_path).with_file("tflite", "model.tflite")
    write_config(config)
    return read_config(tmp_path)


@pytest.fixture
def scored():
    """(per-view logits (N, 1, 3), labels) of 90 images, scc told apart from the rest fairly well."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    logits = rng.normal(0, 1, (90, 1, 3))
    logits[np.arange(90), 0, y] += 1.5
    return logits, y


def test_its_measured_figures_and_report_use_its_malignant_class(config, scored, tmp_path):
    logits, y = scored
    metrics = measure(config, logits, y)
    probs = np.exp((logits[:, 0] + np.array([0.1, -0.2, 0.1])) / 1.2)
    probs /= probs.sum(axis=1, keepdims=True)
    assert metrics["malignant_auc"] == round(roc_auc(y == 1, probs[:, 1]), 4)  # P(malignant) = P(scc)
    assert "melanoma_recall" not in metrics and set(metrics["per_class"]) == {"lent", "scc", "sk"}

    report = write_report(tmp_path / "report", probs, y, [f"IMG_{i}" for i in range(90)], None, config.labels,
                          metrics)
    text = report.read_text()
    assert f"Score P(scc); malignant-vs-benign AUC **{metrics['malignant_auc']:.4f}**." in text
    assert f"| malignant vs benign AUC | {metrics['malignant_auc']:.4f} |" in text
    assert "| scc | Squamous cell carcinoma |" in text and "| sk | Seborrhoeic keratosis |" in text
    assert not any(word in text for word in HAM10000_ONLY)
    assert '"malignant_codes": [\n    "scc"\n  ]' in (tmp_path / "report" / "metrics.json").read_text()


def test_its_card_and_page_prose_name_its_classes(config, scored):
    logits, y = scored
    measured = config.with_sections(metrics=Metrics(split="test", n=90, test=measure(config, logits, y)))
    test = measured.metrics.test
    card = render_model_card(measured)
    assert "to tell apart three kinds of pigmented skin lesion" in card and "one of the three." in card
    assert "| scc | Squamous cell carcinoma | yes |" in card and "| lent | Solar lentigo | no |" in card
    assert f"| malignant-vs-benign ROC AUC (P(scc)) | {test['malignant_auc']:.3f} |" in card
    assert f"| balanced accuracy (mean recall) | {test['balanced_accuracy']:.3f} |" in card
    assert not any(word in card.lower() for word in HAM10000_ONLY)

    page = SimpleNamespace(config=measured, source=None, runtime=SimpleNamespace(name="litert"))
    text = model_summary.model_markdown(page, environ={})
    assert f"balanced accuracy {test['balanced_accuracy']:.0%}" in text and "90 held-out test images" in text
    assert "the mean of the 3 per-class recalls; guessing scores 33%" in text
    assert "Trained on a clinic's archive" in text
    assert "melanoma" not in text
    classes = model_summary.classes_markdown(page)
    assert "| `scc` | Squamous cell carcinoma | yes |" in classes and classes.count("\n| `") == 3
    assert "| Classes | lent, scc, sk |" in model_summary.technical_markdown(page)


def test_the_bundled_model_keeps_its_seven_classes_card_and_prose():
    """The same functions on the bundled model give its committed card, word for word."""
    if not (BUNDLED_MODEL / "config.json").is_file():
        pytest.skip("no trained model in model/")
    config = read_config(BUNDLED_MODEL, verify_files=False)
    assert render_model_card(config) == (BUNDLED_MODEL / "README.md").read_text()
    page = SimpleNamespace(config=config, source=None)
    assert "the mean of the 7 per-class recalls" in model_summary.model_markdown(page, environ={})
