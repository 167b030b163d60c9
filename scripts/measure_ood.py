"""Measure the "not what I was trained on" warning: false alarms on the test split, detections on
clearly foreign images (scikit-image's photos, a clinical photo from PyPI dermapred, solid colours,
noise, a screenshot of text).

    python -m scripts.measure_ood --model model --data ../shared/data/ham10000 [--write]

--write stores the figures in the model's config.json (metrics.ood) and regenerates the model card.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SKIMAGE_PHOTOS = ("astronaut", "camera", "cat", "chelsea", "coffee", "rocket", "hubble_deep_field",
                  "immunohistochemistry", "retina", "horse", "moon", "page", "text", "brick", "grass", "gravel",
                  "colorwheel", "logo", "motorcycle_left", "coins", "clock")


def foreign_images() -> dict[str, np.ndarray | Path]:
    """Named images that are clearly not dermatoscopic."""
    import skimage.data

    images: dict[str, np.ndarray | Path] = {}
    for name in SKIMAGE_PHOTOS:
        try:
            images[f"skimage:{name}"] = np.asarray(getattr(skimage.data, name)())
        except Exception as exc:  # some need a download this machine cannot make
            print(f"skipped skimage {name}: {exc}", file=sys.stderr)
    spec = importlib.util.find_spec("dermapred")
    if spec and spec.submodule_search_locations:
        photo = Path(spec.submodule_search_locations[0]) / "examples" / "example_image.jpg"
        if photo.is_file():
            images["dermapred:clinical_photo"] = photo
    for name, rgb in {"black": (0, 0, 0), "white": (255, 255, 255), "red": (220, 30, 30), "skin": (224, 172, 150),
                      "grey": (128, 128, 128), "blue": (40, 80, 200)}.items():
        images[f"solid:{name}"] = np.full((300, 400, 3), rgb, np.uint8)
    rng = np.random.default_rng(0)
    images["noise:uniform"] = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    images["noise:gaussian"] = rng.normal(128, 40, (300, 400, 3)).clip(0, 255).astype(np.uint8)
    images["noise:gaussian_skin"] = (np.array([224, 172, 150]) + rng.normal(0, 25, (300, 400, 3))).clip(0, 255) \
        .astype(np.uint8)
    images["screenshot:text"] = text_screenshot()
    return images


def text_screenshot() -> np.ndarray:
    image = Image.new("RGB", (640, 400), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=18)
    draw.rectangle((0, 0, 640, 36), fill=(45, 90, 160))
    draw.text((12, 8), "Terminal — results.txt", fill=(255, 255, 255), font=font)
    for i in range(14):
        draw.text((12, 48 + i * 24), f"{i:02d}  The quick brown fox jumps over the lazy dog {i * 7}", fill=(20, 20, 20),
                  font=font)
    return np.asarray(image)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model")
    parser.add_argument("--data", type=Path, help="HAM10000 folder: also measure false alarms on the test split")
    parser.add_argument("--write", action="store_true", help="store the figures in the model folder")
    args = parser.parse_args(argv)

    from classifier.api import load_classifier
    from classifier.data import in_split, load_split, read_metadata, resolve_images

    classifier = load_classifier(args.model)
    rows = []
    for name, image in foreign_images().items():
        p = classifier.classify(image)
        rows.append({"image": name, "warned": bool(p.warning_reasons), "energy": p.ood_score, "label": p.label,
                     "by_energy": any("energy" in r for r in p.warning_reasons),
                     "by_features": any("features" in r for r in p.warning_reasons),
                     "by_image_checks": any("energy" not in r and "features" not in r for r in p.warning_reasons)})
        print(f"{name:32s} warned={rows[-1]['warned']!s:5s} energy={p.ood_score:8.3f} label={p.label}")
    result = {"foreign_images": len(rows), "foreign_detection_rate": round(np.mean([r["warned"] for r in rows]), 4),
              "foreign_detected_by_energy": round(np.mean([r["by_energy"] for r in rows]), 4),
              "foreign_detected_by_features": round(np.mean([r["by_features"] for r in rows]), 4),
              "foreign_detected_by_image_checks": round(np.mean([r["by_image_checks"] for r in rows]), 4),
              "missed": [r["image"] for r in rows if not r["warned"]]}
    if args.data:
        records = read_metadata(args.data)
        split = load_split(classifier.config.file("split"))
        test = in_split(records, split, "test")
        paths = resolve_images(test, args.data)
        warned = [bool(p.warning_reasons) for p in classifier.classify_batch([paths[r.image_id] for r in test])]
        result["test_split_images"] = len(warned)
        result["test_split_false_alarm_rate"] = round(float(np.mean(warned)), 4)
    result["measured_with"] = "python -m scripts.measure_ood --model model --data DATA"
    print(json.dumps(result))
    if args.write:
        from dataclasses import replace

        from classifier.documents.card import write_model_card
        from classifier.model_folder import write_config

        config = classifier.config.with_sections(metrics=replace(classifier.config.metrics, ood=result))
        write_config(config)
        write_model_card(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
