"""SIGINT and SIGTERM stop training at a step boundary; resuming gives bit-identical weights.

Each run is a separate Python process. The signal is sent from *inside* a training step (the loss
function of step 6 signals its own process between forward and backward), which is where a real
Ctrl-C lands most of the time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unetkit.runtime.checkpoint import load_checkpoint

CHILD = textwrap.dedent("""
    import os, signal, sys
    import torch
    from unetkit.config import Config, apply_overrides
    from unetkit.train import builders
    from unetkit.train.fit import fit
    from unetkit.train.signals import Interrupted

    torch.set_num_threads(1)
    data, out, mode, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "resume"
    config = apply_overrides(Config(), [
        "model.base_width=4", "model.depth=2", "model.norm=batch", "model.dropout=0.2",
        "data.patch_size=[32, 32]", "data.batch_size=2", "data.val_fraction=0.25",
        "data.augment.enabled=true", "train.precision=fp32", "train.steps_per_epoch=4",
        "train.epochs=3", "train.lr=0.01", "train.device=cpu", "train.optimizer=sgd",
        "train.momentum=0.9"])
    build = builders.build_loss_fn
    calls = []

    def signalling_loss(cfg):
        loss = build(cfg)

        def call(output, target):
            value = loss(output, target)
            if torch.is_grad_enabled():  # training steps only, not validation
                calls.append(1)
            if mode != "none" and len(calls) == 6:  # inside step 6: forward done, no backward
                os.kill(os.getpid(), getattr(signal, mode))
                if mode == "SIGINT" and "twice" in out:
                    os.kill(os.getpid(), signal.SIGINT)
            return value
        return call

    builders.build_loss_fn = signalling_loss
    try:
        fit(None if resume else config, data, out, resume=out if resume else None)
    except Interrupted as stop:
        print("stopped at", stop.step)
        sys.exit(stop.exit_code)
    except KeyboardInterrupt:
        print("aborted")
        sys.exit(130)
""")


def _run(script: Path, data: Path, out: Path, mode: str, resume: bool = False
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(data), str(out), mode,
                           "resume" if resume else "new"], capture_output=True, encoding="utf-8",
                          timeout=300)


@pytest.fixture
def child(tmp_path: Path) -> Path:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return script


@pytest.mark.parametrize("mode,code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_signal_mid_step_then_resume_is_bit_identical(tmp_path, child, disks_dir, mode, code):
    straight = _run(child, disks_dir, tmp_path / "straight", "none")
    assert straight.returncode == 0, straight.stderr
    cut = _run(child, disks_dir, tmp_path / "cut", mode)
    assert cut.returncode == code, cut.stderr
    assert "stopped at 6" in cut.stdout  # the step in progress was finished, not redone
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")["training"]
    assert saved["step"] == 6 and saved["step_in_epoch"] == 2
    resumed = _run(child, disks_dir, tmp_path / "cut", "none", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert a["training"]["step"] == b["training"]["step"] == 12
    assert a["model_state"].keys() == b["model_state"].keys()
    for key, value in a["model_state"].items():
        assert torch.equal(value, b["model_state"][key]), key  # bit-identical


def test_kill_9_resumes_exactly_from_the_last_epoch(tmp_path, child, disks_dir):
    # SIGKILL cannot be caught: what survives is the last.pt of the last complete epoch, written
    # atomically, and resuming from it still ends bit-identical to an uninterrupted run
    straight = _run(child, disks_dir, tmp_path / "straight", "none")
    assert straight.returncode == 0, straight.stderr
    killed = _run(child, disks_dir, tmp_path / "killed", "SIGKILL")
    assert killed.returncode == -signal.SIGKILL
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["training"]["step"] == 4
    resumed = _run(child, disks_dir, tmp_path / "killed", "none", resume=True)
    assert resumed.returncode == 0, resumed.stderr
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model_state"]
    b = load_checkpoint(tmp_path / "killed" / "last.pt")["model_state"]
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_second_ctrl_c_aborts_at_once(tmp_path, child, disks_dir):
    out = tmp_path / "twice"
    result = _run(child, disks_dir, out, "SIGINT")
    assert result.returncode == 130
    assert "aborted" in result.stdout
    # the last complete epoch's checkpoint is all there is: nothing was written for step 6
    assert load_checkpoint(out / "last.pt")["training"]["step"] == 4


def test_handlers_are_restored_after_fit() -> None:
    from unetkit.train.signals import StopSignals

    before = signal.getsignal(signal.SIGTERM)
    with StopSignals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
