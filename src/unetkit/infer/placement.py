"""Where a blended prediction runs: on the network's device, or on the CPU once that is full.

The window loop (``unetkit.infer.windows.blended_slabs``) keeps its accumulators on the device
of its input. ``Predictor.predict_logits`` moves the input to the predictor's device, so on a
GPU the windows are cut, blended and normalised there (no copy per window). When the GPU runs
out of memory during a prediction (a large volume, an accumulator of ``C x window[0] x rest``
plus the input and the class scores), ``on_device_or_cpu`` retries once with the input, and so
the accumulators and the windows, on the CPU: the network still runs on its GPU window batch by
window batch, only its outputs come back to the host. The result is the same map, on the CPU.

An out-of-memory error of the CPU attempt (or one inside a single forward that no placement of
the accumulators can avoid) is raised as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")
CPU = torch.device("cpu")


def _release(device: torch.device) -> None:
    """Give the cached blocks of the failed attempt back, so the network's forwards fit."""
    if device.type == "cuda" and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def on_device_or_cpu(compute: Callable[[torch.device], T], device: torch.device) -> T:
    """``compute(device)``; after an out-of-memory error there, ``compute(cpu)``.

    Args:
        compute: the prediction, given where its input and accumulators are to live.
        device: the preferred device (the network's); the CPU is used directly.

    Returns:
        What ``compute`` returned: on ``device``, or on the CPU after the fallback.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return compute(device)
    try:
        return compute(device)
    except torch.cuda.OutOfMemoryError as error:
        # The retry runs after the except block: the traceback holds the failed attempt's
        # tensors, which must be freed before the CPU attempt's network calls need memory.
        message = str(error).splitlines()[0] if str(error) else "out of memory"
    log.warning("out of memory on %s during a blended prediction (%s); retrying with the "
                "accumulators and windows on the CPU (slower, same result)", device, message)
    _release(device)
    return compute(CPU)
