"""Optional patient context (age, sex, body site) and the late-fusion head that uses it (issue 19).

A dermatologist never judges a lesion without the patient's age, sex and the body site. When a caller gives any
of them, the model folder's context head (``context_head.npz``, a linear layer on the image's pooled features
and the encoded context, trained with each field randomly withheld so that any subset works) gives the answer,
calibrated on validation like the image-only head. Without context the image-only answer is served unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from classifier.errors import ClassifierError

SEXES = ("male", "female")
# HAM10000's body sites (its metadata's ``localization``), without "unknown", which means "not given"
SITES = ("abdomen", "acral", "back", "chest", "ear", "face", "foot", "genital", "hand", "lower extremity", "neck",
         "scalp", "trunk", "upper extremity")
AGE_RANGE = (0.0, 120.0)
AGE_EDGES = (30, 40, 50, 60, 70, 80)  # age bands: under 30, 30-39, ..., 80 and over
UNKNOWN = ("", "unknown", "none", "nan")
AGE_SIZE = 2 + len(AGE_EDGES) + 1  # age / 100, "age given", one-hot age band
ENCODED_SIZE = AGE_SIZE + len(SEXES) + len(SITES)  # then one-hot sex, one-hot site


class ContextError(ClassifierError):
    """A patient-context value the model cannot use; the message lists what is accepted."""


@dataclass(frozen=True)
class PatientContext:
    """Age in years, sex and body site; None where not given."""

    age: float | None = None
    sex: str | None = None
    site: str | None = None

    @property
    def given(self) -> bool:
        return self.age is not None or self.sex is not None or self.site is not None

    def describe(self) -> str:
        """The given fields in words, e.g. 'age 70, male, back'."""
        parts = [] if self.age is None else [f"age {self.age:g}"]
        return ", ".join(parts + [v for v in (self.sex, self.site) if v is not None])

    def to_dict(self) -> dict:
        return {"age": self.age, "sex": self.sex, "site": self.site}


def parse_context(age=None, sex=None, site=None) -> PatientContext:
    """Check and normalise the three fields (text or numbers, as forms and CSV files give them); empty, None or
    'unknown' means not given. Raises ContextError naming the accepted values."""
    return PatientContext(_age(age), _choice("sex", sex, SEXES), _choice("site", site, SITES))


def _age(value) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in UNKNOWN):
        return None
    if isinstance(value, bool):
        raise ContextError(f"age must be a number of years ({AGE_RANGE[0]:g}-{AGE_RANGE[1]:g}), not {value!r}")
    try:
        age = float(value)
    except (TypeError, ValueError):
        raise ContextError(f"age must be a number of years ({AGE_RANGE[0]:g}-{AGE_RANGE[1]:g}), "
                           f"not {str(value)[:40]!r}") from None
    if math.isnan(age):
        return None
    if not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        raise ContextError(f"age must be between {AGE_RANGE[0]:g} and {AGE_RANGE[1]:g} years, not {age:g}")
    return round(age, 1)


def _choice(field: str, value, accepted: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ContextError(f"{field} must be text, one of: {', '.join(accepted)} (or empty)")
    text = " ".join(value.strip().lower().replace("_", " ").split())
    if text in UNKNOWN:
        return None
    if text not in accepted:
        raise ContextError(f"unknown {field} {value.strip()[:40]!r}; accepted: {', '.join(accepted)} "
                           "(or empty / unknown)")
    return text


def encode(context: PatientContext) -> np.ndarray:
    """The context as the head's input (``ENCODED_SIZE`` floats); a field not given is all zeros."""
    out = np.zeros(ENCODED_SIZE, np.float32)
    if context.age is not None:
        out[0], out[1] = context.age / 100.0, 1.0
        out[2 + int(np.searchsorted(AGE_EDGES, context.age, side="right"))] = 1.0
    if context.sex is not None:
        out[AGE_SIZE + SEXES.index(context.sex)] = 1.0
    if context.site is not None:
        out[AGE_SIZE + len(SEXES) + SITES.index(context.site)] = 1.0
    return out


def encode_many(ages, sexes, sites) -> np.ndarray:
    """Rows of metadata (HAM10000's age, sex, localization; NaN / 'unknown' where missing) encoded, (N, C)."""
    return np.stack([encode(parse_context(a, s, site)) for a, s, site in zip(ages, sexes, sites, strict=True)])


@dataclass(frozen=True)
class ContextHead:
    """The fusion head: per view, logits = features @ feature_kernel + encode(context) @ context_kernel + bias,
    then the head's own prior correction (``class_bias``) and ``temperature``, and the mean of the views'
    probabilities, as for the image head, so the answer keeps its invariance to turning and mirroring."""

    feature_kernel: np.ndarray  # (D, K)
    context_kernel: np.ndarray  # (ENCODED_SIZE, K)
    bias: np.ndarray  # (K,)
    class_bias: np.ndarray  # (K,)
    temperature: float
    conformal_threshold: float | None = None

    def logits(self, features: np.ndarray, context: PatientContext) -> np.ndarray:
        """Raw fused logits (V, K) for one image's per-view pooled features (V, D)."""
        # einsum, not @: a BLAS call wakes OpenBLAS's threads, which then spin against the interpreter's
        return (np.einsum("vd,dk->vk", np.atleast_2d(features).astype(np.float32), self.feature_kernel)
                + np.einsum("c,ck->k", encode(context), self.context_kernel) + self.bias)

    def probabilities(self, features: np.ndarray, context: PatientContext) -> np.ndarray:
        """Calibrated probabilities (K,): the mean over the views, as for the image head."""
        z = (self.logits(features, context) + self.class_bias) / self.temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return (z / z.sum(axis=1, keepdims=True)).mean(axis=0)


def load_context_head(config) -> ContextHead | None:
    """A model folder's patient-context head (``files.context_head`` + the ``context`` section); None if none."""
    from classifier.model_folder import ModelFolderError

    if config.context is None:
        return None
    path = config.file("context_head")
    try:
        with np.load(path, allow_pickle=False) as stored:
            head = ContextHead(stored["feature_kernel"].astype(np.float32), stored["context_kernel"].astype(np.float32),
                               stored["bias"].astype(np.float32), np.array(config.context.class_bias, np.float32),
                               config.context.temperature, config.context.conformal_threshold)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path}: not a readable context head ({exc})") from exc
    k = len(config.labels)
    if head.context_kernel.shape != (ENCODED_SIZE, k) or head.bias.shape != (k,) or head.feature_kernel.shape[1] != k:
        raise ModelFolderError(f"{path}: the context head's shapes do not fit {k} classes and {ENCODED_SIZE} "
                               "context inputs")
    return head
