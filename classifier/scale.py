"""The Ray engine of ``predict``: score an image archive with Ray Data, on this machine or on a Ray cluster.

    read_binary_files(inputs) -> map_batches(ScoreImages: one Classifier per actor) -> rows to the driver

Each actor loads the model once (``load_classifier``: the same source resolution and Hugging Face cache as
everywhere else, on whichever node the actor runs) and scores its batches with ``Classifier.classify_each``, so
its rows equal the in-process engine's. The driver lists the inputs (local paths, or URIs such as ``s3://`` and
``hf://``), skips those an existing ``--out`` already holds, and writes the rows in input order: Ray may
return batches out of order, so each row is matched to its input's position and held until the rows of all
earlier inputs are written (``preserve_order`` makes Ray return them in order, so that wait is short).
Patient contexts travel to the actors with the model settings: one for all inputs, or a table by location put
in Ray's object store once; each actor passes them to ``classify_each``, as the local engine does.
Ray is optional: ``pip install -r requirements-scale.txt``.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from classifier.errors import ArgumentError, ClassifierError

RAY_MISSING = "--engine ray needs Ray, which is not installed: pip install -r requirements-scale.txt"
URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
BATCH_SIZE = 32


class InputError(ClassifierError):
    """The inputs cannot be listed; the message says why."""


def ray_available() -> bool:
    """True when Ray Data can be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def is_uri(text: str) -> bool:
    """True for ``scheme://...`` (s3://, gs://, hf://, file://, ...); False for a local path."""
    return bool(URI.match(text))


@dataclass
class Inputs:
    """The image files to score: ``ids`` as rows show them, ``locations`` as ``filesystem`` reads them."""

    ids: list[str]
    locations: list[str]
    filesystem: object = None  # a pyarrow FileSystem; None: local paths

    def without(self, done: set[str]) -> Inputs:
        """These inputs less the ids in ``done``."""
        kept = [(i, loc) for i, loc in zip(self.ids, self.locations, strict=True) if i not in done]
        return Inputs([i for i, _ in kept], [loc for _, loc in kept], self.filesystem)


def local_inputs(paths: list[Path]) -> Inputs:
    """Local image files: shown as given, read by absolute path (Ray's workers need not share our directory)."""
    return Inputs([str(p) for p in paths], [os.path.abspath(p) for p in paths])


def uri_inputs(uris: list[str], suffixes) -> Inputs:
    """Files behind URIs (one file system for all), folders listed recursively to their image files, sorted.
    pyarrow's file systems serve s3://, gs://, abfs://, hdfs:// and file://; fsspec's the others (hf://...)."""
    schemes = {uri.split("://", 1)[0].lower() for uri in uris}
    if len(schemes) > 1:
        raise InputError(f"one kind of location per run, not {', '.join(sorted(schemes))}")
    scheme = schemes.pop()
    filesystem, roots = _filesystem(uris)
    from pyarrow.fs import FileSelector, FileType

    ids, locations, missing = [], [], []
    for uri, root in zip(uris, roots, strict=True):
        try:
            info = filesystem.get_file_info(root)
            folder = info.type == FileType.Directory
            found = filesystem.get_file_info(FileSelector(root, recursive=True)) if folder else []
        except Exception as exc:  # each file system raises its own types (network, credentials, permissions)
            raise InputError(f"cannot list {uri}: {type(exc).__name__}: {exc}") from exc
        if info.type == FileType.NotFound:
            missing.append(uri)
        elif folder:
            files = sorted(f.path for f in found
                           if f.type == FileType.File and posixpath.splitext(f.path)[1].lower() in suffixes)
            locations += files
            ids += [f"{scheme}://{f}" for f in files]
        else:
            locations.append(root)
            ids.append(uri)
    if missing:
        raise InputError(f"no such file or folder: {', '.join(missing)}")
    return Inputs(ids, locations, filesystem)


def _filesystem(uris: list[str]):
    """A pyarrow file system for the URIs and each URI's path in it."""
    import pyarrow.fs as pafs

    try:
        resolved = [pafs.FileSystem.from_uri(uri) for uri in uris]
        return resolved[0][0], [path for _, path in resolved]
    except Exception as exc:  # pyarrow: ArrowInvalid for a scheme it lacks, OSError for bad credentials
        pyarrow_error = exc
    try:
        import fsspec
        from fsspec.core import url_to_fs

        resolved = [url_to_fs(uri) for uri in uris]
    except ImportError:
        raise InputError(f"cannot read {uris[0]}: {pyarrow_error}") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {uris[0]}: {exc}") from exc
    filesystem = resolved[0][0]
    if not isinstance(filesystem, fsspec.AbstractFileSystem):
        raise InputError(f"cannot read {uris[0]}: {pyarrow_error}")
    return pafs.PyFileSystem(pafs.FSSpecHandler(filesystem)), [path for _, path in resolved]


class ScoreImages:
    """Ray Data callable class: an actor that holds one Classifier and scores batches of image files.

    In: ``{"path": [...], "bytes": [...]}``; out: ``{"path": [...], "record": [JSON text]}``, a record being
    ``Prediction.to_dict()`` or ``{"error": ...}`` (the driver adds the input's id as its path). ``context``: the
    PatientContext of every image; ``contexts``: by location (its path), or an ObjectRef of that table;
    ``similar``: similar cases per record (None: the model's)."""

    def __init__(self, model: str | None, revision: str | None, runtime: str, top_k: int,
                 similar: int | None = None, context=None, contexts=None):
        import ray

        from classifier.api import load_classifier

        self.classifier = load_classifier(model, revision, runtime)
        self.top_k = top_k
        self.similar = similar
        self.context = context
        self.contexts = ray.get(contexts) if isinstance(contexts, ray.ObjectRef) else contexts or {}
        _fit_threads_to_actor(self.classifier)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from classifier.results import record_of

        paths = [str(p) for p in batch["path"]]
        data = [bytes(b) for b in batch["bytes"]]
        contexts = [self.contexts.get(path, self.context) for path in paths]
        results = self.classifier.classify_each(data, top_k=self.top_k, batch_size=max(len(data), 1),
                                                contexts=contexts, similar=self.similar)
        records = []
        for path, result in zip(paths, results, strict=True):
            record = record_of(path, result)
            del record["path"]
            records.append(json.dumps(record))
        return {"path": np.array(paths, dtype=object), "record": np.array(records, dtype=object)}


def _fit_threads_to_actor(classifier) -> None:
    """Run LiteRT on as many threads as the actor has CPUs (it would take every core of the node otherwise, and
    the node runs one actor per CPU)."""
    import ray

    from classifier.runtime import LiteRTRuntime

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus and classifier.runtime.name == "litert":
        classifier.runtime = LiteRTRuntime(classifier.config, threads=max(1, int(cpus)))


@dataclass
class EngineRun:
    """What a run did: images scored, how many failed, and its timings in seconds."""

    images: int = 0
    errors: int = 0
    seconds: float = 0.0  # scoring: first input read to last row written (Ray: actors' start included)
    startup_seconds: float = 0.0  # Ray: starting or joining the cluster
    first_row_seconds: float | None = None  # Ray: from the start of scoring to the first row
    engine: str = "local"

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """The final line: images, errors, images/s (and Ray's start-up)."""
        text = (f"summary: {self.images} images, {self.errors} errors, {self.images_per_second:.1f} images/s "
                f"({self.seconds:.2f} s, {self.engine} engine)")
        if self.engine == "ray":
            text += f"; Ray start-up {self.startup_seconds:.2f} s"
        return text


def connect(address: str | None, num_cpus: int | None) -> bool:
    """Join the Ray cluster at ``address`` (or $RAY_ADDRESS), or start a local one of ``num_cpus`` CPUs (default:
    all of this machine's). Returns True when this call started or joined Ray (and ``ray.shutdown`` is ours)."""
    import ray

    if ray.is_initialized():
        return False
    log_options = {"logging_level": "warning", "configure_logging": True}
    if address or os.environ.get("RAY_ADDRESS"):
        package = str(Path(__file__).resolve().parent)  # workers run the driver's code
        ray.init(address=address, runtime_env={"py_modules": [package]}, **log_options)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **log_options)
    return True


def score_on_ray(inputs: Inputs, write, model: str | None, revision: str | None, runtime: str = "auto",
                 top_k: int = 3, address: str | None = None, num_cpus: int | None = None,
                 flush=lambda: None, known: dict[int, dict] | None = None, contexts=None,
                 similar: int | None = None) -> EngineRun:
    """Score ``inputs`` on Ray and call ``write(record)`` for each, in input order; ``flush()`` after each batch.
    ``known``: the records of inputs not to score (by position in ``inputs``), written in their place;
    ``contexts``: each input's PatientContext or None (an input's location has one context); ``similar``: similar
    cases per record (None: the model's).
    Starts a local Ray (and shuts it down) unless ``address``/$RAY_ADDRESS names a cluster or Ray is running."""
    from collections import deque

    from classifier.results import InOrder

    known = known or {}
    run = EngineRun(engine="ray")
    ordered = InOrder(_Flushing(write, flush), len(inputs.ids))
    for position, record in sorted(known.items()):
        ordered.put(position, record)
    # Where each row goes: the positions of each location still to score, in input order (a location given twice
    # is read twice; Ray returns one row per read, and its rows are equal).
    positions: dict[str, deque[int]] = {}
    for position, location in enumerate(inputs.locations):
        if position not in known:
            positions.setdefault(location, deque()).append(position)
    locations = [location for position, location in enumerate(inputs.locations) if position not in known]
    settings = {"model": model, "revision": revision, "runtime": runtime, "top_k": top_k, "similar": similar}
    if contexts is not None:
        given = {}
        for location, waiting in positions.items():
            found = {contexts[position] for position in waiting}
            if len(found) > 1:  # the actors look contexts up by location
                raise ArgumentError(f"{location} is given more than once, with different contexts")
            given[location] = found.pop()
        if len(set(given.values())) == 1:  # e.g. --age/--sex/--site: one context for all
            settings["context"] = next(iter(given.values()))
        else:
            settings["contexts"] = {location: context for location, context in given.items() if context is not None}
    if locations:  # none: e.g. all of them are in --out already, or no files: no need for Ray
        _score(locations, inputs, positions, ordered, run, settings, address, num_cpus)
    if ordered.missing:
        left = [location for location, waiting in positions.items() if waiting]
        raise RuntimeError(f"Ray returned no row for {ordered.missing} of the inputs (the first: "
                           f"{left[0] if left else '?'})")
    run.images, run.errors = ordered.written, ordered.errors
    return run


class _Flushing:
    """A writer made of a ``write`` and a ``flush`` function."""

    def __init__(self, write, flush):
        self.write = write
        self.flush = flush


def _score(locations, inputs, positions, ordered, run, settings, address, num_cpus):
    """The Ray part of ``score_on_ray``: each row of ``locations`` put in ``ordered`` at its input's position;
    ``settings``: ScoreImages' arguments."""
    import ray
    import ray.data

    started = time.perf_counter()
    ours = connect(address, num_cpus)
    try:
        run.startup_seconds = time.perf_counter() - started
        context = ray.data.DataContext.get_current()
        # Batches back in input order, so that a row seldom waits in `ordered` (which orders them in any case)
        context.execution_options.preserve_order = True
        # One actor per CPU of the cluster (each runs LiteRT on one thread); smaller batches when there are fewer
        # than BATCH_SIZE inputs per CPU, so that every actor gets some.
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        batch_size = max(1, min(BATCH_SIZE, math.ceil(len(locations) / cpus)))
        actors = min(cpus, math.ceil(len(locations) / batch_size))
        # A read task per batch. Reading is input/output only (the actors decode), so the read tasks take no CPU
        # from the actors' budget (with it, a 1-CPU Ray waits forever: its actor holds the CPU that the reads
        # need); their number at a time is capped instead (uncapped, Ray starts a worker process for each).
        dataset = ray.data.read_binary_files(locations, include_paths=True, filesystem=inputs.filesystem,
                                             override_num_blocks=math.ceil(len(locations) / batch_size),
                                             num_cpus=0, concurrency=actors)
        if settings.get("contexts"):  # a table by location: in the object store once, not in every actor's task
            settings = {**settings, "contexts": ray.put(settings["contexts"])}
        dataset = dataset.map_batches(
            ScoreImages,
            fn_constructor_kwargs=settings,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
        )
        scoring = time.perf_counter()
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            for location, text in zip(batch["path"], batch["record"], strict=True):
                waiting = positions.get(str(location))
                if not waiting:
                    raise RuntimeError(f"Ray returned a row for {location}, which is no input left to score")
                position = waiting.popleft()
                ordered.put(position, {"path": inputs.ids[position], **json.loads(text)})
            if run.first_row_seconds is None:
                run.first_row_seconds = time.perf_counter() - scoring
            ordered.flush()
        run.seconds = time.perf_counter() - scoring
    finally:
        if ours:
            ray.shutdown()
