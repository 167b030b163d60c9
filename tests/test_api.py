"""The classifier API on a real (tiny, random-weight) model folder."""

import json
import shutil

import numpy as np
import pytest

from classifier.api import Classifier
from classifier.errors import ArgumentError
from classifier.labels import DISCLAIMER
from classifier.model_folder import ModelFolderError
from classifier.preprocessing import ImageError
from tests.conftest import lesion_like


@pytest.fixture(scope="module")
def classifier(tiny_litert_dir):
    return Classifier(tiny_litert_dir)


def test_all_classes_ordered_by_probability_with_top_k_cut(classifier):
    prediction = classifier.classify(lesion_like(120), top_k=3)
    probs = [p.probability for p in prediction.probabilities]
    assert len(probs) == 7 and probs == sorted(probs, reverse=True)
    assert abs(sum(probs) - 1) < 1e-4
    assert [p.code for p in prediction.top] == [p.code for p in prediction.probabilities[:3]]
    result = prediction.to_dict()
    assert result["notice"] == DISCLAIMER and len(result["top_k"]) == 3
    assert result["label"] == prediction.probabilities[0].code
    assert set(result["probabilities"]) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    json.dumps(result)  # JSON-ready


def test_malignant_probability_is_the_sum_of_malignant_classes(classifier):
    prediction = classifier.classify(lesion_like(96, seed=3))
    expected = sum(p.probability for p in prediction.probabilities if p.code in ("akiec", "bcc", "mel"))
    assert prediction.malignant_probability == pytest.approx(expected, abs=1e-5)


def test_top_k_and_heatmap_class_are_validated(classifier):
    with pytest.raises(ArgumentError, match="top_k"):
        classifier.classify(lesion_like(64), top_k=0)
    with pytest.raises(ArgumentError, match="unknown class"):
        classifier.classify(lesion_like(64), heatmap=True, heatmap_class="melanoma")


def test_heatmap_and_tta(classifier):
    prediction = classifier.classify(lesion_like(64), heatmap=True, heatmap_class="mel", tta=True)
    assert prediction.heatmap.shape == (64, 64) and 0 <= prediction.heatmap.min() <= prediction.heatmap.max() <= 1
    assert prediction.heatmap_class == "mel" and prediction.tta_views == len(classifier.config.tta.views) == 8
    assert prediction.heatmap_image().size == (64, 64)
    assert "heatmap" in prediction.to_dict(include_heatmap=True)


def test_every_path_averages_the_served_views(classifier):
    """A plain prediction is the mean over the model's served views, on the single and the batch path alike."""
    from classifier.tta import views_of

    image = lesion_like(80, seed=3)
    views = classifier.config.serving.views
    assert views == classifier.views() and len(views) == 8 and views[0] == "identity"  # all symmetries of the square
    single = classifier.classify(image)
    assert single.tta_views == len(views)
    logits, _, _ = classifier.forward(views_of(classifier.prepare(image), views))
    expected = classifier.probabilities(logits).mean(axis=0)
    assert single.probabilities[0].probability == pytest.approx(float(expected.max()), abs=1e-5)
    [batched] = classifier.classify_each([image])
    assert batched.tta_views == len(views)
    assert [p.code for p in batched.probabilities] == [p.code for p in single.probabilities]
    [(_, run_logits, _, _)] = list(classifier.run_each([image]))
    assert run_logits.shape == (len(views), len(classifier.labels))


def test_batch_matches_single(classifier):
    images = [lesion_like(80, seed=s) for s in range(3)]
    batch = classifier.classify_batch(images)
    for image, result in zip(images, batch, strict=True):
        single = classifier.classify(image)
        assert result.probabilities[0].code == single.probabilities[0].code
        assert result.probabilities[0].probability == pytest.approx(single.probabilities[0].probability, abs=1e-5)


def test_uniform_and_grey_images_get_a_warning_but_keep_their_probabilities(classifier):
    grey = classifier.classify(np.full((100, 100, 3), 128, np.uint8))
    assert grey.warning and "uniform" in grey.warning and len(grey.probabilities) == 7
    assert not any("uniform" in r or "colour" in r for r in classifier.classify(lesion_like(100)).warning_reasons)


def test_temperature_from_config_is_applied(tiny_litert_dir, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(tiny_litert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    bias = np.linspace(-1, 1, 7)
    config["calibration"].update(temperature=4.0, class_bias=bias.tolist())
    (folder / "config.json").write_text(json.dumps(config))
    image = lesion_like(64, seed=5)
    plain, calibrated = Classifier(tiny_litert_dir), Classifier(folder)
    from classifier.tta import views_of

    logits, _ = plain.logits(views_of(plain.prepare(image), plain.views()))  # the served views, averaged
    expected = (np.exp((logits + bias) / 4.0) / np.exp((logits + bias) / 4.0).sum(axis=1, keepdims=True)).mean(0)
    assert calibrated.classify(image).probabilities[0].probability == pytest.approx(expected.max(), abs=1e-5)
    assert calibrated.classify(image).probabilities[0].probability < plain.classify(image).probabilities[0].probability


def test_bad_bytes_raise_image_error(classifier):
    with pytest.raises(ImageError):
        classifier.classify(b"<html>nope</html>")


def test_an_array_of_file_names_raises_image_error(classifier):
    with pytest.raises(ImageError, match="must hold pixel values"):
        classifier.classify(np.array(["lesion.jpg", "other.jpg"]))
    with pytest.raises(ImageError, match="must hold pixel values"):
        classifier.classify(np.full((64, 64, 3), "x"))
    outcomes = classifier.classify_each([np.full((64, 64, 3), "x"), lesion_like(64)])
    assert isinstance(outcomes[0], ImageError) and outcomes[1].label in classifier.config.codes


def test_json_names_the_models_own_malignant_classes_and_has_a_prediction_set_field(tiny_litert_dir):
    from classifier.api import Classifier
    from tests.conftest import lesion_like

    result = Classifier(tiny_litert_dir).classify(lesion_like(100)).to_dict()
    assert "(akiec, bcc, mel)" in result["malignant_note"]
    assert result["prediction_set"] == {"classes": None, "coverage": None, "statement": None}  # none fitted


def test_the_batch_path_keeps_order_views_and_per_item_errors(bundled_model_dir):
    """run_each (under classify_each, evaluation and export) gives each image's views as a single forward pass
    would, in input order, with a broken image's error in its place and across batch boundaries."""
    from classifier.tta import views_of

    model = Classifier(bundled_model_dir)
    images = [lesion_like(180, seed=s) for s in range(5)]
    inputs = images[:2] + [b"not an image"] + images[2:]
    views = model.config.tta.views
    items = list(model.run_each(inputs, views=views, batch_size=2 * len(views)))  # 2 images per forward
    assert len(items) == 6 and isinstance(items[2], ImageError)
    for image, item in zip(images, items[:2] + items[3:], strict=True):
        prepared, logits, cam, features = item
        expected_logits, expected_cam, expected_features = model.forward(views_of(model.prepare(image), views))
        assert logits.shape == (len(views), len(model.labels))
        np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
        np.testing.assert_allclose(cam, expected_cam[0], atol=1e-4)
        np.testing.assert_allclose(features, expected_features, atol=1e-4)  # every view's


def test_views_of_several_images_is_their_views_one_image_after_another():
    from classifier.tta import VIEWS, views_of

    first, second = (lesion_like(32, seed=s).astype(np.float32) for s in (1, 2))
    views = tuple(VIEWS)
    batch = views_of([first, second], views)
    assert batch.shape == (16, 32, 32, 3) and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch, np.concatenate([views_of(first, views), views_of(second, views)]))
    np.testing.assert_array_equal(views_of(first, ("rot90",))[0], np.rot90(first))


def test_a_model_folder_with_shades_of_gray_gets_it_on_every_input(tiny_litert_dir, tmp_path):
    from classifier.preprocessing import shades_of_gray

    folder = tmp_path / "m"
    shutil.copytree(tiny_litert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["preprocessing"]["shades_of_gray_power"] = 6
    (folder / "config.json").write_text(json.dumps(config))
    image = np.clip(lesion_like(64, seed=2) * [1.3, 1.0, 0.7], 0, 255).astype(np.uint8)
    plain, corrected = Classifier(tiny_litert_dir), Classifier(folder)
    assert np.array_equal(corrected.prepare(image), shades_of_gray(plain.prepare(image), 6))
    turned = corrected.classify(np.rot90(image)).probabilities
    upright = corrected.classify(image).probabilities
    assert [p.probability for p in turned] == pytest.approx([p.probability for p in upright], abs=1e-6)
    config["preprocessing"]["shades_of_gray_power"] = "six"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="shades_of_gray_power"):
        Classifier(folder)
