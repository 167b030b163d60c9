"""Shared fixtures: the committed tiny model folder (random weights), the bundled model, the HAM10000 copy; and the
test tiers. ``slow`` means: needs TensorFlow, a server (the fake Hub, Ray, the demo) or a browser, or takes minutes
(evaluating the whole test split). A test that uses a fixture in ``SLOW_FIXTURES`` is marked slow here, so the
marker cannot be forgotten. ``pytest --fast`` runs the rest, with TensorFlow and Keras made unimportable so that a
test needing them fails loudly."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from classifier.data import HAM_DIR  # $HAM10000_DIR, else ../shared/data/ham10000
from classifier.evaluation.benchmark import lesion_like  # noqa: F401  (the tests' generated image)

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "model"

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SLOW_FIXTURES = {"hub", "local_ray"}  # start the fake Hub, start Ray


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true",
                     help="the fast tier: skip slow tests (TensorFlow, servers, browser); under a minute")


def pytest_configure(config):
    if config.getoption("--fast"):
        for module in ("tensorflow", "keras"):
            sys.modules[module] = None  # importing it now raises ImportError


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers added here
def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(item.fixturenames) or item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--fast"):
        slow = [item for item in items if item.get_closest_marker("slow")]
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def tiny_litert_dir(tmp_path_factory) -> Path:
    """The committed tiny model folder, tests/fixtures/tiny_model (the tiny backbone at 64 px, random weights, a
    float32 LiteRT graph and model.keras; written by ``python -m scripts.make_tiny_model``): serving without
    TensorFlow, and the Keras model beside it for the tests that need one (marked slow). A copy
    outside the repository, as a downloaded model would be, so the committed files stay as they are; a test that
    writes into a model folder still copies it to tmp_path first."""
    from scripts.make_tiny_model import FIXTURE

    return Path(shutil.copytree(FIXTURE, tmp_path_factory.mktemp("tiny_litert") / "model"))


@pytest.fixture(scope="session")
def bundled_model_dir() -> Path:
    if not (BUNDLED_MODEL / "config.json").is_file():
        pytest.skip("no trained model in model/ (run the training command in the README)")
    return BUNDLED_MODEL


@pytest.fixture(scope="session")
def ham_dir() -> Path:
    if not (HAM_DIR / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"HAM10000 not found at {HAM_DIR} (set HAM10000_DIR)")
    return HAM_DIR
