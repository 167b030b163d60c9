"""The Keras runtime: ``model.keras`` through TensorFlow, the reference the LiteRT export is checked against
and the fallback when LiteRT is not installed. Same interface as ``classifier.runtime.LiteRTRuntime``."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from classifier.model_folder import ModelConfig, ModelFolderError
from classifier.training.network import logits_and_cam_model


class KerasRuntime:
    name = "keras"

    def __init__(self, config: ModelConfig):
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
