"""Training the learned "lesion too small in the frame" check (``quality_probe.npz``, served by
``classifier.quality``; issue 19).

    python -m classifier.training.quality_probe --model model --data DATA --features runs/features.npz --write

The measured check (the lesion's share of the frame) cannot tell a photo taken from too far from HAM10000's own
small lesions (a vascular dot fills 2-5% of a frame): ``docs/quality.md``. The served network can:
its pooled features see the lesion's scale against the skin's. A logistic regression on the L2-normalised mean
pooled features of the served views separates pictures "taken from farther away" (scaled down to 3-15% of the
frame's area, at a random place) from the training split's pictures as they are AND from the same pictures
scaled to 25-100% of the frame on the same kind of surround: the pasting and the surround (the picture's own skin
colour, flat with noise of a random strength, or the picture itself blurred to a smooth field, with a hard or a
soft round edge) are on both sides, so that only the scale tells them apart. Its threshold is the higher of the
99.5th percentile of the validation split's ordinary pictures (0.5% false alarms there) and the 95th percentile of
validation pictures pasted at 30-100% of the frame (a lesion photographed at a fair distance is rarely told to
come closer). ``scripts/measure_quality.py``
measures it on its own degradation (a tenth of the area, centred, flat surround) of test-split pictures and the
examples; ``docs/quality.md`` also on pastings it never saw.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from classifier.config_sections import SizeProbeSettings
from classifier.errors import exit_status
from classifier.model_folder import ModelConfig, read_config, write_config

PROBE_NAME = "quality_probe.npz"
SMALL_AREAS = (0.03, 0.15)  # "from farther away": the picture's share of the frame
LARGE_AREAS = (0.25, 1.0)  # the same pasting, at a scale that is not too small
FALSE_ALARM_QUANTILE = 0.995
FAIR_AREAS = (0.30, 1.0)  # validation pastings that should not be flagged ...
FAIR_QUANTILE = 0.95  # ... above this share of them
SIZE = 224


def skin_colour(view: np.ndarray) -> np.ndarray:
    """The mean colour of the view's pixels between the 60th and 90th percentiles of luminance."""
    from classifier.quality import luminance

    y = luminance(view)
    low, high = np.percentile(y, [60, 90])
    return view[(y >= low) & (y <= high)].astype(np.float32).mean(axis=0)


def pasted(view: np.ndarray, rng: np.random.Generator, areas: tuple[float, float]) -> np.ndarray:
    """The view scaled to a random share (in ``areas``) of the frame, at a random place, on a surround of its own
    skin (see the module docstring)."""
    size = view.shape[0]
    side = min(size, max(8, round(size * rng.uniform(*areas) ** 0.5)))
    small = np.asarray(Image.fromarray(view).resize((side, side), Image.Resampling.LANCZOS), np.float32)
    skin = skin_colour(view)
    if rng.random() < 0.5:
        canvas = skin + rng.normal(0, rng.uniform(0, 8), (size, size, 3))
    else:  # the picture blurred into a smooth field, shifted to the skin's colour
        field = np.asarray(Image.fromarray(view).filter(ImageFilter.GaussianBlur(rng.uniform(12, 30))), np.float32)
        canvas = field - field.mean(axis=(0, 1)) * 0.5 + skin * 0.5 + rng.normal(0, 2, (size, size, 3))
    top, left = rng.integers(0, size - side + 1, size=2)
    alpha = np.ones((side, side, 1), np.float32)
    if rng.random() < 0.5:  # a soft round edge instead of a square one
        yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2
        alpha = np.clip((1.0 - np.sqrt(yy ** 2 + xx ** 2) / (side / 2)) / 0.35, 0, 1)[..., None]
    region = canvas[top:top + side, left:left + side]
    canvas[top:top + side, left:left + side] = alpha * small + (1 - alpha) * region
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def normalised(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def mean_features(classifier, views: list[np.ndarray]) -> np.ndarray:
    """The served views' mean pooled features of prepared pictures, through the served batch path."""
    out = []
    for item in classifier.run_each(views):
        if isinstance(item, Exception):
            raise item
        out.append(item[3].mean(axis=0))
    return np.stack(out)


def pasted_features(classifier, paths: list[Path], seed: int, areas: tuple[float, float]) -> np.ndarray:
    from classifier.preprocessing import load_and_prepare

    rng = np.random.default_rng(seed)
    return mean_features(classifier, [pasted(load_and_prepare(p, SIZE), rng, areas) for p in paths])


def fit_probe(normal: np.ndarray, farther: np.ndarray, val_normal: np.ndarray, val_fair: np.ndarray) -> dict:
    """Logistic regression (balanced classes) on normalised features, ``normal`` (ordinary and large pastings)
    against ``farther``; the threshold from validation's ordinary pictures and its pictures pasted at a fair
    distance (``val_fair``), as the module docstring says."""
    from sklearn.linear_model import LogisticRegression

    x = normalised(np.concatenate([normal, farther]))
    y = np.r_[np.zeros(len(normal)), np.ones(len(farther))]
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x, y)
    weights, bias = model.coef_[0].astype(np.float32), float(model.intercept_[0])
    ordinary = float(np.quantile(normalised(val_normal) @ weights + bias, FALSE_ALARM_QUANTILE))
    fair = float(np.quantile(normalised(val_fair) @ weights + bias, FAIR_QUANTILE))
    return {"weights": weights, "bias": bias, "threshold": round(max(ordinary, fair), 4)}


def write_probe(config: ModelConfig, probe: dict, note: dict) -> ModelConfig:
    """Write ``quality_probe.npz`` into the config's folder; returns the config with it and its section (``note``:
    ``training_images`` and ``seconds``)."""
    np.savez(config.folder / PROBE_NAME, weights=probe["weights"], bias=np.float32(probe["bias"]))
    settings = SizeProbeSettings(
        threshold=probe["threshold"],
        score="logistic-regression logit on the L2-normalised mean pooled features of the served views",
        threshold_from=f"validation split: the higher of {FALSE_ALARM_QUANTILE:.1%} of ordinary pictures below "
                       f"and {FAIR_QUANTILE:.0%} of 500 pictures pasted at {FAIR_AREAS[0]:.0%}-{FAIR_AREAS[1]:.0%} "
                       "of the frame below", **note)
    return config.with_file("quality_probe", PROBE_NAME).with_sections(
        quality=replace(config.quality, lesion_small_probe=settings))


def build_probe(classifier, train_paths: list[Path], train_features: np.ndarray, val_paths: list[Path],
                val_features: np.ndarray, images: int = 2000) -> dict:
    """The probe for a model: ``train_paths`` / ``val_paths`` in the order of their mean pooled features."""
    chosen = np.random.default_rng(0).choice(len(train_paths), min(2 * images, len(train_paths)), replace=False)
    sources = [train_paths[i] for i in chosen]
    half = len(sources) // 2
    farther = pasted_features(classifier, sources[:half], 1, SMALL_AREAS)
    large = pasted_features(classifier, sources[half:], 2, LARGE_AREAS)
    val_chosen = np.random.default_rng(3).choice(len(val_paths), min(500, len(val_paths)), replace=False)
    fair = pasted_features(classifier, [val_paths[i] for i in val_chosen], 4, FAIR_AREAS)
    probe = fit_probe(np.concatenate([train_features, large]), farther, val_features, fair)
    probe["note"] = {"training_images": f"training split: {len(train_paths)} ordinary and {len(sources) - half} "
                                        f"pasted at {LARGE_AREAS[0]:.0%}-{LARGE_AREAS[1]:.0%} of the frame against "
                                        f"{half} pasted at {SMALL_AREAS[0]:.0%}-{SMALL_AREAS[1]:.0%}"}
    return probe


def main(argv: list[str] | None = None) -> int:
    from classifier.api import Classifier
    from classifier.data import read_metadata, resolve_images
    from classifier.training.feature_cache import load_cache_split

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("model"))
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder")
    p.add_argument("--features", type=Path, required=True, help="feature cache of the model's graph")
    p.add_argument("--images", type=int, default=2000, help="training pictures pasted small, and as many large")
    p.add_argument("--write", action="store_true", help="write the probe into the model folder")
    args = p.parse_args(argv)
    started = time.time()
    train, val = load_cache_split(args.features, "train", args.model), load_cache_split(args.features, "val")
    records = read_metadata(args.data)
    paths = resolve_images([r for r in records if r.image_id in set(train["image_id"]) | set(val["image_id"])],
                           args.data)
    probe = build_probe(Classifier(args.model), [paths[i] for i in train["image_id"]], train["features"].mean(axis=1),
                        [paths[i] for i in val["image_id"]], val["features"].mean(axis=1), args.images)
    seconds = round(time.time() - started)
    print(f"threshold {probe['threshold']} ({seconds} s)", file=sys.stderr)
    if args.write:
        write_config(write_probe(read_config(args.model), probe, {**probe["note"], "seconds": seconds}))
        read_config(args.model)
        print(f"wrote {args.model / PROBE_NAME}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
