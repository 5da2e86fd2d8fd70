"""Benchmark: unetkit's default predict path vs MONAI ``sliding_window_inference``, one run.

A base-32 UNet (depth 4, batch norm) is first trained for a few dozen steps on synthetic EM-like
cells (so that its labels mean something), saved as a checkpoint, then a 1x1x1024x1024 image is
predicted by

* MONAI ``sliding_window_inference`` (roi 256, overlap 0.5, gaussian, sw_batch_size 4, fp32,
  the plain model), and
* ``Predictor.from_checkpoint(...).predict`` with the default ``InferConfig`` in fp32 and with
  ``precision=auto`` (bf16 autocast + channels-last on CPUs with native bf16), and in fp32
  with MONAI's 256 windows (to separate the whole-image gain from the per-forward gains),

interleaved, ``--repeats`` times each (best time kept). Reported: seconds, speed-up over MONAI
and the Dice between the foreground labels of each unetkit output and MONAI's. Writes
``benchmarks/results/infer.json`` and the ``infer`` section of ``docs/BENCHMARKS.md``.

    .venv/bin/python benchmarks/bench_infer.py [--repeats 2] [--train-steps 60] [--no-docs]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference as monai_swi

from unetkit.config import Config, config_to_dict
from unetkit.data.synthetic import make_cells
from unetkit.infer.predictor import Predictor
from unetkit.nn import build_model
from unetkit.runtime.checkpoint import save_checkpoint
from unetkit.runtime.device import cpu_has_fast_bf16

ROOT = Path(__file__).resolve().parents[1]
SIZE = 1024


def quick_train(model: torch.nn.Module, steps: int, seed: int = 0, crop: int = 64,
                batch: int = 8) -> None:
    """A few Adam steps of cross-entropy on synthetic-cell crops (membrane = 1)."""
    images, masks = [], []
    for i in range(4):
        image, mask = make_cells((256, 256), seed=100 + i)
        images.append((image - image.mean()) / image.std())
        masks.append(mask)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(batch):
            k, y0, x0 = rng.integers(4), *rng.integers(0, 256 - crop, 2)
            xs.append(images[k][:, y0:y0 + crop, x0:x0 + crop])
            ys.append(masks[k][y0:y0 + crop, x0:x0 + crop])
        logits = model(torch.from_numpy(np.stack(xs)))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(np.stack(ys)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def run(repeats: int, train_steps: int) -> dict:
    torch.manual_seed(0)
    config = Config.model_validate({"model": {"out_channels": 2, "base_width": 32, "depth": 4,
                                              "norm": "batch"},
                                    "data": {"normalization": {"scheme": "zscore"}}})
    model = build_model("unet", **config.model.build_options())
    start = time.perf_counter()
    quick_train(model, train_steps)
    train_s = time.perf_counter() - start
    image, truth = make_cells((SIZE, SIZE), seed=7)
    x = torch.from_numpy((image - image.mean()) / image.std())[None]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint({"config": config_to_dict(config), "model_state": model.state_dict(),
                                "labels": {0: "background", 1: "membrane"},
                                "preprocessing": {"normalization": {"scheme": "zscore"}}},
                               Path(tmp) / "best.pt")
        predictors = {
            "unetkit fp32": Predictor.from_checkpoint(ckpt, settings={"infer.precision": "fp32"}),
            "unetkit auto": Predictor.from_checkpoint(ckpt),
            # MONAI's windows through unetkit's path: isolates the whole-image gain
            "unetkit fp32, 256 windows": Predictor.from_checkpoint(ckpt, settings={
                "infer.precision": "fp32", "infer.window": [256, 256], "infer.overlap": 0.5,
                "infer.batch_size": 4}),
        }

        def monai() -> np.ndarray:
            with torch.inference_mode():
                out = monai_swi(x, (256, 256), 4, model, overlap=0.5, mode="gaussian")
            return out[0].argmax(0).numpy()

        calls = {"MONAI": monai, **{name: (lambda p=p: p.predict(image, probabilities=False)
                                           .labels) for name, p in predictors.items()}}
        times = {name: [] for name in calls}
        labels = {}
        for name, call in calls.items():  # warm-up (allocator, oneDNN kernels)
            labels[name] = call()
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        plans = {name: p.plan.name + (" + channels_last" if p.plan.channels_last else "")
                 for name, p in predictors.items()}
    best = {name: min(t) for name, t in times.items()}
    rows = [{"method": name, "seconds": best[name],
             "speedup_vs_monai": best["MONAI"] / best[name],
             "dice_vs_monai": dice(labels[name], labels["MONAI"]),
             "dice_vs_truth": dice(labels[name], truth),
             "precision": plans.get(name, "fp32")} for name in calls]
    return {"rows": rows, "train_steps": train_steps, "train_seconds": train_s,
            "repeats": repeats, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine(), "cpu": _cpu_name(), "fast_bf16": cpu_has_fast_bf16()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(results: dict) -> list[str]:
    lines = ["| method | precision | seconds | speed-up vs MONAI | Dice vs MONAI labels | "
             "Dice vs truth |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['method']} | {r['precision']} | {r['seconds']:.2f} | "
                     f"{r['speedup_vs_monai']:.2f}x | {r['dice_vs_monai']:.4f} | "
                     f"{r['dice_vs_truth']:.4f} |")
    return lines


def write_docs(results: dict, command: str) -> None:
    """Replace the text under ``<!-- section: infer -->`` up to the next section anchor."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    lines = [
        "<!-- section: infer -->",
        "## Inference: 1x1x1024x1024, base-32 UNet, unetkit predict vs MONAI",
        "",
        f"Command: `{command}` ({results['cpu']}, {results['threads']} threads, torch "
        f"{results['torch']}, best of {results['repeats']} interleaved runs after a warm-up).",
        "Same weights (a depth-4 batch-norm UNet trained for "
        f"{results['train_steps']} steps on synthetic cells), same normalised image. MONAI: "
        "`sliding_window_inference(roi 256, overlap 0.5, mode='gaussian', sw_batch_size 4)`, fp32. "
        "unetkit: `Predictor.from_checkpoint(...).predict` with the default `InferConfig` "
        "(whole image in one window when it fits the 2 GB budget, BatchNorm folded into the "
        "convolutions, channels-last; `auto` = bf16 autocast where the CPU has native bf16, "
        f"here {'yes' if results['fast_bf16'] else 'no'}). The '256 windows' row runs "
        "MONAI's windows through unetkit's path, separating the whole-image gain from the "
        "per-forward ones. 'Dice vs MONAI labels' compares the foreground (membrane) labels.",
        "",
        *table(results),
        "",
    ]
    text = path.read_text()
    pattern = re.compile(r"<!-- section: infer -->.*?(?=<!-- section: |\Z)", re.S)
    path.write_text(pattern.sub(lambda _: "\n".join(lines) + "\n", text, count=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    results = run(args.repeats, args.train_steps)
    print("\n".join(table(results)))
    out = ROOT / "benchmarks" / "results" / "infer.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if not args.no_docs:
        command = "python benchmarks/bench_infer.py"
        if args.repeats != 2 or args.train_steps != 60:
            command += f" --repeats {args.repeats} --train-steps {args.train_steps}"
        write_docs(results, command)


if __name__ == "__main__":
    main()
