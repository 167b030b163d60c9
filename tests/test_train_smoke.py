"""Smoke trainings on generated images, end to end, on the tiny backbone: train, stop, resume, continue, export a
model folder; the same code trains EfficientNet-Lite1."""

import csv
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from classifier.labels import CODES
from tests.conftest import ROOT, lesion_like

pytestmark = pytest.mark.slow  # TensorFlow

TINY = dict(backbone="tiny", size=32, batch_size=14, imagenet=False)  # three convolutions; batch: see make_dataset


def make_dataset(folder, per_class=6):
    """42 generated images, one per lesion; the lesion split puts 28 in training, two full batches of 14 (a partial
    batch would make the training step compile again for its shape)."""
    (folder / "HAM10000_images_part_1").mkdir(parents=True)
    with open(folder / "HAM10000_metadata.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        for c, code in enumerate(CODES):
            for i in range(per_class):
                image_id = f"ISIC_{c}{i:05d}"
                writer.writerow([f"HAM_{c}{i:05d}", image_id, code, "histo", 40 + i, "female", "back"])
                tint = np.array([c * 30, 0, 0], dtype=np.int16)
                image = (lesion_like(80, seed=c * 100 + i).astype(np.int16) + tint).clip(0, 255).astype(np.uint8)
                Image.fromarray(image).resize((200, 150)).save(folder / "HAM10000_images_part_1" / f"{image_id}.jpg")


def test_train_resume_continue_and_export_a_servable_model_folder(tmp_path):
    from classifier.api import Classifier
    from classifier.model_folder import read_config
    from classifier.training.export_model import export_run
    from classifier.training.fit import train

    data, work = tmp_path / "data", tmp_path / "run"
    make_dataset(data)
    assert train(data, epochs=1, work_dir=work, **TINY) == work
    history = [json.loads(line) for line in (work / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and {"val_accuracy", "val_balanced_accuracy", "lr"} <= set(history[0])
    assert (work / "last.keras").is_file() and (work / "best.weights.h5").is_file()
    assert "epoch 1 step 0" in (work / "train.log").read_text()

    train(data, epochs=2, work_dir=work, resume=True)  # picks up after epoch 1
    history = [json.loads(line) for line in (work / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2]

    # a weight-averaging continuation: starts from the mean of the run's epochs, at a constant rate
    continued = tmp_path / "continued"
    starts = [work / "epoch1.weights.h5", work / "epoch2.weights.h5"]
    train(data, epochs=1, work_dir=continued, schedule="constant", learning_rate=1e-4, init_from=starts, **TINY)
    assert json.loads((continued / "state.json").read_text())["settings"]["init_from"] == [str(f) for f in starts]
    assert "starting from the mean of" in (continued / "train.log").read_text()
    assert [round(h["lr"], 8) for h in map(json.loads, (continued / "history.jsonl").open())] == [1e-4]

    out = export_run(continued, data, tmp_path / "model")
    config = read_config(out)
    metrics = config.metrics
    assert config.input.size == 32 and metrics.n == len(json.loads((out / "split.json").read_text())["test"])
    assert 0.05 <= config.calibration.temperature <= 20 and config.ood.energy_threshold is not None
    card = (out / "README.md").read_text()
    assert "## Measured on the lesion-grouped test split" in card and "--init-from" in card
    prediction = Classifier(out).classify(lesion_like(100))
    assert len(prediction.probabilities) == 7
    # uncertainty fitted by the export: conformal sets and the feature-space out-of-distribution score
    assert config.conformal.coverage == 0.9 and 0 < config.conformal.threshold <= 1
    assert config.ood.feature_threshold is not None and (out / "ood_features.npz").is_file()
    assert prediction.prediction_set and prediction.prediction_set[0] == prediction.most_probable
    # the prior correction on the decision only, by default, with both forms measured (tests/test_decision_bias.py)
    assert config.calibration.decision_bias is not None and config.metrics.prior_correction["served"] == "decision"
    assert prediction.feature_distance is not None and prediction.feature_distance >= 0
    assert "coverage" in prediction.set_statement
    assert 0 <= metrics.test["conformal"]["coverage"] <= 1  # measure()'s names, as `evaluate` prints them
    assert 0 <= metrics.test["ood_warning_rate_energy"] <= metrics.test["ood_warning_rate"] <= 1
    assert "ood_false_alarm_rate_test" not in metrics.to_json() and "conformal_test" not in metrics.to_json()
    # served int8: the graph is quantized (calibrated on training images) and its agreement with the float model
    quantization = config.serving.quantization
    assert quantization.calibration_images == len(json.loads((out / "split.json").read_text())["train"])
    assert 0 <= quantization.val_top1_agreement_with_float <= 1
    assert config.serving.views == config.tta.views and len(config.tta.views) == 8  # every symmetry
    assert "int8" in card
    # the evidence beside the answer (issue 19): the similar-cases index and the patient-context head
    assert config.similar_cases.k == 8 and len(prediction.similar_cases) == 8
    assert config.context is not None and (out / "context_head.npz").is_file()
    assert config.quality.lesion_small_probe is not None and (out / "quality_probe.npz").is_file()
    assert Classifier(out).classify(lesion_like(100), age=50, site="back").context_note


def test_average_weights_is_the_element_wise_mean(tmp_path):
    import keras

    from classifier.training.network import average_weights, build_classifier

    model = build_classifier("lite1", 32, 7, imagenet=False)
    first = model.get_weights()
    model.save_weights(tmp_path / "a.weights.h5")
    model.set_weights([w + 1.0 for w in first])
    model.save_weights(tmp_path / "b.weights.h5")
    mean = average_weights(model, [tmp_path / "a.weights.h5", tmp_path / "b.weights.h5"])
    assert all(np.allclose(m, w + 0.5) for m, w in zip(mean, first, strict=True))
    keras.backend.clear_session()


def test_a_finished_run_is_not_overwritten_by_accident(tmp_path, capsys):
    import pytest

    from classifier.cli import main
    from classifier.errors import ClassifierError
    from classifier.training.fit import train

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text("{}")
    with pytest.raises(ClassifierError, match="already holds a training run: pass --resume"):
        train(tmp_path / "data", work_dir=tmp_path / "run")
    assert main(["train", "--data", str(tmp_path / "data"), "--work", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "already holds a training run" in err and "Traceback" not in err


def test_train_command_reports_a_missing_data_folder_without_a_traceback(tmp_path, capsys):
    from classifier.cli import main

    assert main(["train", "--data", str(tmp_path / "nowhere"), "--work", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "metadata" in err and "Traceback" not in err


def test_progressive_gentle_adamw_run_resumes_and_exports_at_the_final_size(tmp_path):
    from classifier import cli
    from classifier.model_folder import read_config
    from classifier.training.fit import train

    data, work = tmp_path / "data", tmp_path / "run"
    make_dataset(data)
    recipe = dict(TINY, size=48, augment="gentle", optimizer="adamw", schedule="cosine", label_smoothing=0.1,
                  small_size=32, small_epochs=1)
    train(data, epochs=1, work_dir=work, **recipe)
    train(data, epochs=2, work_dir=work, resume=True)
    log = (work / "train.log").read_text()
    assert "epochs 1-1 at 32px" in log and "epochs 2-2 at 48px" in log
    assert (work / "epoch1.weights.h5").is_file() and (work / "epoch2.weights.h5").is_file()

    averaged = tmp_path / "averaged"
    export = ["export", "--work", str(work), "--data", str(data), "--out", str(averaged)]
    assert cli.main([*export, "--average-last", "5"]) == 2  # only two epochs to average
    assert cli.main([*export, "--average-last", "2", "--float"]) == 0
    config = read_config(averaged)
    assert config.input.size == 48 and config.serving.runtime == "LiteRT (model.tflite), float32"
    assert config.training["augment"] == "gentle" and config.training["label_smoothing"] == 0.1
    assert config.training["weights"] == "mean of epochs 1-2" and config.serving.quantization is None
    assert "--average-last 2" in (averaged / "README.md").read_text()


def test_gentle_augmentation_keeps_shape_and_pixel_range():
    import keras

    from classifier.training.fit import gentle_augmentation

    images = np.stack([lesion_like(64, seed=s) for s in range(4)]).astype("float32")
    out = keras.ops.convert_to_numpy(gentle_augmentation()(keras.ops.convert_to_tensor(images)))
    assert out.shape == images.shape
    assert out.min() >= -1 and out.max() <= 256 + 60  # colour jitter may overshoot before the caller clips
    assert not np.allclose(out, images)


def test_training_batches_cover_every_image_once_per_epoch_resized_and_weighted():
    from classifier.training.fit import training_batches

    x = np.stack([np.full((32, 32, 3), i, np.uint8) for i in range(10)])  # image i is all pixel value i
    y = np.arange(10) % 3
    batches = training_batches(x, y, 3, batch_size=4, side=16, augment=lambda images: images,
                               sample_weights=np.arange(10) / 10.0, seed=0)
    assert len(batches) == 3
    for _ in range(2):  # two epochs, each a new order
        seen = []
        for i in range(len(batches)):
            images, onehot, weights = batches[i]
            assert images.shape[1:] == (16, 16, 3) and images.dtype == np.float32
            ids = [int(round(v)) for v in images[:, 0, 0, 0]]
            assert onehot.argmax(axis=1).tolist() == [j % 3 for j in ids]
            np.testing.assert_allclose(weights, np.array(ids) / 10.0)
            seen += ids
        assert sorted(seen) == list(range(10))
        batches.on_epoch_end()


def test_pair_batches_hold_each_picture_then_its_jpeg_with_the_same_labels_and_weights():
    from classifier.training.fit import training_batches

    x = np.stack([lesion_like(32, seed=i) for i in range(10)])
    y = np.arange(10) % 3
    batches = training_batches(x, y, 3, batch_size=4, side=32, augment=lambda images: images,
                               sample_weights=np.arange(10) / 10.0, seed=0, pairs=True)
    assert len(batches) == 5  # two pictures (and their JPEGs) per batch of four
    seen = []
    for i in range(len(batches)):
        images, onehot, weights = batches[i]
        assert images.shape == (4, 32, 32, 3)
        pictures, encoded = images[:2], images[2:]
        assert not np.array_equal(pictures, encoded)  # re-encoded ...
        assert np.abs(pictures - encoded).mean() < 12  # ... but the same pictures
        np.testing.assert_array_equal(onehot[:2], onehot[2:])
        np.testing.assert_array_equal(weights[:2], weights[2:])
        seen += [int(np.flatnonzero([np.array_equal(p, xi) for xi in x])[0]) for p in pictures]
    assert sorted(seen) == list(range(10))


def test_batches_with_shades_of_gray_correct_every_picture_after_augmentation_and_its_jpeg_too():
    from classifier.preprocessing import shades_of_gray
    from classifier.training.fit import training_batches

    x = np.stack([np.clip(lesion_like(32, seed=i) * [1.3, 1.0, 0.7], 0, 255).astype(np.uint8) for i in range(4)])
    darker = lambda images: images * 0.9  # noqa: E731  (an augmentation that changes the colours' balance: none)
    for pairs in (False, True):
        batches = training_batches(x, np.arange(4) % 3, 3, batch_size=4, side=32, augment=darker,
                                   sample_weights=np.ones(4), seed=0, pairs=pairs, shades_of_gray=6)
        images = batches[0][0]
        assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 3)
        for picture in images.astype(np.uint8):
            np.testing.assert_array_equal(picture, shades_of_gray(picture, 6))  # already corrected: a fixed point
        assert abs(np.log(images[..., 0].mean() / images[..., 2].mean())) < 0.2  # the tint (R 1.3, B 0.7) is gone


def test_a_shades_of_gray_run_exports_a_folder_that_serves_the_step(tmp_path):
    from classifier.api import Classifier
    from classifier.model_folder import read_config
    from classifier.preprocessing import prepare, shades_of_gray
    from classifier.training.export_model import export_run
    from classifier.training.fit import train

    data, work = tmp_path / "data", tmp_path / "run"
    make_dataset(data)
    train(data, epochs=1, work_dir=work, shades_of_gray=6, **TINY)
    assert json.loads((work / "state.json").read_text())["settings"]["shades_of_gray_power"] == 6
    config = read_config(export_run(work, data, tmp_path / "model"))
    assert config.shades_of_gray_power == 6
    assert "shades-of-gray colour constancy (power 6)" in config.preprocessing["steps"]
    card = (config.folder / "README.md").read_text()
    assert "shades-of-gray colour constancy of power 6" in card and "--shades-of-gray 6" in card
    image = np.clip(lesion_like(80, seed=4) * [1.3, 1.0, 0.7], 0, 255).astype(np.uint8)
    assert np.array_equal(Classifier(config.folder).prepare(image), shades_of_gray(prepare(Image.fromarray(image), 32)))


def test_pair_consistency_loss_adds_the_pairs_divergence_and_nothing_for_equal_pairs():
    import keras

    from classifier.training.fit import pair_consistency_loss

    y = np.eye(3, dtype="float32")[[0, 1, 0, 1]]
    same = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1]] * 2, dtype="float32")
    plain = keras.losses.CategoricalCrossentropy()(y, same)
    assert float(pair_consistency_loss(0.0, 10.0)(y, same)) == pytest.approx(float(plain), rel=1e-5)
    moved = same.copy()
    moved[2] = [0.4, 0.5, 0.1]
    with_pairs = float(pair_consistency_loss(0.0, 10.0)(y, moved))
    without = float(keras.losses.CategoricalCrossentropy()(y, moved))
    p, q = moved[0].astype(np.float64), moved[2].astype(np.float64)
    m = (p + q) / 2
    divergence = (np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m))) / 2  # Jensen-Shannon
    assert with_pairs == pytest.approx(without + 10.0 * 2 * divergence / 4, rel=1e-4)


def test_a_consistency_run_trains_on_pairs_and_resumes(tmp_path):
    from classifier.training.fit import train

    data, work = tmp_path / "data", tmp_path / "run"
    make_dataset(data)
    train(data, epochs=1, work_dir=work, jpeg_consistency=5.0, **TINY)
    train(data, epochs=2, work_dir=work, resume=True)  # the custom loss loads back with last.keras
    state = json.loads((work / "state.json").read_text())
    assert state["epoch"] == 2 and state["settings"]["jpeg_consistency"] == 5.0
    assert "resuming after epoch 1" in (work / "train.log").read_text()


def test_a_missing_init_from_file_is_refused_before_any_work(tmp_path, capsys):
    from classifier.cli import main

    assert main(["train", "--data", str(tmp_path / "data"), "--work", str(tmp_path / "run"),
                 "--init-from", str(tmp_path / "nope.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --init-from: no weights file") and "Traceback" not in err
    assert not (tmp_path / "run").exists()


NO_TENSORFLOW = textwrap.dedent("""
    import importlib.abc, sys
    class NoTensorFlow(importlib.abc.MetaPathFinder):  # as on a GPU machine with JAX but no TensorFlow
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                raise ImportError("no TensorFlow here")
    sys.meta_path.insert(0, NoTensorFlow())
    import keras
    from classifier.cli import main
    root = sys.argv[1]
    status = main(["train", "--data", f"{root}/data", "--work", f"{root}/run", "--out", f"{root}/model",
                   "--backbone", "tiny", "--weights", "none", "--epochs", "2", "--size", "48", "--batch-size", "14",
                   "--small-size", "32", "--small-epochs", "1", "--augment", "gentle", "--optimizer", "adamw",
                   "--schedule", "cosine"])
    print(keras.backend.backend(), "tensorflow" in sys.modules, status)
""")


JAX_TEST = "test_training_runs_on_jax_without_tensorflow_and_is_exported_where_tensorflow_is"


@pytest.fixture(scope="module", autouse=True)
def jax_training(request, tmp_path_factory):
    """The JAX training of the last test, started as this module starts (when that test is to run), so that it
    runs on the other core while the tests before it train here: (its folder, the process), or None."""
    if JAX_TEST not in {item.name for item in request.session.items} or importlib.util.find_spec("jax") is None:
        yield None
        return
    root = tmp_path_factory.mktemp("jax")
    make_dataset(root / "data")
    # XLA unoptimised: it compiles about 8x faster, and what is tested here is the code path, not XLA's speed
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    with subprocess.Popen([sys.executable, "-c", NO_TENSORFLOW, str(root)], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as process:
        yield root, process
        process.kill()  # nothing to do when it has finished


def test_training_runs_on_jax_without_tensorflow_and_is_exported_where_tensorflow_is(jax_training):
    """The GPU path of issue 8: Keras 3 on JAX where TensorFlow is absent trains, checkpoints and stops before
    the LiteRT export (which needs TensorFlow); `export` then turns that run into a servable model folder."""
    pytest.importorskip("jax")
    from classifier import cli
    from classifier.api import Classifier

    root, process = jax_training
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == "jax False 0"
    log = (root / "run" / "train.log").read_text()
    assert "Keras backend: jax" in log and "TensorFlow is not installed here" in log
    assert (root / "run" / "epoch2.weights.h5").is_file() and not (root / "model").exists()
    assert cli.main(["export", "--work", str(root / "run"), "--data", str(root / "data"),
                     "--out", str(root / "model"), "--average-last", "2", "--float"]) == 0
    prediction = Classifier(root / "model").classify(lesion_like(100))
    assert len(prediction.probabilities) == 7 and prediction.tta_views == 8
