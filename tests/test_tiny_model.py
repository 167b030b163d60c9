"""The committed tiny model folder (tests/fixtures/tiny_model), which the serving tests use without TensorFlow:
small, complete, and what scripts/make_tiny_model.py writes."""

import json
from pathlib import Path

import pytest

from classifier.api import Classifier
from classifier.model_folder import read_config
from scripts.make_tiny_model import FIXTURE
from tests.conftest import lesion_like

REGENERATE = "the fixture is stale: run `.venv/bin/python -m scripts.make_tiny_model` and commit tests/fixtures"


def written(folder: Path) -> dict:
    """config.json as written, after read_config has checked it and the files' checksums."""
    read_config(folder)
    return json.loads((folder / "config.json").read_text())


def test_the_fixture_is_a_small_float32_litert_folder():
    config = written(FIXTURE)
    assert config["serving"]["runtime"] == "LiteRT (model.tflite), float32" and len(config["serving"]["views"]) == 8
    assert config["input"]["size"] == 64
    assert sum(path.stat().st_size for path in FIXTURE.iterdir()) < 150_000


@pytest.mark.slow  # TensorFlow
def test_the_script_writes_the_committed_folder(tmp_path):
    from scripts.make_tiny_model import main

    main(["--out", str(tmp_path / "tiny")])
    fresh, committed = written(tmp_path / "tiny"), written(FIXTURE)
    assert (fresh["labels"], fresh["input"]) == (committed["labels"], committed["input"]), REGENERATE
    assert {k: v for k, v in fresh.items() if k != "files"} == {
        k: v for k, v in committed.items() if k != "files"}, REGENERATE  # files: model.keras's zip differs
    ours, theirs = Classifier(tmp_path / "tiny"), Classifier(FIXTURE)
    for image in (lesion_like(90, seed=1), lesion_like(64, seed=2)):
        expected = {p.code: p.probability for p in theirs.classify(image).probabilities}
        assert {p.code: p.probability for p in ours.classify(image).probabilities} == pytest.approx(
            expected, abs=1e-5), REGENERATE
