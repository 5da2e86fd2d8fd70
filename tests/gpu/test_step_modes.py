"""Step modes on a GPU (marker ``gpu``): a CUDA graph of the whole step captures, replays with
the eager step's results, holds no host read-back, and a run tries, times and caches the modes.

``tests/runtime/test_graphs.py`` and ``tests/train/test_step.py`` cover the same logic on the
CPU through a recording backend; these check the CUDA side itself.
"""

from __future__ import annotations

import pytest
import torch

from unetkit.config import Config, LossConfig, apply_overrides
from unetkit.losses import DeepSupervisionLoss, build_loss
from unetkit.nn import UNet
from unetkit.runtime.compile import TimingCache
from unetkit.runtime.device import resolve_precision
from unetkit.train.step import WARMUP, StepPieces, StepRunner, forward_loss, step_function

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device: GPU checks skipped")]
CUDA = torch.device("cuda")


def _pieces(precision: str = "bf16") -> StepPieces:
    torch.manual_seed(0)
    model = UNet(1, 3, spatial_dims=3, widths=[8, 16, 32], depth=2, norm="instance",
                 deep_supervision=True).to(CUDA)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    plan = resolve_precision(precision, "on", CUDA)
    loss = DeepSupervisionLoss(build_loss(LossConfig(), 3))
    return StepPieces(model, optimizer, loss, plan, CUDA, grad_clip=12.0)


def _batches(n: int):
    generator = torch.Generator(device=CUDA).manual_seed(0)
    return [(torch.randn(2, 1, 16, 24, 16, device=CUDA, generator=generator),
             torch.randint(0, 3, (2, 16, 24, 16), device=CUDA, generator=generator))
            for _ in range(n)]


def test_the_whole_step_captures_and_replays_like_eager():
    eager, graphed = _pieces(), _pieces()
    eager_step = step_function(eager, forward_loss)
    runner = StepRunner(graphed, ["graphs"], "graphs")
    for i, (x, y) in enumerate(_batches(WARMUP["graphs"] + 6)):
        lr = 1e-3 * (1 - i / 20)
        for group in eager.optimizer.param_groups:
            group["lr"] = lr
        expected = eager_step(x, y)
        got = runner(x, y, lr)
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-4)
    graph = runner.steps["graphs"]
    assert graph.failed is None and graph.captured, graph.failed
    for a, b in zip(eager.model.parameters(), graphed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def test_an_eager_step_and_its_loss_meter_never_wait_for_the_gpu():
    """PyTorch's sync debug mode raises on any operation that waits for the device: none in the
    step (the loss's label check is skipped there) or in adding its loss to the meter."""
    from unetkit.train.loss_meter import LossMeter

    runner = StepRunner(_pieces(), ["eager"], "eager")
    meter = LossMeter(CUDA, every=100)
    batches = _batches(WARMUP["eager"] + 5)
    for step, (x, y) in enumerate(batches[:WARMUP["eager"]]):
        meter.add(runner(x, y, 1e-3), step)  # warm-up: allocation, cuDNN choices
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step, (x, y) in enumerate(batches[WARMUP["eager"]:], start=WARMUP["eager"]):
            meter.add(runner(x, y, 1e-3), step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert meter.read() > 0


def test_a_run_tries_the_modes_and_caches_them(tmp_path):
    cache = TimingCache(tmp_path / "t.json")
    runner = StepRunner(_pieces(), ["eager", "graphs"], None, cache=cache, key="k",
                        sync=torch.cuda.synchronize)
    for x, y in _batches(40):
        runner(x, y, 1e-3)
    assert set(cache.get("k")) == {"eager", "graphs"}
    assert runner.mode == min(runner.timings, key=lambda m: runner.timings[m].step_s)


def test_a_run_with_a_graph_and_batch_workers(tmp_path, caplog):
    """``fit`` end to end: the step captured, batches drawn and augmented by two workers, the
    loss read back every few steps; the run's losses are finite and it records its choices."""
    import logging

    from unetkit.data.synthetic import write_cells_dataset
    from unetkit.runtime.checkpoint import load_checkpoint
    from unetkit.train.fit import fit

    data = write_cells_dataset(tmp_path / "cells", 4, size=(96, 96))
    config = apply_overrides(Config(), [
        "model.base_width=8", "model.depth=3", "model.norm=instance", "data.patch_size=[64, 64]",
        "data.batch_size=4", "data.val_fraction=0.25", "train.steps_per_epoch=20",
        "train.epochs=2", "train.device=cuda", "train.cuda_graphs=on", "train.compile=off",
        "train.precision=bf16", "data.num_workers=2"])
    with caplog.at_level(logging.INFO):
        result = fit(config, data, tmp_path / "run")
    assert "training step captured" in caplog.text and "capture failed" not in caplog.text
    assert result.steps == 40 and all(r["train_loss"] < 10 for r in result.history)
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["config"]["data"]["augment"]["device"] == "cpu"
    assert all(isinstance(g["lr"], float) for g in saved["optimizer_state"]["param_groups"])
