"""Benchmark: torch (fp32, channels-last, BatchNorm folded) vs onnxruntime on planned networks.

The default network is not the only one ``unetkit predict`` runs: the planner picks narrow,
instance-norm networks for CPU budgets. This times one forward of each configuration's network
(random weights: the cost does not depend on them) in both engines, after one warm-up call,
median of three, and prints the output difference and the export time. The engines are timed
one after the other, not interleaved (``infer_cases.interleaved``): onnxruntime's worker threads
keep spinning after a call and slowed the torch call that followed from 0.11 s to 0.19 s
(ISBI plan, 512^2), which made interleaved rounds favour onnxruntime::

    unetkit plan ../shared/data/isbi2012/train --time 8m -o isbi.yaml
    python benchmarks/engines_on_plans.py default:1024x1024:1 isbi.yaml:512x512:1

Each case is ``CONFIG:SIZE:BATCH`` (``default`` = unetkit's default configuration). The rows
go to ``benchmarks/results/engines_on_plans.json`` (``--json``), the figures docs cite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from unetkit.config import Config, load_config
from unetkit.runtime.checkpoint import build_model_from_config
from unetkit.runtime.device import PrecisionPlan
from unetkit.runtime.network import fuse_conv_bn, torch_network
from unetkit.runtime.onnx import onnx_network
from unetkit.runtime.onnx_export import export_onnx

CHANNELS_LAST = PrecisionPlan(dtype=None, use_scaler=False, channels_last=True)


def median_seconds(network, x: torch.Tensor, repeats: int = 3) -> tuple[float, torch.Tensor]:
    """Median seconds of ``repeats`` calls after one warm-up call, and the output."""
    out = network(x)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = network(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def compare(spec: str, folder: Path) -> dict:
    """One result row for ``CONFIG:SIZE:BATCH``."""
    path, size_text, batch = spec.rsplit(":", 2)
    config = Config() if path == "default" else load_config(path)
    config.model.out_channels = config.model.out_channels or 2
    torch.manual_seed(0)
    model = build_model_from_config(config).eval()
    model.deep_supervision = False
    size = tuple(int(n) for n in size_text.split("x"))
    x = torch.randn(int(batch), config.model.in_channels, *size)
    fused = fuse_conv_bn(model)  # both engines run the same folded network
    torch_s, reference = median_seconds(torch_network(fused, CHANNELS_LAST, torch.device("cpu")),
                                        x)
    onnx_path = folder / f"{abs(hash(spec))}.onnx"
    started = time.perf_counter()
    export_onnx(fused, onnx_path, x[:1])
    export_s = time.perf_counter() - started
    ort_s, out = median_seconds(onnx_network(onnx_path), x)
    m = config.model
    return {"case": spec, "config": Path(path).name, "input": f"{batch}x{size_text}",
            "network": f"{m.norm}, widths {m.widths or m.base_width}", "torch_s": torch_s,
            "onnxruntime_s": ort_s, "onnxruntime_speed": torch_s / ort_s,
            "max_abs_diff": (reference - out).abs().max().item(), "export_s": export_s}


def row(r: dict) -> str:
    return (f"| {r['config']} | {r['input']} | {r['network']} | {r['torch_s']:.3f} | "
            f"{r['onnxruntime_s']:.3f} | {r['onnxruntime_speed']:.2f}x | "
            f"{r['max_abs_diff']:.1e} | {r['export_s']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="CONFIG:SIZE:BATCH")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results"
                        / "engines_on_plans.json")
    args = parser.parse_args()
    print("| config | input | network | torch CL (s) | onnxruntime (s) | onnxruntime speed "
          "| max abs diff | export (s) |\n|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for spec in args.cases:
            rows.append(compare(spec, Path(folder)))
            print(row(rows[-1]), flush=True)
    args.json.write_text(json.dumps({"command": "python benchmarks/engines_on_plans.py "
                                     + " ".join(args.cases), "torch": torch.__version__,
                                     "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
