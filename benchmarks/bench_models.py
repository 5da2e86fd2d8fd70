"""Benchmark: one training step (forward + backward) of every model, fp32 vs bf16 + channels_last.

Also times unetkit's default ``UNet`` against the design document's skeleton (same weights) to
show the library adds no overhead. Measured side by side in one run; prints a table and writes
JSON.

    .venv/bin/python benchmarks/bench_models.py [--size 128] [--batch 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from unetkit.nn import MODELS, UNet, build_model

ROOT = Path(__file__).resolve().parents[1]


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True),
    )  # fmt: skip


class Skeleton(nn.Module):
    """The design document's section-9 U-Net, written as compactly as it reads."""

    def __init__(self) -> None:
        super().__init__()
        widths = [64, 128, 256, 512, 1024]
        self.downs = nn.ModuleList(
            double_conv(c, w) for c, w in zip([1, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(w * 2, w, 2, stride=2) for w in widths[3::-1])
        self.convs = nn.ModuleList(double_conv(w * 2, w) for w in widths[3::-1])
        self.out_conv = nn.Conv2d(64, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, down in enumerate(self.downs):
            x = down(self.pool(x) if i else x)
            skips.append(x)
        x = skips.pop()
        for up, conv in zip(self.ups, self.convs, strict=True):
            x = conv(torch.cat([up(x), skips.pop()], dim=1))
        return self.out_conv(x)


def median_time(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up (oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(model: nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out.float().mean().backward()

    return step


def bench_family(size: int, batch: int, repeats: int) -> list[dict]:
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        model = build_model(name, base_width=32, norm="batch").train()
        x = torch.randn(batch, 1, size, size)
        fp32 = median_time(train_step(model, x, bf16=False), repeats)
        model = model.to(memory_format=torch.channels_last)
        x_cl = x.to(memory_format=torch.channels_last)
        fast = median_time(train_step(model, x_cl, bf16=True), repeats)
        rows.append({"model": name, "fp32_ms": fp32 * 1e3, "bf16_cl_ms": fast * 1e3,
                     "speedup": fp32 / fast})  # fmt: skip
    return rows


def bench_skeleton(size: int, batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    skeleton, model = Skeleton().eval(), UNet().eval()
    x = torch.randn(batch, 1, size, size)
    with torch.no_grad():
        ours = median_time(lambda: model(x), repeats)
        theirs = median_time(lambda: skeleton(x), repeats)
    return {"unetkit_ms": ours * 1e3, "skeleton_ms": theirs * 1e3, "ratio": ours / theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "models.json")  # fmt: skip
    args = parser.parse_args()
    family = bench_family(args.size, args.batch, args.repeats)
    reference = bench_skeleton(args.size, args.batch, args.repeats)
    print(f"training step, base_width 32, batch norm, {args.batch}x1x{args.size}x{args.size}")
    print(f"{'model':<16}{'fp32 ms':>10}{'bf16+CL ms':>12}{'speed-up':>10}")
    for row in family:
        print(f"{row['model']:<16}{row['fp32_ms']:>10.1f}{row['bf16_cl_ms']:>12.1f}"
              f"{row['speedup']:>9.2f}x")  # fmt: skip
    print(f"default UNet vs design-doc skeleton, fp32 forward: {reference['unetkit_ms']:.1f} ms "
          f"vs {reference['skeleton_ms']:.1f} ms (ratio {reference['ratio']:.2f})")  # fmt: skip
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "args": vars(args) | {"json": str(args.json)},
              "family": family, "skeleton": reference}  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
