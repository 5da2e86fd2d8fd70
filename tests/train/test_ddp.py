"""DDP: two gloo processes on CPU train in lock-step; only rank 0 writes files."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unetkit.config import Config, apply_overrides
from unetkit.train.fit import fit

OVERRIDES = [
    "model.base_width=4", "model.depth=2", "model.norm=instance", "data.patch_size=[32, 32]",
    "data.batch_size=2", "data.val_fraction=0.25", "train.precision=fp32", "train.device=cpu",
    "train.steps_per_epoch=3", "train.epochs=2", "train.lr=0.01", "data.augment.enabled=true",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _record_initial_weights(path: str) -> None:
    """Save the weights each rank builds before DDP broadcasts rank 0's (``setup``'s model)."""
    from unetkit.train import setup

    build = setup.build_model_from_config

    def recorded(config: Config) -> torch.nn.Module:
        model = build(config)
        torch.save({k: v.detach().clone() for k, v in model.named_parameters()}, path)
        return model

    setup.build_model_from_config = recorded


def _worker(rank: int, world: int, port: int, data_dir: str, out_root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _record_initial_weights(os.path.join(out_root, f"initial{rank}.pt"))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        losses: list[float] = []
        config = apply_overrides(Config(), OVERRIDES)
        result = fit(config, data_dir, os.path.join(out_root, f"run{rank}"),
                     on_step=lambda info: losses.append(info["loss"]))
        params = {k: v.detach().clone() for k, v in result.model.named_parameters()}
        torch.save(params, os.path.join(out_root, f"params{rank}.pt"))
        with open(os.path.join(out_root, f"info{rank}.json"), "w") as handle:
            json.dump({"steps": result.steps, "first_loss": losses[0],
                       "run_dir": str(result.run_dir)}, handle)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_stay_identical_and_only_rank0_writes(tmp_path, disks):
    data = disks(tmp_path / "data", n_cases=4)
    out = tmp_path / "out"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(out)), nprocs=2, join=True)
    p0, p1 = torch.load(out / "params0.pt"), torch.load(out / "params1.pt")
    assert p0.keys() == p1.keys()
    for key in p0:
        assert torch.equal(p0[key], p1[key]), key
    info0 = json.loads((out / "info0.json").read_text())
    info1 = json.loads((out / "info1.json").read_text())
    assert info0["steps"] == info1["steps"] == 6
    # each rank trains on its own shard of the patch stream
    assert info0["first_loss"] != info1["first_loss"]
    assert (out / "run0" / "last.pt").is_file() and (out / "run0" / "metrics.csv").is_file()
    assert not (out / "run1").exists()
    assert info1["run_dir"] == "None"
    # the ranks built different weights (seed + rank); DDP started both from rank 0's, and
    # training changed every one of them
    initial0, initial1 = torch.load(out / "initial0.pt"), torch.load(out / "initial1.pt")
    assert initial0.keys() == p0.keys()
    assert any(not torch.equal(initial0[k], initial1[k]) for k in p0)
    for key in p0:
        assert not torch.equal(p0[key], initial0[key]), f"{key} did not change in training"
    # last.pt holds the trained weights
    from unetkit.runtime.checkpoint import load_checkpoint

    saved = load_checkpoint(out / "run0" / "last.pt")["model_state"]
    for key in p0:
        assert torch.equal(saved[key], p0[key].contiguous()), key
