"""Head recipes compared on cached backbone features (issue 16): minutes per recipe instead of a 2-hour run.

    python -m classifier.training.compare_heads --features runs/features.npz --recipe cw_sqrt
    python -m classifier.training.compare_heads --features runs/features.npz --recipe all --table

A recipe trains a new head (Dropout on the pooled features + Dense(7), or a small MLP) on the TRAIN split's
cached features (``classifier.training.feature_cache``), every epoch each image in one random view of the
eight symmetries of the square, and is scored on VALIDATION exactly as a model folder is served: per-view
logits, the prior correction and the temperature fitted on validation (``classifier.evaluation.fitting``, as
``export`` fits them), the mean of the eight views' calibrated probabilities, then
``classifier.evaluation.metrics.classification_metrics``. Every recipe shares one schedule (AdamW, cosine decay,
label smoothing 0.1, feature dropout 0.3, as the shipped training) and changes one thing. Results append to
``<runs>/results.jsonl``, heads to ``<runs>/<recipe>_seed<N>.npz``.

``--split test`` scores a recipe on the test split instead (calibration still fitted on validation): only for
the winner, once. ``--candidate DIR --model FOLDER`` writes FOLDER's model.keras with the recipe's head into DIR
(with config.json and split.json), for ``python -m classifier export --from-model DIR``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from classifier.errors import exit_status
from classifier.evaluation.fitting import fit_prior_correction, fit_temperature, mean_probabilities, prior_bias
from classifier.evaluation.metrics import classification_metrics
from classifier.labels import CODES
from classifier.training.class_balance import class_weights

SETTINGS = {"epochs": 30, "batch_size": 64, "learning_rate": 1e-3, "weight_decay": 1e-4, "dropout": 0.3,
            "label_smoothing": 0.1}
# name: (description, overrides). "weights": class-weight power (0 none); "sampling": "balanced" draws every
# class equally often; "loss": "focal" (gamma 2); "mixup": Beta(a, a) mixing of features and labels; "hidden":
# a hidden ReLU layer of that width (the head is then no longer a drop-in for the served Dense layer).
RECIPES = {
    "shipped": ("the shipped head as served (the int8 graph's logits), no training", {}),
    "shipped_float": ("the shipped head's Dense weights applied in float to the cached features", {}),
    "cw_sqrt": ("class weights (n_max/n_c)^0.5, as the shipped training", {"weights": 0.5}),
    "balanced": ("class-balanced sampling, no class weights", {"weights": 0.0, "sampling": "balanced"}),
    "focal": ("focal loss, gamma 2, no class weights", {"weights": 0.0, "loss": "focal"}),
    "cw_full": ("full inverse-frequency class weights (n_max/n_c)^1", {"weights": 1.0}),
    "mixup": ("mixup on features (Beta(0.2, 0.2)) with class weights ^0.5", {"weights": 0.5, "mixup": 0.2}),
    "mlp": ("2-layer MLP head (1280-256-7, ReLU, dropout 0.3) with class weights ^0.5",
            {"weights": 0.5, "hidden": 256}),
    "isic": ("class weights ^0.5, training split + the 14,853 ISIC 2019 images (84 px) of HAM10000's classes",
             {"weights": 0.5, "extra": "all"}),
    "isic_mel": ("class weights ^0.5, training split + the 3,409 ISIC 2019 melanomas (84 px)",
                 {"weights": 0.5, "extra": "mel"}),
    # "jpeg": the cached features of one random JPEG re-compression of each training image (feature_cache --jpeg)
    # join every batch, with this loss weight; "consistency": weight of the mean squared difference between the
    # logits of the picture and of its re-compression (the head's own reaction to JPEG noise).
    "jpeg_aug": ("class weights ^0.5, each training image also as a JPEG re-compression",
                 {"weights": 0.5, "jpeg": 1.0}),
    "jpeg_c1": ("jpeg_aug + logit consistency, weight 1", {"weights": 0.5, "jpeg": 1.0, "consistency": 1.0}),
    "jpeg_c3": ("jpeg_aug + logit consistency, weight 3", {"weights": 0.5, "jpeg": 1.0, "consistency": 3.0}),
    "jpeg_c10": ("jpeg_aug + logit consistency, weight 10", {"weights": 0.5, "jpeg": 1.0, "consistency": 10.0}),
    "jpeg_c30": ("jpeg_aug + logit consistency, weight 30", {"weights": 0.5, "jpeg": 1.0, "consistency": 30.0}),
}
TRAINED = [name for name in RECIPES if not name.startswith("shipped")]


def sample_weights(labels: np.ndarray, num_classes: int, power: float) -> np.ndarray:
    """Per-sample class weights (n_max / n_c) ** power, mean 1 over the samples (the shipped training's rule)."""
    per_class = class_weights(labels, num_classes, power)
    return np.array([per_class[int(c)] for c in labels])


def epoch_samples(labels: np.ndarray, views: int, rng: np.random.Generator, balanced: bool = False):
    """One epoch's (image index, view index) pairs: every image once in a random view, shuffled; with
    ``balanced``, as many draws (with replacement) with every class equally likely."""
    n = len(labels)
    if balanced:
        counts = np.bincount(labels)
        p = 1.0 / counts[labels]
        images = rng.choice(n, size=n, replace=True, p=p / p.sum())
    else:
        images = rng.permutation(n)
    return images, rng.integers(0, views, size=n)


def mixup(x, y, w, rng: np.random.Generator, alpha: float):
    """Mix every sample with a random partner (of the epoch): lam ~ Beta(alpha, alpha) per sample."""
    lam = rng.beta(alpha, alpha, size=len(x)).astype(np.float32)
    partner = rng.permutation(len(x))
    return (lam[:, None] * x + (1 - lam[:, None]) * x[partner], lam[:, None] * y + (1 - lam[:, None]) * y[partner],
            lam * w + (1 - lam) * w[partner])


def serve_and_score(val_logits: np.ndarray, y_val: np.ndarray, train_counts: np.ndarray,
                    eval_logits: np.ndarray | None = None, y_eval: np.ndarray | None = None) -> dict:
    """Fit the prior correction and the temperature on validation per-view logits (as export does), then
    measure the mean of the views' calibrated probabilities on validation (or on ``eval_logits``)."""
    tau = fit_prior_correction(val_logits, y_val, train_counts)
    bias = prior_bias(tau, train_counts)
    temperature = fit_temperature(val_logits, y_val, bias)
    logits, y = (val_logits, y_val) if eval_logits is None else (eval_logits, y_eval)
    m = classification_metrics(mean_probabilities(logits, temperature, bias), y, CODES)
    return {"criterion": round((m["accuracy"] + m["balanced_accuracy"]) / 2, 4), "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"], "melanoma_recall": m["melanoma_recall"],
            "melanoma_auc": m["per_class"]["mel"]["auc"], "macro_auc": m["macro_auc"], "nll": m["nll"],
            "tau": tau, "temperature": temperature, "n": m["n"]}


def build_head(dim: int, num_classes: int, dropout: float, hidden: int = 0):
    import keras

    inputs = keras.Input((dim,), name="features")
    x = keras.layers.Dropout(dropout, name="dropout")(inputs)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(dropout, name="hidden_dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes, name="predictions")(x))  # logits


def build_paired_head(dim: int, num_classes: int, dropout: float):
    """The linear head on a picture's features and its re-compression's: outputs both logits (dropout applied)
    and their difference without dropout (the bias cancels), which the consistency loss drives to 0."""
    import keras

    clean, jpeg = keras.Input((dim,), name="features"), keras.Input((dim,), name="jpeg_features")
    drop, dense = keras.layers.Dropout(dropout, name="dropout"), keras.layers.Dense(num_classes, name="predictions")
    difference = keras.layers.Subtract(name="difference")([dense(jpeg), dense(clean)])
    return keras.Model([clean, jpeg], [dense(drop(clean)), dense(drop(jpeg)), difference])


def train_head(features: np.ndarray, labels: np.ndarray, recipe: dict, seed: int = 0,
               jpeg_features: np.ndarray | None = None):
    """A Keras head trained on (N, V, D) features as the recipe says; returns the model (logits out). Recipes with
    "jpeg" train on (features, jpeg_features) pairs: the same image and view, re-compressed."""
    import keras

    settings = {**SETTINGS, **recipe}
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    n, views, dim = features.shape
    k = len(CODES)
    weights = sample_weights(labels, k, settings.get("weights", 0.0))
    paired = settings.get("jpeg") is not None
    if paired and jpeg_features is None:
        raise ValueError("this recipe needs the JPEG features (feature_cache --jpeg; compare_heads --jpeg)")
    model = (build_paired_head(dim, k, settings["dropout"]) if paired
             else build_head(dim, k, settings["dropout"], settings.get("hidden", 0)))
    steps = int(np.ceil(n / settings["batch_size"]))
    schedule = keras.optimizers.schedules.CosineDecay(settings["learning_rate"], settings["epochs"] * steps)
    if settings.get("loss") == "focal":
        loss = keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=2.0, from_logits=True,
                                                         label_smoothing=settings["label_smoothing"])
    else:
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=settings["label_smoothing"])
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=settings["weight_decay"])
    if paired:
        model.compile(optimizer=optimizer, loss=[loss, loss, keras.losses.MeanSquaredError()],
                      loss_weights=[1.0, settings["jpeg"], settings.get("consistency", 0.0)])
    else:
        model.compile(optimizer=optimizer, loss=loss)
    for epoch in range(settings["epochs"]):  # numpy arrays per epoch: much less overhead than a PyDataset here
        images, views_chosen = epoch_samples(labels, views, rng, settings.get("sampling") == "balanced")
        x = features[images, views_chosen].astype(np.float32)
        y = np.eye(k, dtype=np.float32)[labels[images]]
        w = weights[images].astype(np.float32)
        if settings.get("mixup"):
            x, y, w = mixup(x, y, w, rng, settings["mixup"])
        if paired:
            x, y = [x, jpeg_features[images, views_chosen].astype(np.float32)], [y, y, np.zeros_like(y)]
        model.fit(x, y, sample_weight=w, batch_size=settings["batch_size"], epochs=epoch + 1, initial_epoch=epoch,
                  shuffle=False, verbose=0)
    return model


def jpeg_reaction(cache: dict, head, temperature: float, class_bias) -> dict:
    """The served probabilities' largest class change when the picture arrives as each JPEG delivery instead of
    its decoded pixels (``feature_cache --deliveries``): p95 per picture group and delivery, their mean and the
    largest change, as ``scripts.measure_invariance`` reports them. ``head`` None: the cached (served) logits."""
    logits = cache["deliveries_logits"] if head is None else head_logits(head, cache["deliveries_features"])
    probs = np.stack([mean_probabilities(logits[:, k], temperature, class_bias) for k in range(logits.shape[1])], 1)
    shifts = np.abs(probs[:, 1:] - probs[:, :1]).max(axis=2)  # (P, kinds)
    groups = cache["deliveries_group"]
    p95 = [np.quantile(shifts[groups == g, k], 0.95) for g in np.unique(groups) for k in range(shifts.shape[1])]
    changed = int((probs[:, 1:].argmax(2) != probs[:, :1].argmax(2)).sum())
    return {"jpeg_mean_p95": round(float(np.mean(p95)), 4), "jpeg_max": round(float(shifts.max()), 4),
            "jpeg_top_changed": changed}


def head_logits(head, features: np.ndarray) -> np.ndarray:
    """Logits (..., K) of features (..., D), e.g. per view (N, V, D): a (kernel, bias) pair in numpy, or a Keras
    model."""
    if isinstance(head, tuple):
        kernel, bias = head
        return np.einsum("...d,dk->...k", features, kernel) + bias
    flat = features.reshape(-1, features.shape[-1])
    return head.predict(flat, batch_size=4096, verbose=0).reshape(*features.shape[:-1], -1)


def shipped_head(model_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The Dense(7) kernel and bias of a model folder's model.keras."""
    import keras

    from classifier.model_folder import read_config

    model = keras.models.load_model(read_config(model_folder).file("keras"), safe_mode=True, compile=False)
    kernel, bias = model.get_layer("predictions").get_weights()
    return kernel, bias


def run_recipe(cache: dict, name: str, seed: int | str, model_folder: Path, runs: Path, split: str = "val") -> dict:
    """Train (or take) the recipe's head, score it; the head is saved beside the results. Seed "mean" is the
    mean of seeds' linear heads (:func:`average_heads`), which is the mean of their logits."""
    started = time.time()
    y_train, y_val = cache["train_label"], cache["val_label"]
    counts = np.bincount(y_train, minlength=len(CODES))
    head_file = runs / f"{name}_seed{seed}.npz"
    if name == "shipped":
        val_logits, eval_logits = cache["val_logits"], cache.get(f"{split}_logits")
    else:
        if name == "shipped_float":
            head = shipped_head(model_folder)
        elif head_file.is_file() and (split != "val" or seed == "mean"):  # the head chosen on validation
            with np.load(head_file) as stored:
                head = (stored["kernel"], stored["bias"])
        else:
            x_train, y_fit = cache["train_features"], y_train
            extra = RECIPES[name][1].get("extra")
            if extra:  # outside images: training only (feature_cache --extra), never validation or test
                keep = np.ones(len(cache["extra_label"]), bool) if extra == "all" else (
                    cache["extra_label"] == CODES.index(extra))
                x_train = np.concatenate([x_train, cache["extra_features"][keep]])
                y_fit = np.concatenate([y_train, cache["extra_label"][keep]])
            model = train_head(x_train, y_fit, RECIPES[name][1], seed, cache.get("train_jpeg_features"))
            head = model
            if "hidden" not in RECIPES[name][1]:  # a linear head: the served Dense layer's weights
                head = tuple(model.get_layer("predictions").get_weights())
                np.savez(head_file, kernel=head[0], bias=head[1])
        val_logits = head_logits(head, cache["val_features"])
        eval_logits = head_logits(head, cache[f"{split}_features"])
    scored = serve_and_score(val_logits, y_val, counts, eval_logits, cache[f"{split}_label"])
    if "deliveries_logits" in cache and split == "val":
        scored |= jpeg_reaction(cache, None if name == "shipped" else head, scored["temperature"],
                                prior_bias(scored["tau"], counts))
    return {"recipe": name, "seed": seed, "split": split, **scored, "seconds": round(time.time() - started, 1),
            "description": RECIPES[name][0], "settings": {**SETTINGS, **RECIPES[name][1]}}


def average_heads(runs: Path, name: str, seeds: list[int]) -> Path:
    """Write the mean of the seeds' linear heads of a recipe as ``<name>_seedmean.npz``."""
    heads = [np.load(runs / f"{name}_seed{seed}.npz") for seed in seeds]
    out = runs / f"{name}_seedmean.npz"
    np.savez(out, kernel=np.mean([h["kernel"] for h in heads], 0), bias=np.mean([h["bias"] for h in heads], 0),
             seeds=np.array(seeds))
    return out


def write_candidate(model_folder: Path, kernel: np.ndarray, bias: np.ndarray, out: Path, note: dict) -> Path:
    """``model_folder``'s model.keras with the "predictions" layer set to (kernel, bias), saved in ``out`` beside
    its split.json and a config.json that lists only those two files (no LiteRT graph, calibration or metrics
    yet: ``python -m classifier export --from-model out`` writes them)."""
    import keras

    from classifier.config_sections import Calibration, OutOfDistribution
    from classifier.model_folder import file_entry, read_config, write_config

    config = read_config(model_folder)
    model = keras.models.load_model(config.file("keras"), safe_mode=True, compile=False)
    model.get_layer("predictions").set_weights([kernel, bias])
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    files = {"keras": "model.keras"}
    if config.file("split") is not None:
        shutil.copy(config.file("split"), out / "split.json")
        files["split"] = "split.json"
    write_config(replace(config, folder=out).with_sections(
        files={role: file_entry(out, name) for role, name in files.items()}, calibration=Calibration(),
        ood=OutOfDistribution(score=config.ood.score), training={**config.training, "head_retrained": note},
        metrics=None, conformal=None, context=None, similar_cases=None, quality=None))
    read_config(out)  # still a valid folder
    return out


def table(results: list[dict], commands: dict[str, str]) -> str:
    """The markdown table of results.jsonl: per recipe the mean of its seeds' heads where scored (``--average``),
    else seed 0; the criterion's range over the seeds; wall time summed over the seeds' trainings; the JPEG
    reaction where ``--deliveries`` measured it."""
    rows = ["| recipe | command | wall time | val (acc + bal. acc) / 2 (seeds) | balanced acc. | melanoma recall | "
            "melanoma AUC | macro AUC | accuracy | NLL | tau | JPEG mean p95 / max |", "| --- " * 12 + "|"]
    for name in RECIPES:
        runs = [r for r in results if r["recipe"] == name and r["split"] == "val"]
        if not runs:
            continue
        seeded = {x["seed"]: x for x in runs if x["seed"] != "mean"}  # the latest of each seed
        means = [x for x in runs if x["seed"] == "mean"]
        r = means[-1] if means else seeded.get(0, runs[-1])
        spread = sorted(x["criterion"] for x in seeded.values())
        seeds = f" ({min(spread):.4f}–{max(spread):.4f})" if len(spread) > 1 else ""
        label = f"{name}{' (mean of the seeds)' if means else ''}: {r['description']}"
        jpeg = f"{r['jpeg_mean_p95']:.4f} / {r['jpeg_max']:.4f}" if "jpeg_mean_p95" in r else ""
        seconds = sum(x["seconds"] for x in seeded.values()) or r["seconds"]
        rows.append(f"| {label} | `{commands.get(name, '')}` | {seconds:.0f} s | "
                    f"{r['criterion']:.4f}{seeds} | {r['balanced_accuracy']:.4f} | {r['melanoma_recall']:.4f} | "
                    f"{r['melanoma_auc']:.4f} | {r['macro_auc']:.4f} | {r['accuracy']:.4f} | {r['nll']:.4f} | "
                    f"{r['tau']} | {jpeg} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--features", type=Path, default=Path("runs/features.npz"), help="feature_cache's output")
    p.add_argument("--recipe", nargs="+", default=["all"], help=f"{', '.join(RECIPES)} or all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--average", action="store_true", help="also score the mean of the seeds' heads (seed mean)")
    p.add_argument("--split", choices=("val", "test"), default="val", help="scored split (test: the winner, once)")
    p.add_argument("--model", type=Path, help="model folder of the shipped head (default: the cache's)")
    p.add_argument("--runs", type=Path, default=Path("runs/heads"), help="results.jsonl and the heads")
    p.add_argument("--extra", type=Path, help="feature_cache --extra output (recipes isic, isic_mel)")
    p.add_argument("--jpeg", type=Path, help="feature_cache --jpeg output (recipes jpeg_*)")
    p.add_argument("--deliveries", type=Path, help="feature_cache --deliveries output: adds each head's JPEG "
                   "reaction on validation pictures")
    p.add_argument("--table", action="store_true", help="print the markdown table of results.jsonl")
    p.add_argument("--candidate", type=Path, help="write the (first) recipe's seed head into this model folder")
    args = p.parse_args(argv)

    from classifier.training.feature_cache import load_cache

    args.runs.mkdir(parents=True, exist_ok=True)
    results_file = args.runs / "results.jsonl"
    recipes = list(RECIPES) if args.recipe == ["all"] else args.recipe
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    started = time.time()
    cache = load_cache(args.features)
    if args.extra is not None:
        cache |= {k: v for k, v in load_cache(args.extra).items() if k.startswith("extra_")}
    elif not (args.candidate or args.table) and any(RECIPES[r][1].get("extra") for r in recipes):
        p.error("recipes isic and isic_mel need --extra (python -m classifier.training.feature_cache --extra ...)")
    for extra_file, prefix in ((args.jpeg, "train_jpeg_"), (args.deliveries, "deliveries_")):
        if extra_file is not None:
            cache |= {k: v for k, v in load_cache(extra_file).items() if k.startswith(prefix)}
    if "train_jpeg_image_id" in cache and not np.array_equal(cache["train_jpeg_image_id"], cache["train_image_id"]):
        p.error(f"{args.jpeg} does not hold the same training images as {args.features}")
    training = not (args.candidate or args.table)
    if training and any(RECIPES[r][1].get("jpeg") is not None for r in recipes) and "train_jpeg_features" not in cache:
        p.error("recipes jpeg_* need --jpeg (python -m classifier.training.feature_cache --jpeg ...)")
    model_folder = args.model or Path(str(cache["model"]))
    print(f"loaded {args.features} in {time.time() - started:.0f} s (features of {model_folder})", file=sys.stderr)
    if args.candidate:
        name, seed = recipes[0], "mean" if args.average else args.seeds[0]
        with np.load(args.runs / f"{name}_seed{seed}.npz") as stored:
            kernel, bias = stored["kernel"], stored["bias"]
        note = {"recipe": name, "seed": seed, "description": RECIPES[name][0],
                "settings": {**SETTINGS, **RECIPES[name][1]}, "features": str(args.features),
                "command": f"python -m classifier.training.compare_heads --features {args.features} --recipe {name} "
                           f"--seeds {' '.join(map(str, args.seeds))}" + (" --average" if args.average else "")
                           + (f" --jpeg {args.jpeg}" if args.jpeg else "")}
        print(write_candidate(model_folder, kernel, bias, args.candidate, note))
        return 0
    if not args.table:
        for name in recipes:
            for seed in args.seeds if name in TRAINED else [0]:
                result = run_recipe(cache, name, seed, model_folder, args.runs, args.split)
                with open(results_file, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(json.dumps({k: v for k, v in result.items() if k != "settings"}), flush=True)
            if args.average and name in TRAINED and "hidden" not in RECIPES[name][1] and args.split == "val":
                average_heads(args.runs, name, args.seeds)
                result = run_recipe(cache, name, "mean", model_folder, args.runs, args.split)
                with open(results_file, "a") as f:
                    f.write(json.dumps(result) + "\n")
                print(json.dumps({k: v for k, v in result.items() if k != "settings"}), flush=True)
    if args.table and results_file.is_file():
        results = [json.loads(line) for line in results_file.read_text().splitlines()]
        commands = {name: f"python -m classifier.training.compare_heads --features {args.features} --recipe {name}"
                    + (" --seeds 0 1 2" if name in TRAINED else "") + (" --average" if args.average else "")
                    + (f" --jpeg {args.jpeg}" if args.jpeg and RECIPES[name][1].get("jpeg") else "")
                    + (f" --deliveries {args.deliveries}" if args.deliveries else "") for name in RECIPES}
        print(table(results, commands))
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
