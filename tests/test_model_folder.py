"""The model-folder contract: a folder loads completely or not at all, with a clear reason; ModelConfig is the
one reader and writer of config.json, as typed, immutable sections."""

import ast
import json
import re
import shutil
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from classifier.api import Classifier
from classifier.config_sections import Calibration, ContextSettings, Metrics
from classifier.model_folder import ModelConfig, ModelFolderError, read_config, write_config
from tests.conftest import BUNDLED_MODEL, ROOT


@pytest.fixture
def folder(tiny_litert_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_litert_dir, copy)
    return copy


def edit_config(folder, change):
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))


def test_written_folder_is_complete_and_valid(tiny_litert_dir):
    config = read_config(tiny_litert_dir)
    assert {p.name for p in tiny_litert_dir.iterdir()} >= {"config.json", "model.keras", "model.tflite", "README.md"}
    assert config.codes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert [label.malignant for label in config.labels] == [True, True, False, False, True, False, False]
    card = (tiny_litert_dir / "README.md").read_text()
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
    assert (config.ood.energy_quantile, config.ood.feature_quantile) == (0.99, 0.97)


# --- ModelConfig: the one reader and writer -----------------------------------------------------------------

CONFIG_MENTION = re.compile(r"config\.json|CONFIG_NAME")
FILE_CALLS = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "load", "loads", "dump", "dumps"}


def config_file_access(path: Path) -> list[int]:
    """Lines of a module that open, read, write or JSON-parse config.json: a call of open, read_text, write_text,
    json.load(s) or json.dump(s) that names config.json (or CONFIG_NAME), or uses a name bound to such a path."""
    source = path.read_text()
    tree = ast.parse(source)
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr) and node.value is not None:
            if CONFIG_MENTION.search(ast.get_source_segment(source, node.value) or ""):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                bound |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            if name in FILE_CALLS and (CONFIG_MENTION.search(ast.get_source_segment(source, node)) or used & bound):
                lines.append(node.lineno)
    return lines


def test_only_model_folder_opens_or_parses_config_json():
    modules = [*(ROOT / "classifier").rglob("*.py"), *(ROOT / "scripts").rglob("*.py"), ROOT / "app.py"]
    found = {str(p.relative_to(ROOT)): config_file_access(p) for p in modules
             if p != ROOT / "classifier" / "model_folder.py"}
    assert {path: lines for path, lines in found.items() if lines} == {}
    assert config_file_access(ROOT / "classifier" / "model_folder.py")  # the scan sees the one that does


def test_the_scan_sees_a_config_read_however_it_is_spelled(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import json\nfrom classifier.model_folder import CONFIG_NAME\n\n\ndef f(folder):\n"
                      "    path = folder / CONFIG_NAME\n    with open(path) as file:\n        a = json.load(file)\n"
                      "    return a, json.loads((folder / 'config.json').read_text())\n")
    assert config_file_access(module) == [7, 9, 9]


def bundled():
    if not (BUNDLED_MODEL / "config.json").is_file():
        pytest.skip("no trained model in model/")
    return read_config(BUNDLED_MODEL, verify_files=False)


def test_the_bundled_config_reads_into_typed_sections_and_writes_back_byte_for_byte():
    config = bundled()
    assert config.to_dict() == json.loads((BUNDLED_MODEL / "config.json").read_text())
    assert json.dumps(config.to_dict(), indent=2) + "\n" == (BUNDLED_MODEL / "config.json").read_text()
    assert config.labels.malignant_codes == ("akiec", "bcc", "mel") and len(config.labels) == 7
    assert config.calibration.temperature == 0.5707 and config.serving.quantization.calibration_images == 300
    assert config.calibration.decision_bias is not None and not any(config.calibration.class_bias)
    assert config.similar_cases.k == 8 and config.quality.lesion_small_probe.threshold == -0.6366
    assert config.context.conformal_threshold == 0.845063 and config.conformal.coverage == 0.9
    assert config.metrics.test["n"] == 1502 and config.metrics.latency["views"] == 8


def test_a_config_cannot_be_changed_in_place():
    config = bundled()
    with pytest.raises(FrozenInstanceError):
        config.calibration = Calibration()
    with pytest.raises(FrozenInstanceError):
        config.calibration.temperature = 1.0
    with pytest.raises(TypeError):
        config.metrics.test["accuracy"] = 1.0
    with pytest.raises(TypeError):
        config.training["epochs"] = 1
    document = config.to_dict()
    document["metrics"]["test"]["accuracy"] = 1.0  # a copy: the config is as read
    on_disk = json.loads((BUNDLED_MODEL / "config.json").read_text())
    assert config.metrics.test["accuracy"] == on_disk["metrics"]["test"]["accuracy"] != 1.0


def test_with_sections_builds_a_new_checked_config_and_write_config_writes_it(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.tflite").write_bytes(b"not a graph: read_config only checks its checksum")
    config = ModelConfig.from_dict({**bundled().to_dict(), "files": {"tflite": {"path": "model.tflite"}},
                                    "context": None, "similar_cases": None, "quality": None, "conformal": None,
                                    "ood": {"energy_threshold": -2.0}, "future_section": {"kept": True}}, folder)
    config = config.with_file("tflite", "model.tflite")  # its checksum and size
    assert config.files["tflite"].bytes == (folder / "model.tflite").stat().st_size
    measured = config.with_sections(metrics=replace(config.metrics, latency={"p50_ms": 1.0}), conformal=None,
                                    calibration=replace(config.calibration, temperature=2.0))
    assert (measured.metrics.latency["p50_ms"], measured.calibration.temperature) == (1.0, 2.0)
    on_disk = json.loads((BUNDLED_MODEL / "config.json").read_text())
    assert config.metrics.latency["p50_ms"] == on_disk["metrics"]["latency"]["p50_ms"] != 1.0  # unchanged
    assert config.calibration.temperature == on_disk["calibration"]["temperature"] != 2.0
    write_config(measured)
    again = read_config(folder)
    assert again == measured and again.to_dict()["future_section"] == {"kept": True}  # unknown keys kept
    assert "conformal" not in again.to_dict() and again.context is None
    with pytest.raises(ModelFolderError, match="context needs its head"):  # checked as a read folder is
        measured.with_sections(context=ContextSettings(class_bias=(0.0,) * 7))
    with pytest.raises(ModelFolderError, match="temperature"):
        measured.with_sections(calibration=Calibration(temperature=-1.0))
    with pytest.raises(TypeError, match="not a section"):
        measured.with_sections(raw={})
    assert measured.with_sections(metrics=Metrics()).metrics.test == {}
