"""The two runtimes agree, and the serving path never imports TensorFlow."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import lesion_like

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # max abs difference of calibrated probabilities, float32 graph
# int8 graph: mean over images of the max abs difference, and the share with the same top class. On the
# validation split the export measures the latter (config.json serving.quantization); these bound a 16-image
# sample of it loosely enough not to flake.
INT8_MEAN_TOLERANCE, INT8_SAME_TOP = 0.1, 0.75


def generated_images() -> list[np.ndarray]:
    return [lesion_like(size, seed) for seed, size in enumerate((64, 80, 96, 120, 160, 200, 256, 300))]


def ham_images(ham_dir: Path, count: int = 16) -> list[Path]:
    folder = ham_dir / "images_600x450"
    if not folder.is_dir():
        folder = ham_dir / "images_200x150"
    paths = sorted(folder.glob("*.jpg"))[:count]
    if not paths:
        pytest.skip(f"no HAM10000 images under {ham_dir}")
    return paths


@functools.cache
def both_runtimes(folder: Path):
    """The folder's model on LiteRT and on Keras, loaded once for every test here (the bundled model.keras takes
    seconds)."""
    from classifier.api import Classifier

    return Classifier(folder, runtime="litert"), Classifier(folder, runtime="keras")


def runtime_differences(folder: Path, images: list) -> tuple[float, float, float]:
    """LiteRT against Keras on the same prepared images (one view): the largest and the mean absolute difference
    of the calibrated probabilities, and the share of images with the same top class."""
    litert, keras = both_runtimes(folder)
    assert (litert.runtime.name, keras.runtime.name) == ("litert", "keras")
    batch = np.stack([litert.prepare(image) for image in images])
    p_litert = litert.probabilities(litert.logits(batch)[0])
    p_keras = keras.probabilities(keras.logits(batch)[0])
    assert p_litert.shape == p_keras.shape == (len(images), len(litert.labels))
    difference = np.abs(p_litert - p_keras).max(axis=1)
    return float(difference.max()), float(difference.mean()), float(np.mean(
        p_litert.argmax(axis=1) == p_keras.argmax(axis=1)))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_litert_dir", "bundled_model_dir"])
@pytest.mark.parametrize("images", ["generated", "ham10000"])
def test_litert_and_keras_runtimes_agree(model, images, request):
    """A float32 graph gives the Keras model's probabilities; an int8 one (the bundled model) comes near them."""
    from classifier.model_folder import read_config

    folder = request.getfixturevalue(model)
    batch = generated_images() if images == "generated" else ham_images(request.getfixturevalue("ham_dir"))
    largest, mean, same_top = runtime_differences(folder, batch)
    if read_config(folder).serving.quantization is None:
        assert largest <= TOLERANCE
    else:
        assert mean <= INT8_MEAN_TOLERANCE and same_top >= INT8_SAME_TOP


def test_serving_path_does_not_import_tensorflow(tiny_litert_dir):
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from classifier.api import load_classifier\n"
        "classifier = load_classifier(sys.argv[1])\n"
        "prediction = classifier.classify(np.full((80, 80, 3), 120, np.uint8), tta=True, heatmap=True)\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'torch', 'jax') if m in sys.modules)\n"
        "print(classifier.runtime.name, prediction.label, ','.join(heavy) or '-')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CLASSIFIER_RUNTIME"}
    done = subprocess.run([sys.executable, "-c", script, str(tiny_litert_dir)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    runtime, label, heavy = done.stdout.split()
    assert runtime == "litert" and label
    assert heavy == "-", f"the serving path imported {heavy}"
