"""Class weighting of the training loss, shared by the network's training and the heads fitted on cached features."""

from __future__ import annotations

import numpy as np


def class_weights(labels: np.ndarray, num_classes: int, power: float = 0.5) -> dict[int, float]:
    """Softened inverse-frequency weights (n_max / n_c) ** power, scaled to mean 1 over the samples."""
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    raw = np.where(counts > 0, (counts.max() / np.maximum(counts, 1)) ** power, 0.0)
    raw /= (raw[labels]).mean()
    return {i: float(w) for i, w in enumerate(raw)}
