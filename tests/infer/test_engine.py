"""infer.engine: the rule behind auto, the verified ONNX cache, the fallback to torch."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from unetkit.infer.predictor import Predictor, label_map
from unetkit.runtime import engine, onnx_cache
from unetkit.runtime.device import PrecisionPlan, resolve_precision

FP32 = PrecisionPlan(dtype=None, use_scaler=False, channels_last=True)
BF16 = PrecisionPlan(dtype=torch.bfloat16, use_scaler=False, channels_last=True)
CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private ONNX cache folder (never the user's ~/.cache)."""
    folder = tmp_path / "cache"
    monkeypatch.setattr(onnx_cache, "cache_dir", lambda: folder)
    return folder


def test_auto_follows_the_measured_rule(monkeypatch) -> None:
    monkeypatch.setattr(engine, "cpu_kind", lambda: "avx2")
    monkeypatch.setattr(engine, "FASTER_FP32", {"avx2": "torch", "avx512": "onnxruntime"})
    assert engine.choose_engine("auto", CPU, FP32).name == "torch"
    monkeypatch.setattr(engine, "cpu_kind", lambda: "avx512")
    choice = engine.choose_engine("auto", CPU, FP32)
    assert choice.name == "onnxruntime" and "avx512" in choice.reason
    # bf16 autocast (CPUs with native bf16) and GPUs stay with torch; unmeasured kinds too
    assert engine.choose_engine("auto", CPU, BF16).name == "torch"
    assert engine.choose_engine("auto", torch.device("cuda"), FP32).name == "torch"
    assert engine.choose_engine("onnxruntime", torch.device("cuda"), FP32).name == "torch"
    monkeypatch.setattr(engine, "cpu_kind", lambda: "other")
    assert engine.choose_engine("auto", CPU, FP32).name == "torch"
    # explicit choices are kept on a CPU
    assert engine.choose_engine("onnxruntime", CPU, BF16).name == "onnxruntime"
    assert engine.choose_engine("torch", CPU, FP32).name == "torch"
    monkeypatch.setattr(engine, "cpu_kind", lambda: "avx512")
    monkeypatch.setattr(engine, "onnxruntime_installed", lambda: False)
    assert "not installed" in engine.choose_engine("auto", CPU, FP32).reason


@pytest.mark.parametrize(("kind", "expected"), [
    ("amx", "bf16"), ("avx512_bf16", "bf16"), ("avx512", "fp32"), ("avx2", "fp32")])
def test_auto_on_each_cpu_kind(pretend_cpu, make_checkpoint, kind, expected) -> None:
    """What ``auto`` gives on each CPU kind, through the real detection (cpuinfo flags and
    torch's probes simulated): bf16 where the CPU has native bf16, fp32 elsewhere, and torch,
    the only engine ``FASTER_FP32`` lists, with a reason that names the kind."""
    pretend_cpu(kind)
    assert engine.cpu_kind() == kind
    plan = resolve_precision("auto", "auto", CPU)
    assert plan.name == expected
    choice = engine.choose_engine("auto", CPU, plan)
    assert choice.name == "torch" and kind in choice.reason
    predictor = Predictor.from_checkpoint(make_checkpoint(),
                                          settings={"infer.precision": "auto"})
    assert (predictor.plan.name, predictor.engine) == (expected, "torch")


@pytest.mark.parametrize("spatial_dims,size", [(2, (37, 29)), (3, (13, 10, 7))])
def test_onnxruntime_engine_predicts_like_torch(make_checkpoint, cache, spatial_dims, size,
                                                precision) -> None:
    """onnxruntime (always fp32) against torch in each precision, at that precision's
    tolerance; labels agree wherever the two most probable classes are further apart."""
    pytest.importorskip("onnxruntime")
    path = make_checkpoint(spatial_dims=spatial_dims, out_channels=3)
    image = np.random.default_rng(0).normal(5, 3, (1, *size)).astype(np.float32)
    ort = Predictor.from_checkpoint(path, settings={"infer.engine": "onnxruntime"})
    plain = Predictor.from_checkpoint(path, settings={"infer.engine": "torch",
                                                      **precision.settings})
    assert (ort.engine, plain.engine) == ("onnxruntime", "torch")
    assert ort.plan.dtype is None and plain.plan.name == precision.name
    a, b = ort.predict(image), plain.predict(image)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=precision.atol)
    top2 = np.sort(a.probabilities, axis=0)[-2:]
    clear = top2[1] - top2[0] > 2 * precision.atol
    assert np.array_equal(a.labels[clear], b.labels[clear])
    assert clear.mean() > 0.5  # the comparison covers most of the image
    assert len(list(cache.glob("*.onnx"))) == 1


def test_cache_is_keyed_by_content_and_reused(make_checkpoint, cache, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    path = make_checkpoint()  # settings change the engine and keep the checkpoint's fp32
    first = Predictor.from_checkpoint(path, settings={"infer.engine": "onnxruntime"})
    stored = onnx_cache.cache_path(path)
    assert first.engine == "onnxruntime" and stored.is_file()
    stamp = stored.stat().st_mtime_ns
    export, calls = onnx_cache.export_onnx, []
    monkeypatch.setattr(onnx_cache, "export_onnx", lambda *a, **k: calls.append(a))
    again = Predictor.from_checkpoint(path, settings={"infer.engine": "onnxruntime"})
    assert again.engine == "onnxruntime"
    assert calls == [] and stored.stat().st_mtime_ns == stamp  # no second export
    monkeypatch.setattr(onnx_cache, "export_onnx", export)
    # a retrained checkpoint at the same path gets its own file, never the stale one
    retrained = make_checkpoint(seed=5)
    assert retrained == path and onnx_cache.cache_path(retrained) != stored
    image = np.random.default_rng(1).normal(0, 1, (1, 24, 20)).astype(np.float32)
    ort = Predictor.from_checkpoint(retrained, settings={"infer.engine": "onnxruntime"})
    torch_pred = Predictor.from_checkpoint(retrained, settings={"infer.engine": "torch"})
    assert torch_pred.plan.name == "fp32"
    np.testing.assert_allclose(ort.predict(image).probabilities,
                               torch_pred.predict(image).probabilities, atol=1e-5)
    assert len(list(cache.glob("*.onnx"))) == 2 and not list(cache.glob("*.partial"))


@pytest.mark.parametrize("asked,expected", [
    (None, "torch"), ("onnxruntime", "onnxruntime"), ("broken", "torch")])
def test_predict_reports_the_engine_that_ran(make_checkpoint, cache, tmp_path, monkeypatch,
                                            asked, expected) -> None:
    """``unetkit predict`` names the engine that ran: onnxruntime when ``--set`` asked for it,
    torch by default and after a fallback (a verification mismatch)."""
    pytest.importorskip("onnxruntime")
    from PIL import Image
    from typer.testing import CliRunner

    from unetkit.cli import app

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (24, 20), dtype=np.uint8)).save(
        images / "a.png")
    command = ["predict", str(make_checkpoint(out_channels=2)), str(images), "-o",
               str(tmp_path / "out"), "-q"]
    if asked == "broken":
        monkeypatch.setattr(onnx_cache, "max_difference", lambda *a, **k: 0.5)
    if asked is not None:
        command += ["--set", "infer.engine=onnxruntime"]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert f"(fp32, {expected})" in result.output


def test_a_failed_verification_falls_back_to_torch(make_checkpoint, cache, monkeypatch,
                                                   caplog) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(onnx_cache, "max_difference", lambda *a, **k: 0.5)
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        predictor = Predictor.from_checkpoint(make_checkpoint(),
                                              settings={"infer.engine": "onnxruntime"})
    assert predictor.engine == "torch"
    assert "differs from PyTorch by 0.5" in caplog.text and "running torch" in caplog.text
    assert not list(cache.iterdir())  # nothing unverified is kept


def test_missing_onnxruntime_falls_back_to_torch(make_checkpoint, cache, monkeypatch,
                                                 caplog) -> None:
    def missing(**_: object) -> None:
        raise ImportError("ONNX export needs the onnxruntime package: pip install "
                          "'unetkit[onnx]'")

    monkeypatch.setattr(onnx_cache, "require_onnx_export", missing)
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        predictor = Predictor.from_checkpoint(make_checkpoint(),
                                              settings={"infer.engine": "onnxruntime"})
    assert predictor.engine == "torch" and "unetkit[onnx]" in caplog.text


def test_an_unwritable_cache_falls_back_to_torch(make_checkpoint, tmp_path, monkeypatch,
                                                 caplog) -> None:
    pytest.importorskip("onnxruntime")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(onnx_cache, "cache_dir", lambda: blocker / "onnx")
    with caplog.at_level(logging.WARNING, logger="unetkit"):
        predictor = Predictor.from_checkpoint(make_checkpoint(),
                                              settings={"infer.engine": "onnxruntime"})
    assert predictor.engine == "torch" and "running torch" in caplog.text


def test_explicit_onnx_files_still_work(make_checkpoint, cache, tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from unetkit.export import export_checkpoint

    path = make_checkpoint(out_channels=2)
    onnx_path = export_checkpoint(path, tmp_path / "m.onnx").path
    image = np.random.default_rng(2).normal(0, 1, (1, 20, 24)).astype(np.float32)
    expected = Predictor.from_checkpoint(path, settings={"infer.engine": "torch"}).predict(image)
    for predictor in (Predictor.from_onnx(onnx_path),
                      Predictor.from_checkpoint(path, onnx=onnx_path)):
        assert predictor.engine == "onnxruntime"
        assert np.array_equal(predictor.predict(image).labels, expected.labels)
    assert not cache.exists()  # an explicit file is used as it is


def test_label_map_is_chunked_and_keeps_dtypes() -> None:
    classes = np.random.default_rng(3).integers(0, 3, (37, 29)).astype(np.uint8)
    identity = label_map(classes, np.arange(3))
    assert identity.dtype == np.uint8 and np.array_equal(identity, classes)
    values = np.array([0, 128, 255])
    mapped = label_map(classes, values, chunk=100)
    assert mapped.dtype == np.uint8 and np.array_equal(mapped, values[classes])
    wide = np.array([0, 7, 300])
    out = label_map(classes, wide, chunk=64)
    assert out.dtype == np.int32 and np.array_equal(out, wide[classes])
    assert label_map(np.zeros((4, 4), np.uint8), wide).dtype == np.uint8  # 300 never chosen
