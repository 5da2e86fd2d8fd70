"""Benchmark: the memory of a forward and of a prediction, in fp32 and in bf16.

Each measurement runs in a fresh Python process and reads its RSS high-water mark
(``/proc/self/status``; Linux with glibc):

* ``forward``: what one forward of a ``--window`` window adds to the resident memory, in units of
  first-stage width x bytes per activation (4 in fp32, 2 in bf16) per voxel: the
  ``ACTIVATION_FACTORS`` of ``unetkit.infer.tiling``. The window runs once first (the convolution
  kernels for its shape are created then and stay cached), ``malloc_trim`` gives the freed heap
  back, then each repeat is measured.
* ``predict``: the peak of ``Predictor.predict`` on an image under ``infer.memory_budget_mb``, as
  a ratio of the budget: the first prediction of the process (its one-time costs included), then
  the repeats after ``malloc_trim``, "steady" (what ``tests/infer/test_memory.py`` bounds by 1.05).

Memory does not depend on the machine's load, so these figures may be taken on a busy machine.

Usage:
    python benchmarks/bench_memory.py            # writes benchmarks/results/memory.json
    python benchmarks/bench_memory.py --networks unet:16:4 --predict 16:1536:96 --repeats 3
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _peak_of(run) -> int:  # noqa: ANN001 - a callable
    """Bytes of RSS ``run()`` adds, after the freed heap went back to the system."""
    ctypes.CDLL(None).malloc_trim(0)
    base = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    run()
    return _status("VmHWM") - base


def checkpoint(folder: Path, width: int, depth: int, name: str = "unet") -> Path:
    """A ``name`` model of that first width and depth (batch norm, two classes, random
    weights)."""
    import torch

    from unetkit.config import Config, config_to_dict
    from unetkit.nn import build_model
    from unetkit.runtime.checkpoint import save_checkpoint

    config = Config.model_validate({"model": {"name": name, "out_channels": 2,
                                              "base_width": width, "depth": depth,
                                              "norm": "batch"}})
    torch.manual_seed(0)
    model = build_model(name, **config.model.build_options())
    return save_checkpoint({"config": config_to_dict(config), "model_state": model.state_dict(),
                            "labels": {0: "background", 1: "foreground"},
                            "preprocessing": {"normalization": {"scheme": "zscore"}}},
                           folder / f"{name}_w{width}_d{depth}.pt")


def child(task: dict) -> dict:
    """One measurement (in this fresh process)."""
    import numpy as np
    import torch

    from unetkit.infer.predictor import Predictor

    settings = {"infer.precision": task["precision"], "infer.engine": "torch"}
    if task["kind"] == "forward":
        predictor = Predictor.from_checkpoint(task["checkpoint"], settings=settings)
        x = torch.randn(1, 1, task["window"], task["window"])
        predictor.network(x)
        unit = task["window"] ** 2 * task["width"] * (4 if task["precision"] == "fp32" else 2)
        return {"units": [round(_peak_of(lambda: predictor.network(x)) / unit, 2)
                          for _ in range(task["repeats"])]}
    settings["infer.memory_budget_mb"] = task["budget"]
    predictor = Predictor.from_checkpoint(task["checkpoint"], settings=settings)
    image = np.random.default_rng(0).normal(0, 1, (1, task["size"], task["size"]))
    image = image.astype(np.float32)
    budget = task["budget"] * 2**20
    first = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    predictor.predict(image, probabilities=False)
    ratios = [round((_status("VmHWM") - first) / budget, 3)]
    ratios += [round(_peak_of(lambda: predictor.predict(image, probabilities=False)) / budget, 3)
               for _ in range(task["repeats"])]
    return {"first": ratios[0], "steady": ratios[1:]}


def measure(task: dict) -> dict:
    """``child(task)`` in a fresh Python process."""
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)],
                         capture_output=True, text=True, check=True)
    return {**task, **json.loads(out.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default="unet:4:2,unet:8:4,unet:16:4,unet:32:4,"
                        "resunet:16:4,attention_unet:16:4,unetplusplus:16:4",
                        help="forward: MODEL:WIDTH:DEPTH,... (model name, base width, depth)")
    parser.add_argument("--window", type=int, default=320, help="forward: window edge")
    parser.add_argument("--predict", default="16:1536:96,8:1024:24,32:1024:96",
                        help="predict: WIDTH:SIZE:BUDGET_MB,... (depth-4 UNets)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for precision in args.precisions.split(","):
            for spec in args.networks.split(","):
                name, width, depth = spec.split(":")
                path = checkpoint(Path(folder), int(width), int(depth), name)
                rows.append(measure({"kind": "forward", "precision": precision, "model": name,
                                     "width": int(width), "depth": int(depth),
                                     "window": args.window, "repeats": args.repeats,
                                     "checkpoint": str(path)}))
                print(rows[-1], flush=True)
            for spec in args.predict.split(","):
                width, size, budget = spec.split(":")
                rows.append(measure({"kind": "predict", "precision": precision,
                                     "width": int(width), "depth": 4, "size": int(size),
                                     "budget": float(budget), "repeats": args.repeats,
                                     "checkpoint": str(checkpoint(Path(folder), int(width), 4))}))
                print(rows[-1], flush=True)
    for row in rows:
        row.pop("checkpoint")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from infer_cases import machine

    args.out.write_text(json.dumps({"command": "python benchmarks/bench_memory.py "
                                    + " ".join(sys.argv[1:]), "machine": machine(),
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
