"""Building the similar-cases index of a model folder (``similar_cases.npz``, read by ``classifier.similar``)
and measuring the nearest-neighbour vote against the softmax (issue 19).

    python -m classifier.training.similar_index --model model --data DATA --features runs/features.npz --write
    python -m classifier.training.similar_index --model model --data DATA --features runs/features.npz --measure

``export`` builds the index from the training features it computes anyway; this command builds it from a
feature cache (``classifier.training.feature_cache``) of the same graph, in seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from classifier.config_sections import SimilarCases
from classifier.data import Record, read_metadata, resolve_images
from classifier.errors import exit_status
from classifier.model_folder import ModelConfig, read_config, write_config
from classifier.preprocessing import load_and_prepare
from classifier.similar import ATTRIBUTION, SimilarIndex
from classifier.training.feature_cache import load_cache_split

INDEX_NAME = "similar_cases.npz"
DIMENSIONS = 128
THUMBNAIL = (72, 72)
THUMBNAIL_QUALITY = 72
DEFAULT_K = 8


def one_per_lesion(image_ids, lesion_ids) -> np.ndarray:
    """Positions of the first image (by image id) of every lesion, in image-id order."""
    order = np.argsort(np.asarray(image_ids), kind="stable")
    seen, chosen = set(), []
    for i in order:
        if lesion_ids[i] not in seen:
            seen.add(lesion_ids[i])
            chosen.append(int(i))
    return np.array(sorted(chosen, key=lambda i: image_ids[i]), dtype=np.int64)


def thumbnail_jpeg(path: Path) -> bytes:
    """The model's view of the picture (largest centred square), small, as JPEG bytes."""
    square = Image.fromarray(load_and_prepare(path, THUMBNAIL[0] * 2)).resize(THUMBNAIL, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    square.save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return out.getvalue()


def index_arrays(features: np.ndarray, records: list[Record], paths: dict[str, Path], codes: tuple[str, ...],
                 dimensions: int = DIMENSIONS) -> dict[str, np.ndarray]:
    """The index of ``records`` (one per lesion, already chosen) and their mean pooled features (N, D)."""
    x = features.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    projection = vt[:dimensions].T  # (D, d)
    y = (x - mean) @ projection
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    thumbs = [thumbnail_jpeg(paths[r.image_id]) for r in records]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in thumbs])]).astype(np.int64)
    return {
        "mean": mean.astype(np.float32), "projection": projection.astype(np.float32),
        "vectors": y.astype(np.float16),
        "image_id": np.array([r.image_id for r in records], dtype=str),
        "lesion_id": np.array([r.lesion_id for r in records], dtype=str),
        "label": np.array([codes.index(r.dx) for r in records], dtype=np.int8),
        "dx_type": np.array([r.dx_type for r in records], dtype=str),
        "thumbnails": np.frombuffer(b"".join(thumbs), dtype=np.uint8), "thumbnail_offsets": offsets,
    }


def write_index(config: ModelConfig, features: np.ndarray, image_ids, records: list[Record],
                paths: dict[str, Path]) -> ModelConfig:
    """Write ``similar_cases.npz`` into the config's folder for the training images ``image_ids`` (one per
    lesion is kept) with their mean pooled features (N, D); returns the config that lists it."""
    by_id = {r.image_id: r for r in records}
    image_ids = [str(i) for i in image_ids]
    chosen = one_per_lesion(image_ids, [by_id[i].lesion_id for i in image_ids])
    arrays = index_arrays(features[chosen], [by_id[image_ids[i]] for i in chosen], paths, config.codes)
    np.savez(config.folder / INDEX_NAME, **arrays)
    return config.with_file("similar_cases", INDEX_NAME).with_sections(similar_cases=SimilarCases(
        k=DEFAULT_K, lesions=int(len(chosen)), from_="training split, the first image (by image id) of every lesion",
        features=f"mean pooled features of the served views, L2-normalised, PCA to {DIMENSIONS} dimensions, "
                 "normalised again (float16)",
        distance="cosine distance (1 - cosine similarity)",
        thumbnails=f"{THUMBNAIL[0]}x{THUMBNAIL[1]} JPEG (quality {THUMBNAIL_QUALITY}) of the model's view",
        attribution=ATTRIBUTION))


def measure_vote(index: SimilarIndex, test: dict, train_counts: np.ndarray, folder: Path,
                 ks=(8, 16, 32)) -> list[dict]:
    """Balanced accuracy and malignant AUC of the k-nearest vote (divided by the training class prior) on the
    test split, beside the served softmax's (the cached logits with the folder's calibration)."""
    from classifier.evaluation.metrics import classification_metrics, malignant_auc
    from classifier.explain import served

    config = read_config(folder)
    codes = config.codes
    prior = train_counts / train_counts.sum()
    y = test["label"]
    features = test["features"].mean(axis=1)
    rows = []

    def row(name, probs, seconds=None, predicted=None):
        m = classification_metrics(probs, y, codes, predicted=predicted)
        rows.append({"scorer": name, "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                     "melanoma_recall": m["melanoma_recall"], "macro_auc": m["macro_auc"],
                     "malignant_auc": malignant_auc(probs, y, config.labels.malignant),
                     **({} if seconds is None else {"ms_per_image": round(seconds * 1000, 3)})})

    probs, decisions = served(config.calibration, test["logits"])
    row("softmax as served", probs, predicted=decisions)
    for k in ks:
        row(f"vote of the {k} nearest training lesions / class prior", index.vote(features, k, prior))
    started = time.perf_counter()
    for f in features[:200]:
        index.nearest(f, DEFAULT_K)
    rows.append({"scorer": f"retrieval of the {DEFAULT_K} nearest (one image, with thumbnails)",
                 "ms_per_image": round((time.perf_counter() - started) / min(200, len(features)) * 1000, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("model"))
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder (thumbnails, diagnoses)")
    p.add_argument("--features", type=Path, required=True, help="feature cache of the model's graph")
    p.add_argument("--write", action="store_true", help="write the index into the model folder")
    p.add_argument("--measure", action="store_true", help="print the vote against the softmax on the test split")
    args = p.parse_args(argv)
    config = read_config(args.model)
    records = read_metadata(args.data)
    train = load_cache_split(args.features, "train", args.model)
    if args.write:
        started = time.time()
        paths = resolve_images([r for r in records if r.image_id in set(train["image_id"])], args.data)
        write_config(write_index(config, train["features"].mean(axis=1), train["image_id"], records, paths))
        read_config(args.model)
        size = (args.model / INDEX_NAME).stat().st_size
        print(f"wrote {args.model / INDEX_NAME} ({size / 1e6:.1f} MB) in {time.time() - started:.0f} s",
              file=sys.stderr)
    if args.measure:
        config = read_config(args.model)
        with np.load(config.file("similar_cases"), allow_pickle=False) as stored:
            index = SimilarIndex(dict(stored), config.codes, tuple(label.name for label in config.labels))
        counts = np.bincount(train["label"], minlength=len(config.codes)).astype(float)
        rows = measure_vote(index, load_cache_split(args.features, "test"), counts, args.model)
        for line in rows:
            print(json.dumps(line))
        write_config(config.with_sections(similar_cases=replace(config.similar_cases, measured={
            "split": "test", "measured_with": "python -m classifier.training.similar_index --model MODEL --data DATA "
                                              "--features FEATURES --measure",
            "softmax": rows[0], "vote_8": rows[1], "vote_16": rows[2], "vote_32": rows[3],
            "retrieval_ms": rows[-1]["ms_per_image"]})))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
