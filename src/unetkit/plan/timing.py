"""Time real training steps of a candidate configuration on the device that will train it.

A step's cost does not depend on the pixel values, so each candidate runs a few steps on a
random batch of its own patch and batch size through the same pieces ``unetkit train`` uses:
augmentation, forward under the precision plan, loss, backward, gradient clipping, the fused
optimizer. The first steps (allocation, kernel selection) are not counted.
"""

from __future__ import annotations

import time

import torch

from unetkit.config import Config
from unetkit.runtime.checkpoint import build_model_from_config
from unetkit.runtime.device import (
    autocast,
    model_to_memory_format,
    pick_device,
    resolve_precision,
    to_memory_format,
)
from unetkit.train import builders


def time_steps(config: Config, steps: int = 3, warmup: int = 2) -> float:
    """Median seconds per training step of ``config`` (``model.out_channels`` must be set)."""
    device = pick_device(config.train.device)
    plan = resolve_precision(config.train.precision, config.train.channels_last, device,
                             config.model.norm)
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
