"""Time real training steps of a candidate configuration on the device that will train it.

A step's cost does not depend on the pixel values, so each candidate runs a few steps on a
random batch of its own patch and batch size through the same pieces ``unetkit train`` uses:
augmentation, forward under the precision plan, loss, backward, gradient clipping, the fused
optimizer. The first steps (allocation, kernel selection) are not counted. On CUDA the same
steps measure the candidate's peak memory (``torch.cuda.max_memory_allocated``); a candidate
that does not fit comes back as out of memory instead of failing the plan.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass

import torch

from unetkit.config import Config
from unetkit.runtime.checkpoint import build_model_from_config
from unetkit.runtime.device import (
    PrecisionPlan,
    autocast,
    model_to_memory_format,
    pick_device,
    resolve_precision,
    to_memory_format,
)
from unetkit.train import builders


@dataclass(frozen=True)
class StepTiming:
    """One timed candidate: median seconds per step (``inf`` when out of memory) and, on CUDA,
    the peak memory its steps allocated (model, optimizer state, batch, activations)."""

    step_s: float
    peak_bytes: int | None = None
    out_of_memory: bool = False


def training_precision(config: Config, device: torch.device) -> PrecisionPlan:
    """The precision and memory layout a training run of ``config`` resolves on ``device``
    (what ``train.setup`` resolves: ``train.channels_last: auto`` is the runtime's rule there)."""
    return resolve_precision(config.train.precision, config.train.channels_last, device,
                             config.model.norm)


def time_steps(config: Config, steps: int = 3, warmup: int = 2) -> StepTiming:
    """Median seconds per training step of ``config`` (``model.out_channels`` must be set),
    with the peak memory on CUDA."""
    device = pick_device(config.train.device)
    if device.type != "cuda":
        return StepTiming(_median_step(config, device, steps, warmup))
    gc.collect()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        step_s = _median_step(config, device, steps, warmup)
    except torch.cuda.OutOfMemoryError:
        step_s = math.inf
    peak = torch.cuda.max_memory_allocated(device) - before
    gc.collect()  # the failed attempt's tensors, before the next candidate
    torch.cuda.empty_cache()
    if math.isinf(step_s):
        return StepTiming(step_s, peak, out_of_memory=True)
    return StepTiming(step_s, peak)


def _median_step(config: Config, device: torch.device, steps: int, warmup: int) -> float:
    """The timing loop: ``warmup`` uncounted steps, then the median of ``steps``."""
    plan = training_precision(config, device)
    torch.manual_seed(0)
    model = build_model_from_config(config).to(device)
    model_to_memory_format(model, plan, config.model.spatial_dims)
    optimizer = builders.build_optimizer(config, model)
    loss_fn = builders.build_loss_fn(config)
    augmenter = builders.build_augmenter(config)
    generator = torch.Generator(device=device).manual_seed(0)
    d = config.data
    image = torch.randn(d.batch_size, config.model.in_channels, *d.patch_size, device=device)
    labels = max(config.model.out_channels or 2, 2)
    mask = torch.randint(0, labels, (d.batch_size, *d.patch_size), device=device)
    times = []
    for _ in range(warmup + steps):
        started = time.perf_counter()
        x, y = augmenter(image, mask, generator) if augmenter is not None else (image, mask)
        with autocast(plan, device):
            output = model(to_memory_format(x, plan))
        loss = loss_fn(output, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip or 1e9)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    measured = sorted(times[warmup:])
    return measured[len(measured) // 2]
