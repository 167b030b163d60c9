"""The shared preprocessing function, on generated images."""

import io

import numpy as np
import pytest
from PIL import Image

from classifier.preprocessing import ImageError, draft_side, load_and_prepare, load_image, prepare, shades_of_gray
from tests.conftest import lesion_like


def test_prepare_returns_square_uint8_of_model_size():
    image = Image.fromarray(lesion_like(200)).resize((600, 450))
    out = prepare(image, 160)
    assert out.shape == (160, 160, 3) and out.dtype == np.uint8


def test_full_frame_and_its_centre_crop_give_the_same_view():
    frame = Image.fromarray(np.random.default_rng(1).integers(0, 255, (450, 600, 3), dtype=np.uint8))
    frame = frame.resize((150, 113)).resize((600, 450))  # smooth, so resampling differences stay small
    centre = frame.crop((75, 0, 525, 450))
    a, b = prepare(frame, 128).astype(int), prepare(centre, 128).astype(int)
    assert np.abs(a - b).mean() < 1.0


def test_prepare_keeps_the_centre_not_the_sides():
    array = np.zeros((100, 300, 3), np.uint8)
    array[:, 100:200] = 255  # white centre square, black sides
    assert prepare(Image.fromarray(array), 64).mean() > 250


def test_load_image_accepts_paths_bytes_pil_and_arrays(tmp_path):
    array = lesion_like(64)
    path = tmp_path / "x.png"
    Image.fromarray(array).save(path)
    for source in (path, str(path), path.read_bytes(), Image.fromarray(array), array, array / 255.0):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (64, 64)


def test_load_and_prepare_matches_prepare_of_load_image(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(lesion_like(300)).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    np.testing.assert_array_equal(load_and_prepare(data, 96), prepare(load_image(data, draft_size=draft_side(96)), 96))


@pytest.mark.parametrize("source, message", [
    (b"", "empty"),
    (b"not an image", "not an image"),
    (np.zeros((10, 10, 3), np.uint8), "too small"),
    (np.zeros((64, 64, 5), np.uint8), "HxW"),
    (12345, "cannot read"),
])
def test_bad_input_gets_a_clear_message(source, message):
    with pytest.raises(ImageError, match=message):
        load_image(source)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_shades_of_gray_makes_a_tinted_picture_grey_and_keeps_brightness():
    rng = np.random.default_rng(0)
    grey = rng.integers(40, 200, (64, 64, 1)).repeat(3, axis=2).astype(np.uint8)
    tinted = np.clip(grey * np.array([1.25, 1.0, 0.8]), 0, 255).astype(np.uint8)
    corrected = shades_of_gray(tinted, 6).astype(np.float64)
    illuminant = (corrected ** 6).mean(axis=(0, 1)) ** (1 / 6)
    assert illuminant.max() / illuminant.min() < 1.02  # the tint is gone
    assert abs(corrected.mean() - tinted.mean()) < 0.05 * tinted.mean()  # the gains average 1
    assert np.array_equal(shades_of_gray(grey, 6), grey)  # a grey picture stays as it is


@pytest.mark.parametrize("op", [np.rot90, np.fliplr, np.transpose])
def test_shades_of_gray_turns_with_the_picture_exactly(op):
    pixels = lesion_like(96, seed=3)
    turn = (lambda a: a.transpose(1, 0, 2)) if op is np.transpose else op
    assert np.array_equal(shades_of_gray(turn(pixels)), turn(shades_of_gray(pixels)))


def test_load_and_prepare_applies_shades_of_gray_only_when_asked(tmp_path):
    image = Image.fromarray(np.clip(lesion_like(80, seed=1) * [1.2, 1.0, 0.7], 0, 255).astype(np.uint8))
    plain, corrected = load_and_prepare(image, 64), load_and_prepare(image, 64, colour_constancy=6)
    assert np.array_equal(corrected, shades_of_gray(plain, 6))
    assert not np.array_equal(plain, corrected)
