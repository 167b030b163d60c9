"""The model-folder contract: a folder loads completely or not at all, with a clear reason."""

import json
import shutil

import pytest

from classifier.api import Classifier
from classifier.model_folder import ModelFolderError, read_config


@pytest.fixture
def folder(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def test_written_folder_is_complete_and_valid(tiny_model_dir):
    config = read_config(tiny_model_dir)
    assert {p.name for p in tiny_model_dir.iterdir()} >= {"config.json", "model.keras", "model.tflite", "README.md"}
    assert config.codes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert [label.malignant for label in config.labels] == [True, True, False, False, True, False, False]
    card = (tiny_model_dir / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-sa-4.0") and "no clinical or diagnostic value" in card


def test_missing_config_or_folder(tmp_path):
    with pytest.raises(ModelFolderError, match="does not exist"):
        read_config(tmp_path / "nowhere")
    with pytest.raises(ModelFolderError, match="no config.json"):
        read_config(tmp_path)


def test_missing_weights_file(folder):
    (folder / "model.tflite").unlink()
    with pytest.raises(ModelFolderError, match="missing model.tflite"):
        read_config(folder)


def test_corrupted_or_truncated_weights_are_refused(folder):
    data = bytearray((folder / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="corrupted"):
        read_config(folder)
    (folder / "model.tflite").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelFolderError, match="truncated"):
        read_config(folder)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(format_version=99), "unknown format_version 99"),
    (lambda c: c["input"].update(size="160"), "input.size"),
    (lambda c: c["labels"][0].pop("malignant"), "malignant"),
    (lambda c: c["labels"].append(dict(c["labels"][0])), "unique"),
    (lambda c: c["calibration"].update(temperature=-1), "temperature"),
    (lambda c: c["calibration"].update(class_bias=[0.0, 1.0]), "class_bias must be 7 numbers"),
    (lambda c: c["tta"].update(views=["identity", "shear"]), "tta.views: unknown or repeated views"),
    (lambda c: c.update(serving={"views": ["identity", "identity"]}), "serving.views: unknown or repeated"),
    (lambda c: c.update(serving={"views": []}), "serving.views must be a non-empty list"),
    (lambda c: c.update(serving={"views": "identity"}), "serving.views must be a non-empty list"),
    (lambda c: c.update(serving={"views": ["flip_h", "identity"]}), "serving.views must start with 'identity'"),
    (lambda c: c["files"]["tflite"].update(path="../../etc/passwd"), "plain file name"),
    (lambda c: c.update(files={}), "files must name"),
])
def test_invalid_config_values(folder, change, message):
    edit_config(folder, change)
    with pytest.raises(ModelFolderError, match=message):
        read_config(folder)


def test_label_count_must_match_the_model_outputs(folder):
    edit_config(folder, lambda c: c.update(labels=c["labels"][:6]))
    with pytest.raises(ModelFolderError, match="7 outputs but config.json lists 6 labels"):
        Classifier(folder)


def test_not_json(folder):
    (folder / "config.json").write_text("{nope")
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        read_config(folder)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(conformal={"threshold": 1.5, "coverage": 0.9}), "conformal needs"),
    (lambda c: c.update(conformal={"threshold": 0.5}), "conformal needs"),
    (lambda c: c["ood"].update(feature_threshold="far"), "feature_threshold must be a number"),
    (lambda c: c["ood"].update(energy_quantile=99), r"energy_quantile must be a number in \(0, 1\)"),
    (lambda c: c["ood"].update(feature_quantile="97%"), "feature_quantile must be a number"),
    (lambda c: c["ood"].update(feature_threshold=2.0), "needs the fitted feature statistics"),
])
def test_bad_uncertainty_settings_are_refused(folder, change, message):
    edit_config(folder, change)
    with pytest.raises(ModelFolderError, match=message):
        read_config(folder)


def test_the_quantiles_behind_the_thresholds_are_typed_fields(folder):
    edit_config(folder, lambda c: c["ood"].update(energy_quantile=0.99, feature_quantile=0.97))
    config = read_config(folder)
    assert (config.energy_quantile, config.feature_quantile) == (0.99, 0.97)
