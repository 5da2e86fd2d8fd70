"""data.image_offset auto: measured at training, stored in the checkpoint, applied by predict."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from unetkit.data.offset import shift_image
from unetkit.infer.predictor import Predictor
from unetkit.runtime.checkpoint import load_checkpoint
from unetkit.train.fit import fit


def offset_disks(root, offset=(0.7, -0.4), n=3, size=48):
    """Bright blurred disks; masks mark image(u + offset)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        disk = np.zeros((size, size))
        for _ in range(4):
            cy, cx = rng.integers(8, size - 8, 2)
            disk[(yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(3, 7) ** 2] = 1.0
        image = ndimage.gaussian_filter(disk, 1.5) * 150 + 50
        marked = ndimage.shift(image, [-v for v in offset], order=3, mode="mirror") > 110
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(marked.astype(np.uint8) * 255).save(root / "masks" / f"c{i}.png")
    return root


@pytest.mark.slow
def test_auto_offset_is_measured_stored_and_applied(tmp_path, tiny_config):
    data = offset_disks(tmp_path / "data")
    config = tiny_config("data.image_offset=auto", "data.patch_size=[48, 48]",
                         "data.val_fraction=0")
    fit(config, data, tmp_path / "run")
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    offset = checkpoint["config"]["data"]["image_offset"]
    np.testing.assert_allclose(offset, [0.7, -0.4], atol=0.2)
    assert "image_offset:\n  - " in (tmp_path / "run" / "config.yaml").read_text()
    image = np.asarray(Image.open(data / "images" / "c0.png"), np.float32)[None]
    shifted = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", device="cpu")
    plain = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", device="cpu",
                                      overrides=["data.image_offset=null"])
    np.testing.assert_allclose(shifted.predict(image).probabilities,
                               plain.predict(shift_image(image, offset)).probabilities, atol=1e-5)
    assert not np.allclose(plain.predict(image).probabilities,
                           shifted.predict(image).probabilities, atol=1e-3)


@pytest.mark.slow
def test_in_run_calibration_sees_what_predict_sees(tmp_path, tiny_config):
    """The end-of-run calibration (on the run's aligned, normalised arrays) and ``unetkit
    calibrate`` (on the files, through the predictor) compute the same curve."""
    import shutil

    from unetkit.infer.calibration import calibrate_checkpoint

    data = offset_disks(tmp_path / "data")
    config = tiny_config("data.image_offset=auto", "data.patch_size=[48, 48]",
                         "data.val_fraction=0", "infer.threshold=auto", "infer.tta_axes=[0, 1]")
    record = fit(config, data, tmp_path / "run").calibration
    copy = tmp_path / "copy.pt"
    shutil.copy(tmp_path / "run" / "best.pt", copy)
    again = calibrate_checkpoint(copy, data, device="cpu")
    assert again.threshold == record["threshold"]
    for key, value in record["curve"].items():
        assert again.curve[key] == pytest.approx(value, abs=1e-4)
