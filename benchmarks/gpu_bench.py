"""Throughput rows of ``gpu_check.py``: training steps and sliding-window inference.

* ``unetkit_training``: one step as ``unetkit train`` takes it (``precision=auto``: bf16 on
  Ampere and later, fp16 + GradScaler before; ``channels_last: auto``, which on CUDA is
  contiguous for these instance-norm plans; fused AdamW; Dice + CE with deep supervision computed
  in float32 from the logits as the network returns them; gradient clipping at 12), augmentation
  left out. ``layout`` forces the other memory layout for comparison.
* ``nnunet_training``: nnU-Net v2's ``PlainConvUNet`` (dynamic-network-architectures) with the
  same stages, widths, strides, kernels, patch and batch, trained as ``nnUNetTrainer.train_step``
  does (fp16 autocast + GradScaler, SGD Nesterov 0.99, ``DC_and_CE_loss`` with its deep
  supervision weights, clipping at 12; ``nnunet_reference.py``): eager (``nnUNet_compile=f``) or
  compiled as nnU-Net runs by default (``torch.compile`` of the network and of the Dice term).
  The loss is nnunetv2's when it is installed, else the reproduction (the row says which); the
  row says "not installed" without dynamic-network-architectures.
* ``inference``: unetkit's ``sliding_window_inference`` vs MONAI's on the same network callable,
  window, overlap and Gaussian weighting, on the device; the labels' agreement says that both
  decide the same.

Every function takes a ``device`` so that the tests run them on the CPU with tiny plans.
GFLOP/s counts the FLOPs of one step with ``torch.utils.flop_counter`` (convolutions and matrix
products: what a GPU spends its time on), times iterations per second.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nnunet_reference  # noqa: E402
from unetkit.config import Config, apply_values  # noqa: E402
from unetkit.runtime.device import (  # noqa: E402
    autocast,
    model_to_memory_format,
    resolve_precision,
    to_memory_format,
)


@dataclass(frozen=True)
class Plan:
    """One network plan, nnU-Net style: per-stage widths, pooling strides, kernels."""

    name: str
    patch: tuple[int, ...]
    batch: int
    widths: tuple[int, ...]
    classes: int = 3

    @property
    def dims(self) -> int:
        return len(self.patch)

    def strides(self) -> list[list[int]]:
        return [[2] * self.dims for _ in self.widths[1:]]

    def kernels(self) -> list[list[int]]:
        return [[3] * self.dims for _ in self.widths]


# nnU-Net's typical 3d_fullres and 2d plans on an 80 GB GPU (patch, batch, features per stage)
PLANS = [Plan("3d_fullres 128^3", (128, 128, 128), 2, (32, 64, 128, 256, 320, 320)),
         Plan("2d 512^2", (512, 512), 12, (32, 64, 128, 256, 512, 512, 512))]


def unetkit_config(plan: Plan, device: torch.device) -> Config:
    """unetkit's config for ``plan`` (deep supervision and instance norm, as planned runs)."""
    return apply_values(Config(), {
        "model.spatial_dims": plan.dims, "model.widths": list(plan.widths),
        "model.depth": len(plan.widths) - 1, "model.strides": plan.strides(),
        "model.kernel_sizes": plan.kernels(), "model.norm": "instance",
        "model.deep_supervision": True, "model.out_channels": plan.classes,
        "data.patch_size": list(plan.patch), "data.batch_size": plan.batch,
        "train.device": str(device)}, source="gpu_bench")


def _measure(step: Callable[[], None], model: torch.nn.Module, device: torch.device,
             steps: int, warmup: int, flop_step: Callable[[], None] | None = None) -> dict:
    """it/s, GFLOP/s and peak memory of ``step`` (median of ``steps`` timed steps); FLOPs are
    counted on ``flop_step`` (the eager twin of a compiled step) when given."""
    from torch.utils.flop_counter import FlopCounterMode

    for _ in range(warmup):
        step()
    counter = FlopCounterMode(display=False)
    with counter:
        (flop_step or step)()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    seconds = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"status": "ok", "it_per_s": 1.0 / seconds,
            "gflop_per_s": counter.get_total_flops() / seconds / 1e9, "peak_mb": peak,
            "parameters": sum(p.numel() for p in model.parameters())}


def _batch(plan: Plan, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(plan.batch, 1, *plan.patch, generator=generator)
    mask = torch.randint(0, plan.classes, (plan.batch, *plan.patch), generator=generator)
    return image.to(device), mask.to(device)


def unetkit_training(plan: Plan, device: torch.device, steps: int = 10, warmup: int = 3,
                     layout: str = "auto") -> dict:
    """unetkit's training step on ``plan`` (see the module docstring)."""
    from unetkit.runtime.checkpoint import build_model_from_config
    from unetkit.train import builders

    config = unetkit_config(plan, device)
    precision = resolve_precision("auto", layout, device, config.model.norm)
    torch.manual_seed(0)
    model = build_model_from_config(config).to(device)
    model_to_memory_format(model, precision, plan.dims)
    optimizer = builders.build_optimizer(config, model)
    loss_fn = builders.build_loss_fn(config)
    scaler = torch.amp.GradScaler(device.type) if precision.use_scaler else None
    image, mask = _batch(plan, device)
    image = to_memory_format(image, precision)

    def step() -> None:
        with autocast(precision, device):
            output = model(image)
        loss = loss_fn(output, mask)
        optimizer.zero_grad(set_to_none=True)
        _update(loss, model, optimizer, scaler)

    row = _measure(step, model, device, steps, warmup)
    return {**row, "precision": f"{precision.name}, channels_last={precision.channels_last}"}


def _update(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler | None) -> None:
    """Backward, gradient clipping at 12 (both trainers) and the optimizer step, scaled under
    a GradScaler."""
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def nnunet_installed() -> bool:
    """True when nnU-Net's network code (dynamic-network-architectures) can be imported."""
    return nnunet_reference.network_installed()


def nnunet_training(plan: Plan, device: torch.device, steps: int = 10, warmup: int = 3,
                    compiled: bool = False) -> dict:
    """nnU-Net v2's network and trainer step on ``plan``, eager or ``compiled`` (its default);
    ``{"status": "not installed"}`` without dynamic-network-architectures."""
    if not nnunet_installed():
        return {"status": "not installed"}
    torch.manual_seed(0)
    model = nnunet_reference.plain_conv_unet(plan.widths, plan.dims, plan.classes).to(device)
    image, mask = _batch(plan, device)
    with torch.no_grad():
        targets = nnunet_reference.nnunet_targets(mask, model(image[:1]))
    loss_fn, source = nnunet_reference.nnunet_loss(len(targets), compiled=compiled)
    network = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99,
                                nesterov=True)
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if cuda else None

    def step(net: torch.nn.Module = network, loss_of: Callable = loss_fn) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=cuda):  # fp16 on CUDA, as nnU-Net does
            loss = loss_of(net(image), targets)
        _update(loss, model, optimizer, scaler)

    eager_loss = nnunet_reference.nnunet_loss(len(targets))[0]
    row = _measure(step, model, device, steps, warmup,
                   (lambda: step(model, eager_loss)) if compiled else None)
    precision = "fp16 + GradScaler" if cuda else "fp32"
    return {**row, "precision": f"{precision}, {'compiled' if compiled else 'eager'}",
            "loss": source}


def inference(plan: Plan, device: torch.device, size: tuple[int, ...], overlap: float = 0.5,
              repeats: int = 2) -> dict[str, dict]:
    """unetkit's vs MONAI's sliding window on one ``(1, 1, *size)`` input, same network."""
    from unetkit.infer.windows import sliding_window_inference
    from unetkit.runtime.checkpoint import build_model_from_config
    from unetkit.runtime.network import fuse_conv_bn, torch_network

    config = unetkit_config(plan, device)
    precision = resolve_precision("auto", "auto", device)
    torch.manual_seed(0)
    network = torch_network(fuse_conv_bn(build_model_from_config(config)), precision, device)
    x = torch.randn(1, 1, *size, generator=torch.Generator().manual_seed(1)).to(device)
    runs: dict[str, Callable[[], torch.Tensor]] = {"unetkit": lambda: sliding_window_inference(
        x, network, plan.patch, overlap, gaussian=True, batch_size=plan.batch)}
    if importlib.util.find_spec("monai") is not None:
        from monai.inferers import sliding_window_inference as monai_swi

        runs["MONAI"] = lambda: monai_swi(x, plan.patch, plan.batch, network, overlap=overlap,
                                          mode="gaussian", sigma_scale=0.125)
    rows: dict[str, dict] = {}
    labels = {}
    for name, run in runs.items():
        best = float("inf")
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            with torch.inference_mode():
                labels[name] = run().argmax(1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - started)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" \
            else None
        rows[name] = {"status": "ok", "seconds": best, "mvoxel_per_s": x.numel() / best / 1e6,
                      "peak_mb": peak, "precision": precision.name}
    if "MONAI" in rows:
        agree = float((labels["MONAI"] == labels["unetkit"]).float().mean())
        rows["MONAI"]["label_agreement"] = rows["unetkit"]["label_agreement"] = agree
    else:
        rows["MONAI"] = {"status": "not installed"}
    return rows
