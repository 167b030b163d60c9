"""Where the model comes from: a local folder or a Hugging Face Hub model repo (with its cache).

``resolve_model_source`` turns ``MODEL_ID`` / ``MODEL_REVISION`` (or explicit arguments) into a local folder.
The model-folder contract decides what travels: a download fetches ``config.json`` and ``README.md`` (the card)
first, then exactly the files that config.json lists under ``files``; ``publish`` uploads the same set and refuses
a folder that lacks any of them. Hub downloads go through ``huggingface_hub.snapshot_download``, so its cache and
the usual variables (``HF_TOKEN``, ``HF_HOME``, ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``, ``HF_ENDPOINT``) apply. When
the Hub cannot be reached, a cached copy is used and a notice says so.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from classifier.errors import ClassifierError
from classifier.model_folder import CARD_NAME, CONFIG_NAME, ModelFolderError, listed_files

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "model"
HEAD_FILES = (CONFIG_NAME, CARD_NAME)  # always fetched first; config.json then names the rest
DEFAULT_BRANCH = "main"


class ModelSourceError(ClassifierError):
    """The model cannot be found or fetched; the message says why and what to do."""


@dataclass(frozen=True)
class ResolvedSource:
    """A local folder holding the model files, and where it came from."""

    path: Path
    repo_id: str | None  # None for a local folder
    revision: str | None  # requested revision (None = default branch)
    commit: str | None  # commit sha actually used, when known
    notice: str | None  # e.g. the Hub was unreachable and a cached copy is used


def resolve_model_source(source: str | os.PathLike | None = None, revision: str | None = None) -> ResolvedSource:
    """Resolve ``source`` (a folder or an ``owner/name`` Hub repo id) to a local model folder.

    ``source`` defaults to $MODEL_ID, then to the bundled folder; ``revision`` (branch, tag or commit sha of a
    Hub repo) defaults to $MODEL_REVISION. An existing folder wins over a repo id of the same name.
    """
    if source is None or source == "":
        source = os.environ.get("MODEL_ID") or None
    if revision is None or revision == "":
        revision = os.environ.get("MODEL_REVISION") or None
    if source is None:
        return _local(DEFAULT_MODEL_DIR)
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        return _local(path)
    if isinstance(source, os.PathLike) or _looks_like_path(text) or not _is_repo_id(text):
        raise ModelSourceError(
            f"model folder {text} does not exist (and it is not a Hub repo id of the form owner/name): "
            "set MODEL_ID to an existing model folder or to a Hub model repo"
        )
    return _from_hub(text, revision)


def publish(
    folder: Path, repo_id: str, token: str | None = None, private: bool = False, revision: str | None = None
) -> str:
    """Upload ``folder``'s config.json, README.md and every file config.json lists to the Hub model repo
    ``repo_id`` (nothing else in the folder); return the commit url."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file():
        raise ModelSourceError(f"{folder} has no {CONFIG_NAME}: it is not a model folder, nothing was published")
    if not _is_repo_id(repo_id):
        raise ModelSourceError(f"{repo_id!r} is not a Hub repo id of the form owner/name")
    names = upload_set(folder)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if revision not in (None, DEFAULT_BRANCH):
            api.create_branch(repo_id, repo_type="model", branch=revision, exist_ok=True)
        info = api.create_commit(
            repo_id,
            [CommitOperationAdd(path_in_repo=name, path_or_fileobj=folder / name) for name in names],
            repo_type="model",
            revision=revision,
            commit_message=f"Upload model from {folder.name}",
        )
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise ModelSourceError(
            f"publishing to model repo {repo_id} failed (HTTP {status}): check that HF_TOKEN "
            "is a token with write access to that namespace"
        ) from err
    return str(info.commit_url)


def upload_set(folder: Path) -> list[str]:
    """The file names ``publish`` uploads from ``folder``: config.json, README.md and every file config.json
    lists; a ModelSourceError (nothing is uploaded) when config.json is unusable or any of them is missing."""
    folder = Path(folder)
    try:
        listed = listed_files(folder)
    except ModelFolderError as err:
        raise ModelSourceError(f"{err}: nothing was published") from err
    names = [*HEAD_FILES, *(name for name in listed.values() if name not in HEAD_FILES)]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        roles = {name: role for role, name in listed.items()}
        described = ", ".join(
            f"{name} (listed in {CONFIG_NAME} as files.{roles[name]})" if name in roles
            else f"{name} (the model card)" for name in missing
        )
        raise ModelSourceError(f"{folder} lacks {described}: nothing was published")
    return names


def _local(path: Path) -> ResolvedSource:
    """A local model folder, checked for config.json."""
    if not path.exists():
        raise ModelSourceError(f"model folder {path} does not exist: train a model or set MODEL_ID")
    if not path.is_dir():
        raise ModelSourceError(f"{path} is a file, not a model folder")
    if not (path / "config.json").is_file():
        raise ModelSourceError(f"{path} has no config.json: it is not a model folder")
    return ResolvedSource(path=path.resolve(), repo_id=None, revision=None, commit=None, notice=None)


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _is_repo_id(text: str) -> bool:
    """True for a valid ``owner/name`` Hub repo id."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if text.count("/") != 1:
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _from_hub(repo_id: str, revision: str | None) -> ResolvedSource:
    """Download (or reuse from the cache) the model files of a Hub repo."""
    import httpx2
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    shown = f"{repo_id}@{revision or DEFAULT_BRANCH}"

    def download(local_files_only: bool = False) -> ResolvedSource:
        # config.json (and the card) first, then exactly the files it lists, from the same commit.
        head = Path(
            snapshot_download(
                repo_id,
                repo_type="model",
                revision=revision,
                allow_patterns=list(HEAD_FILES),
                local_files_only=local_files_only,
            )
        )
        if not (head / CONFIG_NAME).is_file():
            raise ModelSourceError(
                f"model repo {shown} has no {CONFIG_NAME}: it is not a model repo for this classifier"
            )
        try:
            listed = listed_files(head)
        except ModelFolderError as err:
            raise ModelSourceError(f"model repo {shown} has an unusable {CONFIG_NAME}: {_detail(err, head)}") from err
        folder = Path(
            snapshot_download(
                repo_id,
                repo_type="model",
                revision=head.name,  # the commit sha config.json came from
                allow_patterns=[glob.escape(name) for name in listed.values()],
                local_files_only=local_files_only,
            )
        )
        missing = [f"{name} (files.{role})" for role, name in listed.items() if not (folder / name).is_file()]
        if missing:
            raise ModelSourceError(
                f"model repo {shown} lacks {', '.join(missing)}, listed in its {CONFIG_NAME}: "
                "publish the complete model folder again (python -m classifier publish)"
            )
        return ResolvedSource(path=folder, repo_id=repo_id, revision=revision, commit=folder.name, notice=None)

    try:
        # Ask the Hub first: snapshot_download alone falls back to the cache silently, and we want to say so.
        HfApi().repo_info(repo_id, repo_type="model", revision=revision)
        return download()
    except RevisionNotFoundError as err:
        raise ModelSourceError(
            f"revision {revision!r} of model repo {repo_id} not found on the Hub: "
            "set MODEL_REVISION to an existing branch, tag or commit sha (or unset it for the default branch)"
        ) from err
    except RepositoryNotFoundError as err:
        raise ModelSourceError(_not_found(repo_id, revision)) from err
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code in (401, 403):
            raise ModelSourceError(_not_found(repo_id, revision)) from err
        failure: Exception = err
    except (httpx2.TransportError, OfflineModeIsEnabled, OSError) as err:
        failure = err  # unreachable, timed out, offline mode, or a cut download
    reason = _reason(failure)
    try:
        cached = download(local_files_only=True)
    except OSError:  # LocalEntryNotFoundError, IncompleteSnapshotError
        remedy = (
            "unset HF_HUB_OFFLINE"
            if isinstance(failure, OfflineModeIsEnabled)
            else "connect to the internet and retry"
        )
        raise ModelSourceError(
            f"model repo {shown} is not in the local Hugging Face cache and the Hub could not be reached ({reason}): "
            f"{remedy}, download it once while online, or point MODEL_ID at a local model folder"
        ) from failure
    state = "offline mode" if isinstance(failure, OfflineModeIsEnabled) else "Hub unreachable"
    notice = f"{state} ({reason}): using the cached copy of {shown} (commit {cached.commit[:12]})"
    return ResolvedSource(cached.path, repo_id, revision, cached.commit, notice)


def _detail(err: ModelFolderError, folder: Path) -> str:
    """The reason of a ModelFolderError without the cache path it starts with."""
    text = str(err)
    prefix = f"{folder}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _not_found(repo_id: str, revision: str | None) -> str:
    return (
        f"model repo {repo_id} (revision {revision or DEFAULT_BRANCH}) not found on the Hub "
        "(or it is private: set HF_TOKEN to a token that can read it)"
    )


def _reason(err: Exception) -> str:
    """A short, secret-free reason for a failed Hub call."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code}"
    return type(err).__name__
