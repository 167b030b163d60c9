"""The seven HAM10000 diagnostic classes, in the model's output order."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LesionClass:
    code: str
    name: str
    malignant: bool
    description: str


CLASSES: tuple[LesionClass, ...] = (
    LesionClass("akiec", "Actinic keratosis / intraepithelial carcinoma (Bowen's disease)", True,
                "Scaly sun-damage lesions and in-situ squamous cell carcinoma; can progress to invasive carcinoma."),
    LesionClass("bcc", "Basal cell carcinoma", True,
                "The most common skin cancer; grows slowly and rarely spreads, but destroys tissue locally."),
    LesionClass("bkl", "Benign keratosis-like lesion", False,
                "Seborrhoeic keratoses, solar lentigines and lichen-planus-like keratoses; benign."),
    LesionClass("df", "Dermatofibroma", False,
                "A common benign fibrous nodule of the skin, often on the legs."),
    LesionClass("mel", "Melanoma", True,
                "Malignant tumour of melanocytes; the most dangerous of the seven if not removed early."),
    LesionClass("nv", "Melanocytic nevus", False,
                "Common mole: a benign proliferation of melanocytes; by far the largest class in HAM10000."),
    LesionClass("vasc", "Vascular lesion", False,
                "Angiomas, angiokeratomas, pyogenic granulomas and haemorrhage; mostly benign."),
)

CODES: tuple[str, ...] = tuple(c.code for c in CLASSES)
BY_CODE: dict[str, LesionClass] = {c.code: c for c in CLASSES}

DISCLAIMER = (
    "Research demo only: not a medical device and of no clinical or diagnostic value. "
    "Do not use it to make decisions about anyone's health; see a dermatologist about any skin concern."
)
