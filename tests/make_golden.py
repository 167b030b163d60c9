"""The bundled model's golden outputs: its calibrated probabilities, prediction set and feature distance for the
committed example images and two generated ones, checked to 1e-4 by tests/test_golden.py without the data set.
Write them again after shipping a new model:

    python -m tests.make_golden
"""

from __future__ import annotations

import json

from tests.conftest import ROOT, lesion_like

GOLDEN = ROOT / "tests" / "golden" / "bundled_model.json"
CONTEXT = {"age": 60, "sex": "female", "site": "back"}  # the patient context the golden file pins


def golden_inputs() -> dict:
    """Named inputs: the example JPEGs in git, and generated lesion-like arrays (no files needed)."""
    inputs = {f"examples/{p.name}": p for p in sorted((ROOT / "examples").glob("*.jpg"))}
    inputs |= {"generated:lesion_like(200, seed=1)": lesion_like(200, seed=1),
               "generated:lesion_like(97, seed=2)": lesion_like(97, seed=2)}
    return inputs


def outputs(classifier, inputs: dict) -> dict:
    """Per input: the image-only answer, its similar cases (image ids) and, for a model with a context head, the
    answer with ``CONTEXT``."""
    result = {}
    for name, image in inputs.items():
        p = classifier.classify(image)
        result[name] = {"label": p.label, "probabilities": {c.code: c.probability for c in p.probabilities},
                        "prediction_set": p.prediction_set, "feature_distance": p.feature_distance,
                        "similar_cases": [case.image_id for case in p.similar_cases]}
        if classifier.context_head is not None:
            fused = classifier.classify(image, **CONTEXT)
            result[name]["with_context"] = {"label": fused.label, "prediction_set": fused.prediction_set,
                                            "probabilities": {c.code: c.probability for c in fused.probabilities}}
    return result


def main() -> int:
    from classifier.api import Classifier
    from classifier.model_folder import read_config

    config = read_config(ROOT / "model")
    classifier = Classifier(ROOT / "model", runtime="litert")
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps({"model_tflite_sha256": config.files["tflite"].sha256,
                                  "outputs": outputs(classifier, golden_inputs())}, indent=1) + "\n")
    print(f"wrote {GOLDEN.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
