"""Patient context (classifier.context) and similar cases (classifier.similar): parsing and encoding on their own,
the index on generated vectors, and both on the bundled model, without the data set (issue 19)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from classifier.context import (
    AGE_SIZE,
    ENCODED_SIZE,
    SEXES,
    SITES,
    ContextError,
    PatientContext,
    encode,
    parse_context,
)
from classifier.errors import ArgumentError
from classifier.model_folder import ModelFolderError
from classifier.similar import SimilarIndex
from classifier.tta import VIEWS
from tests.conftest import ROOT, lesion_like

EXAMPLES = sorted((ROOT / "examples").glob("*.jpg"))


# --- parsing and encoding --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "expected"), [
    ((None, None, None), PatientContext()),
    (("", "unknown", "Unknown"), PatientContext()),
    ((70, "Male", "back"), PatientContext(70.0, "male", "back")),
    (("45.5", " female ", "Lower_Extremity"), PatientContext(45.5, "female", "lower extremity")),
    ((float("nan"), None, "upper  extremity"), PatientContext(None, None, "upper extremity")),
])
def test_context_values_are_normalised(given, expected):
    assert parse_context(*given) == expected


@pytest.mark.parametrize(("given", "words"), [
    ((-1, None, None), "between 0 and 120"),
    ((130, None, None), "between 0 and 120"),
    (("old", None, None), "number of years"),
    ((True, None, None), "number of years"),
    ((None, "x", None), "accepted: male, female"),
    ((None, 1, None), "sex must be text"),
    ((None, None, "moon"), "accepted: abdomen, acral"),
])
def test_bad_context_values_name_what_is_accepted(given, words):
    with pytest.raises(ContextError, match=words):
        parse_context(*given)


def test_encoding_has_one_block_per_field_and_zeros_when_not_given():
    assert not encode(PatientContext()).any()
    full = encode(PatientContext(70.0, "female", "scalp"))
    assert full.shape == (ENCODED_SIZE,)
    assert full[0] == pytest.approx(0.7) and full[1] == 1 and full[2:AGE_SIZE].sum() == 1
    assert full[AGE_SIZE + SEXES.index("female")] == 1 and full[AGE_SIZE + len(SEXES) + SITES.index("scalp")] == 1
    assert full.sum() == pytest.approx(0.7 + 4)
    bands = [int(np.argmax(encode(PatientContext(age))[2:AGE_SIZE])) for age in (5, 30, 39.9, 55, 80, 120)]
    assert bands == [0, 1, 1, 3, 6, 6]


def test_describe_names_the_given_fields():
    assert PatientContext(70.0, None, "back").describe() == "age 70, back"
    assert not PatientContext().given and PatientContext(sex="male").given


# --- the index on generated vectors ------------------------------------------------------------------------------

def _jpeg(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (value, value, value)).save(out, "JPEG")
    return out.getvalue()


def small_index(n: int = 6, dim: int = 4) -> SimilarIndex:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    thumbs = [_jpeg(40 * i) for i in range(n)]
    return SimilarIndex({
        "mean": np.zeros(dim, np.float32), "projection": np.eye(dim, dtype=np.float32),
        "vectors": vectors.astype(np.float16),
        "image_id": np.array([f"ISIC_{i}" for i in range(n)]), "lesion_id": np.array([f"L{i}" for i in range(n)]),
        "label": np.array([i % 2 for i in range(n)], np.int8), "dx_type": np.array(["histo", "follow_up"] * (n // 2)),
        "thumbnails": np.frombuffer(b"".join(thumbs), np.uint8),
        "thumbnail_offsets": np.concatenate([[0], np.cumsum([len(t) for t in thumbs])]),
    }, ("a", "b"), ("Alpha", "Beta"))


def test_nearest_finds_the_stored_vector_itself_first():
    index = small_index()
    for i in range(len(index)):
        cases = index.nearest(index.vectors[i] * 3.0, k=3)  # scale does not matter (cosine)
        assert cases[0].image_id == f"ISIC_{i}" and cases[0].distance == pytest.approx(0, abs=1e-3)
        assert [c.distance for c in cases] == sorted(c.distance for c in cases)
        assert cases[0].code == "ab"[i % 2] and cases[0].confirmed_by == ("histopathology", "follow-up")[i % 2]
        assert cases[0].thumbnail().size == (8, 8)
    assert len(index.nearest(index.vectors[0], k=50)) == len(index)


def test_vote_divides_by_the_prior_and_sums_to_one():
    index = small_index()
    plain = index.vote(index.vectors[:2], k=6)
    assert np.allclose(plain, 0.5)  # three of each class among all six
    weighted = index.vote(index.vectors[:2], k=6, class_prior=np.array([0.75, 0.25]))
    assert np.allclose(weighted.sum(axis=1), 1) and np.allclose(weighted[:, 1], 0.75)


def test_an_inconsistent_index_is_refused():
    index = small_index()
    arrays = {k: getattr(index, k) for k in ("mean", "projection", "vectors")}
    with pytest.raises(ModelFolderError, match="missing"):
        SimilarIndex(arrays, ("a", "b"), ("Alpha", "Beta"))


# --- on the bundled model ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bundled(bundled_model_dir):
    from classifier.api import Classifier

    classifier = Classifier(bundled_model_dir)
    if classifier.context_head is None or classifier.similar_index is None:
        pytest.skip("the bundled model has no context head or similar-cases index")
    return classifier


def test_without_context_the_answer_is_the_image_only_one(bundled):
    plain = bundled.classify(EXAMPLES[0])
    given_nothing = bundled.classify(EXAMPLES[0], age="", sex="unknown", site=None)
    assert given_nothing.to_dict() == plain.to_dict()
    assert plain.context is None and plain.context_note is None and plain.to_dict()["context"] is None


def test_context_moves_the_answer_and_says_how(bundled):
    plain = bundled.classify(EXAMPLES[0])
    fused = bundled.classify(EXAMPLES[0], age=70, sex="male", site="back")
    result = fused.to_dict()
    assert result["context"] == {"age": 70.0, "sex": "male", "site": "back"}
    assert result["image_only_probabilities"] == {p.code: p.probability for p in plain.probabilities}
    assert result["probabilities"] != result["image_only_probabilities"]
    assert sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert fused.context_note.startswith("With age 70, male, back: ")
    before = {p.code: p.probability for p in plain.probabilities}[fused.label]
    assert f"{fused.label} {before:.0%}" in fused.context_note
    assert fused.prediction_set and fused.prediction_set[0] == fused.label


def test_any_subset_of_the_context_works(bundled):
    for fields in ({"age": 40}, {"sex": "female"}, {"site": "face"}, {"age": 80, "site": "scalp"}):
        prediction = bundled.classify(EXAMPLES[1], **fields)
        assert prediction.context is not None and prediction.context_note


def test_a_bad_context_value_raises_before_the_model_runs(bundled):
    with pytest.raises(ContextError, match="accepted"):
        bundled.classify(b"not even an image", site="elbow")


def test_similar_cases_come_with_every_answer(bundled):
    prediction = bundled.classify(EXAMPLES[2])
    cases = prediction.similar_cases
    assert len(cases) == bundled.config.similar_cases.k == 8
    assert len({c.lesion_id for c in cases}) == 8  # one image per lesion
    assert [c.distance for c in cases] == sorted(c.distance for c in cases)
    assert all(c.code in bundled.config.codes and c.confirmed_by for c in cases)
    assert cases[0].thumbnail().size == (72, 72)
    assert prediction.to_dict()["similar_cases"][0] == cases[0].to_dict()
    assert bundled.classify(EXAMPLES[2], similar=0).similar_cases == []
    assert len(bundled.classify(EXAMPLES[2], similar=3).similar_cases) == 3
    with pytest.raises(ArgumentError, match="similar"):
        bundled.classify(EXAMPLES[2], similar=65)


def test_context_and_similar_cases_are_the_same_however_the_picture_is_turned(bundled):
    image = np.asarray(Image.open(EXAMPLES[3]).convert("RGB"))
    reference = bundled.classify(image, age=55, site="trunk").to_dict()
    for name, view in VIEWS.items():
        turned = bundled.classify(np.ascontiguousarray(view(image)), age=55, site="trunk").to_dict()
        for code, probability in reference["probabilities"].items():
            assert turned["probabilities"][code] == pytest.approx(probability, abs=1e-3), name
        assert [c["image_id"] for c in turned["similar_cases"]] == [c["image_id"] for c in reference["similar_cases"]]


def test_classify_each_takes_one_context_per_image(bundled):
    images = [EXAMPLES[0], b"broken", EXAMPLES[1]]
    contexts = [parse_context(70, "male", "back"), None, PatientContext(site="elbow")]  # unchecked on purpose
    results = bundled.classify_each(images, contexts=contexts)
    assert results[0].context_note and isinstance(results[1], Exception)
    assert isinstance(results[2], ContextError)
    single = bundled.classify(EXAMPLES[0], age=70, sex="male", site="back")
    assert results[0].to_dict()["probabilities"] == pytest.approx(single.to_dict()["probabilities"], abs=1e-5)
    with pytest.raises(ArgumentError, match="contexts"):
        bundled.classify_each(images, contexts=[None])


def test_a_generated_picture_gets_neighbours_too(bundled):
    assert len(bundled.classify(lesion_like(150, seed=3)).similar_cases) == 8


def test_a_model_without_a_context_head_says_so(bundled_model_dir):
    from classifier.api import Classifier

    classifier = Classifier(bundled_model_dir)
    classifier.context_head = None  # as for a model folder exported without one
    with pytest.raises(ContextError, match="no patient-context head"):
        classifier.classify(EXAMPLES[0], age=50)
    assert classifier.classify(EXAMPLES[0], age="").context is None
