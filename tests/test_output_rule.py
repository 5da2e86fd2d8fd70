"""The output rule (``unetkit.runtime.outputs``): no command writes over a file it did not
create in this run, or over a file it reads, unless ``--force``; the checks come before the
work. Each test compares the SHA-256 and modification time of every file around it before and
after a refused command.

Outputs that cannot be written are one line naming the path and the option, never a
traceback: a read-only folder (real for a normal user; simulated for root, who ignores the
mode: the ``read_only`` fixture), a file where a folder is expected, a full disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.runtime.atomic import PARTIAL_PREFIX

runner = CliRunner()
SRC = str(Path(__file__).resolve().parents[1] / "src")


def snapshot(root: Path) -> dict:
    """``{path: (sha256, mtime_ns)}`` of every file under ``root`` (links not followed)."""
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest() if not p.is_symlink() else
                os.readlink(p), p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() or p.is_symlink()}


def flat(output: str) -> str:
    return " ".join(output.split())


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(PARTIAL_PREFIX)]


def refused(result, *parts: str, code: int = 2) -> None:
    """Exit ``code``, one error line holding ``parts``, no traceback."""
    assert result.exit_code == code, result.output
    text = flat(result.output)
    for part in parts:
        assert part in text, text
    assert "Traceback" not in result.output
    assert text.count("error:") == 1, text


def write_data(root: Path, names=("a", "b"), size=(24, 20)) -> Path:
    """``root/images`` + ``root/masks``: random PNG images, 0/255 disk masks."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:size[0], :size[1]]
    for name in names:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(
            root / "images" / f"{name}.png")
        disk = (yy - 12) ** 2 + (xx - 10) ** 2 < rng.integers(9, 40)
        Image.fromarray((disk * 255).astype(np.uint8)).save(root / "masks" / f"{name}.png")
    return root


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("target", ["masks", "masks/pred", ".", "labels"])  # labels/: new
def test_predict_never_writes_into_its_data_set(make_checkpoint, tmp_path, force, target):
    ckpt = make_checkpoint()
    data = write_data(tmp_path / "DATA")
    out = data / target
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["predict", str(ckpt), str(data / "images"), "-o", str(out),
                                 "-q", *(["--force"] if force else [])])
    refused(result, f"--out {out}", "data set", "nothing written")
    assert snapshot(tmp_path) == before and not (data / "masks" / "pred").exists()
    assert not (data / "labels").exists()
    beside = runner.invoke(app, ["predict", str(ckpt), str(data / "images"), "-o",
                                 str(data / "pred"), "-q"])  # a new folder is read by nothing
    assert beside.exit_code == 0 and (data / "pred" / "a.png").is_file()


def test_predict_keeps_earlier_outputs_unless_forced(make_checkpoint, tmp_path):
    ckpt = make_checkpoint()
    data = write_data(tmp_path / "DATA")
    out = tmp_path / "pred"
    args = ["predict", str(ckpt), str(data / "images"), "-o", str(out), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    (out / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    refused(runner.invoke(app, args), f"{out / 'a.png'} (and 1 more) already exists",
            "--force")
    assert snapshot(tmp_path) == before
    forced = runner.invoke(app, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "a.png").stat().st_mtime_ns != before[out / "a.png"][1]


@pytest.mark.parametrize("force", [False, True])
def test_predict_refuses_an_output_that_is_a_hard_link_of_an_input(make_checkpoint, tmp_path,
                                                                   force):
    ckpt = make_checkpoint()
    data = write_data(tmp_path / "DATA")
    out = tmp_path / "pred"
    out.mkdir()
    os.link(data / "images" / "a.png", out / "a.png")
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["predict", str(ckpt), str(data / "images"), "-o", str(out),
                                 "-q", *(["--force"] if force else [])])
    refused(result, f"{out / 'a.png'}: is a hard link of the input {data / 'images' / 'a.png'}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("force", [False, True])
def test_export_never_writes_over_its_checkpoint(make_checkpoint, tmp_path, fmt, force):
    ckpt = make_checkpoint()
    os.link(ckpt, tmp_path / "linked.pt")
    before = snapshot(tmp_path)
    for out in (ckpt, tmp_path / "linked.pt"):
        result = runner.invoke(app, ["export", str(ckpt), "-f", fmt, "-o", str(out),
                                     *(["--force"] if force else [])])
        refused(result, f"--out {out}: is the input {ckpt}", "nothing written")
    assert snapshot(tmp_path) == before


def test_export_keeps_an_existing_file_unless_forced(make_checkpoint, tmp_path):
    ckpt = make_checkpoint()
    out = tmp_path / "model.ts"
    out.write_bytes(b"an earlier export")
    before = snapshot(tmp_path)
    refused(runner.invoke(app, ["export", str(ckpt), "-f", "torchscript"]),
            f"--out: {out} already exists", "--force")
    assert snapshot(tmp_path) == before
    forced = runner.invoke(app, ["export", str(ckpt), "-f", "torchscript", "--force"])
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() != b"an earlier export"


def test_a_rejected_export_leaves_no_file(make_checkpoint, tmp_path, monkeypatch):
    ckpt = make_checkpoint()
    monkeypatch.setattr("unetkit.export.output_differences",
                        lambda *a, **k: {(16, 16): 0.5})  # as a NaN or a broken op would
    out = tmp_path / "exports" / "m.ts"
    refused(runner.invoke(app, ["export", str(ckpt), "-f", "torchscript", "-o", str(out)]),
            f"{out}: max abs difference to PyTorch 0.5", "nothing written", code=1)
    assert list((tmp_path / "exports").iterdir()) == []


def _earlier_demo(out: Path) -> None:
    for name in ("data/train/images/a.png", "run/last.pt", "predictions/a.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"earlier work")
    (out / "notes.txt").write_text("mine")


def test_demo_keeps_earlier_work_and_checks_the_budget_first(tmp_path):
    out = tmp_path / "demo"
    _earlier_demo(out)
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["demo", "--out", str(out), "--time", "0"])
    refused(result, "time_budget")
    assert snapshot(tmp_path) == before
    refused(runner.invoke(app, ["demo", "--out", str(out), "--quick"]),
            f"--out: {out / 'data'} (and 2 more) already exists", "--force")
    assert snapshot(tmp_path) == before


def test_demo_force_replaces_only_its_own_outputs(tmp_path):
    from unetkit.demo import claim_demo_folder

    out = tmp_path / "demo"
    _earlier_demo(out)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    (out / "evaluation").symlink_to(precious, target_is_directory=True)
    claim_demo_folder(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (precious / "keep.txt").read_text() == "keep"  # the link removed, not followed


def test_plan_keeps_an_existing_config_and_checks_before_timing(tmp_path, monkeypatch):
    data = write_data(tmp_path / "DATA")
    mine = tmp_path / "mine.yaml"
    mine.write_text("# hand-written\nmodel:\n  base_width: 8\n")

    def no_planning(*args, **kwargs):
        raise AssertionError("planned before --out was checked")

    monkeypatch.setattr("unetkit.plan.planner.make_plan", no_planning)
    before = snapshot(tmp_path)
    refused(runner.invoke(app, ["plan", str(data), "-o", str(mine)]),
            f"--out: {mine} already exists", "--force")
    inside = data / "masks" / "plan.yaml"
    refused(runner.invoke(app, ["plan", str(data), "-o", str(inside), "--force"]),
            f"--out {inside} is inside the folder masks/ of the data set {data}")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["images", "masks/run", "."])
def test_train_never_writes_into_the_data(tmp_path, monkeypatch, target):
    data = write_data(tmp_path / "DATA")
    monkeypatch.setattr("unetkit.plan.auto.run_config", lambda *a, **k: 1 / 0)
    monkeypatch.setattr("unetkit.train.fit.prepare_data", lambda *a, **k: 1 / 0)
    out = data / target
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(out), "-q"])
    refused(result, f"--out {out}", "data set", code=1)
    assert snapshot(tmp_path) == before and not (data / "masks" / "run").exists()


def test_calibrate_validates_before_it_writes(make_checkpoint, tmp_path):
    ckpt = make_checkpoint(out_channels=1)
    data = write_data(tmp_path / "DATA", names=("a", "b", "c"))
    before = snapshot(tmp_path)
    refused(runner.invoke(app, ["calibrate", str(ckpt), "--data", str(data), "--max-images",
                                "0"]), "--max-images 0", "nothing written")
    (data / "masks" / "b.png").unlink()
    before = snapshot(tmp_path)
    refused(runner.invoke(app, ["calibrate", str(ckpt), "--data", str(data)]),
            f"{data / 'images' / 'b.png'}: image without a mask", "nothing written")
    assert snapshot(tmp_path) == before
    write_data(tmp_path / "FULL", names=("a", "b"))
    done = runner.invoke(app, ["calibrate", str(ckpt), "--data", str(tmp_path / "FULL")])
    assert done.exit_code == 0, done.output  # its documented purpose: the checkpoint changes
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() != before[ckpt][0]


SIGTERM_MID_MASK = """
import os, signal, sys
import unetkit.data.io_formats as formats
real, calls = formats.write_pil, []
def write_then_stop(path, array):
    calls.append(path)
    if len(calls) == 2:  # the second mask: half of it written, then SIGTERM arrives
        with open(path, "wb") as handle:
            handle.write(b"\\x89PNG\\r\\n\\x1a\\n half")
            handle.flush()
            os.kill(os.getpid(), signal.SIGTERM)
    real(path, array)
formats.write_pil = write_then_stop
from unetkit.cli import app
app(sys.argv[1:])
"""


def test_predict_stopped_by_sigterm_leaves_no_truncated_mask(make_checkpoint, tmp_path):
    ckpt = make_checkpoint()
    data = write_data(tmp_path / "DATA", names=("a", "b", "c"))
    out = tmp_path / "pred"
    done = subprocess.run([sys.executable, "-c", SIGTERM_MID_MASK, "predict", str(ckpt),
                           str(data / "images"), "-o", str(out), "-q", "--device", "cpu"],
                          env={**os.environ, "PYTHONPATH": SRC}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "predict.json"]  # b.png never
    # half there
    with Image.open(out / "a.png") as mask:
        assert mask.size == (20, 24)


def test_predict_stops_on_a_full_disk_and_removes_partial_files(make_checkpoint, tmp_path,
                                                                monkeypatch):
    import unetkit.data.io_formats as formats

    ckpt = make_checkpoint()
    data = write_data(tmp_path / "DATA", names=("a", "b", "c"))
    real, calls = formats.write_numpy, []

    def fill_the_disk(path, array, geometry):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"PK\x03\x04 truncated")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, array, geometry)

    monkeypatch.setattr(formats, "write_numpy", fill_the_disk)
    out = tmp_path / "pred"
    result = runner.invoke(app, ["predict", str(ckpt), str(data / "images"), "-o", str(out),
                                 "--save-probabilities", "-q"])
    refused(result, f"no space left on device: {out / 'probabilities' / 'b.npz'}",
            "prediction stopped after 1 mask(s)", code=1)
    assert "wrote" not in result.output and "input(s) failed" not in result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == \
        ["a.png", "predict.json", "probabilities/a.npz"]  # b's mask removed with its map, c
    # never started; predict.json, written before the first mask, names the batch's inputs
    assert np.load(out / "probabilities" / "a.npz")["data"].shape == (3, 24, 20)


def _predictions(tmp_path: Path) -> tuple[Path, Path]:
    data = write_data(tmp_path / "DATA")
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in ("a", "b"):
        (pred / f"{name}.png").write_bytes((data / "masks" / f"{name}.png").read_bytes())
    return data, pred


@pytest.mark.parametrize("target", ["masks", "images", "pred"])
def test_evaluate_never_writes_into_what_it_reads(tmp_path, target):
    data, pred = _predictions(tmp_path)
    out = pred if target == "pred" else data / target
    before = snapshot(tmp_path)
    result = runner.invoke(app, ["evaluate", str(pred), str(data / "masks"), "-o", str(out),
                                 "--force"])
    refused(result, f"--out {out} is the", "nothing written")
    assert snapshot(tmp_path) == before


def test_evaluate_keeps_an_earlier_report_unless_forced(tmp_path):
    data, pred = _predictions(tmp_path)
    args = ["evaluate", str(pred), str(data / "masks")]
    assert runner.invoke(app, args).exit_code == 0  # the default: PRED/evaluation
    before = snapshot(tmp_path)
    refused(runner.invoke(app, args), f"--out: {pred / 'evaluation' / 'per_case.csv'} (and 2 "
            "more) already exists")
    assert snapshot(tmp_path) == before
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


# Outputs that cannot be written: one line, no traceback

def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "calibrate"])
@pytest.mark.parametrize("missing", [False, True])
def test_a_read_only_output_folder_is_one_line(make_checkpoint, tmp_path, read_only, command,
                                               missing):
    data = write_data(tmp_path / "DATA")
    ckpt = make_checkpoint(out_channels=1)
    folder = tmp_path / "ro"
    folder.mkdir()
    if command == "calibrate":  # it writes its checkpoint: that one lies in the folder
        ckpt = Path(ckpt.replace(folder / "model.pt"))
    read_only(folder)
    out = folder / "sub" if missing else folder
    args = {"predict": ["predict", str(ckpt), str(data / "images"), "-o", str(out), "-q"],
            "evaluate": ["evaluate", str(data / "masks"), str(data / "masks"), "-o", str(out)],
            "export": ["export", str(ckpt), "-f", "torchscript", "-o", str(out / "m.ts")],
            "calibrate": ["calibrate", str(ckpt), "--data", str(data)]}[command]
    if command == "evaluate":  # predictions beside the data, scored against its masks
        args[1] = str(write_data(tmp_path / "P")) + "/masks"
    before = snapshot(tmp_path)
    result = runner.invoke(app, args)
    named = {"predict": f"--out {out}", "evaluate": f"--out {out}",
             "export": f"--out {out / 'm.ts'}", "calibrate": str(ckpt)}[command]
    refused(result, named, "Permission denied")
    assert snapshot(tmp_path) == before and not (folder / "sub").exists()


def test_a_read_only_run_folder_fails_before_the_data_is_loaded(tmp_path, read_only,
                                                                monkeypatch):
    data = write_data(tmp_path / "DATA")
    monkeypatch.setattr("unetkit.plan.auto.run_config", lambda *a, **k: 1 / 0)
    monkeypatch.setattr("unetkit.train.fit.prepare_data", lambda *a, **k: 1 / 0)
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only(folder)
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(folder), "-q"])
    refused(result, f"--out {folder}: cannot write the run there (Permission denied)", code=1)


@pytest.mark.parametrize("command", ["predict", "evaluate", "train", "demo"])
def test_a_file_where_a_folder_is_expected_is_one_line(make_checkpoint, tmp_path, command,
                                                       monkeypatch):
    data = write_data(tmp_path / "DATA")
    ckpt = make_checkpoint()
    taken = tmp_path / "taken"
    taken.write_text("a file")
    monkeypatch.setattr("unetkit.plan.auto.run_config", lambda *a, **k: 1 / 0)
    args = {"predict": ["predict", str(ckpt), str(data / "images"), "-o", str(taken), "-q"],
            "evaluate": ["evaluate", str(data / "masks"), str(data / "masks"), "-o",
                         str(taken)],
            "train": ["train", "--data", str(data), "--out", str(taken), "-q"],
            "demo": ["demo", "--out", str(taken), "--quick"]}[command]
    if command == "evaluate":
        args[1] = str(write_data(tmp_path / "P")) + "/masks"
    before = snapshot(tmp_path)
    result = runner.invoke(app, args)
    refused(result, f"--out {taken}", f"{taken} is a file, not a folder",
            code=1 if command == "train" else 2)
    assert snapshot(tmp_path) == before


def test_a_full_disk_during_export_is_one_line(make_checkpoint, tmp_path, monkeypatch):
    ckpt = make_checkpoint()
    out = tmp_path / "exports" / "m.ts"

    def half_then_full(module, path, **kwargs):
        Path(path).write_bytes(b"PK half")
        _disk_full()

    monkeypatch.setattr(torch.jit, "save", half_then_full)
    result = runner.invoke(app, ["export", str(ckpt), "-f", "torchscript", "-o", str(out)])
    refused(result, f"no space left on device: {out}", code=1)
    assert list(out.parent.iterdir()) == []


def test_a_full_disk_during_evaluate_is_one_line(tmp_path, monkeypatch):
    import csv

    data = write_data(tmp_path / "DATA")
    pred = write_data(tmp_path / "P") / "masks"
    real = csv.DictWriter.writerow
    rows = []

    def full_after_one_row(self, row):
        rows.append(row)
        if len(rows) > 1:
            _disk_full()
        return real(self, row)

    monkeypatch.setattr(csv.DictWriter, "writerow", full_after_one_row)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(pred), str(data / "masks"), "-o", str(out)])
    refused(result, f"no space left on device: {out / 'per_case.csv'}", code=1)
    assert list(out.iterdir()) == [] and partials(tmp_path) == []
