"""Explanations and qualifiers of a prediction: probabilities from logits, class-activation heatmaps and the
cheap image checks of the "not what I was trained on" warning (the model's own out-of-distribution scores are
in :mod:`classifier.ood`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Cheap image checks, in the units of the prepared (size x size) uint8 image. Dermatoscopic images
# are coloured, textured skin: a near-uniform picture or one without colour is not one of them.
MIN_PIXEL_STD = 6.0
MIN_COLOURFULNESS = 6.0
MAX_NEIGHBOUR_DIFFERENCE = 20.0  # mean |difference| of adjacent pixels: noise, not a photograph of skin


def softmax(logits: np.ndarray, temperature: float = 1.0, class_bias=None) -> np.ndarray:
    """softmax((logits + class_bias) / temperature): the one place probabilities are made from logits."""
    z = np.asarray(logits, dtype=np.float64)
    if class_bias is not None:
        z = z + np.asarray(class_bias, dtype=np.float64)
    z = z / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decided_classes(view_logits: np.ndarray, temperature: float, decision_bias) -> np.ndarray:
    """The decisions of a model whose prior correction acts on the decision only: per image, the class of the
    views' mean of softmax((logits + decision_bias) / temperature). ``view_logits`` (V, K) for one image, an int;
    (N, V, K) for many, an array of N."""
    return softmax(view_logits, temperature, decision_bias).mean(axis=-2).argmax(axis=-1)


def served(calibration, view_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """What the model serves for per-view logits, with its ``calibration`` section: the views' mean calibrated
    probabilities, and the decisions of a decision-only prior correction, or None when the decision is the most
    probable class. ``view_logits`` (V, K) for one image: (K,) and an int; (N, V, K): (N, K) and (N,)."""
    probs = softmax(view_logits, calibration.temperature, calibration.class_bias).mean(axis=-2)
    if calibration.decision_bias is None:
        return probs, None
    return probs, decided_classes(view_logits, calibration.temperature, calibration.decision_bias)


def colourfulness(image: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness of an RGB uint8 image (0 for grey)."""
    rgb = image.astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def image_check_reasons(image: np.ndarray) -> list[str]:
    """Reasons, readable by a person, why a prepared image does not look dermatoscopic."""
    reasons = []
    pixels = image.astype(np.float32)
    channels = np.ascontiguousarray(pixels.reshape(-1, 3).T)  # a row per channel: 10x faster than a strided std
    if channels.std(axis=1).max() < MIN_PIXEL_STD:
        reasons.append("the image is almost uniform (no lesion or skin texture visible)")
    elif colourfulness(image) < MIN_COLOURFULNESS:
        reasons.append("the image has almost no colour (dermatoscopic images are colour photographs of skin)")
    if np.abs(np.diff(pixels, axis=1)).mean() > MAX_NEIGHBOUR_DIFFERENCE:
        reasons.append("the image looks like noise rather than a photograph")
    return reasons


def cam_heatmap(cam: np.ndarray, class_index: int, size: int) -> np.ndarray:
    """Class-activation map of one class, resized to ``size`` x ``size`` and scaled to 0..1."""
    heat = cam[..., class_index].astype(np.float32)
    heat = heat - heat.min()
    if heat.max() > 0:
        heat = heat / heat.max()
    return np.asarray(Image.fromarray(heat).resize((size, size), Image.BICUBIC)).clip(0, 1)


HEAT_FLOOR = 0.35  # below this fraction of the map's maximum the image is left untinted
HEAT_MAX_ALPHA = 0.6  # the warmest spot is still 40% image, so the lesion stays visible under it


def _warm_colours(weight: np.ndarray) -> np.ndarray:
    """Yellow (weight 0) to red (weight 1) as float RGB."""
    yellow, red = np.array([255.0, 220.0, 0.0]), np.array([220.0, 0.0, 0.0])
    return yellow + weight[..., None] * (red - yellow)


def overlay(image: np.ndarray, heatmap: np.ndarray, floor: float = HEAT_FLOOR,
            max_alpha: float = HEAT_MAX_ALPHA) -> Image.Image:
    """The heatmap as a translucent warm tint over the image the model saw: none below ``floor``, growing to
    ``max_alpha`` at the map's maximum, so the lesion and its borders stay visible everywhere."""
    weight = np.clip((np.asarray(heatmap, np.float32) - floor) / (1 - floor), 0, 1)
    alpha = max_alpha * weight[..., None]
    blended = (1 - alpha) * image.astype(np.float32) + alpha * _warm_colours(weight)
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))
