"""Photo-quality advice that comes with an answer: a blurred, too dark or too bright photo, a lesion too small
in the frame or cut off by it. Plain numpy on the model's view of the image (the largest centred square at
224 x 224, :func:`classifier.preprocessing.prepare`), so the findings do not depend on the upload's size.

Every measure is symmetric under the eight symmetries of the square (radial frequency bands, pixel shares,
4-neighbour contours, Otsu's threshold on a histogram), so a turned or mirrored photo gets the same advice.
The thresholds were chosen on the validation split and measured on the test split and on generated
degradations of the bundled examples (``python -m scripts.measure_quality``; docs/quality.md).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

WORK_SIZE = 224  # the view every measure is taken on
GRID = 56  # the lesion is segmented on 4 x 4 block means of the view

# Thresholds: chosen on the validation split, measured on the test split (docs/quality.md).
MIN_SHARPNESS = 0.02  # blur: fine-band over coarse-band power of the spectrum (val: 0.5% of images below 0.027)
MIN_BRIGHT_LEVEL = 100.0  # underexposed: 99th percentile (order statistic) of luminance 0..255 (val: none below 141)
MAX_CLIPPED_SHARE = 0.25  # overexposed: share of the view at luminance >= CLIPPED_LEVEL (val: at most 0.04)
MIN_LESION_SHARE = 0.012  # lesion_small: the lesion's share of the visible frame (val: 1% of images below)
MAX_EDGE_SHARE = 0.55  # lesion_cut_off: share of the lesion's outline on the frame's edge (val: 0.5% above)
CLIPPED_LEVEL = 250.0
VIGNETTE_LEVEL = 40.0  # darker block means connected to the frame's edge are the dermatoscope's dark surround
LESION_DEPTH = 0.8  # the lesion: darker than this share of the skin's level (90th percentile of the visible frame)
MIN_VISIBLE = 0.25  # with less of the frame outside the vignette, the lesion is not measured

FINE_BAND = (0.10, 0.25)  # cycles per pixel of the 224-pixel view
COARSE_BAND = (0.02, 0.06)

MESSAGES = {
    "blur": "The photo is blurred: hold the dermatoscope still, let it focus, and take the photo again.",
    "underexposed": "The photo is too dark: add light or let the camera expose longer, and take it again.",
    "overexposed": "The photo is too bright (washed-out, clipped highlights): reduce the light or exposure, "
                   "and take it again.",
    "lesion_small": "The lesion is small in the frame: move closer or zoom in so that it fills more of the photo.",
    "lesion_cut_off": "The lesion is cut off by the edge of the photo: centre it so that all of it and some "
                      "skin around it are in the frame.",
}


@dataclass(frozen=True)
class QualityFinding:
    """One problem with the photo: ``code``, the measured ``value``, the ``threshold`` it crossed, and what to
    do about it (``message``)."""

    code: str
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def working_view(image) -> np.ndarray:
    """The WORK_SIZE view: a prepared view as it is, any other input through the one preprocessing."""
    from classifier.preprocessing import load_and_prepare, prepare

    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[0] == image.shape[1] \
            and image.shape[2] == 3 and image.dtype == np.uint8:
        if image.shape[0] == WORK_SIZE:
            return image
        return prepare(Image.fromarray(image), WORK_SIZE)
    return load_and_prepare(image, WORK_SIZE)


def luminance(view: np.ndarray) -> np.ndarray:
    return view @ np.array([0.299, 0.587, 0.114], np.float32)



@functools.lru_cache(maxsize=2)
def _bands(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of the fine and coarse radial bands on ``rfft2``'s half spectrum (columns that stand for two
    conjugate coefficients count twice), and the separable Hann window."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.hypot(fy, fx)
    twice = np.full(fx.shape, 2.0)
    twice[0, 0] = 1.0
    if size % 2 == 0:
        twice[0, -1] = 1.0
    fine = ((radius >= FINE_BAND[0]) & (radius < FINE_BAND[1])) * twice
    coarse = ((radius >= COARSE_BAND[0]) & (radius < COARSE_BAND[1])) * twice
    hann = np.hanning(size)
    return fine, coarse, np.outer(hann, hann).astype(np.float32)


def sharpness(y: np.ndarray) -> float:
    """Power of the fine band over power of the coarse band of the windowed luminance: a photo's spectrum
    falls smoothly with frequency whatever it shows, and blur cuts the fine band first."""
    fine, coarse, window = _bands(len(y))
    spectrum = np.fft.rfft2((y - y.mean()) * window)
    power = spectrum.real ** 2 + spectrum.imag ** 2
    return float((power * fine).sum() / max((power * coarse).sum(), 1e-9))


def _grow4(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _edge(shape) -> np.ndarray:
    edge = np.zeros(shape, bool)
    edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
    return edge


def vignette(grid: np.ndarray) -> np.ndarray:
    """Dark block means connected to the frame's edge (the dermatoscope's black surround), grown by one block
    to take in its soft rim."""
    dark = grid < VIGNETTE_LEVEL
    region = dark & _edge(grid.shape)
    while True:
        grown = _grow4(region) & dark
        if (grown == region).all():
            break
        region = grown
    return _grow4(region) if region.any() else region


def smoothed_grid(y: np.ndarray) -> np.ndarray:
    """4 x 4 block means of the luminance, then a 3 x 3 box mean (edges replicated)."""
    n = len(y) // (len(y) // GRID)
    step = len(y) // n
    grid = y[:n * step, :n * step].reshape(n, step, n, step).mean(axis=(1, 3))
    padded = np.pad(grid, 1, mode="edge")
    return sum(padded[i:i + n, j:j + n] for i in range(3) for j in range(3)) / 9.0



def lesion_measures(y: np.ndarray) -> tuple[float, float] | None:
    """The lesion's share of the visible frame and the share of its outline that runs along the frame's edge;
    None when too little of the frame is visible. The lesion is every block of the smoothed grid darker than
    LESION_DEPTH times the skin's level, outside the vignette; its outline is its blocks on the frame's edge
    (cut off) plus those next to visible skin (edges against the vignette count as neither)."""
    grid = smoothed_grid(y)
    visible = ~vignette(grid)
    count = int(visible.sum())
    if count < MIN_VISIBLE * grid.size:
        return None
    lesion = visible & (grid < LESION_DEPTH * np.percentile(grid[visible], 90))
    on_edge = int((lesion & _edge(grid.shape)).sum())
    against_skin = int((lesion & _grow4(visible & ~lesion)).sum())
    return lesion.sum() / count, on_edge / max(on_edge + against_skin, 1)


def measures(image) -> dict[str, float | None]:
    """The raw measures behind the findings (``sharpness``, ``bright_level``, ``clipped_share``,
    ``lesion_share``, ``edge_share``; the last two None when the frame is mostly vignette)."""
    y = luminance(working_view(image))
    lesion = lesion_measures(y)
    flat = y.ravel()
    rank = int(0.99 * (flat.size - 1))
    return {"sharpness": sharpness(y), "bright_level": float(np.partition(flat, rank)[rank]),
            "clipped_share": float((y >= CLIPPED_LEVEL).mean()),
            "lesion_share": None if lesion is None else float(lesion[0]),
            "edge_share": None if lesion is None else float(lesion[1])}


def _finding(code: str, value: float, threshold: float) -> QualityFinding:
    return QualityFinding(code, round(float(value), 4), threshold, MESSAGES[code])


@dataclass(frozen=True)
class SizeProbe:
    """The learned "lesion too small" check of a model folder (``quality_probe.npz``, trained by
    ``classifier.training.quality_probe``): a linear score on the L2-normalised mean pooled features of the
    served views, above ``threshold`` when the picture looks taken from too far."""

    weights: np.ndarray
    bias: float
    threshold: float

    def score(self, features: np.ndarray) -> float:
        f = np.asarray(features, np.float32)
        return float(np.einsum("d,d->", f / max(float(np.sqrt(np.einsum("d,d->", f, f))), 1e-12), self.weights)
                     + self.bias)


def load_size_probe(config) -> SizeProbe | None:
    """A model folder's size probe; None if it has none."""
    from classifier.model_folder import ModelFolderError

    if config.quality.lesion_small_probe is None:
        return None
    path = config.file("quality_probe")
    try:
        with np.load(path, allow_pickle=False) as stored:
            weights, bias = stored["weights"].astype(np.float32), float(stored["bias"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path}: not a readable quality probe ({exc})") from exc
    return SizeProbe(weights, bias, config.quality.lesion_small_probe.threshold)


def assess(image, features: np.ndarray | None = None, probe: SizeProbe | None = None) -> list[QualityFinding]:
    """What is wrong with the photo, if anything: a prepared view (224 x 224 or any square uint8 RGB array) or
    anything ``classify`` accepts. An exposure problem hides the lesion findings (the lesion cannot be told
    from skin in a dark or washed-out photo), and blur is not judged on a washed-out one (no detail left). With
    the model's mean pooled ``features`` and its size ``probe``, a lesion small in the frame is also found when
    the probe's score is above its threshold (the measured share alone cannot tell a far-away photo from a small
    lesion)."""
    m = measures(image)
    found = []
    if m["bright_level"] < MIN_BRIGHT_LEVEL:
        found.append(_finding("underexposed", m["bright_level"], MIN_BRIGHT_LEVEL))
    if m["clipped_share"] > MAX_CLIPPED_SHARE:
        found.append(_finding("overexposed", m["clipped_share"], MAX_CLIPPED_SHARE))
    if m["sharpness"] < MIN_SHARPNESS and not any(f.code == "overexposed" for f in found):
        found.append(_finding("blur", m["sharpness"], MIN_SHARPNESS))
    if any(f.code in ("underexposed", "overexposed") for f in found) or m["lesion_share"] is None:
        return found
    if m["lesion_share"] < MIN_LESION_SHARE:
        found.append(_finding("lesion_small", m["lesion_share"], MIN_LESION_SHARE))
    elif probe is not None and features is not None and (score := probe.score(features)) > probe.threshold:
        found.append(_finding("lesion_small", score, probe.threshold))
    elif m["edge_share"] > MAX_EDGE_SHARE:
        found.append(_finding("lesion_cut_off", m["edge_share"], MAX_EDGE_SHARE))
    return found
