"""Write the tests' committed model folder, tests/fixtures/tiny_model/ (about 100 KB): random weights (seeded) on
the tiny backbone (three Conv2D layers, 64 px), exported by the training code (``base_config``,
``write_model_files``, ``write_model_card``): model.keras and a float32 LiteRT graph with the served outputs
(logits, CAM, pooled features). The tests that serve a model read it without TensorFlow (``tiny_litert_dir`` in
tests/conftest.py); tests/test_tiny_model.py checks that this script still writes the same model. Run it again
(TensorFlow needed) when the model-folder format or the export changes:

    .venv/bin/python -m scripts.make_tiny_model [--out tests/fixtures/tiny_model]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "tiny_model"
SETTINGS = {"imagenet": False, "learning_rate": 1e-3, "batch_size": 8, "epochs": 0, "lr_patience": 1,
            "stop_patience": 4}


def write_random_model(out: Path, size: int = 64, seed: int = 0) -> Path:
    """A complete model folder written by the same code as training, with random weights: the tiny backbone at
    ``size`` px, its head scaled so that outputs differ between images and classes."""
    import keras

    from classifier.documents.card import write_model_card
    from classifier.labels import CODES
    from classifier.training.export_model import base_config, write_model_files
    from classifier.training.network import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier("tiny", size, len(CODES), imagenet=False)
    scale_head(model, size, seed)
    out = Path(out)
    config = base_config({"backbone": "tiny", "size": size, **SETTINGS})
    write_model_card(write_model_files(model, out, config, split_path=None))
    return out


def scale_head(model, size: int, seed: int) -> None:
    """Random initial features are tiny: scale the head, on the committed example images, so that the logits
    spread over a few units."""
    import keras

    from classifier.preprocessing import load_and_prepare

    images = np.stack([load_and_prepare(path, size) for path in sorted((ROOT / "examples").glob("*.jpg"))])
    pooled = keras.Model(model.input, model.get_layer("pool").output).predict(images.astype("float32"), verbose=0)
    spread = float(f"{pooled.std():.2g}")  # two significant digits: the same head whichever libjpeg decodes
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(pooled.shape[1], model.output.shape[-1])) / (spread * np.sqrt(pooled.shape[1])) * 3
    bias = rng.normal(0, 0.5, kernel.shape[1])
    model.get_layer("predictions").set_weights([kernel.astype("float32"), bias.astype("float32")])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURE, help="the folder to (re)write")
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    write_random_model(args.out)
    sizes = {p.name: p.stat().st_size for p in sorted(args.out.iterdir())}
    print(f"{args.out}: " + ", ".join(f"{name} {size / 1024:.1f} KB" for name, size in sizes.items()))


if __name__ == "__main__":
    main()
