"""The out-of-distribution scores, their thresholds, the served rule and its reasons, on generated numbers."""

import numpy as np
import pytest

from classifier.labels import CLASSES
from classifier.model_folder import ModelConfig, ModelFolderError
from classifier.ood import (
    energy,
    energy_threshold,
    feature_threshold,
    fit_mahalanobis,
    flag_reasons,
    load_feature_statistics,
    mahalanobis_distance,
    ood_flags,
)

K = len(CLASSES)


def make_config(folder=".", energy_threshold=None, feature_threshold=None, quantiles=True) -> ModelConfig:
    """A config of the seven classes with the given thresholds (no files on disk)."""
    ood = {"energy_threshold": energy_threshold, "feature_threshold": feature_threshold}
    if quantiles:
        ood |= {"energy_quantile": 0.99, "feature_quantile": 0.97}
    return ModelConfig.from_dict({
        "input": {"size": 32}, "labels": [{"code": c.code, "name": c.name, "malignant": c.malignant} for c in CLASSES],
        "ood": ood, "files": {"tflite": {"path": "model.tflite"}, "ood_features": {"path": "ood_features.npz"}}},
        folder)


def clusters(seed=1, n=3000):
    """Three classes of 16-dimensional features, each direction with its own spread."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 3, (3, 16))
    labels = rng.integers(0, 3, n)
    return rng, means, labels, means[labels] + rng.normal(0, 1, (n, 16)) * np.linspace(0.2, 2, 16)


def test_energy_is_minus_logsumexp_and_higher_for_flat_logits():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    assert energy(logits) == pytest.approx(-np.log(np.exp(logits).sum(axis=1)))
    assert energy(np.array([[-4.0] * K]))[0] > energy(np.array([[8.0] + [0.0] * (K - 1)]))[0]
    assert energy(np.array([[1000.0, 0.0]]))[0] == pytest.approx(-1000.0)  # no overflow


def test_energy_threshold_lets_the_chosen_share_through():
    logits = np.random.default_rng(1).normal(0, 2, (1000, 7))
    threshold = energy_threshold(logits, 0.95)
    assert (energy(logits) > threshold).mean() == pytest.approx(0.05, abs=0.01)
    views = np.random.default_rng(2).normal(0, 2, (1000, 4, 7))  # per view: the mean of the views' energies
    assert energy_threshold(views, 0.9) == round(float(np.quantile(energy(views).mean(axis=1), 0.9)), 4)


def test_mahalanobis_distance_is_small_for_training_like_features_and_large_for_foreign_ones():
    rng, means, labels, features = clusters()
    fitted = fit_mahalanobis(features, labels, 3, shrinkage=0.0)
    inside = mahalanobis_distance(means[labels[:500]] + rng.normal(0, 1, (500, 16)) * np.linspace(0.2, 2, 16), fitted)
    assert np.median(inside) == pytest.approx(1.0, abs=0.15)  # chi-square / dims
    foreign = mahalanobis_distance(rng.normal(0, 1, (50, 16)) * 6, fitted)
    assert np.quantile(inside, 0.99) < np.median(foreign)
    assert fitted["projection"].shape == (16, 16) and fitted["projected_means"].shape == (3, 16)
    assert fit_mahalanobis(features, labels, 3, dims=4)["projection"].shape == (16, 4)


def test_feature_threshold_lets_the_chosen_share_through():
    _, _, labels, features = clusters()
    fitted = fit_mahalanobis(features[:2000], labels[:2000], 3)
    threshold = feature_threshold(features[2000:], fitted, 0.97)
    assert (mahalanobis_distance(features[2000:], fitted) > threshold).mean() == pytest.approx(0.03, abs=0.005)


def test_flags_need_a_threshold_and_the_feature_score_needs_statistics_and_features():
    rng, _, labels, features = clusters(n=40)
    logits = rng.normal(0, 1, (40, K))
    statistics = fit_mahalanobis(features, labels, 3)
    flags = ood_flags(make_config(), logits, features, statistics)
    assert not flags["warned"].any() and np.isnan(flags["distance"]).all()
    assert flags["energy"] == pytest.approx(energy(logits))  # (N, K): one view
    low = make_config(energy_threshold=-100.0, feature_threshold=0.0)
    assert ood_flags(low, logits, features, statistics)["warned"].all()
    assert not ood_flags(low, logits, features, None)["by_features"].any()
    assert not ood_flags(low, logits, None, statistics)["by_features"].any()
    assert ood_flags(low, logits[None], features[:1], statistics)["energy"] == pytest.approx(energy(logits).mean())


def test_reasons_name_the_score_its_threshold_and_the_quantile_it_was_set_at():
    _, _, labels, features = clusters(n=40)
    statistics = fit_mahalanobis(features, labels, 3)
    flat = np.full((1, K), -4.0)
    config = make_config(energy_threshold=-5.0, feature_threshold=0.0)
    flags = ood_flags(config, flat, np.full((1, 16), 100.0), statistics)
    energy_reason, feature_reason = flag_reasons(config, flags)
    assert energy_reason == (f"the model's energy score {energy(flat)[0]:.2f} is above the threshold -5.00 that 99% "
                             "of the validation images stay under")
    assert "features are far from every class" in feature_reason and "97% of the validation" in feature_reason
    unstated = make_config(energy_threshold=-5.0, quantiles=False)
    assert "that the validation images stay under" in flag_reasons(unstated, ood_flags(unstated, flat))[0]
    assert flag_reasons(make_config(), ood_flags(make_config(), flat)) == []


def test_feature_statistics_are_loaded_only_for_a_feature_score_and_a_bad_file_is_named(tmp_path):
    assert load_feature_statistics(make_config(tmp_path)) is None
    _, _, labels, features = clusters(n=100)
    fitted = fit_mahalanobis(features, labels, 3)
    np.savez(tmp_path / "ood_features.npz", **fitted)
    loaded = load_feature_statistics(make_config(tmp_path, feature_threshold=1.5))
    assert set(loaded) == {"projection", "projected_means"}
    np.testing.assert_array_equal(loaded["projection"], fitted["projection"])
    (tmp_path / "ood_features.npz").write_bytes(b"not a numpy file")
    with pytest.raises(ModelFolderError, match="not readable feature statistics"):
        load_feature_statistics(make_config(tmp_path, feature_threshold=1.5))
