"""Nothing on the GPU path waits for the GPU (marker ``gpu``): an augmented training step and a
blended prediction run under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any
operation that synchronises with the device. Skips without CUDA; the CPU-side checks of the
same (a meta-device batch, counted copies) are ``tests/data/test_augment_device.py`` and
``tests/infer/test_windows_device.py``.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from unetkit.config import AugmentConfig, Config, LossConfig, apply_values
from unetkit.data.augment import Augmenter
from unetkit.losses import DeepSupervisionLoss, build_loss
from unetkit.nn import UNet
from unetkit.runtime.device import resolve_precision
from unetkit.train.step import StepPieces, StepRunner

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="no CUDA device: GPU checks skipped")]
CUDA = torch.device("cuda")
EVERY = ("flip", "rot90", "affine", "elastic", "gamma", "brightness_contrast", "noise", "blur",
         "lowres")


@contextlib.contextmanager
def _no_waits():
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _augmenter(interpolation: str, probability: float = 0.5) -> Augmenter:
    return Augmenter(AugmentConfig(**{f"{name}_prob": probability for name in EVERY},
                                   mask_interpolation=interpolation), 3)


def _batch(seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(3, 1, 20, 28, 20, generator=generator)
    mask = (image[:, 0] > 0.3).long() + (image[:, 0] > 1.2).long()  # labels 0, 1, 2
    return image.to(device), mask.to(device)


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
def test_an_augmented_step_never_waits_for_the_gpu(interpolation):
    torch.manual_seed(0)
    model = UNet(1, 3, spatial_dims=3, widths=[8, 16, 32], depth=2, norm="instance",
                 deep_supervision=True).to(CUDA)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    pieces = StepPieces(model, optimizer, DeepSupervisionLoss(build_loss(LossConfig(), 3)),
                        resolve_precision("bf16", "on", CUDA), CUDA, grad_clip=12.0)
    runner, augmenter = StepRunner(pieces, ["eager"], "eager"), _augmenter(interpolation)
    batches = [_batch(seed, CUDA) for seed in range(8)]
    for seed, (image, mask) in enumerate(batches[:4]):  # warm-up: allocations, cuDNN choices
        runner(*augmenter(image, mask, torch.Generator().manual_seed(seed)), 1e-3)
    losses = []
    with _no_waits():
        for seed, (image, mask) in enumerate(batches[4:], start=4):
            x, y = augmenter(image, mask, torch.Generator().manual_seed(seed))
            losses.append(runner(x, y, 1e-3))
    assert all(torch.isfinite(torch.stack(losses)).tolist())


def test_the_same_seed_augments_alike_on_the_gpu_and_on_the_cpu():
    augmenter = _augmenter("nearest", probability=0.7)
    for seed in range(4):
        image, mask = _batch(seed, torch.device("cpu"))
        on_cpu = augmenter(image, mask, torch.Generator().manual_seed(seed))
        on_gpu = augmenter(image.to(CUDA), mask.to(CUDA), torch.Generator().manual_seed(seed))
        torch.testing.assert_close(on_gpu[0].cpu(), on_cpu[0], atol=1e-3, rtol=1e-3)
        assert (on_gpu[1].cpu() == on_cpu[1]).float().mean() > 0.999


def test_a_gpu_generator_is_refused():
    image, mask = _batch(0, CUDA)
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        _augmenter("nearest")(image, mask, torch.Generator(device=CUDA).manual_seed(0))


def test_a_blended_prediction_with_tta_never_waits_for_the_gpu():
    from unetkit.runtime.checkpoint import build_model_from_config
    from unetkit.train.validation import live_predictor

    config = apply_values(Config(), {
        "model.spatial_dims": 3, "model.in_channels": 1, "model.out_channels": 3,
        "model.base_width": 8, "model.depth": 2, "model.norm": "instance",
        "infer.tta_axes": [0, 1, 2], "infer.window": [16, 16, 16], "train.device": "cuda"})
    plan = resolve_precision("bf16", "auto", CUDA, "instance")
    predictor = live_predictor(build_model_from_config(config), config,
                               {0: "a", 1: "b", 2: "c"}, CUDA, plan)
    x = torch.randn(1, 30, 40, 20, device=CUDA)
    predictor.predict_logits(x)  # warm-up: allocations, cuDNN choices
    with _no_waits():
        logits = predictor.predict_logits(x)
    assert logits.shape == (3, 30, 40, 20) and bool(torch.isfinite(logits).all())
