"""The classifier network: a backbone, GlobalAveragePooling2D, dropout and a 7-way softmax."""

from __future__ import annotations

import keras

from classifier.training.backbones import (
    FEATURE_LAYER,
    b1_features,
    lite1_features,
    load_lite1_imagenet_weights,
    tiny_features,
)

HEAD_LAYER = "predictions"


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


def logits_and_cam_model(model: keras.Model) -> keras.Model:
    """Serving graph of a trained classifier: image -> (logits, class-activation maps, pooled features).

    GlobalAveragePooling followed by Dense is linear, so applying the Dense kernel at every
    location of the last feature maps gives per-location class evidence (the CAM) whose spatial
    mean plus the bias is exactly the logits. No gradients are needed. The pooled features feed the
    feature-space out-of-distribution score.
    """
    features = model.get_layer(FEATURE_LAYER).output
    kernel, bias = model.get_layer(HEAD_LAYER).get_weights()
    cam_layer = keras.layers.Dense(kernel.shape[1], use_bias=False, name="cam")
    cam = cam_layer(features)
    cam_layer.set_weights([kernel])
    pooled = keras.layers.GlobalAveragePooling2D(name="cam_pool")(cam)
    bias_layer = keras.layers.Dense(
        kernel.shape[1], name="logits", kernel_initializer="identity",
        bias_initializer=keras.initializers.Constant(bias),
    )
    logits = bias_layer(pooled)
    bias_layer.trainable = False
    pooled_features = keras.layers.GlobalAveragePooling2D(name="pooled_features")(features)
    return keras.Model(model.input, [logits, cam, pooled_features], name="logits_and_cam")
