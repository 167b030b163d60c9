"""The evaluation report on synthetic probabilities and generated images."""

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from classifier.config_sections import Label, LabelSet
from classifier.documents.report import confident_errors, image_hash, write_report
from classifier.evaluation.metrics import classification_metrics, malignant_auc
from classifier.labels import CLASSES, CODES

N = 60
LABELS = LabelSet(tuple(Label(c.code, c.name, c.malignant) for c in CLASSES))


def _image(rng, path):
    """A smooth random picture: a sum of sinusoids per colour channel."""
    y, x = np.mgrid[0:75, 0:100] / 75.0
    img = np.zeros((75, 100, 3))
    for c in range(3):
        for _ in range(4):
            fx, fy, phase = rng.uniform(6, 40, size=2).tolist() + [rng.uniform(0, 6.3)]
            img[..., c] += np.sin(fx * x + fy * y + phase)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    Image.fromarray(img.astype(np.uint8)).save(path)


@pytest.fixture
def evaluated(tmp_path):
    rng = np.random.default_rng(7)
    folder = tmp_path / "images"
    folder.mkdir()
    ids = [f"IMG_{i:04d}" for i in range(N)]
    paths = []
    for i, image_id in enumerate(ids):
        path = folder / f"{image_id}.png"
        if i == 1:  # a duplicate of image 0
            shutil.copyfile(paths[0], path)
        else:
            _image(rng, path)
        paths.append(path)
    probs = rng.dirichlet(np.full(len(CODES), 0.4), size=N)
    y_true = rng.integers(0, len(CODES), size=N)
    return probs, y_true, ids, paths


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def test_report_files_and_content(tmp_path, evaluated):
    probs, y_true, ids, paths = evaluated
    sharp = probs ** 2 / (probs ** 2).sum(axis=1, keepdims=True)
    metrics = classification_metrics(probs, y_true, CODES)
    out = tmp_path / "report"
    path = write_report(out, probs, y_true, ids, paths, LABELS, metrics, title="Synthetic", extra_md="EXTRA LINE",
                        probs_uncalibrated=sharp)
    assert path == out / "report.md"
    for name in ("report.md", "metrics.json", "confusion_matrix.png", "per_class_prf.png", "roc_curves.png",
                 "reliability.png", "malignant_roc.png", "confident_errors.png"):
        assert (out / name).stat().st_size > 0, name
    text = path.read_text()
    assert text.startswith("# Synthetic") and "EXTRA LINE" in text
    assert "P(akiec) + P(bcc) + P(mel)" in text and "before calibration" in text

    wrong = np.nonzero(probs.argmax(axis=1) != y_true)[0]
    expected = [ids[i] for i in sorted(wrong, key=lambda i: -probs[i].max())][:20]
    rows = re.findall(r"^\| (\d+) \| (IMG_\d+) \| \w+ \| \w+ \| ([\d.]+) \|", _section(text, "## Most confident"),
                      flags=re.M)
    assert [r[1] for r in rows] == expected
    shown = [float(r[2]) for r in rows]
    assert len(rows) == min(20, len(wrong)) and shown == sorted(shown, reverse=True)

    pairs = _section(text, "## Near-identical pairs")
    assert "| IMG_0000 | IMG_0001 |" in pairs
    assert "IMG_0002" not in pairs and pairs.count("\n| IMG_") == 1

    doc = json.loads((out / "metrics.json").read_text())
    assert doc["accuracy"] == metrics["accuracy"]
    assert doc["malignant_auc"] == malignant_auc(probs, y_true, LABELS.malignant)  # metrics.py's, the one AUC
    assert doc["malignant_codes"] == ["akiec", "bcc", "mel"]
    assert doc["near_identical_pairs"] == [{"a": "IMG_0000", "b": "IMG_0001", "bits": doc["near_identical_pairs"][0]
                                            ["bits"]}]
    assert set(doc["calibration"]) == {"before", "after"}


def test_report_without_images(tmp_path, evaluated):
    probs, y_true, ids, _ = evaluated
    path = write_report(tmp_path, probs, y_true, ids, None, LABELS, classification_metrics(probs, y_true, CODES))
    text = path.read_text()
    assert "Not checked" in text and "| 1 | IMG_" in text
    assert not (tmp_path / "confident_errors.png").exists()


def test_confident_errors_order():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    errors = confident_errors(probs, np.array([1, 0, 1, 1]), ["a", "b", "c", "d"], ("x", "y"))
    assert [e["image_id"] for e in errors] == ["a", "b", "c"]


def test_confident_errors_are_wrong_decisions_ranked_by_the_decided_class():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    decisions = np.array([0, 1, 1, 0])  # a decision-only prior correction chose c as y and d as x
    errors = confident_errors(probs, np.array([1, 0, 1, 1]), ["a", "b", "c", "d"], ("x", "y"), decisions=decisions)
    assert [(e["image_id"], e["prediction"], e["probability"]) for e in errors] == [("a", "x", 0.9), ("b", "y", 0.8),
                                                                                   ("d", "x", 0.3)]


def test_hash_distinguishes(tmp_path):
    rng = np.random.default_rng(1)
    _image(rng, tmp_path / "a.png")
    _image(rng, tmp_path / "b.png")
    Image.open(tmp_path / "a.png").save(tmp_path / "a.jpg", "JPEG", quality=90)
    a, b, a2 = (image_hash(tmp_path / n) for n in ("a.png", "b.png", "a.jpg"))
    assert np.bitwise_count(a ^ a2).sum() <= 2 < np.bitwise_count(a ^ b).sum()
