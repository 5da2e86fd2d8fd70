"""Rank 0's stop and budget decisions reach every rank at the same step boundary, every few steps
under DDP instead of after every step (each agreement waits for every rank, and on GPUs for
their queued kernels); exact resume and signals keep working."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unetkit.config import Config, apply_overrides
from unetkit.runtime.distributed import DistInfo
from unetkit.train import loop
from unetkit.train.budget import SAFETY_FRACTION, TimeBudget

# augmented where the batches are drawn (seeded per batch) and no dropout: rank 1's own random
# streams (dropout, the step's augmenter) are not in rank 0's last.pt, so only then does a
# mid-epoch resume equal the uninterrupted run on every rank
OVERRIDES = [
    "model.base_width=4", "model.depth=2", "model.norm=instance",
    "data.patch_size=[32, 32]", "data.batch_size=2", "data.val_fraction=0.25",
    "train.precision=fp32", "train.device=cpu", "train.steps_per_epoch=8", "train.epochs=2",
    "train.lr=0.01", "data.augment.enabled=true", "data.augment.device=cpu",
]
EVERY = 3  # steps between agreements in these runs


def _run(world: int, requested: int | None = None) -> SimpleNamespace:
    return SimpleNamespace(info=DistInfo(rank=0, world_size=world), budget=None,
                           signals=SimpleNamespace(requested=requested), stop_signal=None,
                           budget_stop=False)


@pytest.mark.parametrize("world,pace,steps", [(1, 0.001, 1), (2, 0.001, loop.AGREE_STEPS),
                                              (2, loop.AGREE_S / 5, 5), (2, 2.0, 1)])
def test_ranks_agree_every_half_second_of_steps(world, pace, steps, monkeypatch):
    monkeypatch.setattr(loop, "broadcast_object", lambda value, info: value)
    run = _run(world, requested=signal.SIGTERM)
    assert loop._agree(run, pace) == steps
    assert run.stop_signal == signal.SIGTERM and not run.budget_stop


def test_the_budget_stops_the_steps_before_the_next_agreement_would_overrun():
    budget = TimeBudget(100.0, steps_per_epoch=10, start=time.monotonic() - 50.0)
    budget.step_s = 1.0
    reserve = 100.0 * SAFETY_FRACTION
    assert not budget.expired()
    assert not budget.expired(ahead_s=45.0 - reserve)
    assert budget.expired(ahead_s=51.0 - reserve)  # 51 more seconds of steps would overrun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _count_agreements(agreed: list[int], collectives: list[int]) -> None:
    """Record the steps ``_agree`` runs at, and the collectives of the epochs' steps."""
    from unetkit.train import fit as fit_module

    agree, broadcast, epoch = loop._agree, loop.broadcast_object, fit_module.train_one_epoch
    inside = [False]

    def recording_agree(run, pace_s):
        agreed.append(run.state.step)
        return agree(run, pace_s)

    def counted_broadcast(value, info):
        collectives[0] += inside[0]
        return broadcast(value, info)

    def counted_epoch(run, on_step=None):
        inside[0] = True
        try:
            return epoch(run, on_step)
        finally:
            inside[0] = False

    loop._agree, loop.broadcast_object = recording_agree, counted_broadcast
    fit_module.train_one_epoch = counted_epoch


def _signal_in_step(rank: int, step: int) -> None:
    """Rank ``rank`` sends itself SIGTERM inside training step ``step`` (1-based)."""
    from unetkit.train import builders

    build, calls = builders.build_loss_fn, []

    def signalling(config):
        loss = build(config)

        def call(output, target):
            value = loss(output, target)
            if torch.is_grad_enabled():
                calls.append(1)
                if dist.get_rank() == rank and len(calls) == step:
                    os.kill(os.getpid(), signal.SIGTERM)
            return value
        return call

    builders.build_loss_fn = signalling


def _worker(rank: int, world: int, port: int, data_dir: str, out: str, mode: str) -> None:
    from unetkit.train.fit import fit
    from unetkit.train.signals import Interrupted

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    loop.AGREE_S, loop.AGREE_STEPS = 1e9, EVERY
    agreed, collectives, stopped = [], [0], None
    _count_agreements(agreed, collectives)
    if mode == "cut":
        _signal_in_step(rank=0, step=10)
    try:
        if mode == "resume":
            result = fit(None, None, resume=os.path.join(out, "run"))
        else:
            result = fit(apply_overrides(Config(), OVERRIDES), data_dir, os.path.join(out, "run"))
        torch.save({k: v.detach().clone() for k, v in result.model.named_parameters()},
                   os.path.join(out, f"params{rank}.pt"))
    except Interrupted as stop:
        stopped = stop.step
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out, f"{mode}{rank}.json"), "w") as handle:
        json.dump({"agreed": agreed, "collectives": collectives[0], "stopped": stopped}, handle)


def _spawn(data, out, mode: str) -> list[dict]:
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out), mode), nprocs=2, join=True)
    return [json.loads((out / f"{mode}{rank}.json").read_text()) for rank in range(2)]


def test_ddp_ranks_agree_every_few_steps_stop_together_and_resume_exactly(tmp_path, disks):
    from unetkit.runtime.checkpoint import load_checkpoint

    data = disks(tmp_path / "data", n_cases=4)
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    straight.mkdir()
    cut.mkdir()
    ranks = _spawn(data, straight, "straight")
    # every EVERY steps and at each epoch's end (8 steps per epoch); before: after every step
    assert ranks[0]["agreed"] == ranks[1]["agreed"] == [1, 4, 7, 8, 9, 12, 15, 16]
    assert ranks[0]["collectives"] == ranks[1]["collectives"] == 8
    # SIGTERM on rank 0 inside step 10: both ranks stop after step 12, the next agreement
    ranks = _spawn(data, cut, "cut")
    assert ranks[0]["stopped"] == ranks[1]["stopped"] == 12
    saved = load_checkpoint(cut / "run" / "last.pt")["training"]
    assert saved["step"] == 12 and saved["step_in_epoch"] == 4
    ranks = _spawn(data, cut, "resume")
    assert ranks[0]["agreed"] == ranks[1]["agreed"] == [13, 16]
    for rank in range(2):
        a = torch.load(straight / f"params{rank}.pt")
        b = torch.load(cut / f"params{rank}.pt")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (rank, key)  # bit-identical
