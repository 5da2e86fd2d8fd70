"""The end-of-training check that every DDP process took the same steps to the same weights.

DDP keeps the ranks in step by construction (averaged gradients, broadcast buffers, rank 0's stop
decisions broadcast), but a multi-node job has more ways to go wrong than one machine (different
library versions, a node that read other data): one gather at the end costs nothing and says
so in ``train.log``, where a silent divergence would otherwise only show as a worse model.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from unetkit.runtime.distributed import DistInfo, all_gather_object

log = logging.getLogger("unetkit.train.loop")


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter (names, dtypes, values), memory format aside.

    Buffers are left out: DDP hands every rank rank 0's buffers at the start of each forward, so
    after the last step each rank holds the BatchNorm statistics of its own last batch.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        value = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{value.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_lockstep(model: torch.nn.Module, step: int, info: DistInfo) -> bool:
    """Gather every rank's step count and weights digest; rank 0 logs the outcome.

    Returns:
        True when every rank ended at the same step with identical weights (always True for a
        single process). A divergence is logged as a warning, not raised: the checkpoints are
        already written.
    """
    if not info.enabled:
        return True
    ranks = all_gather_object((step, weights_digest(model)), info)
    same = len(set(ranks)) == 1
    if not info.is_main:
        return same
    if same:
        log.info("lock-step: %d processes ended at step %d with identical weights (%s...)",
                 info.world_size, step, ranks[0][1][:12])
    else:
        log.warning("processes out of step: %s", ", ".join(
            f"rank {r} step {s} weights {d[:12]}" for r, (s, d) in enumerate(ranks)))
    return same
