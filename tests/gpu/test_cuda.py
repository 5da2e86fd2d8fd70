"""What only a GPU can check (marker ``gpu``; ``benchmarks/gpu_check.py`` runs them).

Training on the device, bf16/fp16 autocast with and without a GradScaler, channels-last in 2D
and 3D, identical weights from identical seeds, DDP over NCCL through torchrun (two GPUs or
more), sliding windows accumulated on the device and the CPU fallback after an out-of-memory
error (injected: a real one is hard to provoke on a large GPU), ONNX export of a CUDA model, and
a checkpoint written on the GPU read on the CPU. Every test skips with its reason on a machine
without CUDA; ``tests/infer/test_placement.py`` covers the fallback's logic on any machine.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unetkit.config import Config, apply_overrides
from unetkit.nn import build_model

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(GPUS == 0, reason="no CUDA device: GPU checks skipped")]
CUDA = torch.device("cuda")


def tiny(*overrides: str) -> Config:
    """A small 2D run on the GPU: 10 steps of a base-8 U-Net on 64x64 patches."""
    base = ["model.base_width=8", "model.depth=3", "model.norm=instance",
            "data.patch_size=[64, 64]", "data.batch_size=4", "data.val_fraction=0.25",
            "data.augment.enabled=true", "train.steps_per_epoch=5", "train.epochs=2",
            "train.lr=0.01", "train.device=cuda"]
    return apply_overrides(Config(), base + list(overrides))


@pytest.fixture(scope="module")
def cells(tmp_path_factory) -> Path:
    from unetkit.data.synthetic import write_cells_dataset

    return write_cells_dataset(tmp_path_factory.mktemp("cells"), 4, size=(96, 96))


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    from unetkit.data.synthetic import write_blobs_dataset

    return write_blobs_dataset(tmp_path_factory.mktemp("blobs") / "d", 4, (32, 40, 32))


@pytest.fixture
def exact(monkeypatch):
    """fp32 convolutions without TF32, so that GPU and CPU results compare closely."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


def test_a_2d_run_trains_on_the_gpu_and_its_checkpoint_loads_on_the_cpu(cells, tmp_path,
                                                                        exact):
    from unetkit.infer.predictor import Predictor
    from unetkit.runtime.checkpoint import load_checkpoint
    from unetkit.train.fit import fit

    losses: list[float] = []
    result = fit(tiny(), cells, tmp_path / "run", on_step=lambda info: losses.append(
        info["loss"]))
    assert {p.device.type for p in result.model.parameters()} == {"cuda"}
    assert result.steps == 10 and np.all(np.isfinite(losses))
    raw = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # as the GPU wrote it
    moments = [t for s in raw["optimizer_state"]["state"].values() for t in s.values()
               if isinstance(t, torch.Tensor) and t.dim() > 0]
    assert moments and all(t.is_cuda for t in moments)
    loaded = load_checkpoint(tmp_path / "run" / "last.pt")  # what a CPU-only machine reads
    assert all(not t.is_cuda for t in loaded["model_state"].values())
    image = np.random.default_rng(0).uniform(0, 255, (1, 96, 96)).astype(np.float32)
    fp32 = {"infer.precision": "fp32"}
    on_cpu = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", settings=fp32,
                                       device="cpu")
    on_gpu = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", settings=fp32,
                                       device="cuda")
    agree = np.mean(on_cpu.predict(image).labels == on_gpu.predict(image).labels)
    assert agree > 0.999  # other kernels, other rounding: at most a near-tie pixel or two


def test_a_planned_3d_run_trains_on_the_gpu_in_the_layout_of_its_norm(blobs, tmp_path):
    from unetkit.plan.auto import run_config
    from unetkit.runtime.device import channels_last_auto
    from unetkit.train.fit import fit

    config, _ = run_config(blobs, None, {"train.device": "cuda", "train.epochs": 2},
                           ["train.steps_per_epoch=4"])
    assert config.model.spatial_dims == 3
    result = fit(config, blobs, tmp_path / "run")
    conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_cuda
    # instance norm (the planner's): contiguous on CUDA; batch norm: channels-last
    channels_last = channels_last_auto(CUDA, config.model.norm)
    assert channels_last == (config.model.norm not in ("instance", "group"))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d if channels_last
                                     else torch.contiguous_format)
    assert result.steps == 8


@pytest.mark.parametrize(("precision", "scaler"), [("bf16", False), ("fp16", True)])
def test_autocast_with_and_without_grad_scaler(cells, tmp_path, precision, scaler):
    from unetkit.runtime.checkpoint import load_checkpoint
    from unetkit.runtime.device import autocast, resolve_precision
    from unetkit.train.fit import fit

    if precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bf16")
    plan = resolve_precision(precision, "auto", CUDA)
    assert (plan.use_scaler, plan.channels_last) == (scaler, True)
    model = build_model("unet", out_channels=2, base_width=8, depth=3).to(CUDA)
    with autocast(plan, CUDA):
        assert model(torch.randn(2, 1, 64, 64, device=CUDA)).dtype == plan.dtype
    result = fit(tiny(f"train.precision={precision}", "train.epochs=1"), cells, tmp_path / "r")
    assert result.steps == 5
    saved = load_checkpoint(tmp_path / "r" / "last.pt")
    assert (saved["scaler_state"] is not None) == scaler
    assert all(torch.isfinite(t).all() for t in saved["model_state"].values()
               if t.is_floating_point())


def test_auto_precision_follows_the_compute_capability():
    from unetkit.runtime.device import resolve_precision

    plan = resolve_precision("auto", "auto", CUDA)
    native = torch.cuda.get_device_capability()[0] >= 8
    assert (plan.name, plan.use_scaler) == (("bf16", False) if native else ("fp16", True))


@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("dims", [2, 3])
def test_channels_last_gives_the_contiguous_result(dims, norm, exact):
    from unetkit.runtime.device import PrecisionPlan, model_to_memory_format, to_memory_format

    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=dims, out_channels=3, base_width=8, depth=3,
                        norm=norm).to(CUDA).eval()
    x = torch.randn(2, 1, *([32] * dims), device=CUDA)
    with torch.no_grad():
        reference = model(x)
    plan = PrecisionPlan(None, False, True)
    model_to_memory_format(model, plan, dims)
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    conv = next(m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    assert conv.weight.is_contiguous(memory_format=layout)
    with torch.no_grad():
        out = model(to_memory_format(x, plan))
    if norm == "batch":  # CUDA's instance norm returns contiguous maps (hence the layout rule)
        assert out.is_contiguous(memory_format=layout)
    torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)


def test_the_same_seed_gives_identical_weights(cells, tmp_path, monkeypatch):
    from unetkit.train.fit import fit

    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    states = [fit(tiny("train.seed=7", "train.precision=fp32"), cells,
                  tmp_path / f"run{i}").model.state_dict() for i in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    other = fit(tiny("train.seed=8", "train.precision=fp32"), cells, tmp_path / "other")
    assert not all(torch.equal(states[0][k], v) for k, v in other.model.state_dict().items())


@pytest.mark.skipif(GPUS < 2, reason=f"DDP over NCCL needs 2 GPUs, this machine has {GPUS}")
def test_torchrun_ddp_over_nccl(cells, tmp_path):
    launcher = Path(sys.executable).with_name("torchrun")
    command = [str(launcher) if launcher.is_file() else sys.executable,
               *([] if launcher.is_file() else ["-m", "torch.distributed.run"]),
               "--standalone", "--nproc_per_node", "2", "-m", "unetkit", "train", "--data",
               str(cells), "--out", "run", "--epochs", "2", "--device", "cuda",
               "--patch-size", "64", "--set", "model.base_width=8", "--set", "model.depth=3",
               "--set", "train.steps_per_epoch=5", "--quiet"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert "training on cuda:0" in log and "2 process(es)" in log
    assert "lock-step: 2 processes ended at step 10 with identical weights" in log


def test_tiled_prediction_accumulates_on_the_gpu_and_falls_back_to_the_cpu(
        make_checkpoint, exact, caplog):
    from unetkit.infer.predictor import Predictor

    path = make_checkpoint(out_channels=3)
    settings = {"infer.window": [32, 32], "infer.overlap": 0.5}
    image = np.random.default_rng(0).normal(5, 3, (1, 150, 130)).astype(np.float32)
    on_cpu = Predictor.from_checkpoint(path, settings=settings, device="cpu")
    on_gpu = Predictor.from_checkpoint(path, settings=settings, device="cuda")
    x, _ = on_cpu.preprocess(image)
    expected = on_cpu.predict_logits(x)
    torch.cuda.reset_peak_memory_stats()
    logits = on_gpu.predict_logits(x)
    assert logits.device.type == "cuda"  # windows and accumulators stayed on the device
    torch.testing.assert_close(logits.cpu(), expected, atol=1e-4, rtol=1e-4)
    real = on_gpu.network

    def out_of_memory(batch: torch.Tensor) -> torch.Tensor:  # a full GPU, injected
        if batch.is_cuda:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")
        return real(batch)  # the network still runs on the GPU, window batch by batch

    on_gpu.network = out_of_memory
    with caplog.at_level(logging.WARNING, logger="unetkit.infer.placement"):
        fallback = on_gpu.predict_logits(x)
    assert fallback.device.type == "cpu"
    torch.testing.assert_close(fallback, logits.cpu(), atol=1e-5, rtol=1e-5)
    assert "retrying with the accumulators and windows on the CPU" in caplog.text
    labels = on_gpu.predict(image).labels  # the whole chain after the fallback
    assert np.mean(labels == on_cpu.predict(image).labels) > 0.999


def test_onnx_export_of_a_cuda_model(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from unetkit.export import export_onnx
    from unetkit.runtime.network import fuse_conv_bn
    from unetkit.runtime.onnx import onnx_network

    torch.manual_seed(0)
    model = build_model("unet", out_channels=2, base_width=8, depth=3, norm="batch")
    model = model.to(CUDA).eval()
    path = export_onnx(fuse_conv_bn(model), tmp_path / "m.onnx",
                       torch.randn(1, 1, 64, 64, device=CUDA))
    x = torch.randn(2, 1, 48, 80)  # another size: the axes are dynamic
    with torch.no_grad():
        reference = model(x.to(CUDA)).float().cpu()
    torch.testing.assert_close(onnx_network(path)(x), reference, atol=1e-3, rtol=1e-3)
