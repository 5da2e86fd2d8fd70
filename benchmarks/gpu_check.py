"""GPU check: the GPU tests, two zero-config trainings and a throughput table on one CUDA GPU.

    python benchmarks/gpu_check.py [--json benchmarks/results/gpu_check.json] [--train-time 60s]
    make gpu-check

In about 8 minutes at most (``--budget``; a part that no longer fits is skipped and says so):

(a) ``pytest -m gpu tests/gpu``: device placement of a training run, bf16/fp16 autocast with and
    without GradScaler, channels-last 2D/3D, identical weights from identical seeds, DDP over NCCL
    through torchrun (2+ GPUs), sliding-window accumulation on the device and its CPU fallback
    after an (injected) out-of-memory error, ONNX export of a CUDA model, a GPU checkpoint read
    on the CPU;
(b) ``unetkit train --data GENERATED --time 60s`` on generated 2D cells and 3D blobs (no config:
    the planner times its candidate networks on this GPU);
(c) throughput (``gpu_bench``): unetkit's training step vs nnU-Net v2's network + trainer step
    on the same plans (it/s, GFLOP/s, peak memory; nnU-Net only if installed), and unetkit's
    sliding-window inference vs MONAI's on the same network (time, label agreement).

Writes a JSON file, prints Markdown tables, exits 1 when a GPU test or a training failed.
Without a CUDA device it prints "no CUDA device: skipped" and exits 0 at once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "train", "throughput", "inference")


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


def generate(kind: str, root: Path) -> Path:
    """Generated data: ``2d`` synthetic EM cells or ``3d`` blob volumes (nnU-Net layout)."""
    from unetkit.data.synthetic import write_blobs_dataset, write_cells_dataset

    if kind == "2d":
        return write_cells_dataset(root / "cells", 12, size=(256, 256))
    return write_blobs_dataset(root / "blobs", 8, (64, 64, 64))


def train_generated(kind: str, work: Path, budget: str, timeout_s: float) -> dict:
    """``unetkit train --data GENERATED --time BUDGET`` (zero config) and what it reached."""
    data, run = generate(kind, work), work / f"run_{kind}"
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "unetkit", "train", "--data", str(data),
                               "--time", budget, "--out", str(run), "--quiet"], cwd=work,
                              env=_env(), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout_s:.0f} s"}
    seconds = time.monotonic() - started
    if done.returncode != 0:
        return {"status": f"exit code {done.returncode}", "seconds": seconds,
                "output_tail": (done.stdout + done.stderr)[-2000:]}
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    dice = [float(r["val_dice"]) for r in rows if r.get("val_dice") not in (None, "", "nan")]
    log = (run / "train.log").read_text()
    device = next((line.split("training on ", 1)[1].split(" ")[0]
                   for line in log.splitlines() if "training on " in line), "?")
    return {"status": "ok", "seconds": seconds, "device": device, "epochs": len(rows),
            "steps": int(rows[-1]["step"]) if rows else 0,
            "best_val_dice": max(dice) if dice else None}


def throughput(deadline: Deadline) -> list[dict]:
    """Training-step rows of unetkit and nnU-Net v2 on ``gpu_bench.PLANS``."""
    import torch

    import gpu_bench

    device, rows = torch.device("cuda"), []
    for plan in gpu_bench.PLANS:
        for name, measure in (("unetkit", gpu_bench.unetkit_training),
                              ("nnU-Net v2", gpu_bench.nnunet_training)):
            if deadline.left() < 30:
                rows.append({"plan": plan.name, "implementation": name,
                             "status": "skipped: out of time"})
                continue
            try:
                row = measure(plan, device)
            except Exception as error:  # one failing row must not hide the others
                row = {"status": f"failed: {type(error).__name__}: {str(error)[:200]}"}
            torch.cuda.empty_cache()
            rows.append({"plan": plan.name, "implementation": name, **row})
    return rows


def inference_rows() -> list[dict]:
    """unetkit vs MONAI sliding window on a 256^3 volume with the 3D plan's window."""
    import torch

    import gpu_bench

    size = (256, 256, 256)
    rows = gpu_bench.inference(gpu_bench.PLANS[0], torch.device("cuda"), size)
    return [{"volume": "x".join(map(str, size)), "implementation": k, **v}
            for k, v in rows.items()]


def _number(value: object, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) \
        else str(value)


def markdown(record: dict) -> str:
    """The record as Markdown tables."""
    lines = [f"## GPU check: {record.get('device', '?')}, torch {record.get('torch', '?')}", ""]
    tests = record.get("tests")
    if tests:
        counts = {k: sum(t["outcome"] == k for t in tests["tests"])
                  for k in ("passed", "failed", "error", "skipped")}
        lines += [f"### GPU tests ({tests['status']}): " + ", ".join(
            f"{v} {k}" for k, v in counts.items()), "", "| test | outcome | detail |",
            "|---|---|---|"]
        lines += [f"| {t['test']} | {t['outcome']} | {t['detail']} |" for t in tests["tests"]]
        lines.append("")
    if record.get("training"):
        lines += [f"### Zero-config training (--time {record['train_time']})", "",
                  "| data | status | device | epochs | steps | best val Dice | wall s |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {k} | {r['status']} | {r.get('device', '-')} | {r.get('epochs', '-')} | "
                  f"{r.get('steps', '-')} | {_number(r.get('best_val_dice'), 4)} | "
                  f"{_number(r.get('seconds'), 0)} |" for k, r in record["training"].items()]
        lines.append("")
    if record.get("throughput"):
        lines += ["### Training step, same plan", "",
                  "| plan | implementation | precision | it/s | GFLOP/s | peak MiB |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['plan']} | {r['implementation']} | "
                  + (f"{r.get('precision', '-')} | {_number(r['it_per_s'])} | "
                     f"{_number(r['gflop_per_s'], 0)} | {_number(r['peak_mb'], 0)} |"
                     if r["status"] == "ok" else f"{r['status']} | | | |")
                  for r in record["throughput"]]
        lines.append("")
    if record.get("inference"):
        lines += ["### Sliding-window inference, same network", "",
                  "| volume | implementation | precision | s | Mvoxel/s | peak MiB | "
                  "label agreement |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['volume']} | {r['implementation']} | "
                  + (f"{r['precision']} | {_number(r['seconds'])} | "
                     f"{_number(r['mvoxel_per_s'], 1)} | {_number(r['peak_mb'], 0)} | "
                     f"{_number(r.get('label_agreement'), 5)} |"
                     if r["status"] == "ok" else f"{r['status']} | | | | |")
                  for r in record["inference"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "gpu_check.json")
    parser.add_argument("--train-time", default="60s", help="budget of each training")
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
    if "tests" in parts:
        record["tests"] = run_gpu_tests(timeout_s=min(180.0, deadline.left() - 60))
    if "train" in parts:
        record["training"] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for kind in ("2d", "3d"):
                if deadline.left() < 100:
                    record["training"][kind] = {"status": "skipped: out of time"}
                    continue
                record["training"][kind] = train_generated(kind, Path(tmp), args.train_time,
                                                           timeout_s=deadline.left() - 20)
    if "throughput" in parts:
        record["throughput"] = throughput(deadline)
    if "inference" in parts and deadline.left() > 20:
        record["inference"] = inference_rows()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2))
    print(markdown(record))
    print(f"\nwritten: {args.json}")
    failed = record.get("tests", {}).get("status", "ok") != "ok" or any(
        r["status"] not in ("ok", "skipped: out of time")
        for r in record.get("training", {}).values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
