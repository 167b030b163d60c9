"""Test-time augmentation views: the eight symmetries of the square (a lesion has no 'up')."""

from __future__ import annotations

import numpy as np

VIEWS = {
    "identity": lambda x: x,
    "flip_h": lambda x: x[:, ::-1],
    "flip_v": lambda x: x[::-1, :],
    "rot90": lambda x: np.rot90(x, 1),
    "rot180": lambda x: np.rot90(x, 2),
    "rot270": lambda x: np.rot90(x, 3),
    "transpose": lambda x: np.transpose(x, (1, 0, 2)),
    "anti_transpose": lambda x: np.rot90(np.transpose(x, (1, 0, 2)), 2),
}
# What a new model folder writes: every prediction averages all eight symmetries, so that an image and its turned
# or mirrored copies get the same answer (issue 16; with 4 views the top class changed for 4 of 300 turned test
# images). The eight run as one batch through the int8 graph. Test-time augmentation, on request, is the same set.
SERVED_VIEWS = tuple(VIEWS)
TTA_VIEWS = tuple(VIEWS)


def views_of(image: np.ndarray, views: tuple[str, ...]) -> np.ndarray:
    """Stack the named views of one (H, W, C) image into a batch; the first is the one explained."""
    return np.stack([np.ascontiguousarray(VIEWS[name](image)) for name in views])
