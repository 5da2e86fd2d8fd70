"""DDP plumbing through ``torch.distributed``: process group set-up, rank info, reductions.

Launch with ``torchrun --nproc_per_node N -m unetkit train ...``. torchrun starts N processes and
gives each its ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; this
module reads them (users set no environment variables themselves). The backend is gloo on CPU and
NCCL on CUDA. Every rank trains on its own shard of the patch stream (sampler seeded with
``seed + rank``), gradients are averaged by DDP, and rank 0 alone logs and writes files.

Multi-node: run the same command on every node with
``torchrun --nnodes M --nproc_per_node N --rdzv_backend c10d --rdzv_endpoint HOST:29500 -m unetkit
train ...`` (see docs/training.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) gave this process a rank and a world size."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_main_process() -> bool:
    """True unless this process is a torchrun rank other than 0 (before any group exists)."""
    return not launched_by_torchrun() or os.environ.get("RANK") == "0"


def init_distributed(device: torch.device, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group if this process was launched by torchrun; else single-process.

    Picks gloo on CPU and NCCL on CUDA; on CUDA each process uses the GPU ``LOCAL_RANK``.
    Already-initialised groups (e.g. from ``torch.multiprocessing`` tests) are reused.
    """
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _local_rank())
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(_local_rank())
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistInfo(dist.get_rank(), dist.get_world_size(), _local_rank(), owns_group=True)


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA jobs, ``device`` otherwise."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op when single-process)."""
    if info.enabled:
        dist.barrier()


def all_reduce_mean(value: float, info: DistInfo, device: torch.device) -> float:
    """Mean of a Python float over all ranks."""
    if not info.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / info.world_size


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (used for stop decisions and epoch plans)."""
    if not info.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``[obj]`` when
    single-process). Used to collect per-rank outcomes such as the failed cases of a sharded
    prediction."""
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def cleanup(info: DistInfo) -> None:
    """Leave the process group if this module created one."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def unused_parameters(model: torch.nn.Module) -> list[str] | None:
    """Names of the trainable parameters that a training forward of ``model`` leaves out of its
    output (DDP needs ``find_unused_parameters=True`` exactly when there are any), or None when
    this cannot be decided.

    Computed, not guessed: one forward and backward on the meta device (no memory, no arithmetic;
    the model's weights and BatchNorm statistics are untouched) on the smallest input the model
    accepts, in its current mode. Deep-supervision heads, for example, exist only once switched
    on, but a checkpoint trained with them brings them along when it is resumed without.
    """
    from torch.func import functional_call

    try:
        size = model.nearest_valid_input_size((1,) * model.spatial_dims)
        params = {name: torch.empty_like(p, device="meta").requires_grad_(p.requires_grad)
                  for name, p in model.named_parameters()}
        buffers = {name: torch.empty_like(b, device="meta") for name, b in model.named_buffers()}
        x = torch.empty(2, model.in_channels, *size, device="meta")
        out = functional_call(model, {**params, **buffers}, (x,))
        outputs = out if isinstance(out, list | tuple) else [out]
        trainable = [name for name, p in params.items() if p.requires_grad]
        grads = torch.autograd.grad(sum(o.sum() for o in outputs),
                                    [params[name] for name in trainable], allow_unused=True)
    except (AttributeError, RuntimeError, NotImplementedError, TypeError, ValueError):
        return None  # not a unetkit model, or an operation without a meta kernel
    return [name for name, grad in zip(trainable, grads, strict=True) if grad is None]
