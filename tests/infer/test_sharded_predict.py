"""Prediction beyond one process: ``--part K --parts N`` job arrays and ``torchrun ... predict``.

Every case is predicted exactly once, the outputs are byte-identical to a single process's, a
broken input fails by name (exit code 1) while the others are written, and a bad ``--part`` is
one clear line. The torchrun tests start two gloo processes on the CPU.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.infer.shards import assigned, check_part, shard
from unetkit.runtime.distributed import DistInfo

runner = CliRunner()
NAMES = [f"case{i}.png" for i in range(5)]


def write_pngs(folder: Path, names: list[str], size=(36, 28), seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / name)
    return folder


def predict(*args: str):
    return runner.invoke(app, ["predict", *map(str, args), "--quiet"])


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def torchrun(*args: str) -> list[str]:
    """torchrun (or ``python -m torch.distributed.run``, the same program) of this Python."""
    found = Path(sys.executable).with_name("torchrun")
    launcher = [str(found)] if found.is_file() else [sys.executable, "-m",
                                                      "torch.distributed.run"]
    return [*launcher, *args]


def run_torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(torchrun("--standalone", "--nproc_per_node", "2", "-m", "unetkit",
                                   *args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


# --- the assignment (pure functions) ---
@pytest.mark.parametrize("count", [0, 1, 5, 12])
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_every_case_lands_in_exactly_one_part(count, parts) -> None:
    cases = [f"c{i}" for i in range(count)]
    dealt = [shard(cases, k, parts) for k in range(parts)]
    assert sorted(c for part in dealt for c in part) == sorted(cases)
    assert max(map(len, dealt)) - min(map(len, dealt)) <= 1
    assert dealt[0] == cases[::parts] and dealt == [shard(cases, k, parts) for k in range(parts)]


def test_parts_and_ranks_combine_into_one_partition() -> None:
    cases = list(range(23))
    pieces = [assigned(cases, (k, 3), DistInfo(rank=r, world_size=2))
              for k in range(3) for r in range(2)]
    assert sorted(c for piece in pieces for c in piece) == cases
    # the ranks of a part split exactly that part, whatever the world size
    for k in range(3):
        ranks = [assigned(cases, (k, 3), DistInfo(rank=r, world_size=2)) for r in range(2)]
        assert sorted(ranks[0] + ranks[1]) == shard(cases, k, 3)
    assert assigned(cases, None, DistInfo()) == cases


@pytest.mark.parametrize(("part", "parts", "message"), [
    (2, 2, "--part 2: must be between 0 and 1 for --parts 2"),
    (-1, 3, "--part -1: must be between 0 and 2 for --parts 3"),
    (0, 0, "--parts 0: needs at least 1 part"),
    (1, None, "--part K and --parts N go together"),
    (None, 4, "--part K and --parts N go together"),
])
def test_check_part_refuses_in_one_line(part, parts, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_part(part, parts)


def test_check_part_accepts() -> None:
    assert check_part(None, None) is None
    assert check_part(0, 1) == (0, 1) and check_part(3, 4) == (3, 4)


# --- job arrays: --part K --parts N ---
def test_two_parts_together_equal_the_whole(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=1, mask_values={0: 0, 1: 255})
    images = write_pngs(tmp_path / "images", NAMES)
    whole = predict(ckpt, images, "-o", tmp_path / "whole")
    assert whole.exit_code == 0, whole.output
    assert "wrote 5 mask(s)" in whole.output and "part 0 of" not in whole.output
    outputs = []
    for k in (0, 1):
        result = predict(ckpt, images, "-o", tmp_path / "parts", "--part", k, "--parts", 2)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "wrote 3 mask(s)" in outputs[0] and "part 0 of 2" in outputs[0]
    assert "wrote 2 mask(s)" in outputs[1] and "part 1 of 2" in outputs[1]
    assert files_of(tmp_path / "parts") == files_of(tmp_path / "whole")  # predict.json too
    assert sorted(files_of(tmp_path / "whole")) == [*NAMES, "predict.json"]


def test_one_part_writes_only_its_cases(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", NAMES)
    result = predict(ckpt, images, "-o", tmp_path / "p1", "--part", 1, "--parts", 3)
    assert result.exit_code == 0, result.output
    # predict.json names the inputs of the whole batch: every part writes the same record
    assert sorted(files_of(tmp_path / "p1")) == ["case1.png", "case4.png", "predict.json"]


@pytest.mark.parametrize(("args", "message"), [
    (["--part", "2", "--parts", "2"], "--part 2: must be between 0 and 1 for --parts 2"),
    (["--part", "1"], "--part K and --parts N go together"),
])
def test_an_invalid_part_is_one_clear_error(make_checkpoint, tmp_path, args, message) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", NAMES[:2])
    result = predict(ckpt, images, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_part_checks_the_outputs_of_every_case_first(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["a.png", "b.png"])
    Image.open(images / "a.png").convert("RGB").save(images / "a.jpg")  # also -> a.png
    Image.open(images / "a.png").save(images / "c.png")
    # sorted: a.jpg, a.png, b.png, c.png; part 1 of 2 holds a.png and c.png: the clash of
    # a.jpg (part 0) with a.png is still found, before anything is written
    result = predict(ckpt, images, "-o", tmp_path / "out", "--part", 1, "--parts", 2)
    assert result.exit_code == 2, result.output
    assert "would replace" in result.output
    assert not (tmp_path / "out").exists()


def test_a_broken_input_of_a_part_fails_by_name(make_checkpoint, tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", NAMES[:3])
    (images / "case3.png").write_bytes(b"not a png")
    for k, code in ((0, 0), (1, 1)):  # case3 is in part 1
        result = predict(ckpt, images, "-o", tmp_path / "out", "--part", k, "--parts", 2)
        assert result.exit_code == code, result.output
    assert "1 of 2 input(s) failed" in result.output and "case3.png" in result.output
    assert sorted(files_of(tmp_path / "out")) == ["case0.png", "case1.png", "case2.png",
                                                  "predict.json"]


# --- torchrun: two processes in a gloo group ---
@pytest.mark.slow
def test_torchrun_processes_share_the_cases_and_match_one_process(make_checkpoint,
                                                                  tmp_path) -> None:
    ckpt = make_checkpoint(out_channels=1, mask_values={0: 0, 1: 255})
    images = write_pngs(tmp_path / "images", NAMES)
    single = predict(ckpt, images, "-o", tmp_path / "single")
    assert single.exit_code == 0, single.output
    done = run_torchrun(["predict", str(ckpt), str(images), "-o", str(tmp_path / "shared"),
                         "--log-level", "info"], tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert files_of(tmp_path / "shared") == files_of(tmp_path / "single")
    assert output.count("wrote 5 mask(s)") == 1 and "2 processes" in output  # rank 0 only
    shares = {int(r): int(n) for r, n in
              re.findall(r"process (\d) of 2: (\d) of the 5 case\(s\)", output)}
    assert shares == {1: 3, 2: 2}  # each case once: 3 + 2 masks, 5 written in all


@pytest.mark.slow
def test_torchrun_a_broken_input_fails_by_name_and_the_others_finish(make_checkpoint,
                                                                    tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", NAMES)
    (images / "case2.png").write_bytes(b"not a png")  # case 2: rank 0's second case
    single = predict(ckpt, images, "-o", tmp_path / "single")
    assert single.exit_code == 1
    done = run_torchrun(["predict", str(ckpt), str(images), "-o", str(tmp_path / "shared")],
                        tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert re.search(r"rank 0: failed:.*case2\.png", " ".join(output.split())), output
    assert "1 of 5 input(s) failed" in output and "wrote 4 mask(s)" in output
    assert files_of(tmp_path / "shared") == files_of(tmp_path / "single")
    assert sorted(files_of(tmp_path / "shared")) == ["case0.png", "case1.png", "case3.png",
                                                     "case4.png", "predict.json"]


@pytest.mark.slow
def test_torchrun_refuses_a_clashing_batch_on_every_rank_before_writing(make_checkpoint,
                                                                        tmp_path) -> None:
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", ["a.png", "b.png"])
    done = run_torchrun(["predict", str(ckpt), str(images), "-o", str(images)], tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert output.count("is the input folder") == 1, output  # said once, by rank 0
    assert sorted(files_of(images)) == ["a.png", "b.png"]


FULL_DISK_ON_RANK_1 = """
import os
if os.environ.get("RANK") == "1":  # a torchrun worker: its mask writer finds the disk full
    import errno
    import unetkit.data.io_formats as formats
    def full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device")
    formats.write_pil = full
"""


@pytest.mark.slow
def test_torchrun_a_full_disk_on_one_rank_stops_every_rank(make_checkpoint, tmp_path) -> None:
    """Rank 1 stops at its first case; rank 0 finishes its own, learns it at the gather, says
    it in one line, and both exit 1 (no rank waits for the other forever)."""
    ckpt = make_checkpoint()
    images = write_pngs(tmp_path / "images", NAMES)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FULL_DISK_ON_RANK_1)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(hook), *filter(None, [os.environ.get(
               "PYTHONPATH")]), str(Path(__file__).resolve().parents[2] / "src")])}
    out = tmp_path / "shared"
    done = subprocess.run(torchrun("--standalone", "--nproc_per_node", "2", "-m", "unetkit",
                                   "predict", str(ckpt), str(images), "-o", str(out)),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode != 0, output
    assert output.count("no space left on device: ") == 1, output  # said once, by rank 0
    assert f"no space left on device: {out / 'case1.png'}" in output  # rank 1's first case
    assert "unetkit/" not in output and "wrote" not in output  # torchrun's own traceback only
    assert sorted(files_of(out)) == ["case0.png", "case2.png", "case4.png",
                                     "predict.json"]  # rank 0's
