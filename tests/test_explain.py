"""Class-activation maps, calibration and the image checks."""

import numpy as np
import pytest

from classifier.evaluation.fitting import fit_temperature
from classifier.explain import cam_heatmap, colourfulness, image_check_reasons, softmax
from tests.conftest import lesion_like


def corner_evidence_model():
    """A network whose only evidence for class 1 is red: GAP + Dense on 'features', like the real head."""
    import keras

    inputs = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(2, 4, strides=4, use_bias=False, name="conv")(inputs)
    features = keras.layers.ReLU(name="features")(x)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(2, activation="softmax", name="predictions")(pooled)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((4, 4, 3, 2), np.float32)
    kernel[:, :, 0, 0] = 1 / 16  # channel 0: redness
    kernel[:, :, 1, 1] = 1 / 16  # channel 1: greenness
    model.get_layer("conv").set_weights([kernel])
    model.get_layer("predictions").set_weights([np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32),
                                                np.zeros(2, np.float32)])
    return model


@pytest.mark.slow
def test_cam_peaks_where_the_evidence_is_and_logits_match_the_model():
    from classifier.runtime.keras import logits_and_cam_model

    model = corner_evidence_model()
    image = np.zeros((1, 64, 64, 3), np.float32)
    image[0, :16, :16, 0] = 255  # red patch in the top-left corner
    image[0, :, :, 1] = 20
    logits, cam, pooled = logits_and_cam_model(model).predict(image, verbose=0)
    np.testing.assert_allclose(softmax(logits), model.predict(image, verbose=0), atol=1e-5)
    assert pooled.shape == (1, model.get_layer("features").output.shape[-1])
    heat = cam_heatmap(cam[0], class_index=0, size=64)
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert peak[0] < 20 and peak[1] < 20
    assert heat[:24, :24].mean() > 3 * heat[32:, 32:].mean()


def test_cam_of_the_trained_model_follows_a_moved_lesion(bundled_model_dir, ham_dir):
    """A real lesion pasted into one corner of plain skin: the heatmap's hot spot moves with it."""
    from PIL import Image

    from classifier.api import Classifier

    classifier = Classifier(bundled_model_dir)
    size = classifier.size
    lesion = Image.open(sorted((ham_dir / "images_center224").glob("*.jpg"))[0]).convert("RGB")
    canvas = np.zeros((size * 2, size * 2, 3), np.uint8)
    canvas[:] = np.asarray(lesion)[:8, :8].reshape(-1, 3).mean(axis=0)  # the photo's own skin colour
    canvas[:size, :size] = np.asarray(lesion.resize((size, size)))
    prediction = classifier.classify(canvas, heatmap=True)
    heat = prediction.heatmap
    half = size // 2
    assert heat[:half, :half].mean() > heat[half:, half:].mean()


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 7))
    labels = np.array([rng.choice(7, p=p) for p in softmax(logits / 2.0)])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_image_checks_flag_uniform_and_grey_images_only():
    assert image_check_reasons(np.full((64, 64, 3), 200, np.uint8))
    grey = np.repeat(lesion_like(64)[..., :1], 3, axis=2)
    assert any("colour" in r for r in image_check_reasons(grey))
    assert image_check_reasons(lesion_like(64)) == []
    assert colourfulness(lesion_like(64)) > colourfulness(grey)


def test_prior_correction_is_chosen_on_validation_and_helps_rare_classes():
    from classifier.evaluation.fitting import fit_prior_correction

    rng = np.random.default_rng(2)
    counts = np.array([900, 100])
    labels = np.repeat([0, 1], counts)
    # a model biased towards the common class: rare-class images score only slightly higher on class 1
    logits = np.stack([np.log(counts[0] / 1000) + rng.normal(0, 1, 1000),
                       np.log(counts[1] / 1000) + 1.5 * labels + rng.normal(0, 1, 1000)], axis=1)
    tau = fit_prior_correction(logits, labels, counts)
    assert tau > 0
    log_prior = np.log(counts / counts.sum())
    recall_rare = lambda z: np.mean(z[labels == 1].argmax(axis=1) == 1)  # noqa: E731
    assert recall_rare(logits - tau * log_prior) > recall_rare(logits) + 0.05
    balanced = np.array([[0.0, 0.0]] * 50 + [[0.0, 3.0]] * 50)
    assert fit_prior_correction(balanced, np.repeat([0, 1], 50), np.array([50, 50])) == 0.0


def test_fits_on_several_views_judge_the_mean_of_their_probabilities():
    """With per-view logits (N, V, K), the prior correction and the temperature are fitted on what is served:
    the mean of the views' probabilities. One view is the plain (N, K) case; noisy views averaged are better."""
    from classifier.evaluation.fitting import fit_prior_correction

    rng = np.random.default_rng(3)
    counts = np.array([900, 100])
    labels = np.repeat([0, 1], counts)
    clean = np.stack([np.log(0.9) + np.zeros(1000), np.log(0.1) + 1.5 * labels], axis=1)
    views = clean[:, None] + rng.normal(0, 1.5, (1000, 4, 2))
    assert fit_prior_correction(views[:, :1], labels, counts) == fit_prior_correction(views[:, 0], labels, counts)
    assert fit_temperature(views[:, :1], labels) == fit_temperature(views[:, 0], labels)
    bias = np.array([0.0, 1.0])
    assert fit_temperature(views[:, :1], labels, bias) == fit_temperature(views[:, 0] + bias, labels)
    # averaging four noisy views cancels noise that a single view's temperature has to absorb
    assert fit_temperature(views, labels) < fit_temperature(views[:, 0], labels)
    assert fit_prior_correction(views, labels, counts) > 0
