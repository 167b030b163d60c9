"""The JPEG re-compression augmentation of the training batches (numpy and Pillow only)."""

import numpy as np

from classifier.training.fit import recompressed
from tests.conftest import lesion_like


def test_recompression_touches_about_the_asked_share_and_keeps_the_pictures():
    batch = np.stack([lesion_like(64, seed=i) for i in range(200)])
    out = recompressed(batch, np.random.default_rng(0), 0.5)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(batch, out, strict=True)])
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert 0.4 < changed.mean() < 0.6
    assert np.abs(out.astype(int) - batch).mean() < 4  # compression noise, not another picture
    assert np.array_equal(recompressed(batch, np.random.default_rng(0), 0.0), batch)
    assert not np.shares_memory(out, batch)


def test_train_refuses_a_jpeg_share_outside_0_to_1(tmp_path, capsys):
    from classifier import cli

    assert cli.main(["train", "--data", str(tmp_path), "--work", str(tmp_path / "w"), "--jpeg-augment", "1.5"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err and not (tmp_path / "w").exists()
