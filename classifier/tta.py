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


def views_of(images: np.ndarray | list[np.ndarray], views: tuple[str, ...]) -> np.ndarray:
    """The named views of one (H, W, C) image, or of each of several, as one batch (image by image, views in the
    given order; the first is the one explained), written straight into it: one copy per view."""
    images = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    batch = np.empty((len(images) * len(views), *images[0].shape), images[0].dtype)
    for i, image in enumerate(images):
        for j, name in enumerate(views):
            batch[i * len(views) + j] = VIEWS[name](image)
    return batch
