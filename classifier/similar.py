"""Similar confirmed cases: the training lesions nearest to an image in the served model's feature space
(issue 19).

The model folder's ``similar_cases.npz`` (written by ``export``, ``classifier.training.similar_index``) holds,
for one image of every training-split lesion, its pooled features (mean of the served views, L2-normalised,
reduced by PCA and normalised again, float16), its diagnosis, how the diagnosis was confirmed, and a small JPEG
thumbnail. Distance is the cosine distance of the reduced features (0 = same direction, 2 = opposite).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from classifier.errors import ArgumentError
from classifier.model_folder import ModelFolderError

# HAM10000's dx_type, in words
CONFIRMATION = {"histo": "histopathology", "follow_up": "follow-up", "consensus": "expert consensus",
                "confocal": "confocal microscopy"}
MAX_K = 64  # the most similar cases one answer may carry
ATTRIBUTION = ("Similar cases: training images of the HAM10000 dataset (Tschandl P. et al., Sci. Data 5, 180161, "
               "2018), CC BY-NC-SA 4.0, shown as small thumbnails.")


def similar_count(k: int | None, name: str = "similar") -> int | None:
    """How many similar cases to attach, checked once for every surface: 0 to ``MAX_K`` (None: the model's);
    ArgumentError, naming it as ``name``, otherwise."""
    if not 0 <= (k or 0) <= MAX_K:
        raise ArgumentError(f"{name} must be between 0 and {MAX_K}")
    return k


@dataclass(frozen=True)
class SimilarCase:
    image_id: str
    lesion_id: str
    code: str  # the confirmed diagnosis
    name: str
    confirmed_by: str
    distance: float
    thumbnail_jpeg: bytes = field(repr=False)

    def thumbnail(self) -> Image.Image:
        return Image.open(io.BytesIO(self.thumbnail_jpeg))

    def to_dict(self) -> dict:
        return {"image_id": self.image_id, "lesion_id": self.lesion_id, "code": self.code, "name": self.name,
                "confirmed_by": self.confirmed_by, "distance": self.distance}


class SimilarIndex:
    """The loaded index; ``nearest`` is a (d,) x (d, n) product, well under a millisecond for 5,000 lesions."""

    KEYS = ("mean", "projection", "vectors", "image_id", "lesion_id", "label", "dx_type", "thumbnails",
            "thumbnail_offsets")

    def __init__(self, arrays: dict[str, np.ndarray], codes: tuple[str, ...], names: tuple[str, ...]):
        missing = [k for k in self.KEYS if k not in arrays]
        if missing:
            raise ModelFolderError(f"missing arrays {', '.join(missing)}")
        self.mean = arrays["mean"].astype(np.float32)
        self.projection = arrays["projection"].astype(np.float32)
        self.vectors = arrays["vectors"].astype(np.float32)  # (n, d), unit length
        self.image_id = arrays["image_id"]
        self.lesion_id = arrays["lesion_id"]
        self.label = arrays["label"].astype(np.int64)
        self.dx_type = arrays["dx_type"]
        self.thumbnails = arrays["thumbnails"]
        self.offsets = arrays["thumbnail_offsets"].astype(np.int64)
        self.codes, self.names = codes, names
        n = len(self.vectors)
        if not (len(self.image_id) == len(self.label) == len(self.dx_type) == n and len(self.offsets) == n + 1
                and self.projection.shape == (len(self.mean), self.vectors.shape[1])
                and (n == 0 or (self.label.min() >= 0 and self.label.max() < len(codes)))):
            raise ModelFolderError("arrays of inconsistent shapes or labels outside the model's classes")

    @property
    def feature_size(self) -> int:
        return len(self.mean)

    def __len__(self) -> int:
        return len(self.vectors)

    def embed(self, features: np.ndarray) -> np.ndarray:
        """Pooled features (D,) or (N, D) -> unit vectors in the index's reduced space."""
        x = np.atleast_2d(np.asarray(features, np.float32))
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        # einsum, not @: a BLAS call wakes OpenBLAS's threads, which then spin against the interpreter's
        y = np.einsum("nd,dk->nk", x - self.mean, self.projection)
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Cosine distances (N, n) of images' pooled features to every indexed lesion."""
        return 1.0 - np.einsum("nk,mk->nm", self.embed(features), self.vectors)

    def nearest(self, features: np.ndarray, k: int = 8) -> list[SimilarCase]:
        """The ``k`` nearest lesions to one image's pooled features (D,), nearest first."""
        d = self.distances(features)[0]
        k = min(k, len(d))
        chosen = np.argpartition(d, k - 1)[:k] if k < len(d) else np.arange(len(d))
        chosen = chosen[np.lexsort((chosen, d[chosen]))]  # by distance, ties by position: deterministic
        return [self.case(int(i), float(d[i])) for i in chosen]

    def case(self, i: int, distance: float) -> SimilarCase:
        label = int(self.label[i])
        return SimilarCase(str(self.image_id[i]), str(self.lesion_id[i]), self.codes[label], self.names[label],
                           CONFIRMATION.get(str(self.dx_type[i]), str(self.dx_type[i])), round(distance, 4),
                           self.thumbnails[self.offsets[i]:self.offsets[i + 1]].tobytes())

    def vote(self, features: np.ndarray, k: int, class_prior: np.ndarray | None = None) -> np.ndarray:
        """The k nearest lesions' diagnoses as class shares (N, K), each divided by ``class_prior`` (the
        training frequency) and renormalised when given: the neighbours' evidence, as a probability."""
        d = self.distances(features)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
        counts = np.stack([np.bincount(self.label[row], minlength=len(self.codes)) for row in nearest]).astype(float)
        if class_prior is not None:
            counts = counts / np.asarray(class_prior, float)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)


def load_similar_index(config) -> SimilarIndex | None:
    """A model folder's similar-cases index (``files.similar_cases``); None if the folder has none."""
    if config.similar_cases is None:
        return None
    path = config.file("similar_cases")
    try:
        with np.load(path, allow_pickle=False) as stored:
            return SimilarIndex({k: stored[k] for k in stored.files}, config.codes,
                                tuple(label.name for label in config.labels))
    except (OSError, ValueError, KeyError, TypeError, ModelFolderError) as exc:  # numpy's, or the checks above
        raise ModelFolderError(f"{path}: not a readable similar-cases index ({exc})") from exc
