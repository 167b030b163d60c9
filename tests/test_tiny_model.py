"""The committed tiny model folder (tests/fixtures/tiny_model), which the serving tests use without TensorFlow:
small, complete, and what scripts/make_tiny_model.py writes."""

import pytest

from classifier.api import Classifier
from classifier.model_folder import read_config
from scripts.make_tiny_model import FIXTURE
from tests.conftest import lesion_like

REGENERATE = "the fixture is stale: run `.venv/bin/python -m scripts.make_tiny_model` and commit tests/fixtures"


def test_the_fixture_is_a_small_float32_litert_folder():
    config = read_config(FIXTURE)  # the checksums hold
    assert config.raw["serving"]["runtime"] == "LiteRT (model.tflite), float32"
    assert sum(path.stat().st_size for path in FIXTURE.iterdir()) < 150_000
    assert config.input_size == 64 and len(config.served_views) == 8


@pytest.mark.slow  # TensorFlow
def test_the_script_writes_the_committed_folder(tmp_path):
    from scripts.make_tiny_model import main

    main(["--out", str(tmp_path / "tiny")])
    fresh, committed = read_config(tmp_path / "tiny"), read_config(FIXTURE)
    assert (fresh.labels, fresh.input_size) == (committed.labels, committed.input_size), REGENERATE
    assert {k: v for k, v in fresh.raw.items() if k != "files"} == {
        k: v for k, v in committed.raw.items() if k != "files"}, REGENERATE
    ours, theirs = Classifier(fresh.folder), Classifier(committed.folder)
    for image in (lesion_like(90, seed=1), lesion_like(64, seed=2)):
        expected = {p.code: p.probability for p in theirs.classify(image).probabilities}
        assert {p.code: p.probability for p in ours.classify(image).probabilities} == pytest.approx(
            expected, abs=1e-5), REGENERATE
