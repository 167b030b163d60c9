"""HAM10000 skin-lesion classifier: research demo only, no clinical or diagnostic value."""

from classifier.labels import CLASSES, DISCLAIMER

__all__ = ["CLASSES", "DISCLAIMER", "Classifier", "Prediction", "load_classifier"]


def __getattr__(name):
    # Lazy so that ``python -m classifier --help`` and the data tools do not load the runtime.
    if name in ("Classifier", "Prediction", "load_classifier"):
        from classifier import api

        return getattr(api, name)
    raise AttributeError(name)
