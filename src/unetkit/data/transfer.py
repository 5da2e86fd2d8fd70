"""Host-to-device copies that do not wait for the device.

A blocking copy to a GPU (``tensor.to("cuda")``, ``torch.tensor(values, device="cuda")``) waits
until every kernel queued before it has run: between training steps that idles the GPU. A copy
from page-locked (pinned) memory with ``non_blocking=True`` is only queued; PyTorch's pinned
allocator keeps the host buffer alive until the copy has run. Augmentation draws its random
parameters on the host and moves them to the batch's device through ``to_device``.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None
              ) -> torch.Tensor:
    """``tensor`` (any shape) on ``device`` (and in ``dtype``), queued without waiting.

    A host tensor bound for CUDA is copied to pinned memory first (a non-blocking copy from
    pageable memory would still wait); tensors already there are returned as they are.
    """
    if dtype is not None and tensor.device.type == "cpu":
        tensor = tensor.to(dtype)  # on the host: the device gets the final values
    if tensor.device != device and tensor.device.type == "cpu" and device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device=device, dtype=dtype, non_blocking=True)
