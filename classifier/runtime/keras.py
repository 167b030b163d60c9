"""The Keras runtime: ``model.keras`` through TensorFlow, the reference the LiteRT export is checked against
and the fallback when LiteRT is not installed. Same interface as :class:`classifier.runtime.litert.LiteRTRuntime`.
It also builds the serving graph that the export converts to LiteRT (:func:`logits_and_cam_model`). TensorFlow and
Keras are imported when used: serving without them never loads this module's dependencies."""

from __future__ import annotations

import numpy as np

from classifier.model_folder import ModelConfig, ModelFolderError

FEATURE_LAYER = "features"  # the backbone's last feature maps, named so by every backbone
HEAD_LAYER = "predictions"  # the softmax Dense layer on their pooled mean


class KerasRuntime:
    name = "keras"

    def __init__(self, config: ModelConfig):
        import keras
        import tensorflow as tf

        path = config.file("keras")
        try:
            self.model = keras.models.load_model(path, safe_mode=True, compile=False)
        except Exception as exc:  # Keras raises many types for a bad archive
            raise ModelFolderError(f"{path}: not a loadable Keras model ({exc})") from exc
        serving = logits_and_cam_model(self.model)
        self._fn = tf.function(lambda x: serving(x, training=False), reduce_retracing=True)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        logits, cam, features = self._fn(np.asarray(images, dtype=np.float32))
        return logits.numpy(), cam.numpy(), features.numpy()


def logits_and_cam_model(model):
    """Serving graph of a trained classifier: image -> (logits, class-activation maps, pooled features).

    GlobalAveragePooling followed by Dense is linear, so applying the Dense kernel at every
    location of the last feature maps gives per-location class evidence (the CAM) whose spatial
    mean plus the bias is exactly the logits. No gradients are needed. The pooled features feed the
    feature-space out-of-distribution score.
    """
    import keras

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
