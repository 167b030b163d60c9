"""The classifier's one error family and its one mapping to exit statuses.

Every error the package raises on purpose for a caller is a :class:`ClassifierError`; its message is for a
person to read. It is not a ``ValueError``, so that a bug (a numpy ``ValueError``, say) is never mistaken for
bad input. The family, by where it is raised::

    ClassifierError
    ├── ArgumentError       errors            a bad option or argument: top_k, heatmap class, a size, a CLI option
    ├── MissingPackage      errors            a package this needs is not installed (training, Ray)
    ├── ImageError          preprocessing     an input that is not a usable image
    ├── ContextError        context           a bad patient-context value
    ├── ModelFolderError    model_folder      a model folder it cannot use
    ├── ModelSourceError    source            a model source (folder or Hub repo) it cannot resolve or load
    ├── DataError           data              a data folder or manifest it cannot use
    ├── ExampleError        example_images    an example image that cannot be fetched or encoded
    ├── OutputError         results           an --out file that cannot be written or resumed
    ├── InputError          scale             inputs (URIs) that cannot be listed
    ├── BatchTooLarge       batch_tab         a batch over the page's caps
    └── RayRunError         commands.predict  a Ray run that failed as a whole

Surfaces map it once each: :func:`exit_status` for the command line (``python -m classifier``, ``app.py`` and
every tool's ``main``: one ``error: ...`` line, status 2), and ``app.py``'s handlers for the page (a
ClassifierError becomes ``gr.Error(message)``; anything else is a bug, logged, and shown as an internal error).
"""

import sys

USAGE_STATUS = 2  # a usage, input, data or model error: `error: ...` on stderr
INTERRUPTED_STATUS = 130

# Installed by requirements-train.txt only: training, export, the Keras runtime and the report figures.
TRAINING_MODULES = {"tensorflow", "keras", "matplotlib", "sklearn"}


class ClassifierError(Exception):
    """Something given to the classifier that it cannot use; the message says why, for a person to read.

    The command line prints the message as ``error: ...`` and exits with status 2 (:func:`exit_status`); the
    page shows it as an error message.
    """


class ArgumentError(ClassifierError):
    """A bad option or argument value (top_k, the heatmap class, a size, a command-line option)."""


class MissingPackage(ClassifierError):
    """A package that this needs is not installed; the message says what to install."""


def exit_status(main, argv=None, name: str = "this") -> int:
    """Run a tool's ``main(argv)`` and return its exit status: the one mapping of errors to exit statuses.

    A ClassifierError or a missing file becomes one ``error: ...`` line on stderr and status 2; a missing
    training package (``TRAINING_MODULES``) the same, saying how to install it (``name`` says what needs it);
    Ctrl-C ``interrupted`` and 130. Anything else is a bug and keeps its traceback."""
    try:
        try:
            return main(argv) or 0
        except ModuleNotFoundError as exc:
            if exc.name not in TRAINING_MODULES:
                raise
            raise MissingPackage(f"{name} needs {exc.name}, which the demo install leaves out: "
                                 "pip install -r requirements-train.txt") from exc
    except (ClassifierError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_STATUS
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
