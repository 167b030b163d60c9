"""The model options that every surface running a model shares: ``app.py`` and the ``predict``, ``evaluate``
and ``bench`` commands declare ``--model/--revision/--runtime`` with :func:`add_model_arguments` and load the
model they name with :func:`open_model`, so each option means the same everywhere and a model that cannot be
loaded is the same error everywhere (one ``error: cannot load the model: ...`` line, status 2).
"""

from __future__ import annotations

import argparse
import os
import sys

from classifier.api import Classifier, load_classifier
from classifier.errors import ClassifierError
from classifier.runtime import RUNTIMES
from classifier.source import ModelSourceError


def add_model_arguments(parser: argparse.ArgumentParser, revision: bool = True, runtime: bool = True,
                        environ=os.environ) -> None:
    """Declare ``--model`` (and ``--revision``, ``--runtime`` unless turned off), defaulting to ``MODEL_ID`` and
    ``MODEL_REVISION`` in ``environ``."""
    parser.add_argument("--model", default=environ.get("MODEL_ID") or None,
                        help="model folder or Hub repo id (env MODEL_ID; default: the bundled model/)")
    if revision:
        parser.add_argument("--revision", default=environ.get("MODEL_REVISION") or None,
                            help="Hub revision: branch, tag or commit (env MODEL_REVISION; default: main)")
    if runtime:
        parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                            help="inference runtime (default: auto, LiteRT when installed, else Keras)")


def open_model(args: argparse.Namespace) -> Classifier:
    """The classifier of the parsed model options (loaded once per process), with a ``note:`` on stderr when the
    source says something (e.g. a cached copy used offline). ModelSourceError ``cannot load the model: ...``
    when it cannot be loaded, whatever the reason (a bad folder or repo id, a missing runtime package)."""
    try:
        classifier = load_classifier(args.model, getattr(args, "revision", None), getattr(args, "runtime", "auto"))
    except (ClassifierError, ImportError, OSError) as exc:
        raise ModelSourceError(f"cannot load the model: {exc}") from exc
    if classifier.source is not None and classifier.source.notice:
        print(f"note: {classifier.source.notice}", file=sys.stderr)
    return classifier
