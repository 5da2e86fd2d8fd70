"""Benchmark: unetkit predict vs MONAI ``sliding_window_inference``, engines, tiling, memory.

The default network (UNet, base width 32, depth 4, batch norm, two classes) is trained for a few
dozen steps on synthetic data (EM-like cells in 2D, bright blobs in 3D) so that its labels mean
something, saved as a checkpoint, and then, in parts that each fit a few minutes:

* ``engines``: one forward of the default network per engine (torch fp32 channels-last =
  unetkit's torch engine, torch NCHW, onnxruntime from the cached verified export, torch bf16
  autocast where the CPU has native bf16; ``--compile`` adds ``torch.compile`` with its first
  call), at 512^2, 1024^2 and 96^3 by default;
* ``2d`` / ``3d``: ``Predictor.predict`` (labels, as ``unetkit predict`` writes them) per engine
  against MONAI (roi 256 / 96, overlap 0.5, gaussian, sw_batch_size 4, fp32, the plain model)
  at each ``--sizes`` (MONAI up to ``--monai-max``), plus a whole-image run at ``--whole-size``
  with a budget large enough for one forward: label Dice vs MONAI, vs the other engine and vs
  the whole image, seconds per voxel relative to the whole-image size;
* ``memory``: the RSS high-water mark of one prediction in a fresh process (``/proc/self/status``
  VmHWM after ``clear_refs``, minus the RSS after loading and making the image) per
  ``infer.memory_budget_mb`` in ``--budgets``.

Every timed part interleaves its calls, ``--repeats`` rounds after a warm-up, best time kept;
ratios are reported. Results go to ``benchmarks/results/infer.json`` (one entry per part and
sizes, merged across runs) and the ``infer`` section of ``docs/BENCHMARKS.md``.

    python benchmarks/bench_infer.py --part all       # every part below, one after the other
    python benchmarks/bench_infer.py --part engines
    python benchmarks/bench_infer.py --part 2d --sizes 512,1024,2048,4096
    python benchmarks/bench_infer.py --part 3d --sizes 96,160,256
    python benchmarks/bench_infer.py --part memory --dims 2 --size 4096 --budgets 512,1024,2048,4096
    python benchmarks/bench_infer.py --part memory --dims 3 --size 256 --budgets 512,1024,2048
    python benchmarks/bench_infer.py --quick          # every part at small sizes: a smoke test

``--quick`` (a minute or two) trains 5 steps and runs tiny sizes once; it writes neither
``benchmarks/results/infer.json`` nor ``docs/BENCHMARKS.md``. ONNX exports go to a temporary
cache folder (``XDG_CACHE_HOME``), never the user's.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_cases import (  # noqa: E402
    ROI,
    dice,
    interleaved,
    machine,
    monai_labels,
    peak_in_subprocess,
    peak_probe,
    test_image,
    trained_checkpoint,
)
from infer_report import write_docs  # noqa: E402
from unetkit.infer.predictor import Predictor  # noqa: E402
from unetkit.runtime.device import PrecisionPlan, cpu_has_fast_bf16  # noqa: E402
from unetkit.runtime.network import fuse_conv_bn, torch_network  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "infer.json"
BIG_BUDGET = 64 * 1024.0  # MB: one forward over the whole image


def engines_part(args: argparse.Namespace, folder: Path) -> dict:
    """One forward per engine and size."""
    from unetkit.runtime.onnx import onnx_network
    from unetkit.runtime.onnx_cache import cached_onnx

    rows = []
    for case in args.cases.split(","):
        dims, size = (int(v) for v in case.split(":"))
        path, model = trained_checkpoint(dims, 0, folder)
        fused = fuse_conv_bn(model)
        cpu = torch.device("cpu")
        networks = {
            "torch fp32 channels-last": torch_network(fused, PrecisionPlan(None, False, True), cpu),
            "torch fp32 NCHW": torch_network(fuse_conv_bn(model), PrecisionPlan(None, False,
                                                                                False), cpu),
            "onnxruntime fp32": onnx_network(cached_onnx(path, model, spatial_dims=dims,
                                                         in_channels=1)),
        }
        if cpu_has_fast_bf16():
            networks["torch bf16 channels-last"] = torch_network(
                fuse_conv_bn(model), PrecisionPlan(torch.bfloat16, False, True), cpu)
        x = torch.randn(1, 1, *(size,) * dims)
        compile_first = None
        if args.compile:
            compiled = torch_network(torch.compile(fuse_conv_bn(model), dynamic=False),
                                     PrecisionPlan(None, False, True), cpu)
            start = time.perf_counter()
            compiled(x)
            compile_first = time.perf_counter() - start
            networks["torch.compile fp32 channels-last"] = compiled
        best, outs = interleaved({k: (lambda n=n, x=x: n(x)) for k, n in networks.items()},
                                 args.repeats)
        reference = outs["torch fp32 channels-last"]
        base = best["torch fp32 channels-last"]
        for name, seconds in best.items():
            rows.append({"case": f"{size}^{dims}", "engine": name, "seconds": seconds,
                         "speed_vs_torch": base / seconds,
                         "max_abs_diff": float((outs[name] - reference).abs().max()),
                         "first_call_s": compile_first if name.startswith("torch.compile")
                         else None})
        print(rows[-len(best):], flush=True)
    return {"rows": rows}


def predictors(path: Path, engines: list[str]) -> dict[str, Predictor]:
    """``unetkit <engine>`` predictors at the default settings, one per engine."""
    return {f"unetkit {engine}": Predictor.from_checkpoint(path, settings={
        "infer.engine": engine}) for engine in engines}


def predict_part(args: argparse.Namespace, folder: Path) -> dict:
    """Predictor.predict per engine vs MONAI per size, whole-image reference, per-voxel cost."""
    dims = 3 if args.part == "3d" else 2
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
        [512, 1024, 2048, 4096] if dims == 2 else [96, 160, 256])
    whole_size = args.whole_size or (1024 if dims == 2 else 160)
    path, model = trained_checkpoint(dims, args.train_steps, folder)
    engines = predictors(path, args.engines.split(","))
    auto = Predictor.from_checkpoint(path).engine
    whole = Predictor.from_checkpoint(path, settings={"infer.memory_budget_mb": BIG_BUDGET})
    images = {size: test_image(dims, size) for size in sorted(set(sizes + [whole_size]))}
    calls = {}
    for size in sizes:
        if size <= args.monai_max:
            calls[f"MONAI@{size}"] = lambda i=images[size]: monai_labels(model, i)
        for name, predictor in engines.items():
            calls[f"{name}@{size}"] = lambda p=predictor, i=images[size]: p.predict(
                i, probabilities=False).labels
    reference = f"one forward@{whole_size}"
    calls[reference] = lambda: whole.predict(images[whole_size], probabilities=False).labels
    best, labels = interleaved(calls, args.repeats, warm=not args.no_warmup)
    first = f"unetkit {auto}" if f"unetkit {auto}" in engines else next(iter(engines))
    rows = []
    for key in calls:
        name, size = key.rsplit("@", 1)
        size = int(size)
        per_voxel = best[key] / size ** dims

        def ratio(other: str, per_voxel: float = per_voxel) -> float | None:
            return per_voxel / (best[other] / whole_size ** dims) if other in best else None

        def agree(other: str, key: str = key) -> float | None:
            return dice(labels[key], labels[other]) if other in labels else None

        row = {"method": name, "size": size, "seconds": best[key],
               "speedup_vs_monai": best[f"MONAI@{size}"] / best[key]
               if f"MONAI@{size}" in best else None,
               "dice_vs_monai": agree(f"MONAI@{size}"), "dice_vs_auto": agree(f"{first}@{size}"),
               "dice_vs_one_forward": agree(reference) if size == whole_size else None,
               "cost_vs_same_at_whole_size": ratio(f"{name}@{whole_size}"),
               "cost_vs_one_forward": ratio(reference)}
        predictor = engines.get(name, whole if name == "one forward" else None)
        if predictor is not None:
            row["engine"], row["auto"] = predictor.engine, name == first
            row["precision"] = predictor.plan.name + (
                " + channels_last" if predictor.plan.channels_last else "")
            row["window"], row["tiles"] = strategy_window(predictor, size, dims)
        rows.append(row)
    return {"rows": rows, "dims": dims, "whole_size": whole_size, "auto": auto,
            "train_steps": args.train_steps, "roi": ROI[dims]}


def strategy_window(predictor: Predictor, size: int, dims: int) -> tuple[list[int], list[int]]:
    """The window and tiles ``predictor`` plans for a ``size^dims`` input."""
    from unetkit.infer.strategy import Strategy

    plan = Strategy(predictor.config, predictor.plan, 2).window_plan((size,) * dims)
    return list(plan.window), list(plan.tiles)


def memory_part(args: argparse.Namespace, folder: Path) -> dict:
    """Peak RSS of a prediction per budget, each in a fresh process."""
    path, _ = trained_checkpoint(args.dims, 0, folder)
    rows = []
    for engine in args.engines.split(","):
        for budget in (float(b) for b in args.budgets.split(",")):
            row = peak_in_subprocess(path, args.dims, args.size, budget, engine)
            row["ratio"] = row["peak_mb"] / budget
            print(row, flush=True)
            rows.append(row)
    return {"rows": rows}


def command_line() -> str:
    return "python benchmarks/bench_infer.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])


#: ``--part all``: (part, options) in order; the 3D memory part at its own size and budgets
ALL = [("engines", {}), ("2d", {}), ("3d", {}), ("memory", {"dims": 2}),
       ("memory", {"dims": 3, "size": 256, "budgets": "512,1024,2048"})]
#: ``--quick``: the same parts at sizes that take seconds
QUICK = [("engines", {"cases": "2:128,3:32"}),
         ("2d", {"sizes": "128,256", "whole_size": 128, "monai_max": 256}),
         ("3d", {"sizes": "32,48", "whole_size": 32, "monai_max": 48}),
         ("memory", {"dims": 2, "size": 512, "budgets": "24,48"}),
         ("memory", {"dims": 3, "size": 64, "budgets": "24,48"})]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "engines", "2d", "3d", "memory"],
                        default="2d")
    parser.add_argument("--quick", action="store_true",
                        help="every part at small sizes, 5 training steps, one round; no files")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--sizes", default=None, help="2d/3d: comma-separated edge lengths")
    parser.add_argument("--whole-size", type=int, default=None,
                        help="2d/3d: the whole-image size (default 1024 / 160)")
    parser.add_argument("--monai-max", type=int, default=None,
                        help="2d/3d: run MONAI up to this edge length (default 2048 / 160)")
    parser.add_argument("--engines", default="torch,onnxruntime")
    parser.add_argument("--no-warmup", action="store_true", help="2d/3d: no warm-up round "
                        "(for the largest sizes; the first round then counts)")
    parser.add_argument("--cases", default="2:512,2:1024,3:96", help="engines: dims:size,...")
    parser.add_argument("--compile", action="store_true", help="engines: add torch.compile")
    parser.add_argument("--dims", type=int, default=2, help="memory: 2 or 3")
    parser.add_argument("--size", type=int, default=4096, help="memory: edge length")
    parser.add_argument("--budgets", default="512,1024,2048,4096", help="memory: MB values")
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--peak", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def engines_available(requested: str) -> str:
    """The requested engines, without onnxruntime when it is not installed (said once)."""
    from unetkit.runtime.engine import onnxruntime_installed

    names = requested.split(",")
    if "onnxruntime" in names and not onnxruntime_installed():
        print("onnxruntime is not installed: measuring torch only", flush=True)
        names.remove("onnxruntime")
    return ",".join(names)


def run_part(args: argparse.Namespace, folder: Path) -> dict:
    """One part; its result with the command line and the machine."""
    if args.monai_max is None:
        args.monai_max = 2048 if args.part == "2d" else 160
    part = {"engines": engines_part, "2d": predict_part, "3d": predict_part,
            "memory": memory_part}[args.part](args, folder)
    part.update(command=command_line(), machine=machine(), repeats=args.repeats,
                part=args.part)
    return part


def main() -> None:
    args = parse_args()
    if args.peak:  # the fresh process of memory_part
        print(json.dumps(peak_probe(*json.loads(args.peak))))
        return
    args.engines = engines_available(args.engines)
    if args.quick:
        args.part, args.repeats, args.train_steps, args.no_docs = "all", 1, 5, True
    plan = [(args.part, {})] if args.part != "all" else (QUICK if args.quick else ALL)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["XDG_CACHE_HOME"] = str(Path(tmp) / "cache")  # exports: never ~/.cache
        results = json.loads(RESULTS.read_text()) if RESULTS.is_file() and not args.quick \
            else {}
        results = results if "parts" in results else {"parts": {}}
        for name, options in plan:
            part_args = copy.copy(args)
            part_args.part = name
            for key, value in options.items():
                setattr(part_args, key, value)
            start = time.perf_counter()
            part = run_part(part_args, Path(tmp))
            print(f"part {name} {options or ''}: {time.perf_counter() - start:.0f} s",
                  flush=True)
            key = name + (f" {part_args.sizes}" if part_args.sizes and name in ("2d", "3d")
                          else "") + (f" {part_args.dims}D {part_args.size}"
                                      if name == "memory" else "")
            results["parts"][key] = part
        if args.quick:
            from infer_report import section

            print("\n".join(section(results)))
            return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    if not args.no_docs:
        write_docs(results, ROOT / "docs" / "BENCHMARKS.md")


if __name__ == "__main__":
    main()
