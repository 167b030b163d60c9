"""The served backbone's pooled features of every view, computed once and cached, so that a head recipe can be
compared in minutes instead of a 2-hour backbone run (issue 16).

    python -m classifier.training.feature_cache --model runs/e8/model --data DATA --out runs/features.npz

For every train, val and test image of the model's ``split.json``: the per-view pooled features (N, V, D) and
the per-view logits of the shipped head (N, V, K) of the eight symmetries of the square
(``classifier.tta.VIEWS``), run through the model folder's own runtime (the int8 LiteRT graph), exactly as
``Classifier.run_each`` prepares and batches them; plus labels, lesion ids and the metadata (age, sex,
localization, dx_type). Each split is written to ``<out stem>.<split>.npz`` when done (a stopped run continues from
there), then all of them into ``<out>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from classifier.data import SPLITS, DataError, in_split, load_split, read_metadata, resolve_images
from classifier.errors import exit_status
from classifier.labels import CODES
from classifier.model_folder import ModelFolderError, read_config, sha256_of
from classifier.tta import VIEWS

META = ("age", "sex", "localization", "dx_type")


def view_outputs(classifier, images, views: tuple[str, ...] = tuple(VIEWS), batch_size: int = 32,
                 progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-view logits (N, V, K) and pooled features (N, V, D) of images (paths, arrays, ...), through the served
    batch path (``Classifier.run_each``). A bad image raises its error: a cache needs them all."""
    images = list(images)
    logits, features = [], []
    for item in classifier.run_each(images, views=views, batch_size=batch_size):
        if isinstance(item, Exception):
            raise item
        if item[3] is None:
            raise ModelFolderError("this model has no pooled-features output; export it again")
        logits.append(item[1])
        features.append(item[3])
        if progress is not None and (len(logits) % max(batch_size // len(views), 1) == 0 or len(logits) == len(images)):
            progress(len(logits), len(images))
    if not logits:
        return np.zeros((0, len(views), len(classifier.labels)), np.float32), np.zeros((0, len(views), 0), np.float32)
    return np.stack(logits), np.stack(features)


def split_arrays(records, split: dict[str, str], name: str) -> dict[str, np.ndarray]:
    """Ids (sorted, as export orders them), labels, lesion ids and metadata of one split."""
    chosen = sorted(in_split(records, split, name), key=lambda r: r.image_id)
    return {
        "image_id": np.array([r.image_id for r in chosen], dtype=str),
        "lesion_id": np.array([r.lesion_id for r in chosen], dtype=str),
        "label": np.array([CODES.index(r.dx) for r in chosen], dtype=np.int64),
        "age": np.array([np.nan if r.age is None else r.age for r in chosen], dtype=np.float32),
        "sex": np.array([r.sex for r in chosen], dtype=str),
        "localization": np.array([r.localization for r in chosen], dtype=str),
        "dx_type": np.array([r.dx_type for r in chosen], dtype=str),
    }


def load_cache_split(path: Path, split: str, model: Path | None = None) -> dict[str, np.ndarray]:
    """One split's arrays of a cache written by :func:`cache_features` (its ``.SPLIT.npz`` part, else the merged
    file). With ``model``, first check that the cache was computed with that folder's ``model.tflite``: heads and
    indexes fitted on another graph's features would be silently wrong."""
    if model is not None:
        merged = Path(path) if Path(path).is_file() else None
        if merged is not None:
            with np.load(merged, allow_pickle=False) as stored:
                graph = str(stored["tflite_sha256"]) if "tflite_sha256" in stored.files else None
            if graph and graph != sha256_of(read_config(model).file("tflite")):
                raise DataError(f"{path} was computed with another graph than {model}'s model.tflite")
    part = Path(path).with_suffix(f".{split}.npz")
    source = part if part.is_file() else Path(path)
    prefix = "" if part.is_file() else f"{split}_"
    with np.load(source, allow_pickle=False) as stored:
        return {k[len(prefix):]: stored[k] for k in stored.files if k.startswith(prefix)}


def cache_features(model: Path, data: Path, out: Path, splits: tuple[str, ...] = ("val", "test", "train"),
                   batch_size: int = 32, log=print) -> Path:
    """Compute (or continue) the cache described in the module docstring; returns ``out``."""
    from classifier.api import Classifier

    classifier = Classifier(model)
    tflite = classifier.config.file("tflite")
    digest = sha256_of(tflite) if tflite is not None else ""
    records = read_metadata(data)
    split = load_split(classifier.config.file("split"))
    views = tuple(VIEWS)
    merged: dict[str, np.ndarray] = {}
    for name in splits:
        part = out.with_suffix(f".{name}.npz")
        if part.is_file():
            with np.load(part, allow_pickle=False) as stored:
                arrays = dict(stored)
            log(f"{name}: {len(arrays['label'])} images from {part}")
        else:
            arrays = split_arrays(records, split, name)
            paths = resolve_images([r for r in records if r.image_id in set(arrays["image_id"])], data)
            started, last = time.time(), [0.0]

            def progress(done, total, name=name, started=started, last=last):
                now = time.time()
                if now - last[0] > 30 or done == total:
                    last[0] = now
                    log(f"{name}: {done}/{total} images, {now - started:.0f} s")

            arrays["logits"], arrays["features"] = view_outputs(
                classifier, [paths[i] for i in arrays["image_id"]], views, batch_size, progress)
            arrays["seconds"] = np.array(time.time() - started)
            np.savez(part, **arrays)
        for key, value in arrays.items():
            merged[f"{name}_{key}"] = value
    np.savez(out, views=np.array(views), codes=np.array(CODES), model=str(model), tflite_sha256=digest, **merged)
    log(f"wrote {out}")
    return out


def cache_extra(model: Path, folder: Path, out: Path, batch_size: int = 32, log=print) -> Path:
    """Per-view features and logits of an outside training set laid out as ``images/<id>.jpg`` plus
    ``labels.csv`` (``image_id,dx``), e.g. ``../shared/data/isic2019_84``; labels outside the model's classes
    (ISIC 2019's ``scc``) are left out. Written as ``extra_*`` arrays, for training heads only."""
    import csv

    from classifier.api import Classifier

    classifier = Classifier(model)
    with open(folder / "labels.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dx"] in CODES]
    rows.sort(key=lambda r: r["image_id"])
    started, last = time.time(), [0.0]

    def progress(done, total):
        now = time.time()
        if now - last[0] > 60 or done == total:
            last[0] = now
            log(f"extra: {done}/{total} images, {now - started:.0f} s")

    logits, features = view_outputs(classifier, [folder / "images" / f"{r['image_id']}.jpg" for r in rows],
                                    tuple(VIEWS), batch_size, progress)
    np.savez(out, extra_image_id=np.array([r["image_id"] for r in rows], dtype=str),
             extra_label=np.array([CODES.index(r["dx"]) for r in rows], dtype=np.int64),
             extra_logits=logits, extra_features=features, extra_source=str(folder), model=str(model),
             seconds=np.array(time.time() - started))
    log(f"wrote {out}")
    return out


def cache_jpeg(model: Path, data: Path, out: Path, split_name: str = "train", seed: int = 0,
               batch_size: int = 32, log=print) -> Path:
    """Per-view features and logits of one random re-compression of every image of a split
    (``robustness.random_jpeg``), in the order of :func:`split_arrays`: the pairs a head is trained on to answer
    a JPEG as it answers the same picture (``compare_heads`` recipe ``jpeg``). Written as ``<split>_jpeg_*``."""
    from PIL import Image

    from classifier.api import Classifier
    from classifier.evaluation.robustness import random_jpeg

    classifier = Classifier(model)
    records = read_metadata(data)
    ids = split_arrays(records, load_split(classifier.config.file("split")), split_name)["image_id"]
    paths = resolve_images([r for r in records if r.image_id in set(ids)], data)
    rng = np.random.default_rng(seed)

    def copy_of(image_id):
        with Image.open(paths[image_id]) as opened:
            return random_jpeg(opened.convert("RGB"), rng)

    started = time.time()
    logits, features = [], []
    for start in range(0, len(ids), 256):  # the encoded copies of a slice at a time
        chunk = [copy_of(i) for i in ids[start:start + 256]]
        chunk_logits, chunk_features = view_outputs(classifier, chunk, tuple(VIEWS), batch_size)
        logits.append(chunk_logits)
        features.append(chunk_features)
        log(f"{split_name} jpeg: {start + len(chunk)}/{len(ids)} images, {time.time() - started:.0f} s")
    np.savez(out, **{f"{split_name}_jpeg_image_id": ids, f"{split_name}_jpeg_logits": np.concatenate(logits),
                     f"{split_name}_jpeg_features": np.concatenate(features)}, model=str(model), seed=seed,
             seconds=np.array(time.time() - started))
    log(f"wrote {out}")
    return out


def cache_deliveries(model: Path, data: Path, out: Path, split_name: str = "val", pictures: int = 30,
                     batch_size: int = 32, log=print) -> Path:
    """Per-view features and logits of the invariance figures' pictures (``robustness.invariance_groups``) as
    their decoded upright pixels and as each JPEG delivery (``robustness.JPEG_KINDS``), so that a head's JPEG
    reaction is measured as ``scripts.measure_invariance`` measures it, without the graph. Written as
    ``deliveries_*``: features (P, 1 + len(JPEG_KINDS), V, D), logits, kinds, groups."""
    from PIL import Image

    from classifier.api import Classifier
    from classifier.evaluation.robustness import JPEG_KINDS, deliveries, invariance_groups

    classifier = Classifier(model)
    groups = invariance_groups(data, load_split(classifier.config.file("split")), pictures, split_name)
    started = time.time()
    logits, features, names = [], [], []
    for group, group_paths in groups.items():
        for path in group_paths:
            with Image.open(path) as opened:
                upright = opened.convert("RGB")
            sent = deliveries(upright)
            item_logits, item_features = view_outputs(classifier, [np.asarray(upright)] + [sent[k] for k in JPEG_KINDS],
                                                      tuple(VIEWS), batch_size)
            logits.append(item_logits)
            features.append(item_features)
            names.append(group)
        log(f"deliveries: {group} done, {time.time() - started:.0f} s")
    np.savez(out, deliveries_logits=np.stack(logits), deliveries_features=np.stack(features),
             deliveries_group=np.array(names), deliveries_kinds=np.array(("array",) + JPEG_KINDS),
             model=str(model), split=split_name, seconds=np.array(time.time() - started))
    log(f"wrote {out}")
    return out


def load_cache(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as stored:
        return dict(stored)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("model"), help="model folder (its runtime and split.json)")
    p.add_argument("--data", type=Path, required=True, help="HAM10000 folder")
    p.add_argument("--extra", type=Path, help="instead: an outside training set (images/ + labels.csv, e.g. "
                   "../shared/data/isic2019_84), cached as extra_* arrays")
    p.add_argument("--jpeg", action="store_true", help="instead: one random JPEG re-compression of every "
                   "training image (train_jpeg_* arrays)")
    p.add_argument("--deliveries", action="store_true", help="instead: the validation pictures of the invariance "
                   "figures, upright and as each JPEG delivery (deliveries_* arrays)")
    p.add_argument("--out", type=Path, default=Path("runs/features.npz"))
    p.add_argument("--splits", nargs="+", choices=SPLITS, default=["val", "test", "train"])
    p.add_argument("--batch-size", type=int, default=32, help="views per runtime call")
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def log(message):
        print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)

    started = time.time()
    if args.jpeg:
        cache_jpeg(args.model, args.data, args.out, batch_size=args.batch_size, log=log)
    elif args.deliveries:
        cache_deliveries(args.model, args.data, args.out, batch_size=args.batch_size, log=log)
    elif args.extra is not None:
        cache_extra(args.model, args.extra, args.out, args.batch_size, log)
    else:
        cache_features(args.model, args.data, args.out, tuple(args.splits), args.batch_size, log)
    log(f"done in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
