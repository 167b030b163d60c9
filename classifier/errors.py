"""The classifier's one error type: an input, data folder, model folder or model source it cannot use."""


class ClassifierError(ValueError):
    """Something given to the classifier that it cannot use; the message says why, for a person to read.

    Subclasses: ImageError (preprocessing), ModelFolderError (model_folder), DataError (data) and
    ModelSourceError (source). The command line prints the message as ``error: ...`` and exits with status 2.
    """
