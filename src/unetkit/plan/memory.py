"""How much memory a training step of a candidate needs, and how much the device offers.

``training_memory(config)`` estimates a step's peak without a GPU: the network's forward runs on
the meta device (shapes only: no memory, no arithmetic) and every tensor autograd saves for the
backward pass is counted, plus the weights with their gradients and AdamW moments and the
batch. Activations are counted at 4 bytes per value, as in fp32: under bf16/fp16 autocast the
convolutions save half of that, so the estimate errs on the safe side. On CUDA the planner
measures the real peak while it times a candidate (``timing.time_steps``) and uses the
estimate only for ratios (how much more a grown candidate will need) and to skip candidates
that cannot fit without timing them.

``memory_bound(device)``: ``MEMORY_SHARE`` of the free memory of a CUDA device, None elsewhere
(the planner grows a plan to fill a GPU only; docs/planner.md, section 3).
"""

from __future__ import annotations

import torch

from unetkit.config import Config
from unetkit.runtime.checkpoint import build_model_from_config

# Of the GPU's free memory when planning. The rest is for what the timed step does not hold:
# the caching allocator's fragmentation, validation and calibration forwards, cuDNN workspaces
# of kernels chosen later.
MEMORY_SHARE = 0.8
FLOAT_BYTES = 4
STATE_COPIES = 4  # weights, gradients and AdamW's two moments, fp32
BACKWARD_COPIES = 2  # gradients in flight during the backward pass, in largest tensors
BATCH_COPIES = 3  # image, augmented image, logits (mask as int64 ~ two floats: counted below)


def memory_bound(device: torch.device) -> int | None:
    """Bytes a training step may take on ``device``: ``MEMORY_SHARE`` of the free memory of a
    CUDA device (``torch.cuda.mem_get_info``); None on a CPU or MPS (no bound is planned)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(MEMORY_SHARE * free)


def training_memory(config: Config) -> int:
    """Estimated peak bytes of one training step of ``config`` (its network, batch and patch;
    ``model.out_channels`` must be set): weights x ``STATE_COPIES`` + the tensors the forward
    saves for backward + ``BACKWARD_COPIES`` of the largest of them + the batch."""
    from torch.func import functional_call

    model = build_model_from_config(config)
    params = {name: torch.empty_like(p, device="meta").requires_grad_(p.requires_grad)
              for name, p in model.named_parameters()}
    buffers = {name: torch.empty_like(b, device="meta") for name, b in model.named_buffers()}
    d = config.data
    x = torch.empty(d.batch_size, config.model.in_channels, *d.patch_size, device="meta")
    saved: dict[int, torch.Tensor] = {}  # keeps every tensor alive, so no id is reused

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved[id(tensor)] = tensor
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        functional_call(model, {**params, **buffers}, (x,))
    weights = {id(p) for p in params.values()}
    sizes = [t.numel() for key, t in saved.items() if key not in weights]
    state = sum(p.numel() for p in params.values()) * STATE_COPIES
    logits = d.batch_size * (config.model.out_channels or 2) * x[0, 0].numel()
    batch = BATCH_COPIES * x.numel() + logits + 2 * x[:, 0].numel()
    largest = max(sizes, default=0)
    return FLOAT_BYTES * (state + sum(sizes) + BACKWARD_COPIES * largest + batch)

