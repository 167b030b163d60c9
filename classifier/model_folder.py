"""The model-folder contract: what training writes, the Hub holds and serving reads.

A model folder holds ``config.json`` (this module validates it), ``model.keras`` (Keras 3, loads
with ``safe_mode=True``), ``model.tflite`` (the LiteRT export that serves: image -> logits,
class-activation maps and pooled features), optionally ``ood_features.npz`` (the training-feature
statistics of the Mahalanobis out-of-distribution score), optionally ``similar_cases.npz`` (the similar-cases
index, ``classifier.similar``), ``context_head.npz`` (the patient-context head, ``classifier.context``) and
``quality_probe.npz`` (the learned lesion-size check, ``classifier.quality``), ``split.json`` (the lesion-grouped
split it was trained and tested on) and ``README.md`` (the Hugging Face model card). ``config.json``
records each file's SHA-256, so a truncated or corrupted download is refused instead of half-loaded.

This module is the one reader and writer of ``config.json``: :func:`read_config` gives a :class:`ModelConfig` of
typed, immutable sections (``classifier.config_sections``); a writer builds a new one with
:meth:`ModelConfig.with_sections` / :meth:`ModelConfig.with_file` and writes it with :func:`write_config`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from classifier.config_sections import (
    Architecture,
    Calibration,
    Conformal,
    ContextSettings,
    FileEntry,
    InputSpec,
    Label,
    LabelSet,
    Metrics,
    OutOfDistribution,
    Quality,
    Serving,
    SimilarCases,
    SizeProbeSettings,
    TtaSettings,
    frozen,
    thawed,
)
from classifier.errors import ClassifierError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


class ModelFolderError(ClassifierError):
    """A model folder that is incomplete, corrupted or describes something serving cannot use."""


@dataclass(frozen=True)
class ModelConfig:
    """A model folder's ``config.json``, checked, as typed sections (``classifier.config_sections``) in the
    file's order. Immutable: a writer builds a new one with :meth:`with_sections` or :meth:`with_file` (a new
    folder's with :meth:`from_dict`) and writes it with :func:`write_config`."""

    folder: Path
    task: str | None
    name: str | None
    version: str | None
    architecture: Architecture
    input: InputSpec
    preprocessing: Mapping
    labels: LabelSet
    calibration: Calibration
    ood: OutOfDistribution
    serving: Serving
    tta: TtaSettings
    training: Mapping
    files: Mapping[str, FileEntry]
    conformal: Conformal
    metrics: Metrics
    context: ContextSettings | None  # the patient-context head's calibration; None: the folder has none
    similar_cases: SimilarCases | None  # None: the folder has no similar-cases index
    quality: Quality
    extra: Mapping  # top-level keys this code does not name, written back as read

    @property
    def codes(self) -> tuple[str, ...]:
        return self.labels.codes

    @property
    def shades_of_gray_power(self) -> int | None:
        """The power of the shades-of-gray colour constancy the input gets after ``prepare`` (None: none)."""
        return self.preprocessing.get("shades_of_gray_power")

    def file(self, role: str) -> Path | None:
        """Path of the file with ``role`` ('keras', 'tflite', 'split'), or None if the folder has none."""
        entry = self.files.get(role)
        return self.folder / entry.path if entry else None

    @classmethod
    def from_dict(cls, document: Mapping, folder: str | Path) -> ModelConfig:
        """The config of a JSON document for ``folder``, checked as :func:`read_config` checks one, except that
        the files it lists need not be there yet."""
        return _parse(thawed(document), Path(folder))

    def to_dict(self) -> dict:
        """The JSON document written to config.json: a new dict, so changing it changes nothing here."""
        document = {"format_version": FORMAT_VERSION}
        for f in fields(self):
            value = thawed(getattr(self, f.name)) if f.name not in ("folder", "extra") else None
            if value is not None and value != {}:
                document[f.name] = value
        return {**document, **thawed(self.extra)}

    def with_sections(self, **sections) -> ModelConfig:
        """A new config with the named sections replaced (``calibration=Calibration(...)``,
        ``files={role: FileEntry}``, ...; None removes one), checked again."""
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            raise TypeError(f"not a section of {CONFIG_NAME}: {', '.join(sorted(unknown))}")
        document = self.to_dict()
        for key, value in sections.items():
            if value is None:
                document.pop(key, None)
            else:
                document[key] = thawed(value)
        return _parse(document, self.folder)

    def with_file(self, role: str, name: str) -> ModelConfig:
        """A new config that lists this folder's file ``name`` (its SHA-256 and size) as ``files.<role>``."""
        return self.with_sections(files={**self.files, role: file_entry(self.folder, name)})


SECTIONS = tuple(f.name for f in fields(ModelConfig) if f.name not in ("folder", "extra"))
OBJECT_SECTIONS = ("architecture", "input", "preprocessing", "calibration", "ood", "serving", "tta", "training",
                   "files", "conformal", "metrics", "context", "similar_cases", "quality")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(folder: Path, name: str) -> FileEntry:
    path = Path(folder) / name
    return FileEntry(name, sha256_of(path), path.stat().st_size)


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
    config = _parse(_read_raw(folder), folder)
    for role, entry in config.files.items():
        file_path = folder / entry.path
        _require(file_path.is_file(), folder, f"missing {entry.path} (listed in {CONFIG_NAME} as files.{role})")
        if verify_files and entry.sha256 is not None:
            size = file_path.stat().st_size
            _require(entry.bytes is None or size == entry.bytes, folder,
                     f"{entry.path} has {size} bytes, expected {entry.bytes}: truncated download?")
            _require(sha256_of(file_path) == entry.sha256, folder,
                     f"{entry.path} is corrupted (SHA-256 does not match {CONFIG_NAME}); download it again")
    return config


def write_config(config: ModelConfig) -> None:
    """Write ``config`` as its folder's ``config.json`` (atomically: a reader sees the old file or the new)."""
    path = config.folder / CONFIG_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tmp.replace(path)


def _number(value, low: float = -math.inf, high: float = math.inf) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def _parse(raw: dict, folder: Path) -> ModelConfig:
    """The checked, typed config of a JSON document (the files it lists are checked by read_config)."""
    for key in OBJECT_SECTIONS:
        _require(raw.get(key) is None or isinstance(raw[key], dict), folder, f"{key} must be a JSON object")
    names = _file_names(raw, folder)
    size = raw.get("input", {}).get("size")
    _require(isinstance(size, int) and 32 <= size <= 1024, folder,
             f"input.size must be an integer 32..1024, not {size!r}")
    power = (raw.get("preprocessing") or {}).get("shades_of_gray_power")
    _require(power is None or (isinstance(power, int) and not isinstance(power, bool) and 1 <= power <= 16), folder,
             f"preprocessing.shades_of_gray_power must be an integer 1..16, not {power!r}")
    labels = _labels(raw, folder)
    known = set(SECTIONS) | {"format_version"}
    return ModelConfig(
        folder, raw.get("task"), raw.get("name"), raw.get("version"), Architecture.from_json(raw.get("architecture")),
        InputSpec.from_json(raw["input"]), frozen(raw.get("preprocessing") or {}), labels,
        _calibration(raw, folder, len(labels)), _ood(raw, folder, names), _serving(raw, folder),
        TtaSettings.from_json(raw.get("tta"), views=_views(raw, "tta", folder)), frozen(raw.get("training") or {}),
        frozen({role: FileEntry.from_json(raw["files"][role]) for role in names}), _conformal(raw, folder),
        Metrics.from_json(raw.get("metrics")), _context_settings(raw, folder, len(labels), names),
        _similar_cases(raw, folder, names), _quality(raw, folder, names),
        frozen({k: v for k, v in raw.items() if k not in known}))


def _labels(raw: dict, folder: Path) -> LabelSet:
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
    return LabelSet(tuple(labels))


def _calibration(raw: dict, folder: Path, num_labels: int) -> Calibration:
    calibration = raw.get("calibration") or {}
    temperature = calibration.get("temperature", 1.0)
    _require(_number(temperature, 0.05, 20), folder,
             f"calibration.temperature must be a number in 0.05..20, not {temperature!r}")
    class_bias = calibration.get("class_bias") or [0.0] * num_labels
    _require(isinstance(class_bias, list | tuple) and len(class_bias) == num_labels
             and all(_number(b) for b in class_bias), folder,
             f"calibration.class_bias must be {num_labels} numbers, one per label")
    decision_bias = calibration.get("decision_bias")
    _require(decision_bias is None or (isinstance(decision_bias, list | tuple) and len(decision_bias) == num_labels
                                       and all(_number(b) for b in decision_bias)), folder,
             f"calibration.decision_bias must be {num_labels} numbers, one per label, or absent")
    _require(decision_bias is None or not any(class_bias), folder,
             "calibration has both class_bias and decision_bias: the prior correction goes into the probabilities "
             "or into the decision, not both")
    if decision_bias is not None:
        decision_bias = tuple(float(b) for b in decision_bias)
    return Calibration.from_json(calibration, temperature=float(temperature),
                                 class_bias=tuple(float(b) for b in class_bias), decision_bias=decision_bias)


def _ood(raw: dict, folder: Path, files: dict) -> OutOfDistribution:
    ood = raw.get("ood") or {}
    typed = {}
    for key in ("energy_threshold", "feature_threshold"):
        typed[key] = ood.get(key)
        _require(typed[key] is None or _number(typed[key]), folder, f"ood.{key} must be a number, not {typed[key]!r}")
    _require(typed["feature_threshold"] is None or "ood_features" in files, folder,
             "ood.feature_threshold needs the fitted feature statistics (files.ood_features)")
    for key in ("energy_quantile", "feature_quantile"):
        typed[key] = ood.get(key)
        _require(typed[key] is None or (_number(typed[key]) and 0 < typed[key] < 1), folder,
                 f"ood.{key} must be a number in (0, 1), not {typed[key]!r}")
    return OutOfDistribution.from_json(ood, **{key: _optional_float(value) for key, value in typed.items()})


def _conformal(raw: dict, folder: Path) -> Conformal:
    conformal = raw.get("conformal") or {}
    q, coverage = conformal.get("threshold"), conformal.get("coverage")
    _require((q is None and coverage is None) or (_number(q) and _number(coverage) and 0 < q <= 1 + 1e-6
                                                  and 0 < coverage < 1), folder,
             f"conformal needs threshold in (0, 1] and coverage in (0, 1), not {q!r} and {coverage!r}")
    return Conformal.from_json(conformal, threshold=_optional_float(q), coverage=_optional_float(coverage))


def _views(raw: dict, block: str, folder: Path) -> tuple[str, ...]:
    from classifier.tta import VIEWS

    key = f"{block}.views"
    views = (raw.get(block) or {}).get("views", ["identity"])
    _require(isinstance(views, list | tuple) and views and all(isinstance(v, str) for v in views), folder,
             f"{key} must be a non-empty list of view names, not {views!r}")
    unknown = [v for v in views if v not in VIEWS]
    _require(not unknown and len(set(views)) == len(views), folder,
             f"{key}: unknown or repeated views {unknown or list(views)}; known: {', '.join(VIEWS)}")
    _require(views[0] == "identity", folder, f"{key} must start with 'identity' (the view explained and "
             "checked for being out of distribution)")
    return tuple(views)


def _serving(raw: dict, folder: Path) -> Serving:
    return Serving.from_json(raw.get("serving"), views=_views(raw, "serving", folder))


def _similar_cases(raw: dict, folder: Path, files: dict) -> SimilarCases | None:
    section = raw.get("similar_cases")
    if section is None:
        return None
    k = section.get("k")
    _require(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= 64, folder,
             f"similar_cases.k must be an integer 1..64, not {k!r}")
    _require("similar_cases" in files, folder, "similar_cases needs its index (files.similar_cases)")
    return SimilarCases.from_json(section)


def _quality(raw: dict, folder: Path, files: dict) -> Quality:
    quality = raw.get("quality") or {}
    probe = quality.get("lesion_small_probe")
    threshold = None if probe is None else probe.get("threshold") if isinstance(probe, dict) else "?"
    _require(threshold is None or (_number(threshold) and "quality_probe" in files), folder,
             "quality.lesion_small_probe needs a numeric threshold and its file (files.quality_probe)")
    return Quality.from_json(quality, lesion_small_probe=None if probe is None else SizeProbeSettings.from_json(
        probe, threshold=float(threshold)))


def _context_settings(raw: dict, folder: Path, num_labels: int, files: dict) -> ContextSettings | None:
    section = raw.get("context")
    if section is None:
        return None
    _require("context_head" in files, folder,
             "context needs its head (files.context_head)")
    bias, temperature, q = section.get("class_bias"), section.get("temperature"), section.get("conformal_threshold")
    _require(isinstance(bias, list | tuple) and len(bias) == num_labels and all(_number(b) for b in bias), folder,
             f"context.class_bias must be {num_labels} numbers")
    _require(_number(temperature, 0.05, 20), folder,
             f"context.temperature must be a number in 0.05..20, not {temperature!r}")
    _require(q is None or (_number(q) and 0 < q <= 1 + 1e-6), folder,
             f"context.conformal_threshold must be in (0, 1], not {q!r}")
    return ContextSettings.from_json(section, class_bias=tuple(float(b) for b in bias), temperature=float(temperature),
                                     conformal_threshold=_optional_float(q))
