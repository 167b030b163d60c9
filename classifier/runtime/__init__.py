"""Inference runtimes behind one interface: image batch -> (logits, class-activation maps, pooled features).
Models exported before the features output existed give None for them.

LiteRT (``model.tflite``, :mod:`classifier.runtime.litert`) serves by default: it starts in milliseconds and runs
several times faster than Keras on two CPU cores. Keras (``model.keras``, :mod:`classifier.runtime.keras`, needs
TensorFlow) is the reference it is checked against, and the fallback when LiteRT is not installed. A new runtime is
one module here with a class of the same ``run`` interface, and one branch in :func:`open_runtime`.
"""

from __future__ import annotations

import os

from classifier.errors import ArgumentError
from classifier.model_folder import ModelConfig, ModelFolderError
from classifier.runtime.litert import LiteRTRuntime

RUNTIMES = ("auto", "litert", "keras")


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
    from classifier.runtime.keras import KerasRuntime  # TensorFlow: the training requirements

    return KerasRuntime(config)
