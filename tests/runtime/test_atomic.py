"""The atomic writer: whole or absent, the umask's mode, links re-pointed, stale temporary
files removed; SIGTERM and kill -9 mid-write in a real subprocess."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from unetkit.runtime.atomic import (
    PARTIAL_PREFIX,
    WriteError,
    atomic_path,
    partial_target,
    remove_partials,
    write_text,
)
from unetkit.runtime.checkpoint import load_checkpoint, save_checkpoint

SRC = str(Path(__file__).resolve().parents[2] / "src")


def partials(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(PARTIAL_PREFIX))


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"earlier")
    with pytest.raises(RuntimeError, match="encoder"), atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith("-a.png")
        tmp.write_bytes(b"half of a new fi")
        raise RuntimeError("encoder broke")
    assert target.read_bytes() == b"earlier" and partials(tmp_path) == []


def test_a_full_disk_is_one_line_naming_the_file(tmp_path) -> None:
    def fill(tmp: Path) -> None:
        tmp.write_bytes(b"trunc")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "summary.json"
    with pytest.raises(WriteError) as caught, atomic_path(target) as tmp:
        fill(tmp)
    assert str(caught.value) == f"no space left on device: {target}"
    assert caught.value.errno == errno.ENOSPC
    assert not target.exists() and partials(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_checkpoints_and_curves_get_the_mode_the_umask_allows(tmp_path, umask) -> None:
    from unetkit.train.curves import plot_training_curves

    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("written by open()")
        ckpt = save_checkpoint({"config": {}, "model_state": {}, "labels": {0: "bg"}},
                               tmp_path / "best.pt")
        rows = [{"epoch": 1, "train_loss": 0.5, "val_loss": 0.4, "val_dice": 0.7, "lr": 0.01,
                 "seconds": 1.0}]
        png = Path(plot_training_curves(rows, tmp_path / "progress.png"))
        text = write_text(tmp_path / "calibration.json", "{}")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for path in (plain, ckpt, png, text):
        assert stat.S_IMODE(path.stat().st_mode) == expected, path


def test_a_hard_link_is_re_pointed_never_written_through(tmp_path) -> None:
    source = tmp_path / "input.png"
    source.write_bytes(b"the input")
    link = tmp_path / "out.png"
    os.link(source, link)
    write_text(link, "the output")
    assert source.read_bytes() == b"the input" and link.read_text() == "the output"


def test_stale_temporaries_are_removed_by_name(tmp_path) -> None:
    mine = tmp_path / f"{PARTIAL_PREFIX}0123abcd-last.pt"
    other = tmp_path / f"{PARTIAL_PREFIX}4567cdef-a.png"
    unrelated = tmp_path / ".last.pt.notes"
    for path in (mine, other, unrelated):
        path.write_bytes(b"x")
    assert partial_target(mine.name) == "last.pt" and partial_target("last.pt") is None
    assert remove_partials(tmp_path, ["last.pt"]) == [mine]
    assert other.exists() and unrelated.exists()
    save_checkpoint({"config": {}, "model_state": {}, "labels": {}}, tmp_path / "a.png")
    assert not other.exists() and unrelated.exists()  # a write removes its own leftovers


KILLED_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from unetkit.runtime.atomic import atomic_path, sigterm_exits
target, how = Path(sys.argv[1]), sys.argv[2]
with sigterm_exits(), atomic_path(target) as tmp:
    with open(tmp, "wb") as handle:
        handle.write(b"half of a n")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGTERM)
        handle.write(b"ew file")
"""


@pytest.mark.parametrize("how", ["term", "kill"])
def test_a_writer_stopped_mid_write_leaves_the_earlier_file_whole(tmp_path, how) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"the earlier checkpoint")
    done = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(target), how],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True, text=True,
                          timeout=120)
    assert target.read_bytes() == b"the earlier checkpoint"
    if how == "term":  # caught: the temporary file is removed on the way out
        assert done.returncode == 128 + signal.SIGTERM, done.stderr
        assert partials(tmp_path) == [] and "Traceback" not in done.stderr
    else:  # kill -9 cannot be caught: a recognisable temporary file stays ...
        assert done.returncode == -signal.SIGKILL
        [left] = partials(tmp_path)
        assert partial_target(left.name) == "last.pt" and left.read_bytes() == b"half of a n"
        # ... until the next write of that name removes it
        save_checkpoint({"config": {}, "model_state": {}, "labels": {}}, target)
        assert partials(tmp_path) == [] and load_checkpoint(target)["labels"] == {}


def test_kill_9_while_last_pt_is_written_then_resume_cleans_up(tmp_path) -> None:
    """A real training run, then kill -9 inside ``save_checkpoint`` of its ``last.pt`` (the
    zip writer has written part of the file), then ``unetkit train --resume``."""
    from typer.testing import CliRunner

    from unetkit.cli import app
    from unetkit.data.synthetic import write_cells_dataset

    data = write_cells_dataset(tmp_path / "cells", 4, (32, 32), seed=0)
    run = tmp_path / "run"
    tiny = ["--set", "model.base_width=4", "--set", "model.depth=2", "--set",
            "train.steps_per_epoch=2", "--set", "data.augment.enabled=false", "--patch-size",
            "32", "--batch-size", "2", "--precision", "fp32", "--device", "cpu",
            "--val-fraction", "0", "-q"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = CliRunner().invoke(app, ["train", "--data", str(data), "--out", str(run),
                                         "--epochs", "1", *tiny])
        assert first.exit_code == 0, first.output
        before = (run / "last.pt").read_bytes()
        script = textwrap.dedent("""
            import os, signal, sys, torch
            from unetkit.runtime.checkpoint import load_checkpoint, save_checkpoint
            real = torch.save
            def save_then_die(obj, f):
                with open(f, "wb") as handle:
                    handle.write(b"PK half a zip")
                    handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            torch.save = save_then_die
            path = sys.argv[1]
            save_checkpoint(load_checkpoint(path), path)
        """)
        killed = subprocess.run([sys.executable, "-c", script, str(run / "last.pt")],
                                env={**os.environ, "PYTHONPATH": SRC}, timeout=300)
        assert killed.returncode == -signal.SIGKILL
        assert (run / "last.pt").read_bytes() == before
        assert [partial_target(p.name) for p in partials(run)] == ["last.pt"]
        again = CliRunner().invoke(app, ["train", "--resume", str(run), "--epochs", "2", "-q"])
    finally:
        torch.set_num_threads(threads)
    assert again.exit_code == 0, again.output
    assert partials(run) == []
    assert load_checkpoint(run / "last.pt")["training"]["epoch"] == 2
