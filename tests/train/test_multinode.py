"""Multi-node training as far as one machine allows: ``torchrun`` with a c10d rendezvous.

``torchrun --nnodes 1 --nproc_per_node 2 --rdzv_backend c10d --rdzv_endpoint localhost:PORT -m
unetkit train ...`` is the command of one node of a multi-node job (``docs/scaling.md``); here
the one node is this machine, with two gloo processes on the CPU and a time budget, so that
the stop decision must be shared. ``train.log`` (rank 0) records the end-of-training check that
both ranks ended at the same step with identical weights (``unetkit.train.lockstep``).

A planned run times its candidate networks on every rank, so two ranks may plan different
widths: every rank trains rank 0's config (checked with ranks given different configs).
"""

from __future__ import annotations

import csv
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unetkit.config import Config, apply_overrides
from unetkit.runtime.distributed import DistInfo
from unetkit.train.lockstep import check_lockstep, weights_digest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun() -> list[str]:
    found = Path(sys.executable).with_name("torchrun")
    return [str(found)] if found.is_file() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
def test_c10d_rendezvous_two_ranks_train_in_lock_step_and_rank0_writes(tmp_path, disks) -> None:
    data = disks(tmp_path / "data", n_cases=4)
    command = [*_torchrun(), "--nnodes", "1", "--nproc_per_node", "2", "--rdzv_backend", "c10d",
               "--rdzv_endpoint", f"localhost:{_free_port()}", "--rdzv_id", "unetkit-test",
               "-m", "unetkit", "train", "--data", str(data), "--out", "run", "--time", "15s",
               "--patch-size", "32", "--batch-size", "2", "--precision", "fp32", "--device",
               "cpu", "--set", "model.base_width=4", "--set", "model.depth=2",
               "--set", "train.steps_per_epoch=3", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    log = (tmp_path / "run" / "train.log").read_text()
    assert "2 process(es)" in log
    match = re.search(r"lock-step: 2 processes ended at step (\d+) with identical weights", log)
    assert match, log
    with (tmp_path / "run" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and int(rows[-1]["step"]) == int(match[1]) > 0
    assert "out of step" not in log
    # rank 1 wrote nothing: no run folder of its own, nothing else next to rank 0's
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]
    assert {"config.yaml", "metrics.csv", "last.pt", "best.pt", "train.log"} <= {
        p.name for p in (tmp_path / "run").iterdir()}


def test_weights_digest_sees_parameter_values_not_layout_or_buffers() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))
    model[1].running_mean.fill_(3.0)  # buffers: rank 0's at every forward, not compared
    before = weights_digest(model)
    model.to(memory_format=torch.channels_last)
    model[1].running_mean.fill_(-1.0)
    assert weights_digest(model) == before
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] += 1e-6
    assert weights_digest(model) != before


def test_single_process_lockstep_is_trivially_true() -> None:
    assert check_lockstep(torch.nn.Linear(2, 2), 5, DistInfo())


def _rank_with_its_own_config(rank: int, port: int, data_dir: str, out_root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        from unetkit.train.fit import fit

        config = apply_overrides(Config(), [
            f"model.base_width={4 + 4 * rank}", "model.depth=2", "model.norm=instance",
            "data.patch_size=[32, 32]", "data.batch_size=2", "data.val_fraction=0.25",
            "train.precision=fp32", "train.device=cpu", "train.steps_per_epoch=2",
            "train.epochs=1", "data.augment.enabled=false"])
        result = fit(config, data_dir, os.path.join(out_root, "run"))
        torch.save({k: v.detach().clone() for k, v in result.model.state_dict().items()},
                   os.path.join(out_root, f"state{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_every_rank_trains_rank0s_config(tmp_path, disks) -> None:
    data = disks(tmp_path / "data", n_cases=4)
    mp.spawn(_rank_with_its_own_config, args=(_free_port(), str(data), str(tmp_path)), nprocs=2,
             join=True)
    states = [torch.load(tmp_path / f"state{rank}.pt") for rank in (0, 1)]
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    first = next(v for k, v in states[0].items() if k.endswith("weight") and v.dim() == 4)
    assert first.shape[0] == 4  # rank 0's base width
