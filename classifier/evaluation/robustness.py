"""Same lesion, same answer: how far a prediction moves when the same picture arrives turned or mirrored, or in
another file format, size, orientation tag or colour mode. Pillow and numpy only; used by
``scripts/measure_invariance.py`` (the figures in docs/training.md) and by the tests on the bundled examples."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

# The seven other symmetries of the square, as Pillow transposes of the picture a user would send.
SYMMETRIES = {
    "rot90": Image.Transpose.ROTATE_90,
    "rot180": Image.Transpose.ROTATE_180,
    "rot270": Image.Transpose.ROTATE_270,
    "flip_h": Image.Transpose.FLIP_LEFT_RIGHT,
    "flip_v": Image.Transpose.FLIP_TOP_BOTTOM,
    "transpose": Image.Transpose.TRANSPOSE,
    "transverse": Image.Transpose.TRANSVERSE,
}
EXIF_ORIENTATION = 0x0112
# The deliveries that re-compress the picture (the others are the same pixels): issue 16's JPEG figures.
JPEG_KINDS = ("jpeg_q95", "jpeg_q95_2x", "jpeg_exif_orientation", "cmyk_jpeg")


def symmetric_copies(image: Image.Image) -> dict[str, Image.Image]:
    """The picture turned and mirrored: the seven other symmetries of the square."""
    return {name: image.transpose(op) for name, op in SYMMETRIES.items()}


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def deliveries(upright: Image.Image) -> dict[str, object]:
    """The same upright RGB picture as a user might send it: lossless files (PNG, WebP, TIFF), JPEG at quality 95
    at its size and at twice its size, a JPEG whose pixels are stored turned with an EXIF orientation tag that
    turns them back, a CMYK JPEG, the PIL image and the array. Name -> what ``Classifier.classify`` accepts."""
    upright = upright.convert("RGB")
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6  # "turn 90 degrees clockwise to display": the stored pixels are turned the other way
    stored_turned = upright.transpose(Image.Transpose.ROTATE_90)
    return {
        "png": _encoded(upright, "PNG"),
        "webp_lossless": _encoded(upright, "WEBP", lossless=True),
        "tiff": _encoded(upright, "TIFF"),
        "jpeg_q95": _encoded(upright, "JPEG", quality=95),
        "jpeg_q95_2x": _encoded(upright.resize((2 * upright.width, 2 * upright.height), Image.BICUBIC), "JPEG",
                                quality=95),
        "jpeg_exif_orientation": _encoded(stored_turned, "JPEG", quality=95, exif=exif),
        "cmyk_jpeg": _encoded(upright.convert("CMYK"), "JPEG", quality=95),
        "pil_image": upright.copy(),
        "array": np.asarray(upright).copy(),
    }


def random_jpeg(upright: Image.Image, rng: np.random.Generator) -> bytes:
    """One random re-compression of the picture, the noise a head is trained to ignore: JPEG at a quality 80-95,
    at the picture's size or (one in two) twice it, in RGB or (one in four) CMYK."""
    picture = upright.convert("RGB")
    if rng.random() < 0.5:
        picture = picture.resize((2 * picture.width, 2 * picture.height), Image.BICUBIC)
    if rng.random() < 0.25:
        picture = picture.convert("CMYK")
    return _encoded(picture, "JPEG", quality=int(rng.integers(80, 96)))


def split_pictures(data: Path, split: dict[str, str], folder: str, count: int | None, part: str = "test") -> list[Path]:
    """The ``part``-split images of one of the data set's folders, a seeded choice of ``count`` (all: None)."""
    ids = sorted(i for i, s in split.items() if s == part)
    paths = [data / folder / f"{i}.jpg" for i in ids if (data / folder / f"{i}.jpg").is_file()]
    if count is not None and count < len(paths):
        chosen = np.random.default_rng(0).choice(len(paths), count, replace=False)
        paths = [paths[i] for i in sorted(chosen)]
    return paths


def invariance_groups(data: Path, split: dict[str, str], count: int | None,
                      part: str = "test") -> dict[str, list[Path]]:
    """The three picture groups of the invariance figures: ``count`` 200x150 full frames, as many 224x224 centre
    crops, and every 600x450 JPEG of the split."""
    return {"200x150 full frames": split_pictures(data, split, "images_200x150", count, part),
            "224x224 centre crops": split_pictures(data, split, "images_center224", count, part),
            "600x450 JPEGs": split_pictures(data, split, "images_600x450", None, part)}


def probability_vector(prediction) -> np.ndarray:
    """A prediction's probabilities in a fixed (code) order."""
    return np.array([p.probability for p in sorted(prediction.probabilities, key=lambda p: p.code)])


def shift(reference, other) -> tuple[float, bool]:
    """The largest change of any class probability between two predictions, and whether the top class changed."""
    return (float(np.abs(probability_vector(reference) - probability_vector(other)).max()),
            reference.label != other.label)


def summary(shifts: list[float], changed: list[bool]) -> dict:
    """Mean, 95th percentile and largest shift, and how many top classes changed, of a set of comparisons."""
    values = np.asarray(shifts, dtype=np.float64)
    if not len(values):
        return {"n": 0}
    return {"n": len(values), "mean": round(float(values.mean()), 4),
            "p95": round(float(np.quantile(values, 0.95)), 4), "max": round(float(values.max()), 4),
            "top_class_changed": int(np.sum(changed))}


def jpeg_summary(groups: dict[str, dict[str, dict]]) -> dict:
    """The JPEG figure the training rules judge by, from per-group :func:`summary` figures (``groups``: picture
    group -> delivery kind -> summary): the mean over groups and ``JPEG_KINDS`` of the p95 shift, the largest
    shift, and how many top classes changed."""
    cells = [kinds[k] for kinds in groups.values() for k in JPEG_KINDS if kinds.get(k, {}).get("n")]
    if not cells:
        return {"n": 0}
    return {"n": sum(c["n"] for c in cells), "mean_p95": round(float(np.mean([c["p95"] for c in cells])), 4),
            "max": max(c["max"] for c in cells), "top_class_changed": sum(c["top_class_changed"] for c in cells)}


def symmetry_shifts(classifier, image: Image.Image, **options) -> dict[str, tuple[float, bool]]:
    """Each symmetric copy's shift from the picture as it is."""
    reference = classifier.classify(image, **options)
    return {name: shift(reference, classifier.classify(copy, **options))
            for name, copy in symmetric_copies(image).items()}


def delivery_shifts(classifier, upright: Image.Image, **options) -> dict[str, tuple[float, bool]]:
    """Each delivery's shift from the decoded upright pixels (the array) of the same picture."""
    reference = classifier.classify(np.asarray(upright.convert("RGB")), **options)
    return {name: shift(reference, classifier.classify(sent, **options))
            for name, sent in deliveries(upright).items()}
