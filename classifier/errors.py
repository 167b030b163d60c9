"""The classifier's one error type: an input, data folder, model folder or model source it cannot use."""


class ClassifierError(ValueError):
    """Something given to the classifier that it cannot use; the message says why, for a person to read.

    Subclasses: ImageError (preprocessing), ModelFolderError (model_folder), DataError (data) and
    ModelSourceError (source). The command line prints the message as ``error: ...`` and exits with status 2.
    """


def exit_status(main, argv: list[str] | None = None) -> int:
    """Run a tool's ``main(argv)``: a ClassifierError or a missing file becomes one ``error: ...`` line on stderr and
    status 2, as for the ``python -m classifier`` commands."""
    import sys

    try:
        return main(argv) or 0
    except (ClassifierError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
