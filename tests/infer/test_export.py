"""Export: ONNX and TorchScript reproduce PyTorch to 1e-4 at two sizes; ONNX predicts alike."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unetkit.export import ExportError, check_sizes, export_checkpoint, verify
from unetkit.infer.predictor import Predictor
from unetkit.runtime.checkpoint import load_checkpoint, model_from_checkpoint
from unetkit.runtime.onnx import read_metadata

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_export_matches_pytorch_on_two_sizes(make_checkpoint, tmp_path, fmt, spatial_dims):
    path = make_checkpoint(spatial_dims=spatial_dims, in_channels=2, out_channels=3)
    result = export_checkpoint(path, tmp_path / f"model.{fmt}", fmt)
    assert result.path.is_file()
    assert len(result.max_abs_diff) == 2 and result.worst <= 1e-4
    # independent re-check on other sizes, against the unfused checkpoint model
    model = model_from_checkpoint(load_checkpoint(path))
    sizes = [(12,) * spatial_dims, (20, 8, 16)[:spatial_dims]]
    diffs = verify(model, result.path, fmt, sizes, in_channels=2, seed=3)
    assert max(diffs.values()) <= 1e-4


def test_valid_model_exports_with_dynamic_sizes(make_checkpoint, tmp_path) -> None:
    path = make_checkpoint(padding="valid", out_channels=2)
    result = export_checkpoint(path, tmp_path / "valid.onnx", "onnx")
    assert result.worst <= 1e-4
    sizes = list(result.max_abs_diff)
    assert sizes[0] != sizes[1]


def test_anisotropic_model_exports_on_per_axis_sizes(make_checkpoint, tmp_path) -> None:
    path = make_checkpoint(spatial_dims=3, out_channels=2, strides=[[1, 2, 2], [2, 2, 2]],
                           kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]])
    model = model_from_checkpoint(load_checkpoint(path))
    assert check_sizes(model, 3) == [(4, 8, 8), (6, 12, 12)]  # multiples of (2, 4, 4)
    result = export_checkpoint(path, tmp_path / "aniso.onnx", "onnx")
    assert list(result.max_abs_diff) == [(4, 8, 8), (6, 12, 12)] and result.worst <= 1e-4


def test_metadata_travels_and_onnx_predicts_like_pytorch(make_checkpoint, tmp_path) -> None:
    norm = {"scheme": "zscore_dataset", "stats": {"mean": [3.0], "std": [2.0]}}
    path = make_checkpoint(out_channels=1, normalization=norm, mask_values={0: 0, 1: 255},
                           infer={"overlap": 0.5, "tta_axes": [1]})
    onnx_path = export_checkpoint(path, tmp_path / "m.onnx").path
    meta = read_metadata(onnx_path)
    assert meta["labels"] == {0: "background", 1: "c1"}
    assert meta["mask_values"] == {0: 0, 1: 255}
    assert meta["preprocessing"]["normalization"]["stats"]["mean"] == [3.0]
    image = np.random.default_rng(0).normal(3, 2, (1, 26, 19)).astype(np.float32)
    torch_pred = Predictor.from_checkpoint(path).predict(image)
    for predictor in (Predictor.from_onnx(onnx_path), Predictor.from_checkpoint(path,
                                                                                onnx=onnx_path)):
        assert predictor.infer.tta_axes == [1]
        out = predictor.predict(image)
        np.testing.assert_allclose(out.probabilities, torch_pred.probabilities, atol=1e-4)
        assert predictor.write_values(np.array([1])).tolist() == [255]
    ts = export_checkpoint(path, tmp_path / "m.ts", "torchscript").path
    extra = {"unetkit.json": ""}
    torch.jit.load(str(ts), _extra_files=extra)
    assert json.loads(extra["unetkit.json"])["mask_values"] == {"0": 0, "1": 255}


def test_mismatch_is_an_error(make_checkpoint, tmp_path) -> None:
    path = make_checkpoint()
    export_checkpoint(path, tmp_path / "a.onnx")
    other = model_from_checkpoint(load_checkpoint(make_checkpoint("other.pt", seed=7)))
    diffs = verify(other, tmp_path / "a.onnx", "onnx", [(8, 8)], in_channels=1)
    assert max(diffs.values()) > 1e-3
    with pytest.raises(ExportError, match="exceeds"):
        export_checkpoint(path, tmp_path / "b.onnx", tolerance=1e-30)  # nothing can pass
    with pytest.raises(ValueError, match="tolerance -1: expected a positive number"):
        export_checkpoint(path, tmp_path / "b.onnx", tolerance=-1.0)  # meaningless
    with pytest.raises(ValueError, match="format"):
        export_checkpoint(path, tmp_path / "c.x", "tflite")
    with pytest.raises(ValueError, match="metadata"):
        import onnx

        bare = onnx.load(str(tmp_path / "a.onnx"))
        del bare.metadata_props[:]
        onnx.save(bare, str(tmp_path / "bare.onnx"))
        read_metadata(tmp_path / "bare.onnx")
