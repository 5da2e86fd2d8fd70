"""Region models on the GPU (marker ``gpu``; skipped without CUDA): the region loss, its
gradient and the painting give on the device what they give on the CPU, under bf16 autocast
too, and a region run trains and predicts on the device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetkit.config import Config, apply_overrides
from unetkit.data.synthetic_regions import write_nested_dataset
from unetkit.infer.decision import decide_regions
from unetkit.infer.predictor import Predictor
from unetkit.losses.regions import RegionLoss
from unetkit.train.fit import fit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device: GPU checks skipped")]
BRATS = [[1, 2, 3], [2, 3], [3]]


def test_region_loss_gradient_and_painting_match_the_cpu() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 24, 24, 8)
    labels = torch.randint(0, 4, (2, 24, 24, 8))
    labels[0, :4] = 255  # ignored
    loss = RegionLoss(BRATS, batch_dice=True, ignore_index=255)
    results = []
    for device in ("cpu", "cuda"):
        x = logits.to(device).requires_grad_(True)
        value = loss(x, labels.to(device))
        value.backward()
        results.append((value.item(), x.grad.cpu(), decide_regions(x.detach()[0], [1, 2, 3])))
    (cpu_value, cpu_grad, cpu_paint), (gpu_value, gpu_grad, gpu_paint) = results
    assert gpu_value == pytest.approx(cpu_value, rel=1e-5)
    torch.testing.assert_close(gpu_grad, cpu_grad, rtol=1e-4, atol=1e-7)
    assert torch.equal(gpu_paint.cpu(), cpu_paint)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # logits of a bf16 forward
        half = loss(logits.cuda().bfloat16(), labels.cuda())
    assert half.dtype == torch.float32 and half.item() == pytest.approx(cpu_value, rel=2e-2)


def test_a_region_run_trains_and_predicts_on_the_gpu(tmp_path) -> None:
    data = write_nested_dataset(tmp_path / "nested", 4, (32, 32, 32))
    config = apply_overrides(Config(), [
        "model.spatial_dims=3", "model.base_width=8", "model.depth=3", "model.norm=instance",
        "data.patch_size=[32, 32, 32]", "data.batch_size=2", "data.val_fraction=0.25",
        "train.steps_per_epoch=5", "train.epochs=2", "train.device=cuda"])
    fit(config, data, tmp_path / "run")
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "best.pt", device="cuda")
    prediction = predictor.predict(data / "imagesTr" / "nested_000_0000.nii.gz")
    assert prediction.probabilities.shape == (3, 32, 32, 32)
    assert set(np.unique(prediction.labels).tolist()) <= {0, 1, 2, 3}


def test_a_region_step_captures_in_a_cuda_graph_and_never_waits_for_the_gpu() -> None:
    """The region loss builds its region maps from comparisons with Python ints: no tensor is
    copied to the device per step, so the training step of a region model is captured in a
    CUDA graph and, eager, never waits for the device (ignored pixels included)."""
    from unetkit.losses import DeepSupervisionLoss
    from unetkit.nn import UNet
    from unetkit.runtime.device import resolve_precision
    from unetkit.train.step import WARMUP, StepPieces, StepRunner

    cuda = torch.device("cuda")

    def pieces() -> StepPieces:
        torch.manual_seed(0)
        model = UNet(1, 3, spatial_dims=3, widths=[8, 16, 32], depth=2, norm="instance",
                     deep_supervision=True).to(cuda)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        loss = DeepSupervisionLoss(RegionLoss(BRATS, ignore_index=255))
        return StepPieces(model, optimizer, loss, resolve_precision("bf16", "on", cuda), cuda,
                          grad_clip=12.0)

    generator = torch.Generator(device=cuda).manual_seed(0)
    batches = []
    for _ in range(WARMUP["graphs"] + WARMUP["eager"] + 4):
        labels = torch.randint(0, 4, (2, 16, 24, 16), device=cuda, generator=generator)
        labels[:, :4] = 255  # unlabelled
        batches.append((torch.randn(2, 1, 16, 24, 16, device=cuda, generator=generator), labels))
    graphed = StepRunner(pieces(), ["graphs"], "graphs")
    for x, y in batches[:WARMUP["graphs"] + 3]:
        assert torch.isfinite(graphed(x, y, 1e-3))
    graph = graphed.steps["graphs"]
    assert graph.failed is None and graph.captured, graph.failed
    eager = StepRunner(pieces(), ["eager"], "eager")
    for x, y in batches[:WARMUP["eager"]]:
        eager(x, y, 1e-3)  # warm-up: allocation, cuDNN choices
    torch.cuda.set_sync_debug_mode("error")
    try:
        for x, y in batches[WARMUP["eager"]:]:
            eager(x, y, 1e-3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
