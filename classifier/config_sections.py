"""The sections of a model folder's ``config.json`` as typed, immutable values.

Every reader of a model's settings and figures reads these (through ``classifier.model_folder.ModelConfig``), and
every writer builds them and hands them to ``ModelConfig.with_sections``; ``classifier.model_folder`` alone reads,
checks and writes the file. This module holds no I/O.

A section's fields are its JSON keys (``from_`` stands for ``from``). Keys this code does not name are kept in
``extra`` and written back as they were read, so a section rewritten with ``dataclasses.replace`` keeps them; a
field left None is written only if it was read (as null).
Nested JSON (measured figures, training settings) is held read-only: objects as mappings, arrays as tuples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType

EMPTY: Mapping = MappingProxyType({})


def frozen(value):
    """JSON data made read-only: objects become read-only mappings, arrays tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(frozen(v) for v in value)
    return value


def thawed(value):
    """The JSON form of a section or of frozen data: plain dicts and lists."""
    if isinstance(value, Section | LabelSet):
        return value.to_json()
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thawed(v) for v in value]
    return value


@dataclass(frozen=True)
class Section:
    """One JSON object of config.json. ``nested``: the fields that hold a section of their own."""

    extra: Mapping = field(default_factory=lambda: EMPTY, kw_only=True, repr=False)
    read: frozenset = field(default=frozenset(), kw_only=True, repr=False, compare=False)  # the keys read
    nested = MappingProxyType({})

    def __post_init__(self):  # a section built from plain dicts and lists holds them read-only too
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping | list) and not isinstance(value, MappingProxyType):
                object.__setattr__(self, f.name, frozen(value))

    @classmethod
    def from_json(cls, value: Mapping | None, **typed):
        """The section of a JSON object; ``typed`` gives fields already checked and converted by the reader."""
        value = dict(value or {})
        keys = {f.name: f.name.removesuffix("_") for f in fields(cls) if f.name not in ("extra", "read")}
        args = dict(typed)
        for name, key in keys.items():
            if name not in args and key in value:
                nested = cls.nested.get(name)
                args[name] = nested.from_json(value[key]) if nested and value[key] is not None else frozen(value[key])
        return cls(**args, extra=frozen({k: v for k, v in value.items() if k not in keys.values()}),
                   read=frozenset(value))

    def to_json(self) -> dict:
        """The JSON object; a field left None is left out unless it was read."""
        named = {}
        for f in fields(self):
            key, value = f.name.removesuffix("_"), getattr(self, f.name)
            if f.name not in ("extra", "read") and (value is not None or key in self.read):
                named[key] = thawed(value)
        return {**named, **thawed(self.extra)}


@dataclass(frozen=True)
class Label:
    code: str
    name: str
    malignant: bool


@dataclass(frozen=True)
class LabelSet(Sequence):
    """``labels``: the classes in the model's output order, each with its name and whether it is malignant."""

    items: tuple[Label, ...]

    def __getitem__(self, index):
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(label.code for label in self.items)

    @property
    def malignant(self) -> tuple[bool, ...]:
        """One flag per class, in output order: the classes whose probabilities make up P(malignant)."""
        return tuple(label.malignant for label in self.items)

    @property
    def malignant_codes(self) -> tuple[str, ...]:
        return tuple(label.code for label in self.items if label.malignant)

    def name_of(self, code: str) -> str:
        return next((label.name for label in self.items if label.code == code), code)

    def to_json(self) -> list[dict]:
        return [{"code": lb.code, "name": lb.name, "malignant": lb.malignant} for lb in self.items]


@dataclass(frozen=True)
class Architecture(Section):
    backbone: str | None = None
    head: str | None = None
    feature_layer: str | None = None
    head_layer: str | None = None
    pretrained: str | None = None


@dataclass(frozen=True)
class InputSpec(Section):
    """``input``: the model's view of an image, ``size`` x ``size`` RGB."""

    size: int = 0
    channels: int | None = None
    layout: str | None = None
    dtype: str | None = None
    pixel_range: tuple | None = None


@dataclass(frozen=True)
class Calibration(Section):
    """Probabilities are softmax((logits + class_bias) / temperature), both fitted on validation.

    ``decision_bias`` (one number per label, or None): the prior correction applied to the decision only. When
    set, the probabilities carry no prior correction (``class_bias`` zeros, the temperature fitted without it) and
    the decision (the label) is the class of the views' mean of softmax((logits + decision_bias) / temperature)."""

    temperature: float = 1.0
    class_bias: tuple[float, ...] | None = None  # as read: one number per label (zeros when not recorded)
    decision_bias: tuple[float, ...] | None = None  # None: the decision is the most probable class
    prior_correction_tau: float | None = None
    fitted_on: str | None = None

    def to_json(self) -> dict:  # a bias not read and all zero is none: as training writes it before fitting one
        return {k: v for k, v in super().to_json().items() if k != "class_bias" or any(v) or k in self.read}


@dataclass(frozen=True)
class OutOfDistribution(Section):
    """``ood``: the thresholds of the energy and feature scores, and the validation quantiles they were set at."""

    score: str | None = None
    energy_threshold: float | None = None
    energy_quantile: float | None = None
    feature_score: str | None = None
    feature_threshold: float | None = None  # Mahalanobis distance above which an image is flagged
    feature_quantile: float | None = None
    chosen_on: str | None = None


@dataclass(frozen=True)
class Quantization(Section):
    scheme: str | None = None
    calibration_images: int | None = None
    calibration_from: str | None = None
    val_top1_agreement_with_float: float | None = None


@dataclass(frozen=True)
class Serving(Section):
    """``serving``: the views every prediction averages, the runtime and its quantization (None: float32)."""

    views: tuple[str, ...] = ("identity",)
    runtime: str | None = None
    quantization: Quantization | None = None
    nested = MappingProxyType({"quantization": Quantization})


@dataclass(frozen=True)
class TtaSettings(Section):
    """``tta``: the views averaged when test-time augmentation is asked for."""

    views: tuple[str, ...] = ("identity",)


@dataclass(frozen=True)
class Conformal(Section):
    """``conformal``: a class is in the prediction set when 1 - p <= ``threshold``; ``coverage`` is nominal."""

    method: str | None = None
    coverage: float | None = None
    threshold: float | None = None
    fitted_on: str | None = None


@dataclass(frozen=True)
class FileEntry(Section):
    """One entry of ``files``: a plain file name in the model folder, its SHA-256 and size."""

    path: str = ""
    sha256: str | None = None
    bytes: int | None = None


@dataclass(frozen=True)
class Metrics(Section):
    """``metrics``: the figures measured on the model, as the card and the page show them (each a mapping of
    ``classifier.evaluation.measure`` names, or None when not measured)."""

    split: str | None = None
    n: int | None = None
    test: Mapping = field(default_factory=lambda: EMPTY)
    test_tta: Mapping | None = None
    test_without_prior_correction: Mapping | None = None
    prior_correction: Mapping | None = None  # where the prior correction sits, and both forms measured
    calibration: Mapping | None = None
    tta_seconds_per_image_eval: float | None = None
    measured_with: str | None = None
    ood: Mapping | None = None  # foreign images (scripts/measure_ood.py)
    latency: Mapping | None = None  # python -m classifier bench

    def to_json(self) -> dict:
        named = super().to_json()
        return named if self.test or "test" in self.read else {k: v for k, v in named.items() if k != "test"}


@dataclass(frozen=True)
class ContextSettings(Section):
    """``context``: the patient-context head's calibration (its weights are ``files.context_head``)."""

    head: str | None = None
    inputs: Mapping | None = None
    training: Mapping | None = None
    class_bias: tuple[float, ...] = ()
    temperature: float = 1.0
    prior_correction_tau: float | None = None
    conformal_threshold: float | None = None
    fitted_on: str | None = None
    measured: Mapping | None = None


@dataclass(frozen=True)
class SimilarCases(Section):
    """``similar_cases``: how many similar training cases are shown (``k``) and how the index was made."""

    k: int = 8
    lesions: int | None = None
    from_: str | None = None
    features: str | None = None
    distance: str | None = None
    thumbnails: str | None = None
    attribution: str | None = None
    measured: Mapping | None = None


@dataclass(frozen=True)
class SizeProbeSettings(Section):
    """``quality.lesion_small_probe``: the learned 'lesion too small in the frame' check's threshold."""

    threshold: float = 0.0
    score: str | None = None
    threshold_from: str | None = None
    training_images: str | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class Quality(Section):
    lesion_small_probe: SizeProbeSettings | None = None
    nested = MappingProxyType({"lesion_small_probe": SizeProbeSettings})
