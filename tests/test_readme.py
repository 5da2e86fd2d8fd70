"""Every fenced code block of README.md runs, in order, in one temporary folder.

``python`` blocks are executed as they are written (each in a fresh namespace, so each must be
self-contained). In ``bash`` blocks every ``unetkit ...`` line is a CLI call (in process, through
``CliRunner``; ``> FILE`` captures its standard output), a ``torchrun ... -m unetkit ...`` line
runs as a subprocess, ``make TARGET`` lines must name a Makefile target (not run: they install a
virtualenv and train for minutes), and ``source`` lines are skipped. Any other line fails the
test, so a new kind of line gets a rule here before it reaches the README.

The folder holds what the README's commands read, generated on the spot: ``data/`` (synthetic
cells, images/ + masks/), ``images/`` (the same images), ``new_images/`` + ``ground_truth/``
(held-out cells; also ``new_slices/`` and ``test/{images,masks,fov}`` with a disc-shaped field of
view), ``masks/case01.png`` (a 0/255 mask), ``ct.nii.gz`` and
``scan.nii.gz`` (3D volumes) and ``runs/ct/best.pt`` (a tiny 3D network trained on them).
What the README runs for minutes runs here for seconds, by the substitutions and added options
listed in ``SUBSTITUTIONS``, ``PYTHON_SUBSTITUTIONS``, ``TRAIN_OPTIONS`` and
``CONFIG_TRAIN_OPTIONS`` (the README text, what the test uses instead, and why).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from unetkit.cli import app

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

# (README text, test text, why): applied to every bash line, word for word.
SUBSTITUTIONS = [
    ("--time 10m", "--time 3s", "time budgets shrink to seconds"),
    ("--time 8m", "--time 3s", "time budgets shrink to seconds"),
    ("DATA", "data", "the README's placeholder for a data folder"),
    ("../shared/data/isbi2012/train", "data", "the ISBI 2012 slices are not in the repository: "
     "the synthetic cells stand in"),
    ("configs/isbi2012.yaml", str(REPO / "configs" / "isbi2012.yaml"), "the repository's file"),
    ("--nproc_per_node 4", "--standalone --nproc_per_node 1", "one process on a free port: "
     "the command line is what is checked here; tests/train/test_ddp.py trains two ranks"),
]
# Options added to every `unetkit train` line (after the substitutions): small patches and
# batches on the 48x48 images, fp32 on the CPU; runs from a config file (no time budget) also get
# a tiny network and one short epoch. Planned runs keep the planned network: the budget bounds it.
TRAIN_OPTIONS = ["--patch-size", "32", "--batch-size", "2", "--precision", "fp32",
                 "--device", "cpu", "--set", "train.steps_per_epoch=2"]
CONFIG_TRAIN_OPTIONS = ["--epochs", "1", "--set", "model.base_width=4", "--set", "model.depth=2"]


def config_options(args: list[str]) -> list[str]:
    """``CONFIG_TRAIN_OPTIONS`` for runs from a config file, except a planner's ``plan.yaml``:
    it holds its own network (widths and depth together) and the 3 s budget it was planned for."""
    return CONFIG_TRAIN_OPTIONS if "--config" in args and "plan.yaml" not in args else []
# (README text, test text, why): applied to python blocks.
PYTHON_SUBSTITUTIONS = [
    ('{"train.time_budget": "10m"}', '{"train.time_budget": "3s", **TINY}', "seconds, not "
     "minutes, and a tiny network (TINY below)"),
    ('"DATA"', '"data"', "the README's placeholder for a data folder"),
]
TINY = {"model.base_width": 4, "model.depth": 2, "data.patch_size": [32, 32],
        "data.batch_size": 2, "train.steps_per_epoch": 2, "train.precision": "fp32",
        "train.device": "cpu"}


def readme_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of README.md, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _substitute(text: str, table: list[tuple[str, str, str]]) -> str:
    for old, new, _why in table:
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder with everything the README's commands read (see the module docstring)."""
    import nibabel as nib
    from PIL import Image

    from unetkit.config import Config, apply_values
    from unetkit.data.synthetic import write_blobs_dataset, write_cells_dataset
    from unetkit.train.fit import fit

    root = tmp_path_factory.mktemp("readme")
    write_cells_dataset(root / "data", 6, (48, 48), seed=0)
    shutil.copytree(root / "data" / "images", root / "images")
    held_out = write_cells_dataset(root / "held_out", 2, (48, 48), seed=1)
    shutil.copytree(held_out / "images", root / "new_images")
    shutil.copytree(held_out / "images", root / "new_slices")
    shutil.copytree(held_out / "masks", root / "ground_truth")
    shutil.copytree(held_out / "images", root / "test" / "images")
    shutil.copytree(held_out / "masks", root / "test" / "masks")
    (root / "test" / "fov").mkdir()
    yy, xx = np.mgrid[:48, :48]
    disc = (((yy - 24) ** 2 + (xx - 24) ** 2) < 22**2).astype(np.uint8) * 255
    for image in (root / "test" / "images").iterdir():
        Image.fromarray(disc).save(root / "test" / "fov" / image.name)
    (root / "masks").mkdir()
    mask = np.zeros((24, 20), np.uint8)
    mask[5:15, 4:12] = 255
    Image.fromarray(mask).save(root / "masks" / "case01.png")
    blobs = write_blobs_dataset(root / "blobs", 3, (16, 16, 16), spacing=(0.8, 0.8, 2.0),
                                num_classes=2)
    volume = blobs / "imagesTr" / "blobs_000_0000.nii.gz"
    assert nib.load(volume).ndim == 3
    shutil.copy(volume, root / "ct.nii.gz")
    shutil.copy(volume, root / "scan.nii.gz")
    config = apply_values(Config(), {**TINY, "model.spatial_dims": 3, "data.patch_size": [16] * 3,
                                     "train.epochs": 1, "data.val_fraction": 0.0})
    fit(config, blobs, root / "runs" / "ct")
    return root


def _run_cli(args: list[str], where: str) -> None:
    target = None
    if ">" in args:  # `unetkit config > my.yaml`: the standard output goes to the file
        at = args.index(">")
        args, target = args[:at], args[at + 1]
    if args[0] == "train":
        args = args + TRAIN_OPTIONS + config_options(args)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{where}: unetkit {shlex.join(args)}\n{result.output}"
    assert "Traceback" not in result.output, where
    if target is not None:
        Path(target).write_text(result.stdout)


def _run_torchrun(args: list[str], where: str) -> None:
    at = args.index("-m")
    assert args[at + 1] == "unetkit", where
    command = [sys.executable, "-m", "torch.distributed.run", *args[1:]]
    if args[at + 2] == "train":
        command += TRAIN_OPTIONS + config_options(args)
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{where}: {shlex.join(command)}\n{done.stdout}\n{done.stderr}"


def _run_bash(code: str, where: str) -> None:
    makefile = (REPO / "Makefile").read_text()
    for number, line in enumerate(code.splitlines(), 1):
        args = shlex.split(_substitute(line, SUBSTITUTIONS), comments=True)
        at = f"{where}, line {number}"
        if not args or args[0] == "source":
            continue
        if args[0] == "make":
            assert re.search(rf"^{args[1]}:", makefile, flags=re.M), f"{at}: no make target"
        elif args[0] == "unetkit":
            _run_cli(args[1:], at)
        elif args[0] == "torchrun":
            _run_torchrun(args, at)
        else:
            pytest.fail(f"{at}: no rule for {line!r} (add one to tests/test_readme.py)")


def test_readme_blocks_are_known_and_the_first_screen_is_two_commands():
    blocks = readme_blocks()
    assert blocks and {language for language, _ in blocks} <= {"bash", "python"}
    first = [line.split("#")[0].strip() for line in blocks[0][1].splitlines()]
    assert first == ["make demo", "make test"]
    text = README.read_text()
    for old, _new, _why in SUBSTITUTIONS + PYTHON_SUBSTITUTIONS:
        assert old in text, f"substitution {old!r} is stale: the README no longer has it"


def test_every_readme_block_runs(workspace, monkeypatch):
    import torch

    monkeypatch.chdir(workspace)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index, (language, code) in enumerate(readme_blocks(), 1):
            where = f"README.md block {index} ({language})"
            if language == "python":
                source = _substitute(code, PYTHON_SUBSTITUTIONS)
                exec(compile(source, where, "exec"), {"TINY": TINY, "__name__": "readme"})
            else:
                _run_bash(code, where)
    finally:
        torch.set_num_threads(threads)
    # what the README says the commands leave behind
    for name in ("runs/mine/best.pt", "runs/mine/train.log", "predictions/cell_000.png",
                 "report/report.html", "runs/mine/best.onnx", "my.yaml", "runs/fold0/best.pt",
                 "ct_out/scan.nii.gz", "eval/report.html", "onnx_out/cell_000.png",
                 "runs/isbi/best.pt", "masks/cell_000.png", "ct_mask.nii.gz"):
        assert (workspace / name).exists(), name
