"""The Python API: load a model once, classify images, get labelled and qualified probabilities.

    from classifier import load_classifier
    prediction = load_classifier().classify("lesion.jpg", top_k=3)
    print(prediction.to_dict())
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from classifier.context import ContextError, PatientContext, load_context_head, parse_context
from classifier.errors import ArgumentError
from classifier.explain import cam_heatmap, image_check_reasons, overlay, served, softmax
from classifier.labels import DISCLAIMER
from classifier.model_folder import ModelConfig, read_config
from classifier.ood import flag_reasons, load_feature_statistics, ood_flags
from classifier.preprocessing import load_and_prepare
from classifier.quality import QualityFinding, assess, load_size_probe
from classifier.runtime import open_runtime
from classifier.similar import SimilarCase, load_similar_index, similar_count
from classifier.tta import views_of
from classifier.uncertainty import prediction_sets


def top_k_value(top_k, count: int, name: str = "top_k") -> int:
    """``top_k`` as an int in 1..count, the one check of it for every surface (a form or an API call may send a
    float or a string); ArgumentError, naming it as ``name``, otherwise."""
    try:
        value = float(top_k)
    except (TypeError, ValueError):  # float() of something that is not a number
        value = float("nan")
    if not value.is_integer() or not 1 <= value <= count:
        raise ArgumentError(f"{name} must be a whole number between 1 and {count}, not {top_k!r}")
    return int(value)


def malignant_note(codes: list[str]) -> str:
    """What P(malignant) is, naming the model's malignant classes."""
    return (f"P(malignant) is the sum of the probabilities of the malignant classes ({', '.join(codes)}). "
            "It is a model output on a research data set, not a risk estimate for a person.")


@dataclass(frozen=True)
class ClassProbability:
    code: str
    name: str
    probability: float
    malignant: bool


@dataclass
class Prediction:
    """One image's result. ``probabilities`` holds every class, most probable first. ``label`` is the decision:
    the most probable class, or for a model that applies its prior correction to the decision only
    (``calibration.decision_bias``) the class that correction chooses (``decision``), which may be another;
    then ``most_probable`` and ``decision_note`` say so."""

    probabilities: list[ClassProbability]
    top_k: int
    malignant_probability: float
    ood_score: float
    ood_threshold: float | None
    warning_reasons: list[str]
    tta_views: int  # how many views were averaged: the served ones (config serving.views), or the TTA ones
    image: np.ndarray = field(repr=False)  # the model's view (size x size RGB)
    heatmap: np.ndarray | None = field(default=None, repr=False)
    heatmap_class: str | None = None
    notice: str = DISCLAIMER
    prediction_set: list[str] | None = None  # conformal set, most probable first; None if the model has none
    set_coverage: float | None = None
    feature_distance: float | None = None
    feature_threshold: float | None = None
    quality: list[QualityFinding] = field(default_factory=list)  # photo-quality advice (classifier.quality)
    context: PatientContext | None = None  # the patient context the answer used; None: image only
    image_only_probabilities: dict[str, float] | None = None  # with context: the image-only answer, for comparison
    similar_cases: list[SimilarCase] = field(default_factory=list)  # nearest training lesions, nearest first
    decision: str | None = None  # the class chosen with the decision-only prior correction; None: the most probable

    @property
    def top(self) -> list[ClassProbability]:
        return self.probabilities[: self.top_k]

    @property
    def label(self) -> str:
        """The decision: ``decision`` when the model chose apart from the probabilities, else the most probable."""
        return self.decision or self.most_probable

    @property
    def most_probable(self) -> str:
        return self.probabilities[0].code

    @property
    def decision_note(self) -> str | None:
        """Why the decision is not the most probable class, in one sentence; None when it is."""
        if self.label == self.most_probable:
            return None
        chosen = {p.code: p.probability for p in self.probabilities}
        return (f"{self.label} is chosen although {self.most_probable} is more probable "
                f"({chosen[self.most_probable]:.1%} against {chosen[self.label]:.1%}): the decision corrects for how "
                f"rare {self.label} was in training (prior correction fitted on validation).")

    @property
    def warning(self) -> str | None:
        if not self.warning_reasons:
            return None
        return "This does not look like the dermatoscopic images the model was trained on: " + "; ".join(
            self.warning_reasons) + ". Treat the probabilities below as meaningless for it."

    @property
    def set_statement(self) -> str | None:
        """The conformal set in words, e.g. 'With 90% coverage the diagnosis is one of: mel, nv.'"""
        if self.prediction_set is None:
            return None
        where = "one of: " + ", ".join(self.prediction_set) if len(self.prediction_set) > 1 else self.prediction_set[0]
        return (f"With {self.set_coverage:.0%} coverage (on held-out images like the training data) the diagnosis "
                f"is {where}.")

    @property
    def context_note(self) -> str | None:
        """How the context moved the answer, e.g. 'With age 70, back: mel 31% → 44% (image only → with context).'"""
        if self.context is None or self.image_only_probabilities is None:
            return None
        now, before = {p.code: p.probability for p in self.probabilities}, self.image_only_probabilities
        moved_most = sorted((c for c in now if c != self.label), key=lambda c: -abs(now[c] - before[c]))[:1]
        moves = ", ".join(f"{code} {before[code]:.0%} → {now[code]:.0%}" for code in [self.label, *moved_most])
        return f"With {self.context.describe()}: {moves} (image only → with context)."

    def heatmap_image(self) -> Image.Image | None:
        """The heatmap overlaid on the model's view of the image."""
        return None if self.heatmap is None else overlay(self.image, self.heatmap)

    def to_dict(self, include_heatmap: bool = False) -> dict:
        result = {
            "notice": self.notice,
            "label": self.label,
            **({} if self.decision is None else {"most_probable": self.most_probable,
                                                 "decision_note": self.decision_note}),
            "top_k": [vars(p) for p in self.top],
            "probabilities": {p.code: p.probability for p in self.probabilities},
            "malignant_probability": self.malignant_probability,
            "malignant_note": malignant_note(sorted(p.code for p in self.probabilities if p.malignant)),
            "out_of_distribution": {
                "warning": self.warning,
                "reasons": self.warning_reasons,
                "energy_score": self.ood_score,
                "energy_threshold": self.ood_threshold,
            },
            "prediction_set": {"classes": self.prediction_set, "coverage": self.set_coverage,
                               "statement": self.set_statement},
            "tta_views": self.tta_views,
            "quality": [finding.to_dict() for finding in self.quality],
            "context": None if self.context is None else self.context.to_dict(),
            "image_only_probabilities": self.image_only_probabilities,
            "context_note": self.context_note,
            "similar_cases": [case.to_dict() for case in self.similar_cases],
        }
        if self.feature_distance is not None:
            result["out_of_distribution"] |= {"feature_distance": self.feature_distance,
                                              "feature_threshold": self.feature_threshold}
        if include_heatmap and self.heatmap is not None:
            result["heatmap"] = {"class": self.heatmap_class,
                                 "grid": np.round(self.heatmap[::4, ::4], 3).tolist()}
        return result


class Classifier:
    """A loaded model folder plus its runtime. Thread-safe; load once and reuse."""

    def __init__(self, folder, runtime: str = "auto", source=None):
        self.config: ModelConfig = read_config(folder)
        self.runtime = open_runtime(self.config, runtime)
        self.source = source
        self.size = self.config.input.size
        self.labels = self.config.labels
        from classifier.model_folder import ModelFolderError

        probe_logits, _, probe_features = self.runtime.run(np.zeros((1, self.size, self.size, 3), np.float32))
        if probe_logits.shape[-1] != len(self.labels):
            raise ModelFolderError(f"{folder}: the model has {probe_logits.shape[-1]} outputs but config.json "
                                   f"lists {len(self.labels)} labels")
        self.feature_statistics = load_feature_statistics(self.config)
        feature_size = None if probe_features is None else probe_features.shape[-1]
        if self.feature_statistics is not None and feature_size != len(self.feature_statistics["projection"]):
            raise ModelFolderError(f"{folder}: the model's pooled features do not match "
                                   f"{self.config.file('ood_features').name}")
        self.context_head = load_context_head(self.config)
        if self.context_head is not None and feature_size != len(self.context_head.feature_kernel):
            raise ModelFolderError(f"{folder}: the model's pooled features do not match "
                                   f"{self.config.file('context_head').name}")
        self.size_probe = load_size_probe(self.config)
        self.similar_index = load_similar_index(self.config)
        if self.similar_index is not None and feature_size != self.similar_index.feature_size:
            raise ModelFolderError(f"{folder}: the model's pooled features do not match "
                                   f"{self.config.file('similar_cases').name}")

    def prepare(self, image) -> np.ndarray:
        """The shared preprocessing: any accepted input -> (size, size, 3) uint8 (with the model folder's colour
        constancy, where it has one)."""
        return load_and_prepare(image, self.size, self.config.shades_of_gray_power)

    def logits(self, prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw logits (N, K) and class-activation maps (N, h, w, K) for a batch of prepared images."""
        return self.forward(prepared)[:2]

    def forward(self, prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Logits, class-activation maps and pooled features (None for models exported without them)."""
        return self.runtime.run(prepared.astype(np.float32))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: softmax((logits + class bias) / temperature), both fitted on validation (the
        class bias zeros for a model that applies its prior correction to the decision only)."""
        return softmax(logits, self.config.calibration.temperature, self.config.calibration.class_bias)

    @property
    def separate_decision(self) -> bool:
        """True when the prior correction chooses the decision apart from the probabilities
        (``calibration.decision_bias``): results then name the decision and the most probable class apart."""
        return self.config.calibration.decision_bias is not None

    def classify(self, image, top_k: int = 3, tta: bool = False, heatmap: bool = False,
                 heatmap_class: str | None = None, age=None, sex=None, site=None,
                 similar: int | None = None) -> Prediction:
        """Classify one image (path, bytes, PIL image or array); raises ImageError for bad input. The model's
        served views are averaged (``serving.views``), or with ``tta`` its test-time augmentation views.
        ``top_k``: 1 to the number of classes (a whole-number float or string is taken as an int); a bad
        ``top_k``, ``heatmap_class`` or ``similar`` raises ArgumentError.

        ``age`` (years), ``sex`` and ``site`` (``classifier.context.SEXES`` / ``SITES``; None, empty or 'unknown'
        = not given) are the optional patient context: given any, the model's context head answers
        (``Prediction.context_note`` says how it moved the answer); a bad value raises ContextError.
        ``similar``: how many similar training cases to attach (default the model's ``similar_cases.k``; 0:
        none)."""
        top_k = top_k_value(top_k, len(self.labels))
        context = self.check_context(parse_context(age, sex, site))
        prepared = self.prepare(image)
        views = self.views(tta)
        logits, cam, features = self.forward(views_of(prepared, views))
        return self._prediction(prepared, logits, cam[0], features, top_k, heatmap, heatmap_class, context, similar)

    def check_context(self, context: PatientContext | None) -> PatientContext | None:
        """The context if any field is given (None if none is); ContextError if the model has no context head."""
        if context is None or not context.given:
            return None
        context = parse_context(context.age, context.sex, context.site)  # a caller's own PatientContext, checked
        if self.context_head is None:
            raise ContextError("this model has no patient-context head: classify without age, sex and site")
        return context

    def views(self, tta: bool = False) -> tuple[str, ...]:
        """The views a prediction averages: the served ones, or with ``tta`` the test-time augmentation ones."""
        return self.config.tta.views if tta else self.config.serving.views

    def classify_batch(self, images: list, top_k: int = 3, batch_size: int = 32) -> list[Prediction]:
        """Classify many images in batches (no TTA, no heatmaps); the first bad image raises its ImageError."""
        results = self.classify_each(images, top_k=top_k, batch_size=batch_size)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    def classify_each(self, images, top_k: int = 3, batch_size: int = 32, contexts=None,
                      similar: int | None = None) -> list[Prediction | Exception]:
        """Classify many images (no TTA, no heatmaps); a bad image becomes its exception (ImageError for bad
        input) in its place, so one broken file never costs the others. ``images`` may be any iterable of paths,
        bytes, PIL images or arrays; ``contexts``, one PatientContext (or None) per image; ``similar`` as for
        ``classify``."""
        images = list(images)
        top_k = top_k_value(top_k, len(self.labels))
        contexts = [None] * len(images) if contexts is None else list(contexts)
        if len(contexts) != len(images):
            raise ArgumentError(f"{len(contexts)} contexts for {len(images)} images")
        results = []
        for item, context in zip(self.run_each(images, batch_size=batch_size), contexts, strict=True):
            if not isinstance(item, Exception):
                try:
                    item = self._prediction(*item, top_k, False, None, self.check_context(context), similar)
                except ContextError as exc:
                    item = exc
            results.append(item)
        return results

    def run_each(self, images, views: tuple[str, ...] | None = None, batch_size: int = 32):
        """The one batch path, under ``classify_each``, evaluation and export: decode in parallel, prepare
        once, run the runtime on the views (default: the served ones) of the good images in batches of about
        ``batch_size``. Yields per image, in order, its exception or (prepared, logits (V, K), first view's
        activation maps (h, w, K), the views' pooled features (V, D) or None)."""
        images = list(images)
        views = views or self.config.serving.views
        per_batch = max(batch_size // len(views), 1)

        def prepare_or_error(image):
            try:
                return self.prepare(image)
            except Exception as exc:  # decoders raise many types; each image reports its own
                return exc

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # decoding releases the GIL
            for start in range(0, len(images), per_batch):
                prepared = list(pool.map(prepare_or_error, images[start:start + per_batch]))
                good = [p for p in prepared if not isinstance(p, Exception)]
                outputs = iter(())
                if good:
                    logits, cam, features = self.forward(views_of(good, views))
                    logits = logits.reshape(len(good), len(views), -1)
                    cam = cam.reshape(len(good), len(views), *cam.shape[1:])[:, 0]
                    features = ([None] * len(good) if features is None
                                else features.reshape(len(good), len(views), -1))
                    outputs = iter(zip(good, logits, cam, features, strict=True))
                for item in prepared:
                    yield item if isinstance(item, Exception) else next(outputs)

    def _prediction(self, prepared, logits, cam, view_features, top_k, heatmap, heatmap_class,
                    context: PatientContext | None = None, similar: int | None = None) -> Prediction:
        codes = self.config.codes
        if heatmap_class is not None and heatmap_class not in codes:
            raise ArgumentError(f"unknown class {heatmap_class!r}; choose one of {', '.join(codes)}")
        features = None if view_features is None else view_features.mean(axis=0)  # the views' mean
        probs, decided = served(self.config.calibration, logits)
        image_only, conformal_threshold = None, self.config.conformal.threshold
        if context is not None:
            image_only = {code: round(float(probs[i]), 6) for i, code in enumerate(codes)}
            probs = self.context_head.probabilities(view_features, context)
            conformal_threshold = self.context_head.conformal_threshold
        order = np.argsort(-probs, kind="stable")
        # with context, the context head's own answer decides
        decision = None if decided is None or context is not None else codes[int(decided)]
        ranked = [ClassProbability(codes[i], self.labels[i].name, round(float(probs[i]), 6), self.labels[i].malignant)
                  for i in order]
        flags = ood_flags(self.config, logits[None], None if features is None else features[None],
                          self.feature_statistics)
        distance = None if np.isnan(flags["distance"][0]) else round(float(flags["distance"][0]), 4)
        conformal_set = None
        if conformal_threshold is not None:
            held = None if decision is None else [codes.index(decision)]  # the set always holds the decision
            conformal_set = [codes[i] for i in prediction_sets(probs[None], conformal_threshold, held)[0]]
        k = self.config.similar_cases.k if self.config.similar_cases else None  # the model's
        k = k if similar is None else similar_count(similar)
        cases = []
        if k and self.similar_index is not None and features is not None:
            cases = self.similar_index.nearest(features, k)
        chosen = codes.index(heatmap_class or decision or codes[order[0]])  # by default, the decision's map
        return Prediction(
            probabilities=ranked,
            top_k=top_k,
            malignant_probability=round(float(sum(probs[i] for i, lb in enumerate(self.labels) if lb.malignant)), 6),
            ood_score=round(float(flags["energy"][0]), 4),
            ood_threshold=self.config.ood.energy_threshold,
            warning_reasons=image_check_reasons(prepared) + flag_reasons(self.config, flags),
            tta_views=len(logits),
            image=prepared,
            heatmap=cam_heatmap(cam, chosen, self.size) if heatmap else None,
            heatmap_class=codes[chosen] if heatmap else None,
            prediction_set=conformal_set,
            set_coverage=self.config.conformal.coverage,
            feature_distance=distance,
            feature_threshold=self.config.ood.feature_threshold if distance is not None else None,
            quality=assess(prepared, features, self.size_probe),
            context=context,
            image_only_probabilities=image_only,
            similar_cases=cases,
            decision=decision,
        )


@functools.lru_cache(maxsize=4)
def load_classifier(source: str | None = None, revision: str | None = None, runtime: str = "auto") -> Classifier:
    """The classifier for a model source (local folder or Hub repo id; default MODEL_ID or bundled model/),
    fetched and loaded once per process."""
    from classifier.source import resolve_model_source

    resolved = resolve_model_source(source, revision)
    return Classifier(resolved.path, runtime=runtime, source=resolved)
