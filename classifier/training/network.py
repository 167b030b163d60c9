"""The classifier network: a backbone, GlobalAveragePooling2D, dropout and a 7-way softmax."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from classifier.data import DataError
from classifier.runtime.keras import HEAD_LAYER
from classifier.training.backbones import (
    b1_features,
    lite1_features,
    load_lite1_imagenet_weights,
    tiny_features,
)


def build_classifier(backbone: str, size: int | None, num_classes: int, imagenet: bool = True, dropout: float = 0.3):
    """The reference architecture on ``backbone`` ('lite1' or 'b1'; 'tiny' for test fixtures), taking (size, size, 3)
    pixels 0..255."""
    inputs = keras.Input((size, size, 3), name="image")  # size None: any square side
    if backbone == "lite1":
        features = lite1_features(inputs)
    elif backbone == "b1":
        features = b1_features(inputs, imagenet)
    elif backbone == "tiny":
        features = tiny_features(inputs)
    else:
        raise ValueError(f"unknown backbone {backbone!r}; choose lite1 or b1")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name=HEAD_LAYER)(x)
    model = keras.Model(inputs, outputs, name=f"ham10000_{backbone}")
    if backbone == "lite1" and imagenet:
        load_lite1_imagenet_weights(model)
    return model


def average_weights(model, files: list[Path]) -> list[np.ndarray]:
    """The element-wise mean of several weights files of ``model``'s architecture (``model`` is reused)."""
    weights = []
    for f in files:
        if not Path(f).is_file():
            raise DataError(f"no weights file {f}")
        model.load_weights(f)
        weights.append(model.get_weights())
    return [np.mean(w, axis=0) for w in zip(*weights, strict=True)]
