"""Training the patient-context head of a model folder (``context_head.npz``, served by ``classifier.context``)
and measuring what the context adds (issue 19).

    python -m classifier.training.context_head --model model --features runs/features.npz            # validation
    python -m classifier.training.context_head --model model --features runs/features.npz --split test
    python -m classifier.training.context_head --model model --features runs/features.npz --write

The head is one linear layer on the image's pooled features (dropout 0.3; every epoch each image in a random one
of its served views; served, the mean of the views' calibrated probabilities, as for the image head) and the
encoded context (age, sex, body site), trained on the training split with every field withheld at random
(probability 0.5 each, so that any subset of fields, and none, is a case it has seen), class weights
(n_max / n_c) ** 0.5, label smoothing 0.1, AdamW 1e-3 with cosine decay over 30 epochs: the image head's
recipe. Its prior correction and temperature are fitted on validation with full context, as ``export`` fits the
image head's. ``export`` trains it from the features it computes anyway; this command from a feature cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from classifier.config_sections import ContextSettings
from classifier.context import AGE_SIZE, ENCODED_SIZE, SEXES, encode_many
from classifier.errors import exit_status
from classifier.model_folder import ModelConfig, ModelFolderError, read_config, write_config

HEAD_NAME = "context_head.npz"
HEAD_TEXT = ("Dense(K) on [each served view's pooled features (dropout 0.3), encoded context], the mean of five "
             "seeds' heads; served: the mean of the views' calibrated probabilities")
SETTINGS = {"epochs": 30, "batch_size": 64, "learning_rate": 1e-3, "weight_decay": 1e-4, "dropout": 0.3,
            "label_smoothing": 0.1, "class_weight_power": 0.5, "field_drop": 0.5}
FIELDS = {"age": slice(0, AGE_SIZE), "sex": slice(AGE_SIZE, AGE_SIZE + len(SEXES)),
          "site": slice(AGE_SIZE + len(SEXES), ENCODED_SIZE)}
SEEDS = (0, 1, 2, 3, 4)  # the served head is the mean of these seeds' heads (= the mean of their logits)


def withhold(context: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """Encoded contexts (N, C) with each field zeroed (not given) at random with probability ``share``."""
    out = context.copy()
    columns = np.arange(out.shape[1])
    for cols in FIELDS.values():
        out[np.ix_(np.flatnonzero(rng.random(len(out)) < share), columns[cols])] = 0.0
    return out


def only(context: np.ndarray, fields: tuple[str, ...]) -> np.ndarray:
    """Encoded contexts with every field outside ``fields`` withheld."""
    out = np.zeros_like(context)
    for name in fields:
        out[:, FIELDS[name]] = context[:, FIELDS[name]]
    return out


def train_context_head(features: np.ndarray, context: np.ndarray, labels: np.ndarray, num_classes: int,
                       seed: int = 0, settings: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature_kernel (D, K), context_kernel (C, K), bias (K,)) trained as the module docstring says, on
    per-view features (N, V, D)."""
    import keras

    from classifier.training.class_balance import class_weights

    s = {**SETTINGS, **(settings or {})}
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    per_class = class_weights(labels, num_classes, s["class_weight_power"])
    weights = np.array([per_class[int(c)] for c in labels], np.float32)
    n, views, d = features.shape
    f_in = keras.Input((d,), name="features")
    c_in = keras.Input((context.shape[1],), name="context")
    joined = keras.layers.Concatenate()([keras.layers.Dropout(s["dropout"])(f_in), c_in])
    model = keras.Model([f_in, c_in], keras.layers.Dense(num_classes, name="predictions")(joined))
    steps = int(np.ceil(len(labels) / s["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(s["learning_rate"], s["epochs"] * steps)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=s["weight_decay"]),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=s["label_smoothing"]))
    y = np.eye(num_classes, dtype=np.float32)[labels]
    for _ in range(s["epochs"]):  # a new random withholding of fields every epoch
        order = rng.permutation(len(labels))
        chosen = features[order, rng.integers(0, views, size=n)].astype(np.float32)
        arrays = (chosen, withhold(context[order], rng, s["field_drop"]), y[order], weights[order])
        # batch by batch: what fit(shuffle=False) does, without building a tf.data pipeline every epoch
        for start in range(0, n, s["batch_size"]):
            f, c, target, w = (a[start:start + s["batch_size"]] for a in arrays)
            model.train_on_batch([f, c], target, sample_weight=w)
    kernel, bias = model.get_layer("predictions").get_weights()
    return kernel[:d], kernel[d:], bias


def averaged_head(features, context, labels, num_classes: int, seeds=SEEDS):
    """The mean of the heads trained with each seed: for a linear head, the mean of their logits (an ensemble at
    the cost of one head). Seeds move a single head's validation criterion by about a point."""
    heads = [train_context_head(features, context, labels, num_classes, seed) for seed in seeds]
    return tuple(np.mean([h[i] for h in heads], axis=0) for i in range(3))


def fused_logits(head: tuple[np.ndarray, np.ndarray, np.ndarray], features: np.ndarray,
                 context: np.ndarray) -> np.ndarray:
    """Per-view logits (N, V, K) of per-view features (N, V, D) and encoded contexts (N, C)."""
    feature_kernel, context_kernel, bias = head
    return np.einsum("nvd,dk->nvk", features, feature_kernel) + (context @ context_kernel + bias)[:, None]


def calibrate(head, val_features, val_context, y_val, train_counts) -> dict:
    """The head's prior correction, temperature and conformal threshold, fitted on validation with full context
    as ``export`` fits the image head's."""
    from classifier.evaluation.fitting import fit_prior_correction, fit_temperature, mean_probabilities, prior_bias
    from classifier.uncertainty import fit_conformal_threshold

    logits = fused_logits(head, val_features, val_context)
    tau = fit_prior_correction(logits, y_val, train_counts)
    bias = np.round(prior_bias(tau, train_counts), 4)
    temperature = fit_temperature(logits, y_val, bias)
    threshold = fit_conformal_threshold(mean_probabilities(logits, temperature, bias), y_val, 0.9)
    return {"class_bias": bias.tolist(), "temperature": temperature, "prior_correction_tau": tau,
            "conformal_threshold": round(threshold, 6)}


def score(probs: np.ndarray, y: np.ndarray, codes, malignant: np.ndarray, threshold: float | None = None,
          predicted: np.ndarray | None = None) -> dict:
    """The figures of probabilities (and of ``predicted`` decisions, where they are not the most probable class)."""
    from classifier.evaluation.metrics import classification_metrics, malignant_auc
    from classifier.uncertainty import set_metrics

    m = classification_metrics(probs, y, codes, predicted=predicted)
    out = {"criterion": round((m["accuracy"] + m["balanced_accuracy"]) / 2, 4), "accuracy": m["accuracy"],
           "balanced_accuracy": m["balanced_accuracy"], "melanoma_recall": m["melanoma_recall"],
           "melanoma_auc": m["per_class"]["mel"]["auc"] if "mel" in m["per_class"] else None,
           "macro_auc": m["macro_auc"], "malignant_auc": malignant_auc(probs, y, malignant)}
    if threshold is not None:
        sets = set_metrics(probs, y, threshold)
        out |= {"set_coverage": sets["coverage"], "set_size": sets["mean_set_size"]}
    return out


def write_head(config: ModelConfig, head, calibration: dict) -> ModelConfig:
    """Write ``context_head.npz`` into the config's folder; returns the config with it and its ``context`` section
    (``calibration``: :func:`calibrate`'s)."""
    from classifier.context import AGE_RANGE, SEXES, SITES

    feature_kernel, context_kernel, bias = head
    np.savez(config.folder / HEAD_NAME, feature_kernel=feature_kernel.astype(np.float32),
             context_kernel=context_kernel.astype(np.float32), bias=bias.astype(np.float32))
    return config.with_file("context_head", HEAD_NAME).with_sections(context=ContextSettings(
        head=HEAD_TEXT,
        inputs={"age": f"years, {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} (encoded as age / 100 and 'given')",
                "sex": list(SEXES), "site": list(SITES)},
        training={**SETTINGS, "split": "train", "note": "each field withheld at random (field_drop)"},
        **calibration,
        fitted_on="validation split with full context: prior correction (tau maximising (accuracy + balanced "
                  "accuracy) / 2), temperature (NLL), conformal threshold (90% coverage)"))


def context_arrays(split: dict) -> np.ndarray:
    return encode_many(split["age"], split["sex"], split["localization"]).astype(np.float32)


def compare(folder: Path, cache: Path, split: str = "val", seeds=SEEDS) -> list[dict]:
    """Image only (as served) against the context heads of single seeds (full context, withheld) and their mean
    (the served head: full context, each field alone, none), on ``split``; calibration always fitted on
    validation."""
    from classifier.explain import served, softmax
    from classifier.training.feature_cache import load_cache_split

    config = read_config(folder)
    codes, malignant = config.codes, np.array(config.labels.malignant)
    parts = {name: load_cache_split(cache, name, folder if name == "train" else None)
             for name in {"train", "val", split}}
    x = {name: p["features"] for name, p in parts.items()}
    c = {name: context_arrays(p) for name, p in parts.items()}
    y = {name: p["label"] for name, p in parts.items()}
    counts = np.bincount(y["train"], minlength=len(codes)).astype(float)
    probs, decisions = served(config.calibration, parts[split]["logits"])
    rows = [{"model": "image only, as served", "seed": None,
             **score(probs, y[split], codes, malignant, config.conformal.threshold, decisions)}]
    started = time.time()
    heads = {seed: train_context_head(x["train"], c["train"], y["train"], len(codes), seed) for seed in seeds}
    seconds = round((time.time() - started) / len(seeds), 1)
    heads["mean"] = tuple(np.mean([h[i] for h in heads.values()], axis=0) for i in range(3))
    subsets = {"with age, sex and site": ("age", "sex", "site"), "with age only": ("age",), "with sex only": ("sex",),
               "with site only": ("site",), "context withheld": ()}
    for seed, head in heads.items():
        fitted = calibrate(head, x["val"], c["val"], y["val"], counts)
        for name, fields in subsets.items():
            if seed != "mean" and fields not in (("age", "sex", "site"), ()):
                continue
            probs = softmax(fused_logits(head, x[split], only(c[split], fields)), fitted["temperature"],
                            np.array(fitted["class_bias"])).mean(axis=1)
            label = f"mean of seeds {seeds[0]}-{seeds[-1]}" if seed == "mean" else f"seed {seed}"
            rows.append({"model": f"context head ({label}), {name}", "seed": seed,
                         "seconds": seconds * (len(seeds) if seed == "mean" else 1),
                         **score(probs, y[split], codes, malignant, fitted["conformal_threshold"])})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=Path("model"))
    p.add_argument("--features", type=Path, required=True, help="feature cache of the model's graph")
    p.add_argument("--split", choices=("val", "test"), default="val", help="where to measure")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--write", action="store_true", help="train (the mean of the seeds' heads) and write it into the "
                   "model folder")
    p.add_argument("--record", action="store_true", help="store the measured figures in the model's config.json")
    args = p.parse_args(argv)
    if args.write:
        from classifier.training.feature_cache import load_cache_split

        config = read_config(args.model)
        train, val = load_cache_split(args.features, "train", args.model), load_cache_split(args.features, "val")
        counts = np.bincount(train["label"], minlength=len(config.codes)).astype(float)
        head = averaged_head(train["features"], context_arrays(train), train["label"], len(config.codes),
                             tuple(args.seeds))
        fitted = calibrate(head, val["features"], context_arrays(val), val["label"], counts)
        write_config(write_head(config, head, fitted))
        read_config(args.model)
        print(f"wrote {args.model / HEAD_NAME}", file=sys.stderr)
        return 0
    rows = compare(args.model, args.features, args.split, tuple(args.seeds))
    for row in rows:
        print(json.dumps(row))
    if args.record:
        record(args.model, rows, args.split, f"python -m classifier.training.context_head --model MODEL "
                                            f"--features FEATURES --split {args.split} --record")
    return 0


def record(folder: Path, rows: list[dict], split: str, command: str) -> None:
    """Store the image-only and the served context head's figures (full context, withheld) in config.json."""
    config = read_config(folder)
    if config.context is None:
        raise ModelFolderError(f"{folder} has no context head to record figures for")
    keys = ("accuracy", "balanced_accuracy", "melanoma_recall", "melanoma_auc", "macro_auc", "malignant_auc",
            "set_coverage", "set_size")
    chosen = {"image_only": rows[0]}
    for row in rows:
        if row["seed"] == "mean":
            chosen[row["model"].split(", ", 1)[1].replace(" ", "_").replace(",", "")] = row
    measured = {name: {k: row[k] for k in keys} for name, row in chosen.items()}
    write_config(config.with_sections(context=replace(config.context, measured={
        "split": split, "measured_with": command, **measured})))


if __name__ == "__main__":
    sys.exit(exit_status(main))
