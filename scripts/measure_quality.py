"""Measure the photo-quality advice (classifier/quality.py): false alarms on ordinary HAM10000 images of the test
split, and catches on generated degradations (blur, two stops under and over, lesion shrunk, lesion cut off) of
the bundled examples and, with --data, of test-split images.

    .venv/bin/python -m scripts.measure_quality [--data ../shared/data/ham10000] [--split test] [--limit N]
        [--model model | --measured-only]

The degradations are made here (``degrade``) and used by tests/test_quality.py too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from classifier import quality
from classifier.errors import exit_status
from classifier.preprocessing import load_and_prepare, load_image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SPLIT = ROOT / "model" / "split.json"
SIZE = quality.WORK_SIZE

BLUR_SIGMA = 3.0  # pixels of the 224-pixel view
EXPOSURE_FACTOR = 4.0  # two stops: pixel values times 4 (over) or a quarter (under), clipped
SHRINK_AREA = 0.10  # the picture, lesion and all, shrunk to a tenth of the frame's area
CUT_WINDOW = 0.55  # cut off: a window of this share of the picture's side, one edge through the lesion's centre
SIDES = ("left", "top", "right", "bottom")
# each degradation and the finding that should catch it
KINDS = {"blur": "blur", "darker": "underexposed", "brighter": "overexposed", "shrunk": "lesion_small",
         "cut_off": "lesion_cut_off"}


def blurred(view: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    return np.asarray(Image.fromarray(view).filter(ImageFilter.GaussianBlur(sigma)))


def exposed(view: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(np.rint(view.astype(np.float32) * factor), 0, 255).astype(np.uint8)


def skin_colour(view: np.ndarray) -> np.ndarray:
    """The mean colour of the view's skin: its pixels between the 60th and 90th percentiles of luminance."""
    y = quality.luminance(view)
    low, high = np.percentile(y, [60, 90])
    return view[(y >= low) & (y <= high)].astype(np.float32).mean(axis=0)


def shrunk(view: np.ndarray, area: float = SHRINK_AREA, seed: int = 0) -> np.ndarray:
    """The view scaled down to ``area`` of the frame, centred on skin colour with a little noise."""
    side = round(SIZE * area ** 0.5)
    small = np.asarray(Image.fromarray(view).resize((side, side), Image.LANCZOS), np.float32)
    rng = np.random.default_rng(seed)
    canvas = skin_colour(view).astype(np.float32) + rng.normal(0, 3, (SIZE, SIZE, 3))
    top = (SIZE - side) // 2
    canvas[top:top + side, top:top + side] = small
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def pasted_round(view: np.ndarray, area: float, seed: int = 0) -> np.ndarray:
    """Like ``shrunk`` but with a soft round edge: a pasting the learned size check's threshold was not set on."""
    side = round(SIZE * area ** 0.5)
    small = np.asarray(Image.fromarray(view).resize((side, side), Image.LANCZOS), np.float32)
    canvas = skin_colour(view) + np.random.default_rng(seed).normal(0, 3, (SIZE, SIZE, 3))
    top = (SIZE - side) // 2
    yy, xx = np.mgrid[0:side, 0:side] - (side - 1) / 2
    alpha = np.clip((1.0 - np.sqrt(yy ** 2 + xx ** 2) / (side / 2)) / 0.35, 0, 1)[..., None]
    region = canvas[top:top + side, top:top + side]
    canvas[top:top + side, top:top + side] = alpha * small + (1 - alpha) * region
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


REACH_AREAS = (0.05, 0.10, 0.15, 0.20, 0.30, 0.60)


def reach(sources: list) -> dict:
    """Share flagged lesion_small when pasted (``pasted_round``) at each of REACH_AREAS of the frame."""
    return {f"{area:.0%}": round(float(np.mean([
        "lesion_small" in codes(pasted_round(load_and_prepare(s, SIZE), area, i)) for i, s in enumerate(sources)])), 4)
        for area in REACH_AREAS}


def lesion_centre(view: np.ndarray) -> tuple[float, float]:
    """Where the lesion is, as (row, column) shares of the view: the centroid of darkness below the skin's level
    (the 90th percentile of luminance), so that it does not depend on the detector being measured."""
    y = quality.luminance(view)
    weight = np.clip(np.percentile(y, 90) - y, 0, None) * (y >= quality.VIGNETTE_LEVEL)
    weight = np.where(weight >= 0.5 * weight.max(), weight, 0) if weight.max() > 0 else np.ones_like(y)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    total = weight.sum()
    return float((rows * weight).sum() / total / SIZE), float((cols * weight).sum() / total / SIZE)


def cut_off(source, side: str) -> np.ndarray:
    """A window of the original picture (CUT_WINDOW of its centred square's side) with its ``side`` edge through
    the lesion's centre, kept inside the picture, as the 224-pixel view: the lesion crosses that edge."""
    image = load_image(source)
    square = min(image.size)
    left0, top0 = (image.width - square) / 2, (image.height - square) / 2
    row, col = lesion_centre(load_and_prepare(image, SIZE))
    cy, cx = top0 + row * square, left0 + col * square
    w = CUT_WINDOW * square
    windows = {"left": (cx, cy - w / 2), "right": (cx - w, cy - w / 2), "top": (cx - w / 2, cy),
               "bottom": (cx - w / 2, cy - w)}

    def moved(name):  # how far the window must move to stay inside the picture
        left, top = windows[name]
        return max(-left, left + w - image.width, 0) + max(-top, top + w - image.height, 0)

    # the asked side, or the next one that needs the window moved least
    order = SIDES[SIDES.index(side):] + SIDES[:SIDES.index(side)]
    left, top = windows[min(order, key=lambda name: (round(moved(name)), order.index(name)))]
    left = min(max(left, 0), image.width - w)
    top = min(max(top, 0), image.height - w)
    return load_and_prepare(image.crop((round(left), round(top), round(left + w), round(top + w))), SIZE)


def degrade(source, kind: str, index: int = 0) -> np.ndarray:
    """The 224-pixel view of ``source`` (a path or an image) degraded by ``kind`` (a key of KINDS)."""
    if kind == "cut_off":
        return cut_off(source, SIDES[index % len(SIDES)])
    view = load_and_prepare(source, SIZE)
    if kind == "blur":
        return blurred(view)
    if kind == "darker":
        return exposed(view, 1 / EXPOSURE_FACTOR)
    if kind == "brighter":
        return exposed(view, EXPOSURE_FACTOR)
    if kind == "shrunk":
        return shrunk(view, seed=index)
    raise ValueError(f"unknown degradation {kind!r}")


CLASSIFIER = []  # the model whose findings are measured (set by main; none: the measured checks alone)


def codes(view) -> set[str]:
    """The finding codes for a view: as served by the model (with its learned size check) when one is loaded."""
    if CLASSIFIER:
        return {finding.code for finding in CLASSIFIER[0].classify(view, similar=0).quality}
    return {finding.code for finding in quality.assess(view)}


def measure(sources: list, name: str) -> dict:
    """Alarms on the sources as they are, and for each degradation the share caught by its finding."""
    result = alarms_only(sources, name)
    caught = dict.fromkeys(KINDS, 0)
    for i, source in enumerate(sources):
        for kind, code in KINDS.items():
            caught[kind] += code in codes(degrade(source, kind, i))
    return result | {"caught": {kind: round(caught[kind] / len(sources), 4) for kind in KINDS}}


def test_split_paths(data: Path, split_name: str, limit: int | None) -> list[Path]:
    from classifier.data import in_split, load_split, read_metadata, resolve_images

    split = load_split(SPLIT)
    records = in_split(read_metadata(data), split, split_name)
    paths = resolve_images(records, data)
    chosen = [paths[r.image_id] for r in records]
    if limit:
        chosen = chosen[:: max(len(chosen) // limit, 1)][:limit]
    return chosen


def alarms_only(sources: list, name: str) -> dict:
    alarms: dict[str, int] = {}
    flagged = 0
    for source in sources:
        found = codes(load_and_prepare(source, SIZE))
        flagged += bool(found)
        for code in found:
            alarms[code] = alarms.get(code, 0) + 1
    return {"set": name, "images": len(sources), "false_alarm_rate": round(flagged / len(sources), 4),
            "alarms_by_code": alarms}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="HAM10000 folder: false alarms and catches on a split too")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int, default=300,
                        help="split images to degrade (evenly spaced; all of them are checked for false alarms)")
    parser.add_argument("--model", type=Path, default=ROOT / "model",
                        help="model folder whose served findings are measured (its learned size check included)")
    parser.add_argument("--measured-only", action="store_true", help="the image measures alone, without a model")
    parser.add_argument("--reach", type=int, metavar="N", help="instead: how small a pasting the size check flags, "
                        "on N split pictures pasted with a soft round edge at several shares of the frame")
    args = parser.parse_args(argv)
    if not args.measured_only:
        from classifier.api import Classifier

        CLASSIFIER.append(Classifier(args.model))
    examples = sorted(EXAMPLES.glob("*.jpg"))
    if args.reach:
        if not args.data:
            parser.error("--reach needs --data")
        print(json.dumps({"set": f"{args.split} split, {args.reach} pasted", "flagged_lesion_small":
                          reach(test_split_paths(args.data, args.split, args.reach))}))
        return 0
    results = [measure(examples, "bundled examples")]
    if args.data:
        results.append(alarms_only(test_split_paths(args.data, args.split, None), f"{args.split} split"))
        results.append(measure(test_split_paths(args.data, args.split, args.limit),
                               f"{args.split} split, {args.limit} degraded"))
    print(f"{'set':34s} {'images':>6s} {'false alarms':>12s} " + " ".join(f"{k:>9s}" for k in KINDS))
    for r in results:
        caught = " ".join(f"{r['caught'][k]:9.1%}" if "caught" in r else f"{'':9s}" for k in KINDS)
        print(f"{r['set']:34s} {r['images']:6d} {r['false_alarm_rate']:12.1%} {caught}  {r['alarms_by_code']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(exit_status(main))
