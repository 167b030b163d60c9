"""Training: the reference recipe (augmentation, Adam from 1e-3, ReduceLROnPlateau, early stopping)
with per-epoch checkpoints, a log file and resume after a stop.

Work files (in ``--work``, default ``runs/train``): ``split.json``, ``train.log`` (progress),
``history.jsonl`` (one line of validation metrics per epoch), ``last.keras`` (model and optimizer,
for resume), ``best.weights.h5`` and ``state.json``.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from classifier.data import DataError, in_split, lesion_split, load_split, read_metadata, resolve_images, save_split
from classifier.errors import ArgumentError
from classifier.evaluation.metrics import classification_metrics
from classifier.labels import CODES
from classifier.preprocessing import load_and_prepare
from classifier.preprocessing import shades_of_gray as shades_of_gray_step
from classifier.training.class_balance import class_weights


def log_line(work: Path, message: str) -> None:
    """Print ``message`` with the time and append it to the run's train.log."""
    line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
    print(line, flush=True)
    with open(work / "train.log", "a") as f:
        f.write(line + "\n")


def load_arrays(paths: list[Path], size: int, shades_of_gray: int | None = None) -> np.ndarray:
    """Decode and prepare images in parallel with the shared preprocessing function."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return np.stack(list(pool.map(lambda p: load_and_prepare(p, size, shades_of_gray), paths)))


def augmentation(seed: int = 0):
    """The reference's augmentation (±20% shifts, shear, flips, nearest fill) plus what real uploads
    need: any rotation (a lesion has no 'up'), zoom in and out (users send centre crops and other
    framings) and mild brightness/contrast jitter (other cameras and lighting)."""
    import keras

    L = keras.layers
    return keras.Sequential([
        L.RandomFlip("horizontal_and_vertical", seed=seed),
        L.RandomRotation(0.5, fill_mode="nearest", seed=seed + 1),
        L.RandomTranslation(0.2, 0.2, fill_mode="nearest", seed=seed + 2),
        L.RandomShear(x_factor=0.15, y_factor=0.15, fill_mode="nearest", seed=seed + 3),
        L.RandomZoom((-0.3, 0.2), fill_mode="nearest", seed=seed + 4),
        L.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 5),
        L.RandomContrast(0.15, value_range=(0, 255), seed=seed + 6),
    ], name="augmentation")


def gentle_augmentation(seed: int = 0):
    """Geometry that keeps the lesion real: the eight symmetries of the square, mild reflect-filled
    zoom/translation, light colour jitter and, sometimes, the softness of an upsampled 150-px source.
    Works on a batch of float pixels 0..255 of any square size, on any Keras backend (keras.ops only)."""
    import keras

    L, ops = keras.layers, keras.ops
    geometry = keras.Sequential([
        L.RandomFlip("horizontal_and_vertical", seed=seed),
        L.RandomZoom((-0.15, 0.1), fill_mode="reflect", seed=seed + 1),
        L.RandomTranslation(0.06, 0.06, fill_mode="reflect", seed=seed + 2),
        L.RandomBrightness(0.08, value_range=(0, 255), seed=seed + 3),
        L.RandomContrast(0.1, value_range=(0, 255), seed=seed + 4),
    ], name="gentle_augmentation")
    seeds = keras.random.SeedGenerator(seed + 5)

    def augment(images):
        # a transpose for half of the batches, with the flips above, gives all eight symmetries of the square
        transpose = ops.cast(keras.random.uniform((), seed=seeds) < 0.5, images.dtype)
        images = transpose * ops.transpose(images, (0, 2, 1, 3)) + (1 - transpose) * images
        images = geometry(images, training=True)
        batch = ops.shape(images)[0]
        saturation = keras.random.uniform((batch, 1, 1, 1), 0.85, 1.15, seed=seeds)
        grey = ops.mean(images, axis=-1, keepdims=True)
        images = grey + (images - grey) * saturation
        side = ops.shape(images)[1]
        soft = ops.image.resize(ops.image.resize(images, (150, 150), antialias=True), (side, side),
                                interpolation="bicubic")
        use_soft = ops.cast(keras.random.uniform((batch, 1, 1, 1), seed=seeds) < 0.25, images.dtype)
        return images * (1 - use_soft) + soft * use_soft

    return augment


def recompressed(images: np.ndarray, rng: np.random.Generator, share: float,
                 qualities: tuple[int, int] = (60, 95)) -> np.ndarray:
    """A copy of a uint8 batch in which about ``share`` of the images went through JPEG at a random quality: the
    same picture arrives re-encoded (uploads, screenshots, the data set's own q~75), and the answer should not
    follow the compression noise (issue 16: quality 95 moved it by up to 0.2)."""
    import io

    from PIL import Image

    images = images.copy()
    for i in np.flatnonzero(rng.random(len(images)) < share):
        buffer = io.BytesIO()
        Image.fromarray(images[i]).save(buffer, "JPEG", quality=int(rng.integers(qualities[0], qualities[1] + 1)))
        with Image.open(buffer) as decoded:
            images[i] = np.asarray(decoded.convert("RGB"))
    return images


def pair_consistency_loss(label_smoothing: float, weight: float):
    """Cross-entropy plus ``weight`` times the Jensen-Shannon divergence between the probabilities of each
    picture and of its re-compression (AugMix's consistency loss, Hendrycks et al. 2020), for batches whose second
    half is the first half re-encoded (``training_batches`` with ``pairs``): the network is taught to answer a JPEG
    as it answers the picture (issue 16)."""
    import keras

    @keras.saving.register_keras_serializable(package="classifier")
    class PairConsistency(keras.losses.Loss):
        def __init__(self, label_smoothing=0.0, weight=0.0, name="pair_consistency", **kwargs):
            super().__init__(name=name, **kwargs)
            self.label_smoothing, self.weight = label_smoothing, weight

        def call(self, y_true, y_pred):
            ops = keras.ops
            cross_entropy = keras.losses.categorical_crossentropy(y_true, y_pred, label_smoothing=self.label_smoothing)
            half = ops.shape(y_pred)[0] // 2
            p, q = ops.clip(y_pred[:half], 1e-7, 1.0), ops.clip(y_pred[half:], 1e-7, 1.0)
            mean_log = ops.log((p + q) / 2)
            divergence = ops.sum(p * (ops.log(p) - mean_log) + q * (ops.log(q) - mean_log), axis=-1) / 2
            return cross_entropy + self.weight * ops.concatenate([divergence, divergence])

        def get_config(self):
            return {**super().get_config(), "label_smoothing": self.label_smoothing, "weight": self.weight}

    return PairConsistency(label_smoothing, weight)


def training_batches(x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, side: int, augment,
                     sample_weights: np.ndarray, seed: int = 0, jpeg_share: float = 0.0, pairs: bool = False,
                     shades_of_gray: int | None = None):
    """Shuffled, resized, augmented training batches (images, one-hot labels, sample weights) as a
    ``keras.utils.PyDataset``: numpy in, keras.ops inside, so the loop runs on any Keras backend (TensorFlow
    here; JAX on a GPU machine without TensorFlow). With ``pairs``, a batch is ``batch_size // 2`` augmented
    pictures followed by the same pictures re-encoded as JPEG (quality 70-95), for ``pair_consistency_loss``.
    With ``shades_of_gray`` (a power), every picture gets that colour constancy last, after augmentation and
    re-encoding, as serving applies it after decoding: ``x`` holds the uncorrected prepared pictures."""
    import keras

    ops = keras.ops

    def corrected(pictures: np.ndarray) -> np.ndarray:
        if shades_of_gray:
            pictures = np.stack([shades_of_gray_step(picture, shades_of_gray) for picture in pictures])
        return pictures.astype("float32")

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=2, use_multiprocessing=False)  # threads: the next batch while a step runs
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(x))
            self.onehot = np.eye(num_classes, dtype="float32")[y]
            self.per_batch = max(batch_size // 2, 1) if pairs else batch_size

        def __len__(self):
            return math.ceil(len(x) / self.per_batch)

        def __getitem__(self, index):
            chosen = self.order[index * self.per_batch:(index + 1) * self.per_batch]
            pixels = recompressed(x[chosen], self.rng, jpeg_share) if jpeg_share else x[chosen]
            images = ops.convert_to_tensor(pixels, "float32")
            if images.shape[1] != side:
                images = ops.image.resize(images, (side, side), antialias=True)
            images = ops.clip(augment(images), 0, 255)
            weights = sample_weights[chosen].astype("float32")
            if pairs:
                pictures = np.round(ops.convert_to_numpy(images)).astype(np.uint8)
                encoded = recompressed(pictures, self.rng, 1.0, (70, 95))
                return (corrected(np.concatenate([pictures, encoded])),
                        np.concatenate([self.onehot[chosen]] * 2), np.concatenate([weights, weights]))
            if shades_of_gray:
                return corrected(np.round(ops.convert_to_numpy(images)).astype(np.uint8)), self.onehot[chosen], weights
            return ops.convert_to_numpy(images), self.onehot[chosen], weights

        def on_epoch_end(self):
            self.order = self.rng.permutation(len(x))

    return Batches()


def train(
    data_dir: Path,
    backbone: str = "lite1",
    epochs: int = 20,
    resume: bool = False,
    work_dir: Path = Path("runs/train"),
    size: int = 160,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    imagenet: bool = True,
    schedule: str = "plateau",
    lr_patience: int = 1,
    stop_patience: int = 4,
    augment: str = "reference",
    optimizer: str = "adam",
    weight_decay: float = 0.004,
    label_smoothing: float = 0.0,
    class_weight_power: float = 0.5,
    small_size: int | None = None,
    small_epochs: int = 0,
    init_from: list[Path] | None = None,
    jpeg_share: float = 0.0,
    jpeg_consistency: float = 0.0,
    shades_of_gray: int | None = None,
) -> Path:
    """Train (or resume) the run in ``work_dir`` (checkpoints, logs, split) and return ``work_dir``; the export
    (:func:`classifier.training.export_model.export_run`) turns it into a model folder, as the ``train`` command
    does next where TensorFlow is installed.

    ``schedule`` 'plateau' is the reference's: Adam from ``learning_rate``, x0.3 after ``lr_patience`` epochs
    without a better validation loss, early stopping after ``stop_patience`` epochs without a better validation
    score. 'cosine': one warm-up epoch to ``learning_rate``, then cosine decay to zero over the remaining
    epochs, no early stopping (the best epoch on validation is still the one kept). 'constant': ``learning_rate``
    throughout, no early stopping: the stochastic-weight-averaging phase of a run continued from ``init_from``
    (weights files of the same backbone, averaged), whose epochs ``export --average-last`` then averages.
    """
    if schedule not in ("plateau", "cosine", "constant"):
        raise ArgumentError(f"unknown schedule {schedule!r}; choose plateau, cosine or constant")
    import keras

    from classifier.training.network import average_weights, build_classifier

    missing = [str(f) for f in init_from or [] if not Path(f).is_file()]
    if missing and not resume:  # checked before minutes of image loading
        raise DataError(f"--init-from: no weights file {', '.join(missing)}")
    work = Path(work_dir)
    state_path = work / "state.json"
    if state_path.exists() and not resume:
        raise DataError(f"{work} already holds a training run: pass --resume to continue it, or use another --work")
    work.mkdir(parents=True, exist_ok=True)
    settings = dict(data=str(data_dir), backbone=backbone, epochs=epochs, size=size, batch_size=batch_size,
                    learning_rate=learning_rate, imagenet=imagenet, schedule=schedule, lr_patience=lr_patience,
                    stop_patience=stop_patience, augment=augment, optimizer=optimizer, weight_decay=weight_decay,
                    label_smoothing=label_smoothing, class_weight_power=class_weight_power,
                    small_size=small_size, small_epochs=small_epochs if small_size else 0,
                    init_from=[str(p) for p in init_from or []], jpeg_share=jpeg_share,
                    jpeg_consistency=jpeg_consistency, shades_of_gray_power=shades_of_gray)
    if resume and state_path.exists():
        state = json.loads(state_path.read_text())
        settings = {**state["settings"], "epochs": epochs}
        backbone, size, batch_size = settings["backbone"], settings["size"], settings["batch_size"]
        augment, small_size = settings.get("augment", "reference"), settings.get("small_size")
        small_epochs, class_weight_power = settings.get("small_epochs", 0), settings.get("class_weight_power", 0.5)
        jpeg_share, jpeg_consistency = settings.get("jpeg_share", 0.0), settings.get("jpeg_consistency", 0.0)
        shades_of_gray = settings.get("shades_of_gray_power")
    else:
        state = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "best_val_loss": math.inf, "lr_wait": 0,
                 "stopped": False, "settings": settings}

    records = read_metadata(data_dir)
    split_path = work / "split.json"
    if not split_path.exists():
        save_split(lesion_split(records), split_path)
    split = load_split(split_path)
    paths = resolve_images(records, data_dir)
    label_of = {r.image_id: CODES.index(r.dx) for r in records}
    ids = {s: [r.image_id for r in in_split(records, split, s)] for s in ("train", "val")}
    log_line(work, f"loading {len(ids['train'])} train and {len(ids['val'])} validation images at {size}px")
    x_train = load_arrays([paths[i] for i in ids["train"]], size)
    y_train = np.array([label_of[i] for i in ids["train"]])
    x_val = load_arrays([paths[i] for i in ids["val"]], size, shades_of_gray)  # validated as served
    y_val = np.array([label_of[i] for i in ids["val"]])
    k = len(CODES)

    if state["epoch"] >= epochs or state["stopped"]:
        log_line(work, f"training already finished at epoch {state['epoch']}")
    else:
        if jpeg_consistency:
            loss = pair_consistency_loss(label_smoothing, jpeg_consistency)  # also registers it for the load below
        else:
            loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        if resume and (work / "last.keras").exists():
            model = keras.models.load_model(work / "last.keras", safe_mode=True)
            log_line(work, f"resuming after epoch {state['epoch']}")
        else:
            # Progressive resizing needs a model that takes any size; the exported one is fixed to ``size``.
            model = build_classifier(backbone, None if small_size else size, k, imagenet=imagenet and not init_from)
            if init_from:
                model.set_weights(average_weights(model, init_from))
                log_line(work, f"starting from the mean of {', '.join(map(str, init_from))}")
            steps = math.ceil(len(x_train) / batch_size)
            rate = learning_rate if schedule != "cosine" else keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=max(steps * (epochs - 1), 1), warmup_target=learning_rate, warmup_steps=steps)
            opt = (keras.optimizers.AdamW(rate, weight_decay=weight_decay) if optimizer == "adamw"
                   else keras.optimizers.Adam(rate))
            model.compile(optimizer=opt, metrics=["accuracy"], loss=loss)
        if augment == "gentle":
            augment_batch = gentle_augmentation()
        else:
            layers = augmentation()
            augment_batch = lambda images: layers(images, training=True)  # noqa: E731
        weights = class_weights(y_train, k, power=class_weight_power)
        log_line(work, "class weights " + json.dumps({CODES[i]: round(w, 3) for i, w in weights.items()}))
        sample_weights = np.array([weights[int(label)] for label in y_train])
        log_line(work, f"Keras backend: {keras.backend.backend()}")
        checkpoint = _epoch_checkpoint_class()(work, state, x_val, y_val)
        phases = [(small_size, small_epochs), (size, epochs)] if small_size else [(size, epochs)]
        for side, phase_end in phases:
            if state["epoch"] < phase_end and not state["stopped"]:
                log_line(work, f"epochs {state['epoch'] + 1}-{phase_end} at {side}px")
                batches = training_batches(x_train, y_train, k, batch_size, side, augment_batch, sample_weights,
                                           seed=state["epoch"], jpeg_share=jpeg_share, pairs=jpeg_consistency > 0,
                                           shades_of_gray=shades_of_gray)
                model.fit(batches, epochs=phase_end, initial_epoch=state["epoch"], verbose=0,
                          callbacks=[checkpoint])

    return work


def _epoch_checkpoint_class():
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        """Validation metrics, ReduceLROnPlateau, early stopping and checkpoints, all resumable."""

        def __init__(self, work: Path, state: dict, x_val, y_val, lr_factor: float = 0.3, min_lr: float = 1e-6):
            super().__init__()
            self.work, self.state, self.x_val, self.y_val = work, state, x_val, y_val
            self.lr_factor, self.min_lr = lr_factor, min_lr
            self.started = time.time()

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.time()
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if batch % 25 == 0:
                log_line(self.work, f"epoch {self.epoch + 1} step {batch} loss {logs.get('loss', float('nan')):.4f} "
                     f"({time.time() - self.started:.0f}s)")

        def on_epoch_end(self, epoch, logs=None):
            s = self.state
            settings = s["settings"]
            probs = self.model.predict(self.x_val.astype("float32"), batch_size=64, verbose=0)
            m = classification_metrics(probs, self.y_val, CODES)
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            score = (m["accuracy"] + m["balanced_accuracy"]) / 2
            entry = {"epoch": epoch + 1, "seconds": round(time.time() - self.started), "lr": lr,
                     "train_loss": round(float(logs.get("loss", float("nan"))), 4),
                     "train_accuracy": round(float(logs.get("accuracy", float("nan"))), 4),
                     **{f"val_{key}": m[key] for key in ("nll", "accuracy", "balanced_accuracy", "macro_auc",
                                                          "melanoma_recall", "ece")}}
            self.model.save_weights(self.work / f"epoch{epoch + 1}.weights.h5")
            if score > s["best_score"]:
                s["best_score"], s["best_epoch"] = score, epoch + 1
                self.model.save_weights(self.work / "best.weights.h5")
            plateau = settings.get("schedule", "plateau") == "plateau"
            if m["nll"] < s["best_val_loss"] - 1e-4 or not plateau:
                s["best_val_loss"], s["lr_wait"] = m["nll"], 0
            else:
                s["lr_wait"] += 1
                if s["lr_wait"] >= settings["lr_patience"]:
                    new_lr = max(lr * self.lr_factor, self.min_lr)
                    self.model.optimizer.learning_rate.assign(new_lr)
                    s["lr_wait"] = 0
                    entry["lr_reduced_to"] = new_lr
            if plateau and epoch + 1 - s["best_epoch"] >= settings["stop_patience"]:
                self.model.stop_training = True
                s["stopped"] = True
                entry["early_stop"] = True
            s["epoch"] = epoch + 1
            self.model.save(self.work / "last.tmp.keras")
            os.replace(self.work / "last.tmp.keras", self.work / "last.keras")
            (self.work / "state.tmp.json").write_text(json.dumps(s, indent=1))
            os.replace(self.work / "state.tmp.json", self.work / "state.json")
            with open(self.work / "history.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
            log_line(self.work, json.dumps(entry))

    return EpochCheckpoint
