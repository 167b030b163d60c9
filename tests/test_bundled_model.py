"""The shipped model: it loads from model/, and `evaluate` reproduces the figures in its card."""

import json

import pytest


def test_bundled_model_folder_is_valid_and_card_carries_its_metrics(bundled_model_dir):
    from classifier.model_folder import read_config

    config = read_config(bundled_model_dir)
    test = config.metrics.test
    card = (bundled_model_dir / "README.md").read_text()
    assert f"| accuracy | {test['accuracy']:.3f} |" in card
    assert f"| melanoma recall | {test['melanoma_recall']:.3f} |" in card
    assert config.files["split"].path == "split.json"


@pytest.mark.slow  # minutes: every test-split image (about 1,500), eight views each
def test_evaluate_on_the_test_split_reproduces_the_model_card(bundled_model_dir, ham_dir, tmp_path, capsys):
    from classifier.cli import main

    status = main(["evaluate", "--model", str(bundled_model_dir), "--data", str(ham_dir), "--split", "test",
                   "--out", str(tmp_path / "report")])  # in this process: the same command, without the start-up
    out, err = capsys.readouterr()
    assert status == 0, err[-2000:]
    measured = json.loads(out.strip().splitlines()[-1])
    recorded = json.loads((bundled_model_dir / "config.json").read_text())["metrics"]["test"]
    for key in ("n", "accuracy", "balanced_accuracy", "macro_f1", "macro_auc", "melanoma_recall", "nll", "ece"):
        assert measured[key] == pytest.approx(recorded[key], abs=2e-4), key
    report = (tmp_path / "report" / "report.md").read_text()
    assert "confident" in report.lower()
    for name in ("confusion_matrix.png", "roc_curves.png", "reliability.png", "per_class_prf.png"):
        assert (tmp_path / "report" / name).is_file()
