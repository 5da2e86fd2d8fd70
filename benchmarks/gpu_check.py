"""GPU check: the GPU tests, training-step throughput against nnU-Net, a zero-config training on
real data and sliding-window inference, on one CUDA GPU.

    python benchmarks/gpu_check.py [--json benchmarks/results/gpu_check.json] [--train-time 3m]
    make gpu-check

In about 8 minutes at most (``--budget``; a part that no longer fits is skipped and says so):

(a) ``pytest -m gpu tests/gpu``: device placement of a training run, bf16/fp16 autocast with and
    without GradScaler, the layout per norm (contiguous for instance norm, channels-last for
    batch norm), norms and pooling in the autocast dtype, the fused loss on the device,
    identical weights from identical seeds, DDP over NCCL through torchrun (2+ GPUs),
    sliding-window accumulation on the device and its CPU fallback after an (injected)
    out-of-memory error, ONNX export of a CUDA model, a GPU checkpoint read on the CPU;
(b) throughput (``gpu_bench``): unetkit's training step vs nnU-Net v2's (eager and compiled, as
    nnU-Net runs by default) on nnU-Net's 3d_fullres and 2d plans (it/s, GFLOP/s, peak memory;
    nnU-Net rows need dynamic-network-architectures), then unetkit in the other memory layout;
(c) loop (``gpu_loop``): the hippocampus-sized step (4 x 40x56x40, widths 32-256) bare in eager
    and CUDA-graph mode, and ``train_one_epoch`` around it, against issue 27's targets;
(d) ``unetkit train --data hippocampus --time 3m`` with no config on a held-out split (every
    fifth case; ``peers.py``), then ``unetkit predict`` on the held-out cases: Dice per label
    (``--hippocampus``: the data folder; skipped when it is missing);
(e) unetkit's sliding-window inference vs MONAI's on the same network (time, label agreement).

Writes a JSON file, prints Markdown tables, exits 1 when a GPU test or the training failed.
Without a CUDA device it prints "no CUDA device: skipped" and exits 0 at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from gpu_loop import LOOP_RESERVE_S, run_loop
from gpu_tables import HOLDOUT, markdown

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "throughput", "loop", "train", "inference")
TRAIN_RESERVE_S = 240.0  # a 3-minute training, its planning, prediction and scoring


class Deadline:
    """Seconds left of the check's budget."""

    def __init__(self, budget_s: float) -> None:
        self.end = time.monotonic() + budget_s

    def left(self) -> float:
        return self.end - time.monotonic()


def _env() -> dict[str, str]:
    """The environment of child processes: this checkout's ``src`` first on the path."""
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "4"}


def junit_outcomes(path: Path) -> list[dict]:
    """``[{"test", "outcome", "detail"}]`` from a pytest JUnit XML file."""
    rows = []
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[kind]
                detail = (found.get("message") or "").splitlines()[0][:160] if \
                    found.get("message") else ""
                break
        rows.append({"test": case.get("name", "?"), "outcome": outcome, "detail": detail})
    return rows


def run_gpu_tests(timeout_s: float) -> dict:
    """``pytest -m gpu tests/gpu`` in a child process; the outcome of every test."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-p",
                 "no:cacheprovider", f"--junitxml={report}"], cwd=ROOT, env=_env(),
                capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {timeout_s:.0f} s", "tests": []}
        tests = junit_outcomes(report) if report.is_file() else []
    status = "ok" if done.returncode == 0 else f"pytest exit code {done.returncode}"
    return {"status": status, "seconds": time.monotonic() - started, "tests": tests,
            "output_tail": (done.stdout + done.stderr)[-3000:] if done.returncode else ""}


def find_hippocampus(given: Path | None) -> Path | None:
    """The hippocampus data folder: ``given``, else ``shared/data/hippocampus`` in or above
    the checkout."""
    candidates = [given] if given is not None else [
        base / "shared" / "data" / "hippocampus" for base in (ROOT, *ROOT.parents[:2])]
    return next((c for c in candidates if c is not None and (c / "dataset.json").is_file()),
                None)


def train_hippocampus(data: Path, budget: str, work: Path, timeout_s: float) -> dict:
    """``peers.py DATA --peers unetkit``: zero-config ``unetkit train --time BUDGET`` on the
    training part of a hold-out split, ``unetkit predict`` and Dice on the held-out cases."""
    name = "hippocampus_gpu_check"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "peers.py"), str(data), "--time", budget,
             "--holdout", HOLDOUT, "--peers", "unetkit", "--work", str(work), "--name", name],
            cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout_s:.0f} s"}
    seconds = time.monotonic() - started
    if done.returncode != 0:
        return {"status": f"exit code {done.returncode}", "seconds": seconds,
                "output_tail": (done.stdout + done.stderr)[-2000:]}
    record = json.loads((ROOT / "benchmarks" / "results" / f"peers_{name}.json").read_text())
    result = record["results"]["unetkit"]
    dice = {record["labels"][str(k)]: v for k, v in result["mean_dice"].items()}
    return {"status": "ok", "seconds": seconds, "holdout": HOLDOUT,
            "test_cases": record["test_cases"], "steps": result["steps"],
            "train_s": result["train_s"], "dice": dice,
            "mean_dice": sum(dice.values()) / len(dice)}


def _row(plan, name: str, measure) -> dict:  # noqa: ANN001
    import torch

    try:
        row = measure()
    except Exception as error:  # one failing row must not hide the others
        row = {"status": f"failed: {type(error).__name__}: {str(error)[:200]}"}
    torch.cuda.empty_cache()
    return {"plan": plan.name, "implementation": name, **row}


def throughput(deadline: Deadline, reserve_s: float = 0.0) -> list[dict]:
    """Training-step rows on ``gpu_bench.PLANS``: unetkit, nnU-Net v2 eager and compiled, then
    unetkit in the other layout; a row starts only with ``reserve_s`` + its own time left."""
    import torch

    import gpu_bench

    device, rows = torch.device("cuda"), []
    runs = []  # eager pairs first, then compiled nnU-Net (minutes of compiling), then layouts
    for plan in gpu_bench.PLANS:
        runs += [(plan, "unetkit", 30, lambda p=plan: gpu_bench.unetkit_training(p, device)),
                 (plan, "nnU-Net v2", 30, lambda p=plan: gpu_bench.nnunet_training(p, device))]
    runs += [(plan, "nnU-Net v2 compiled", 150,
              lambda p=plan: gpu_bench.nnunet_training(p, device, compiled=True))
             for plan in gpu_bench.PLANS]
    runs += [(plan, "unetkit, other layout", 30,
              lambda p=plan: gpu_bench.unetkit_training(p, device, layout=_other(p)))
             for plan in gpu_bench.PLANS]
    for plan, name, needs, measure in runs:
        if deadline.left() < reserve_s + needs:
            rows.append({"plan": plan.name, "implementation": name,
                         "status": "skipped: out of time"})
            continue
        rows.append(_row(plan, name, measure))
    return rows


def _other(plan) -> str:  # noqa: ANN001
    """The layout ``channels_last: auto`` does not choose for ``plan`` on CUDA."""
    import torch

    from unetkit.runtime.device import channels_last_auto

    return "off" if channels_last_auto(torch.device("cuda"), "instance") else "on"


def inference_rows() -> list[dict]:
    """unetkit vs MONAI sliding window on a 256^3 volume with the 3D plan's window."""
    import torch

    import gpu_bench

    size = (256, 256, 256)
    rows = gpu_bench.inference(gpu_bench.PLANS[0], torch.device("cuda"), size)
    return [{"volume": "x".join(map(str, size)), "implementation": k, **v}
            for k, v in rows.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "gpu_check.json")
    parser.add_argument("--train-time", default="3m", help="budget of the hippocampus training")
    parser.add_argument("--hippocampus", type=Path, default=None,
                        help="the hippocampus data folder (default: shared/data/hippocampus)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything")
    parser.add_argument("--parts", default=",".join(PARTS), help="subset of " + ",".join(PARTS))
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    deadline, parts = Deadline(args.budget), set(args.parts.split(","))
    props = torch.cuda.get_device_properties(0)
    record: dict = {"device": f"{props.name} (sm_{props.major}{props.minor}, "
                              f"{props.total_memory / 2**30:.0f} GiB, "
                              f"{torch.cuda.device_count()} GPU(s))",
                    "torch": f"{torch.__version__} (CUDA {torch.version.cuda})",
                    "train_time": args.train_time}
    data = find_hippocampus(args.hippocampus) if "train" in parts else None
    reserve = TRAIN_RESERVE_S if data is not None else 0.0
    if "tests" in parts:
        record["tests"] = run_gpu_tests(timeout_s=min(150.0, deadline.left() - reserve - 90))
    loop_reserve = LOOP_RESERVE_S if "loop" in parts else 0.0
    if "throughput" in parts:
        record["throughput"] = throughput(deadline, reserve + loop_reserve + 20)
    if "loop" in parts:
        record["loop"] = {"status": "skipped: out of time"} if deadline.left() < reserve + 60 \
            else run_loop(deadline.left() - reserve, _env())
    if "train" in parts:
        if data is None:
            record["training"] = {"status": "skipped: no hippocampus data (--hippocampus)"}
        elif deadline.left() < TRAIN_RESERVE_S - 30:
            record["training"] = {"status": "skipped: out of time"}
        else:
            with tempfile.TemporaryDirectory() as tmp:
                record["training"] = train_hippocampus(data, args.train_time, Path(tmp),
                                                       timeout_s=deadline.left() - 15)
    if "inference" in parts and deadline.left() > 20:
        record["inference"] = inference_rows()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2))
    print(markdown(record))
    print(f"\nwritten: {args.json}")
    failed = record.get("tests", {}).get("status", "ok") != "ok" or not record.get(
        "training", {"status": "ok"})["status"].startswith(("ok", "skipped"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
