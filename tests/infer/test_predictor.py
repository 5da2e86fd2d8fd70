"""Predictor: normalisation, padding/cropping, strategies, TTA, precision and BN folding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import InferConfig
from unetkit.data.normalization import Normalizer
from unetkit.infer.predictor import Predictor
from unetkit.infer.tiling import plan_window
from unetkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint
from unetkit.runtime.network import fuse_conv_bn


def reference(path, image: np.ndarray) -> torch.Tensor:
    """Independent whole-image prediction: normalise, zero-pad to a multiple of 4 (as training
    patches past the image are filled), forward."""
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint)
    state = checkpoint["preprocessing"]["normalization"]
    x = torch.from_numpy(Normalizer.from_state_dict(state)(image))[None]
    spatial = x.shape[2:]
    target = [-(-n // 4) * 4 for n in spatial]
    before = [(t - n) // 2 for t, n in zip(target, spatial, strict=True)]
    after = [t - n - b for t, n, b in zip(target, spatial, before, strict=True)]
    with torch.no_grad():
        logits = model(torch.nn.functional.pad(
            x, [p for b, a in zip(before[::-1], after[::-1], strict=True) for p in (b, a)]))
    crop = tuple(slice(b, b + n) for b, n in zip(before, spatial, strict=True))
    return logits[(slice(None), slice(None), *crop)][0]


@pytest.mark.parametrize("spatial_dims,size", [(2, (37, 29)), (3, (13, 10, 7))])
def test_whole_image_prediction_matches_reference(make_checkpoint, spatial_dims, size) -> None:
    path = make_checkpoint(spatial_dims=spatial_dims, out_channels=3)
    image = np.random.default_rng(0).normal(5, 3, (1, *size)).astype(np.float32)
    prediction = Predictor.from_checkpoint(path).predict(image)
    expected = torch.softmax(reference(path, image), 0)
    assert prediction.probabilities.shape == (3, *size)
    assert prediction.probabilities.dtype == np.float32
    np.testing.assert_allclose(prediction.probabilities, expected.numpy(), atol=1e-5)
    assert np.array_equal(prediction.labels, expected.argmax(0).numpy())


def test_binary_sigmoid_model_and_dataset_normalisation(make_checkpoint) -> None:
    norm = {"scheme": "zscore_dataset", "stats": {"mean": [100.0], "std": [20.0]}}
    path = make_checkpoint(out_channels=1, normalization=norm)
    image = np.random.default_rng(1).normal(100, 20, (1, 24, 20)).astype(np.float32)
    prediction = Predictor.from_checkpoint(path).predict(image)
    p = torch.sigmoid(reference(path, image)[0]).numpy()
    np.testing.assert_allclose(prediction.probabilities[1], p, atol=1e-5)
    np.testing.assert_allclose(prediction.probabilities.sum(0), 1.0, atol=1e-6)
    assert np.array_equal(prediction.labels, (p > 0.5).astype(np.uint8))


def test_fuse_conv_bn_keeps_outputs(make_checkpoint) -> None:
    model = model_from_checkpoint(load_checkpoint(make_checkpoint(spatial_dims=3)))
    fused = fuse_conv_bn(model)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())  # original intact
    x = torch.randn(2, 1, 8, 12, 8)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)


def test_tiled_and_region_strategies_agree(make_checkpoint) -> None:
    path = make_checkpoint(out_channels=3)
    image = np.random.default_rng(2).normal(0, 1, (1, 41, 35)).astype(np.float32)
    tiled = Predictor.from_checkpoint(path, infer=InferConfig(
        window=[16, 16], overlap=0.5, batch_size=8, precision="fp32"))
    full = tiled.predict(image)
    assert full.probabilities is not None
    # a budget too small for the class scores switches to labels written region by region
    bounded = Predictor.from_checkpoint(path, infer=InferConfig(
        window=[16, 16], overlap=0.5, batch_size=8, precision="fp32", memory_budget_mb=0.001))
    region = bounded.predict(image, probabilities=False)
    assert region.probabilities is None
    assert np.array_equal(region.labels, full.labels)
    # tiles agree with the whole-image forward away from tile borders
    whole = Predictor.from_checkpoint(path).predict(image)
    assert (whole.labels == full.labels).mean() > 0.9


def test_plan_window_respects_budget() -> None:
    whole = plan_window((1024, 1024), bytes_per_voxel=1024, out_channels=2, budget_mb=2048,
                        multiple=16)
    assert whole.window == (1024, 1024) and whole.whole
    tiled = plan_window((1024, 1024), bytes_per_voxel=1024, out_channels=2, budget_mb=300,
                        multiple=16)
    assert tiled.tiles == (2, 2) and tiled.window[0] == tiled.window[1]  # even, square tiles
    assert 512 < tiled.window[0] < 600 and tiled.estimate_bytes <= 300 * 2**20
    smallest = plan_window((40, 24), bytes_per_voxel=10**9, out_channels=2, budget_mb=1,
                           multiple=8)
    # cannot shrink further: one multiple per tile plus the shared margin
    assert smallest.window == (16, 16) and smallest.estimate_bytes > 2**20


def test_tta_makes_prediction_flip_equivariant(make_checkpoint) -> None:
    path = make_checkpoint(out_channels=2)
    predictor = Predictor.from_checkpoint(path, infer=InferConfig(tta_axes=[0, 1],
                                                                  precision="fp32"))
    image = np.random.default_rng(3).normal(0, 1, (1, 20, 24)).astype(np.float32)
    a = predictor.predict(image).probabilities
    b = predictor.predict(image[:, ::-1, ::-1].copy()).probabilities
    np.testing.assert_allclose(b, a[:, ::-1, ::-1], atol=1e-5)
    plain = Predictor.from_checkpoint(path).predict(image).probabilities
    assert np.abs(plain - a).max() > 1e-4  # TTA changed something


def test_valid_model_uses_overlap_tile(make_checkpoint) -> None:
    path = make_checkpoint(padding="valid", out_channels=2)
    image = np.random.default_rng(4).normal(0, 1, (1, 30, 23)).astype(np.float32)
    prediction = Predictor.from_checkpoint(path).predict(image)
    assert prediction.labels.shape == (30, 23)
    small = Predictor.from_checkpoint(path, infer=InferConfig(window=[48, 48], precision="fp32"))
    np.testing.assert_allclose(small.predict(image).probabilities, prediction.probabilities,
                               atol=1e-4)


def test_bf16_precision_close_to_fp32(make_checkpoint) -> None:
    path = make_checkpoint(out_channels=3)
    image = np.random.default_rng(5).normal(0, 1, (1, 32, 32)).astype(np.float32)
    fp32 = Predictor.from_checkpoint(path).predict(image)
    bf16 = Predictor.from_checkpoint(path, infer=InferConfig(precision="bf16"))
    assert bf16.plan.name == "bf16"
    out = bf16.predict(image)
    assert out.probabilities.dtype == np.float32
    np.testing.assert_allclose(out.probabilities, fp32.probabilities, atol=0.05)


def test_postprocessing_and_errors(make_checkpoint) -> None:
    path = make_checkpoint(out_channels=3, infer={"postprocess": {"min_size": 10**6}})
    image = np.random.default_rng(6).normal(0, 1, (1, 16, 16)).astype(np.float32)
    assert Predictor.from_checkpoint(path).predict(image).labels.max() == 0
    predictor = Predictor.from_checkpoint(make_checkpoint("b.pt"))
    with pytest.raises(ValueError, match="channels"):
        predictor.predict(np.zeros((2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="spatial axes"):
        predictor.predict(np.zeros((1, 4, 16, 16), np.float32))
    grey_rgb = np.repeat(image, 3, axis=0)
    np.testing.assert_array_equal(predictor.predict(grey_rgb).labels,
                                  predictor.predict(image).labels)


def test_write_values_maps_to_stored_mask_values(make_checkpoint) -> None:
    predictor = Predictor.from_checkpoint(make_checkpoint(out_channels=1,
                                                          mask_values={0: 0, 1: 255}))
    assert predictor.write_values(np.array([[0, 1]])).tolist() == [[0, 255]]
    plain = Predictor.from_checkpoint(make_checkpoint("p.pt", out_channels=1))
    assert plain.write_values(np.array([[0, 1]])).tolist() == [[0, 1]]


def test_bad_settings_are_reported(make_checkpoint) -> None:
    path = make_checkpoint()
    with pytest.raises(ValueError, match="tta_axes"):
        Predictor.from_checkpoint(path, settings={"infer.tta_axes": [2]})
    with pytest.raises(ValueError, match="window"):
        Predictor.from_checkpoint(path, settings={"infer.window": [16, 16, 16]})
    predictor = Predictor.from_checkpoint(path, overrides=["infer.overlap=0.5"])
    assert predictor.infer.overlap == 0.5
    predictor.update({"infer.tta_axes": [0, 1]})
    assert predictor.infer.tta_axes == [0, 1]


def test_warns_when_tta_mirrors_an_axis_training_never_flipped(caplog) -> None:
    from unetkit.config import config_from_dict

    def predictor(augment: dict, tta: list[int]) -> Predictor:
        config = config_from_dict({"model": {"out_channels": 1}, "infer": {"tta_axes": tta},
                                   "data": {"augment": augment}})
        return Predictor(lambda x: x.float(), config=config, labels={0: "bg", 1: "fg"})

    only_x = {"flip_axes": [1], "rot90_prob": 0.0}
    with caplog.at_level("WARNING", logger="unetkit.infer.predictor"):
        predictor(only_x, [1])
        predictor({"flip_axes": [1]}, [0, 1])  # rot90 mixes the axes: every mirror was seen
        predictor({}, [0, 1])
        assert not caplog.records
        predictor(only_x, [0, 1])
    assert len(caplog.records) == 1
    assert "mirrors axes [0]" in caplog.records[0].getMessage()
