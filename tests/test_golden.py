"""The bundled model's outputs, pinned: a change in preprocessing, export or calibration shows up here even
without the data set. After shipping a new model, regenerate with `python -m tests.make_golden`."""

import json

import pytest

from tests.conftest import ROOT


def test_bundled_model_reproduces_its_golden_outputs(bundled_model_dir):
    from classifier.api import Classifier
    from classifier.model_folder import read_config
    from tests.make_golden import GOLDEN, golden_inputs, outputs

    golden = json.loads(GOLDEN.read_text())
    assert golden["model_tflite_sha256"] == read_config(bundled_model_dir).files["tflite"].sha256, (
        "model/ changed: run `python -m tests.make_golden` and review the differences")
    measured = outputs(Classifier(bundled_model_dir, runtime="litert"), golden_inputs())
    assert measured.keys() == golden["outputs"].keys()
    assert len([k for k in measured if k.startswith("examples/")]) >= 7
    for name, expected in golden["outputs"].items():
        assert_golden(measured[name], expected, name)
        assert ("with_context" in measured[name]) == ("with_context" in expected), name


def assert_golden(got: dict, expected: dict, name: str) -> None:
    """One golden comparison (also used by the Hub round trip): same label and set, probabilities to 1e-4."""
    assert got["label"] == expected["label"], name
    assert got["prediction_set"] == expected["prediction_set"], name
    for code, probability in expected["probabilities"].items():
        assert got["probabilities"][code] == pytest.approx(probability, abs=1e-4), (name, code)
    if expected["feature_distance"] is not None:
        assert got["feature_distance"] == pytest.approx(expected["feature_distance"], rel=1e-3, abs=1e-3), name
    if "similar_cases" in expected:  # ids, or the records' similar_cases
        assert [c if isinstance(c, str) else c["image_id"] for c in got["similar_cases"]] == expected[
            "similar_cases"], name
    if "with_context" in expected and "with_context" in got:
        assert_golden(got["with_context"] | {"feature_distance": None},
                      expected["with_context"] | {"feature_distance": None}, f"{name} with context")


def test_golden_file_is_in_the_repository():
    assert (ROOT / "tests" / "golden" / "bundled_model.json").is_file()
