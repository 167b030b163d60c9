"""The feature cache and the head recipes of issue 16: the pure parts fast, the runtime and Keras parts on the
tiny model (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from classifier.data import Record
from classifier.tta import VIEWS
from tests.conftest import lesion_like


class FakeClassifier:
    """Prepares nothing and 'runs' a graph whose features are the image's first row, its logits the features'
    first 7 values: enough to see which view went where. Batches through the real ``Classifier.run_each``."""

    from classifier.api import Classifier

    labels = tuple(range(7))
    run_each = Classifier.run_each

    def prepare(self, image):
        return image

    def forward(self, batch):
        features = batch[:, 0].reshape(len(batch), -1).astype(np.float32)
        return features[:, :7], np.zeros((len(batch), 1, 1, 7), np.float32), features


def test_view_outputs_keep_every_view_in_order():
    from classifier.training.feature_cache import view_outputs

    images = [np.arange(4 * 4 * 3).reshape(4, 4, 3) + 100 * i for i in range(5)]
    logits, features = view_outputs(FakeClassifier(), images, tuple(VIEWS), batch_size=16)
    assert logits.shape == (5, 8, 7) and features.shape == (5, 8, 12)
    for i, image in enumerate(images):
        for v, name in enumerate(VIEWS):
            np.testing.assert_array_equal(features[i, v], VIEWS[name](image)[0].reshape(-1))
    empty_logits, _ = view_outputs(FakeClassifier(), [], tuple(VIEWS))
    assert empty_logits.shape == (0, 8, 7)


def test_split_arrays_are_sorted_with_labels_and_metadata():
    from classifier.training.feature_cache import split_arrays

    records = [Record("ISIC_2", "L1", "mel", "histo", 55.0, "male", "back"),
               Record("ISIC_1", "L2", "nv", "follow_up", None, "unknown", "face"),
               Record("ISIC_3", "L3", "bcc", "histo", 70.0, "female", "scalp")]
    arrays = split_arrays(records, {"ISIC_1": "val", "ISIC_2": "val", "ISIC_3": "train"}, "val")
    assert arrays["image_id"].tolist() == ["ISIC_1", "ISIC_2"]
    assert arrays["label"].tolist() == [5, 4]
    assert np.isnan(arrays["age"][0]) and arrays["age"][1] == 55.0
    assert arrays["sex"].tolist() == ["unknown", "male"] and arrays["dx_type"].tolist() == ["follow_up", "histo"]


def test_sample_weights_soften_inverse_frequency():
    from classifier.training.compare_heads import sample_weights

    labels = np.array([0] * 90 + [1] * 10)
    assert np.allclose(sample_weights(labels, 2, 0.0), 1.0)
    for power in (0.5, 1.0):
        w = sample_weights(labels, 2, power)
        assert w.mean() == pytest.approx(1.0)
        assert w[-1] / w[0] == pytest.approx(9.0 ** power)


def test_epoch_samples_every_image_once_or_classes_balanced():
    from classifier.training.compare_heads import epoch_samples

    labels = np.array([0] * 950 + [1] * 50)
    rng = np.random.default_rng(0)
    images, views = epoch_samples(labels, 8, rng)
    assert sorted(images) == list(range(1000)) and views.min() >= 0 and views.max() <= 7
    images, _ = epoch_samples(labels, 8, rng, balanced=True)
    assert len(images) == 1000 and 0.4 < np.mean(labels[images] == 1) < 0.6


def test_mixup_mixes_pairs_convexly():
    from classifier.training.compare_heads import mixup

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 64)]
    w = rng.uniform(0.5, 2, 64).astype(np.float32)
    mx, my, mw = mixup(x, y, w, rng, 0.2)
    assert np.allclose(my.sum(axis=1), 1) and (my >= 0).all()
    assert mw.min() >= w.min() - 1e-6 and mw.max() <= w.max() + 1e-6
    assert not np.allclose(mx, x)


def test_serve_and_score_fits_on_validation_and_reports_the_criterion():
    from classifier.training.compare_heads import serve_and_score

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), 20)
    logits = np.eye(7)[y][:, None] * 4 + rng.normal(0, 0.5, (len(y), 8, 7))
    scored = serve_and_score(logits, y, np.bincount(y) * 10)
    assert scored["accuracy"] == 1.0 and scored["criterion"] == 1.0 and scored["melanoma_recall"] == 1.0
    assert scored["n"] == len(y) and 0.05 <= scored["temperature"] <= 20
    test = serve_and_score(logits, y, np.bincount(y), -logits, y)  # calibration from validation, scored elsewhere
    assert test["accuracy"] == 0.0 and test["tau"] == scored["tau"]


def test_view_outputs_match_the_served_batch_path(tiny_litert_dir):
    from classifier.api import Classifier
    from classifier.training.feature_cache import view_outputs

    classifier = Classifier(tiny_litert_dir)
    images = [lesion_like(80, seed=s) for s in range(3)]
    logits, features = view_outputs(classifier, images, tuple(VIEWS), batch_size=16)
    served = list(classifier.run_each(images, views=tuple(VIEWS), batch_size=16))
    assert features.shape == (3, 8, served[0][3].shape[1])
    np.testing.assert_allclose(logits, np.stack([s[1] for s in served]), atol=1e-4)
    np.testing.assert_allclose(features, np.stack([s[3] for s in served]), atol=1e-4)


@pytest.mark.slow  # Keras
def test_a_trained_head_goes_into_a_candidate_folder(tiny_litert_dir, tmp_path):
    import keras

    from classifier.model_folder import read_config
    from classifier.training.compare_heads import head_logits, train_head, write_candidate

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(7), 6)
    features = np.abs(np.eye(7, 16)[labels][:, None] * 3 + rng.normal(0, 0.3, (len(labels), 8, 16)))
    recipe = {"epochs": 8, "weights": 0.5, "dropout": 0.0, "learning_rate": 0.1}
    model = train_head(features.astype(np.float32), labels, recipe)
    kernel, bias = model.get_layer("predictions").get_weights()
    assert np.mean(head_logits((kernel, bias), features).mean(axis=1).argmax(axis=1) == labels) > 0.9

    dim = keras.models.load_model(read_config(tiny_litert_dir).file("keras")).get_layer("predictions").get_weights()[0]
    new_kernel = rng.normal(size=dim.shape).astype(np.float32)
    out = write_candidate(tiny_litert_dir, new_kernel, np.arange(7, dtype=np.float32), tmp_path / "cand", {"r": 1})
    config = read_config(out)
    saved = keras.models.load_model(config.file("keras")).get_layer("predictions").get_weights()
    np.testing.assert_array_equal(saved[0], new_kernel)
    assert config.training["head_retrained"] == {"r": 1} and "metrics" not in config.to_dict()


def test_a_cache_of_another_graph_is_refused(tiny_litert_dir, tmp_path):
    """Heads and indexes fitted on another graph's features would be silently wrong."""
    from classifier.data import DataError
    from classifier.model_folder import read_config, sha256_of
    from classifier.training.feature_cache import load_cache_split

    cache = tmp_path / "features.npz"
    np.savez(cache, tflite_sha256="0" * 64, train_label=np.array([1, 2]))
    with pytest.raises(DataError, match="another graph"):
        load_cache_split(cache, "train", tiny_litert_dir)
    assert load_cache_split(cache, "train")["label"].tolist() == [1, 2]  # no model named: no check
    np.savez(cache, tflite_sha256=sha256_of(read_config(tiny_litert_dir).file("tflite")), train_label=np.array([1, 2]))
    assert load_cache_split(cache, "train", tiny_litert_dir)["label"].tolist() == [1, 2]
