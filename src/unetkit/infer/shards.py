"""Prediction beyond one process: every case predicted exactly once, by one of many processes.

Two ways, which combine:

* ``torchrun --nproc_per_node N -m unetkit predict CKPT INPUTS -o OUT`` (``--nnodes`` for
  several machines): the N processes join a process group (gloo, also on GPUs: only short
  Python lists travel), each predicts and writes its own cases on its own device
  (``cuda:LOCAL_RANK``), and at the end the outcomes are gathered, so rank 0 reports the
  whole batch and every rank exits 1 when any case failed anywhere.
* ``unetkit predict ... --part K --parts N``: one of N independent jobs that share no process
  group (a SLURM job array: ``--part $SLURM_ARRAY_TASK_ID --parts $SLURM_ARRAY_TASK_COUNT``);
  each reports its own cases.

The assignment is a pure function of the batch's sorted case list (``input_cases``): case ``i``
belongs to part ``i % parts`` (``shard``), and the ``j``-th case of a part to rank
``j % world_size``. Every process checks the outputs of the *whole* batch (``check_outputs``:
an output that would replace an input or another case's output is refused even when the two
cases belong to different processes); existing files count for the job's own part only (another
task of a job array may have written its part already). Under torchrun the ranks agree on that
check before any of them writes, so a refused batch leaves nothing behind; a write error (disk
full) on one rank is raised on every rank after the final gather.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from unetkit.infer.files import BatchResult, InputCase, OutputPathError, predict_files
from unetkit.infer.predictor import Predictor
from unetkit.runtime.atomic import WriteError
from unetkit.runtime.device import pick_device
from unetkit.runtime.distributed import (
    DistInfo,
    all_gather_object,
    cleanup,
    init_distributed,
    rank_device,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
# A rank that finished its cases waits for the slowest one at the final gather; a whole batch of
# large volumes may take hours, so the group's timeout is a day, not torch's default 30 minutes.
GROUP_TIMEOUT_S = 24 * 3600.0


def check_part(part: int | None, parts: int | None) -> tuple[int, int] | None:
    """``--part K --parts N`` checked: ``(K, N)``, or None when neither is given.

    Raises:
        ValueError: only one of them given, ``N < 1``, or ``K`` outside ``0..N-1`` (one line).
    """
    if part is None and parts is None:
        return None
    if part is None or parts is None:
        raise ValueError("--part K and --parts N go together (K = 0..N-1), e.g. --part "
                         "$SLURM_ARRAY_TASK_ID --parts $SLURM_ARRAY_TASK_COUNT")
    if parts < 1:
        raise ValueError(f"--parts {parts}: needs at least 1 part")
    if not 0 <= part < parts:
        raise ValueError(f"--part {part}: must be between 0 and {parts - 1} for --parts {parts}")
    return part, parts


def shard(items: Sequence[T], part: int, parts: int) -> list[T]:
    """The items of ``part`` when ``items`` are dealt to ``parts`` parts in turn: index ``i``
    goes to part ``i % parts``. Every item lands in exactly one part; parts differ by at most
    one item."""
    check_part(part, parts)
    return list(items[part::parts])


def assigned(cases: Sequence[T], part: tuple[int, int] | None, info: DistInfo) -> list[T]:
    """The cases of this process: those of ``part`` (all when None), then this rank's share."""
    mine = list(cases) if part is None else shard(cases, *part)
    return shard(mine, info.rank, info.world_size)


@contextmanager
def process_group() -> Iterator[DistInfo]:
    """The prediction's process group when torchrun started several processes (gloo), left
    on exit; a single process gets ``DistInfo()`` and no group."""
    info = init_distributed(torch.device("cpu"), timeout_s=GROUP_TIMEOUT_S)
    try:
        yield info
    finally:
        cleanup(info)


def rank_device_name(name: str, info: DistInfo) -> str:
    """The device this process predicts on: ``name`` (auto, cpu, cuda, ...) checked, and on
    CUDA under torchrun the GPU ``LOCAL_RANK``, made the current one (so that no process
    opens a CUDA context on GPU 0 as well)."""
    device = rank_device(pick_device(name), info)
    if device.type == "cuda" and info.enabled:
        torch.cuda.set_device(device)
    return str(device)


@dataclass
class ShardedResult:
    """A sharded batch: this process's ``BatchResult`` and the totals of all processes.

    Attributes:
        local: what this process wrote and which of its cases failed.
        cases: cases of the batch this job covers (its part, all of its processes).
        written: masks written by all processes.
        failed: ``(input, error)`` of every failed case, of all processes.
        processes: how many processes shared the work.
    """

    local: BatchResult
    cases: int = 0
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    processes: int = 1


def _agree(error: Exception | None, info: DistInfo) -> None:
    """Every rank learns whether any rank refused the batch; all raise the first refusal."""
    problems = all_gather_object(None if error is None else (type(error).__name__, str(error)),
                                 info)
    if error is not None:
        raise error
    for problem in problems:
        if problem is not None:
            kind, message = problem
            raise (FileNotFoundError if kind == "FileNotFoundError" else OutputPathError)(message)


def predict_sharded(predictor: Predictor, inputs: Sequence[str | Path], out_dir: str | Path, *,
                    part: tuple[int, int] | None = None, info: DistInfo | None = None,
                    **options: Any) -> ShardedResult:
    """``predict_files`` on this process's share of the cases (``assigned``).

    Args:
        predictor: the loaded predictor (on this process's device, ``rank_device_name``).
        inputs, out_dir: as ``predict_files``.
        part: ``(K, N)``: only part K of N (``check_part``); None: the whole batch.
        info: the process group (``process_group``); None: this process alone.
        options: further ``predict_files`` options (``save_probabilities``, ``on_case``, ...).

    Returns:
        This process's result and the totals of all processes of the group.

    Raises:
        OutputPathError, FileNotFoundError: on every rank when any rank refused the batch;
            then no rank has written anything.
        WriteError: on every rank when a file could not be written on any rank (disk full):
            that rank stopped at once, the others after their cases.
    """
    info = info or DistInfo()
    state = {"agreed": False, "cases": 0}

    def select(cases: list[InputCase]) -> list[InputCase]:
        _agree(None, info)  # every rank's outputs are checked: writing may start
        state["agreed"] = True
        state["cases"] = len(cases if part is None else shard(cases, *part))
        mine = assigned(cases, part, info)
        log.info("process %d of %d: %d of the %d case(s)", info.rank + 1, info.world_size,
                 len(mine), state["cases"])
        return mine

    stopped = None
    try:
        local = predict_files(predictor, inputs, out_dir, select=select,
                              cover=lambda cases: cases if part is None else shard(cases, *part),
                              **options)
    except (OutputPathError, FileNotFoundError) as error:
        if not state["agreed"]:
            _agree(error, info)
        raise
    except WriteError as error:  # the other ranks learn it at the gather, then all stop
        local, stopped = BatchResult(), error
    outcomes = all_gather_object(
        (len(local.written), [(str(path), message) for path, message in local.failed],
         None if stopped is None else (str(stopped), stopped.errno)), info)
    if stopped is not None:
        raise stopped
    for _, _, problem in outcomes:
        if problem is not None:
            raise WriteError(problem[0], problem[1])
    failed = sorted(f for _, rank_failed, _ in outcomes for f in rank_failed)
    return ShardedResult(local, cases=int(state["cases"]),
                         written=sum(count for count, _, _ in outcomes), failed=failed,
                         processes=info.world_size)
