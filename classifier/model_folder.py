"""The model-folder contract: what training writes, the Hub holds and serving reads.

A model folder holds ``config.json`` (this module validates it), ``model.keras`` (Keras 3, loads
with ``safe_mode=True``), ``model.tflite`` (the LiteRT export that serves: image -> logits,
class-activation maps and pooled features), optionally ``ood_features.npz`` (the training-feature
statistics of the Mahalanobis out-of-distribution score), optionally ``similar_cases.npz`` (the similar-cases
index, ``classifier.similar``) and ``context_head.npz`` (the patient-context head, ``classifier.context``),
``split.json`` (the lesion-grouped split
it was trained and tested on) and ``README.md`` (the Hugging Face model card). ``config.json``
records each file's SHA-256, so a truncated or corrupted download is refused instead of half-loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from classifier.errors import ClassifierError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


class ModelFolderError(ClassifierError):
    """A model folder that is incomplete, corrupted or describes something serving cannot use."""


@dataclass(frozen=True)
class Label:
    code: str
    name: str
    malignant: bool


@dataclass(frozen=True)
class ContextSettings:
    """The ``context`` section: the fusion head's own calibration (its weights are ``files.context_head``)."""

    class_bias: tuple[float, ...]
    temperature: float
    conformal_threshold: float | None


@dataclass(frozen=True)
class ModelConfig:
    folder: Path
    raw: dict
    input_size: int
    labels: tuple[Label, ...]
    temperature: float
    class_bias: tuple[float, ...]
    ood_threshold: float | None
    tta_views: tuple[str, ...]  # the views averaged when test-time augmentation is asked for
    conformal_threshold: float | None = None  # a class is in the prediction set when 1 - p <= this
    conformal_coverage: float | None = None  # their nominal coverage, e.g. 0.9
    feature_ood_threshold: float | None = None  # Mahalanobis distance above which an image is flagged
    energy_quantile: float | None = None  # share of validation images below ood_threshold, e.g. 0.99
    feature_quantile: float | None = None  # share of validation images below feature_ood_threshold
    served_views: tuple[str, ...] = ("identity",)  # the views every prediction averages (serving.views)
    similar_k: int | None = None  # how many similar cases are shown (similar_cases.k); None: the folder has none
    context: ContextSettings | None = None  # the patient-context head's calibration; None: the folder has none
    quality_probe_threshold: float | None = None  # the learned lesion-size check's threshold (quality section)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(label.code for label in self.labels)

    def file(self, role: str) -> Path | None:
        """Path of the file with ``role`` ('keras', 'tflite', 'split'), or None if the folder has none."""
        entry = self.raw.get("files", {}).get(role)
        return self.folder / entry["path"] if entry else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(folder: Path, name: str) -> dict:
    path = Path(folder) / name
    return {"path": name, "sha256": sha256_of(path), "bytes": path.stat().st_size}


def _require(condition: bool, folder: Path, message: str) -> None:
    if not condition:
        raise ModelFolderError(f"{folder}: {message}")


def _read_raw(folder: Path) -> dict:
    """``config.json`` as a dict, checked to be a JSON object of the format version this code reads."""
    path = folder / CONFIG_NAME
    _require(folder.is_dir(), folder, "model folder does not exist")
    _require(path.is_file(), folder, f"no {CONFIG_NAME}: not a model folder")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{path}: not valid JSON ({exc})") from exc
    _require(isinstance(raw, dict), folder, f"{CONFIG_NAME} must hold a JSON object")
    version = raw.get("format_version")
    _require(version == FORMAT_VERSION, folder,
             f"unknown format_version {version!r}; this code reads version {FORMAT_VERSION} "
             "(update the code or the model)")
    return raw


def _file_names(raw: dict, folder: Path) -> dict[str, str]:
    """``{role: file name}`` from the ``files`` section, each checked to be a plain file name."""
    files = raw.get("files")
    _require(isinstance(files, dict) and ("keras" in files or "tflite" in files), folder,
             "files must name the model file(s) ('keras' and/or 'tflite')")
    names = {}
    for role, entry in files.items():
        _require(isinstance(entry, dict) and isinstance(entry.get("path"), str), folder, f"files.{role} needs a path")
        name = entry["path"]
        _require("/" not in name and "\\" not in name and not name.startswith("."), folder,
                 f"files.{role}.path must be a plain file name, not {name!r}")
        names[role] = name
    return names


def listed_files(folder: str | Path) -> dict[str, str]:
    """``{role: file name}`` of every file ``config.json`` lists, without requiring the files to be there yet:
    with config.json and README.md, what a Hub download fetches and ``publish`` uploads."""
    folder = Path(folder)
    return _file_names(_read_raw(folder), folder)


def read_config(folder: str | Path, verify_files: bool = True) -> ModelConfig:
    """Read and validate ``config.json``; with ``verify_files``, also check every listed file's checksum."""
    folder = Path(folder)
    raw = _read_raw(folder)

    size = raw.get("input", {}).get("size")
    _require(isinstance(size, int) and 32 <= size <= 1024, folder,
             f"input.size must be an integer 32..1024, not {size!r}")

    labels_raw = raw.get("labels")
    _require(isinstance(labels_raw, list) and len(labels_raw) >= 2, folder,
             "labels must be a list of at least 2 classes")
    labels = []
    for item in labels_raw:
        ok = (isinstance(item, dict) and isinstance(item.get("code"), str) and item["code"]
              and isinstance(item.get("name"), str) and isinstance(item.get("malignant"), bool))
        _require(ok, folder, f"each label needs code (text), name (text) and malignant (true/false): {item!r}")
        labels.append(Label(item["code"], item["name"], item["malignant"]))
    _require(len({label.code for label in labels}) == len(labels), folder, "label codes must be unique")

    calibration = raw.get("calibration", {})
    temperature = calibration.get("temperature", 1.0)
    _require(isinstance(temperature, (int, float)) and math.isfinite(temperature) and 0.05 <= temperature <= 20,
             folder, f"calibration.temperature must be a number in 0.05..20, not {temperature!r}")
    class_bias = calibration.get("class_bias") or [0.0] * len(labels)
    _require(isinstance(class_bias, list) and len(class_bias) == len(labels)
             and all(isinstance(b, (int, float)) and math.isfinite(b) for b in class_bias), folder,
             f"calibration.class_bias must be {len(labels)} numbers, one per label")
    threshold = raw.get("ood", {}).get("energy_threshold")
    _require(threshold is None or (isinstance(threshold, (int, float)) and math.isfinite(threshold)), folder,
             f"ood.energy_threshold must be a number, not {threshold!r}")
    conformal = raw.get("conformal") or {}
    q, coverage = conformal.get("threshold"), conformal.get("coverage")
    _require((q is None and coverage is None) or (
        isinstance(q, (int, float)) and isinstance(coverage, (int, float)) and 0 < q <= 1 + 1e-6 and 0 < coverage < 1),
        folder, f"conformal needs threshold in (0, 1] and coverage in (0, 1), not {q!r} and {coverage!r}")
    feature_threshold = raw.get("ood", {}).get("feature_threshold")
    _require(feature_threshold is None or (isinstance(feature_threshold, (int, float))
                                           and math.isfinite(feature_threshold)), folder,
             f"ood.feature_threshold must be a number, not {feature_threshold!r}")
    _require(feature_threshold is None or "ood_features" in raw.get("files", {}), folder,
             "ood.feature_threshold needs the fitted feature statistics (files.ood_features)")
    quantiles = {}
    for key in ("energy_quantile", "feature_quantile"):
        quantiles[key] = raw.get("ood", {}).get(key)
        _require(quantiles[key] is None or (isinstance(quantiles[key], (int, float)) and 0 < quantiles[key] < 1),
                 folder, f"ood.{key} must be a number in (0, 1), not {quantiles[key]!r}")
    from classifier.tta import VIEWS

    view_lists = {}
    for key, block in (("tta.views", "tta"), ("serving.views", "serving")):
        views = raw.get(block, {}).get("views", ["identity"])
        _require(isinstance(views, list) and views and all(isinstance(v, str) for v in views), folder,
                 f"{key} must be a non-empty list of view names, not {views!r}")
        unknown = [v for v in views if v not in VIEWS]
        _require(not unknown and len(set(views)) == len(views), folder,
                 f"{key}: unknown or repeated views {unknown or list(views)}; known: {', '.join(VIEWS)}")
        _require(views[0] == "identity", folder, f"{key} must start with 'identity' (the view explained and "
                 "checked for being out of distribution)")
        view_lists[key] = tuple(views)

    similar_k = None
    if raw.get("similar_cases") is not None:
        similar_k = raw["similar_cases"].get("k") if isinstance(raw["similar_cases"], dict) else None
        _require(isinstance(similar_k, int) and not isinstance(similar_k, bool) and 1 <= similar_k <= 64, folder,
                 f"similar_cases.k must be an integer 1..64, not {similar_k!r}")
        _require("similar_cases" in raw.get("files", {}), folder,
                 "similar_cases needs its index (files.similar_cases)")
    context = _context_settings(raw, folder, len(labels))
    probe = (raw.get("quality") or {}).get("lesion_small_probe")
    probe_threshold = None if probe is None else probe.get("threshold") if isinstance(probe, dict) else "?"
    _require(probe_threshold is None or (isinstance(probe_threshold, (int, float)) and math.isfinite(probe_threshold)
                                         and "quality_probe" in raw.get("files", {})), folder,
             "quality.lesion_small_probe needs a numeric threshold and its file (files.quality_probe)")

    for role, name in _file_names(raw, folder).items():
        entry = raw["files"][role]
        file_path = folder / name
        _require(file_path.is_file(), folder, f"missing {name} (listed in {CONFIG_NAME} as files.{role})")
        if verify_files and "sha256" in entry:
            _require(file_path.stat().st_size == entry.get("bytes", file_path.stat().st_size), folder,
                     f"{name} has {file_path.stat().st_size} bytes, expected {entry.get('bytes')}: truncated download?")
            _require(sha256_of(file_path) == entry["sha256"], folder,
                     f"{name} is corrupted (SHA-256 does not match {CONFIG_NAME}); download it again")
    return ModelConfig(folder, raw, size, tuple(labels), float(temperature), tuple(float(b) for b in class_bias),
                       None if threshold is None else float(threshold), view_lists["tta.views"],
                       None if q is None else float(q), None if coverage is None else float(coverage),
                       None if feature_threshold is None else float(feature_threshold),
                       **{key: None if value is None else float(value) for key, value in quantiles.items()},
                       served_views=view_lists["serving.views"], similar_k=similar_k, context=context,
                       quality_probe_threshold=None if probe_threshold is None else float(probe_threshold))


def _context_settings(raw: dict, folder: Path, num_labels: int) -> ContextSettings | None:
    section = raw.get("context")
    if section is None:
        return None
    _require(isinstance(section, dict) and "context_head" in raw.get("files", {}), folder,
             "context needs its head (files.context_head)")
    bias, temperature, q = section.get("class_bias"), section.get("temperature"), section.get("conformal_threshold")
    _require(isinstance(bias, list) and len(bias) == num_labels
             and all(isinstance(b, (int, float)) and math.isfinite(b) for b in bias), folder,
             f"context.class_bias must be {num_labels} numbers")
    _require(isinstance(temperature, (int, float)) and 0.05 <= temperature <= 20, folder,
             f"context.temperature must be a number in 0.05..20, not {temperature!r}")
    _require(q is None or (isinstance(q, (int, float)) and 0 < q <= 1 + 1e-6), folder,
             f"context.conformal_threshold must be in (0, 1], not {q!r}")
    return ContextSettings(tuple(float(b) for b in bias), float(temperature), None if q is None else float(q))


def write_config(folder: Path, config: dict) -> None:
    path = Path(folder) / CONFIG_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    tmp.replace(path)
