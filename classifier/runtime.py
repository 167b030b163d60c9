"""Inference runtimes behind one interface: image batch -> (logits, class-activation maps, pooled features).
Models exported before the features output existed give None for them.

LiteRT (``model.tflite``) serves by default: it starts in milliseconds and runs several times
faster than Keras on two CPU cores. Keras (``model.keras``, ``classifier.training.keras_runtime``) is the
reference it is checked against, and the fallback when LiteRT is not installed.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from classifier.errors import ArgumentError
from classifier.model_folder import ModelConfig, ModelFolderError

RUNTIMES = ("auto", "litert", "keras")


class LiteRTRuntime:
    name = "litert"

    def __init__(self, config: ModelConfig, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        path = config.file("tflite")
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count() or 1)
        except (ValueError, RuntimeError) as exc:
            raise ModelFolderError(f"{path}: not a loadable LiteRT model ({exc})") from exc
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._batch = 0
        self._lock = threading.Lock()  # one interpreter, one call at a time

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = self._interpreter.get_input_details()[0]["shape"]
            self._interpreter.resize_tensor_input(self._input, [batch, *shape[1:]], strict=False)
            self._interpreter.allocate_tensors()
            outputs = self._interpreter.get_output_details()
            self._cam = next(o for o in outputs if len(o["shape"]) == 4)
            classes = self._cam["shape"][-1]
            flat = [o for o in outputs if len(o["shape"]) == 2]
            self._logits = next(o["index"] for o in flat if o["shape"][-1] == classes)
            self._features = next((o["index"] for o in flat if o["shape"][-1] != classes), None)
            self._cam = self._cam["index"]
            self._batch = batch

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        with self._lock:
            self._resize(len(images))
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(images, dtype=np.float32))
            self._interpreter.invoke()
            get = self._interpreter.get_tensor
            features = None if self._features is None else get(self._features).copy()
            return get(self._logits).copy(), get(self._cam).copy(), features


def open_runtime(config: ModelConfig, runtime: str = "auto"):
    """The requested runtime for a validated model folder ('auto': LiteRT when possible)."""
    runtime = os.environ.get("CLASSIFIER_RUNTIME", runtime) if runtime == "auto" else runtime
    if runtime not in RUNTIMES:
        raise ArgumentError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime in ("auto", "litert") and config.file("tflite") is not None:
        try:
            return LiteRTRuntime(config)
        except ImportError:
            if runtime == "litert":
                raise
    if config.file("keras") is None:
        raise ModelFolderError(f"{config.folder}: no model.keras for the Keras runtime")
    from classifier.training.keras_runtime import KerasRuntime  # TensorFlow: training requirements

    return KerasRuntime(config)
