"""Training throughput: unetkit's default UNet and precision vs the design document's skeleton.

Both networks have the same architecture (the design document's section 9 U-Net, 64-1024
channels, 4 poolings). unetkit trains it the way ``unetkit train`` does by default
(``precision=auto``: bf16 autocast + channels-last on CPUs with fast bf16, loss in float32);
the skeleton trains in eager fp32 NCHW. Same batch (4x1x256x256), same Dice+CE loss and AdamW
settings (unetkit uses the trainer's fused AdamW, the skeleton the textbook eager one).
Timed steps alternate between the two so that both see the same machine load. Peak memory is
the peak resident set size of a separate process running a few steps of each variant.

    python benchmarks/bench_train.py [--steps 3] [--json benchmarks/results/train.json]

``--loop`` measures instead the training loop against the bare step, per step mode, on
``--device`` (``benchmarks/loop_bench.py``: eager, torch.compile, CUDA graphs; loop before and
after issue 27), for ``--plan hippocampus`` (the zero-config GPU plan of Task04) or ``demo``:

    python benchmarks/bench_train.py --loop --device cuda --plan hippocampus
        [--steps 200] [--epochs 3] [--modes eager,graphs] [--config RUN/config.yaml]
        [--json benchmarks/results/train_loop_cuda.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from unetkit.config import Config, LossConfig, apply_values
from unetkit.losses import build_loss
from unetkit.nn import UNet
from unetkit.runtime.device import (
    autocast,
    cpu_has_fast_bf16,
    model_to_memory_format,
    pick_device,
    resolve_precision,
    to_memory_format,
)
from unetkit.train.builders import build_optimizer

BATCH = (4, 1, 256, 256)


class DoubleConv(nn.Module):
    """(conv 3x3 => ReLU) * 2, as the design document's skeleton."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SkeletonUNet(nn.Module):
    """The design document's section 9 skeleton (textbook U-Net), eager fp32."""

    def __init__(self, in_ch: int = 1, out_ch: int = 2) -> None:
        super().__init__()
        self.down1, self.down2 = DoubleConv(in_ch, 64), DoubleConv(64, 128)
        self.down3, self.down4 = DoubleConv(128, 256), DoubleConv(256, 512)
        self.bottom, self.pool = DoubleConv(512, 1024), nn.MaxPool2d(2)
        self.up4, self.conv4 = nn.ConvTranspose2d(1024, 512, 2, stride=2), DoubleConv(1024, 512)
        self.up3, self.conv3 = nn.ConvTranspose2d(512, 256, 2, stride=2), DoubleConv(512, 256)
        self.up2, self.conv2 = nn.ConvTranspose2d(256, 128, 2, stride=2), DoubleConv(256, 128)
        self.up1, self.conv1 = nn.ConvTranspose2d(128, 64, 2, stride=2), DoubleConv(128, 64)
        self.out_conv = nn.Conv2d(64, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.down1(x)
        x2 = self.down2(self.pool(x1))
        x3 = self.down3(self.pool(x2))
        x4 = self.down4(self.pool(x3))
        xb = self.bottom(self.pool(x4))
        u4 = self.conv4(torch.cat([self.up4(xb), x4], dim=1))
        u3 = self.conv3(torch.cat([self.up3(u4), x3], dim=1))
        u2 = self.conv2(torch.cat([self.up2(u3), x2], dim=1))
        u1 = self.conv1(torch.cat([self.up1(u2), x1], dim=1))
        return self.out_conv(u1)


def make_variant(name: str):
    """``(step function, description)`` of a training step for ``name`` in {unetkit, skeleton}."""
    torch.manual_seed(0)
    device = pick_device("cpu")
    if name == "unetkit":
        model = UNet(1, 2)
        plan = resolve_precision("auto", "auto", device)
    else:
        model = SkeletonUNet(1, 2)
        plan = resolve_precision("fp32", "off", device)
    model_to_memory_format(model, plan, 2)
    loss_fn = build_loss(LossConfig(), 2)
    if name == "unetkit":  # the trainer's optimizer: fused AdamW
        optimizer = build_optimizer(Config(), model)
    else:  # the textbook eager AdamW
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(BATCH, generator=generator)
    mask = (torch.rand(BATCH[:1] + BATCH[2:], generator=generator) > 0.7).long()
    image = to_memory_format(image, plan)

    def step() -> None:
        with autocast(plan, device):
            logits = model(image)
        loss = loss_fn(logits, mask)  # as train_step: the loss computes in float32 itself
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)
        optimizer.step()

    return step, f"{plan.name}, channels_last={plan.channels_last}"


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (``VmHWM``; ``ru_maxrss`` survives exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory_mb(name: str, steps: int) -> float:
    """Peak RSS (MB) of a fresh process doing ``steps`` training steps of ``name``."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, "--steps", str(steps)],
        capture_output=True, text=True, check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per variant")
    parser.add_argument("--json", default=None, help="default benchmarks/results/train.json, "
                        "with --loop train_loop_<device>.json")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--loop", action="store_true", help="loop vs bare step, per step mode")
    parser.add_argument("--device", default="cpu", help="--loop: cpu, cuda, cuda:N")
    parser.add_argument("--plan", default="hippocampus", choices=["hippocampus", "demo", "small"])
    parser.add_argument("--config", default=None, help="--loop: a run's config.yaml instead")
    parser.add_argument("--epochs", type=int, default=3, help="--loop: timed epochs")
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--modes", default=None, help="--loop: e.g. eager,graphs (default: "
                        "every mode the device allows)")
    args = parser.parse_args()
    if args.loop:
        loop_main(args)
        return
    args.json = args.json or "benchmarks/results/train.json"
    if args.memory_child:
        step, _ = make_variant(args.memory_child)
        for _ in range(args.steps):
            step()
        print(peak_rss_mb())
        return

    variants = {name: make_variant(name) for name in ("unetkit", "skeleton")}
    times = {name: [] for name in variants}
    for _ in range(args.warmup):
        for step, _ in variants.values():
            step()
    for _ in range(args.steps):  # alternate: both variants see the same machine load
        for name, (step, _) in variants.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    memory = {name: peak_memory_mb(name, 2) for name in variants}
    rows = {}
    for name, (_, description) in variants.items():
        seconds = sorted(times[name])[len(times[name]) // 2]  # median step
        rows[name] = {"precision": description, "step_s": seconds,
                      "images_per_s": BATCH[0] / seconds, "peak_rss_mb": memory[name]}
    speedup = rows["unetkit"]["images_per_s"] / rows["skeleton"]["images_per_s"]
    print(f"batch {'x'.join(map(str, BATCH))}, {torch.get_num_threads()} threads, "
          f"fast bf16: {cpu_has_fast_bf16()}, torch {torch.__version__}")
    print(f"{'variant':<10} {'precision':<28} {'s/step':>8} {'images/s':>9} {'peak MB':>8}")
    for name, row in rows.items():
        print(f"{name:<10} {row['precision']:<28} {row['step_s']:>8.3f} "
              f"{row['images_per_s']:>9.2f} {row['peak_rss_mb']:>8.0f}")
    print(f"speed-up unetkit / skeleton: {speedup:.2f}x")
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"batch": BATCH, "rows": rows, "speedup": speedup,
                                "threads": torch.get_num_threads(),
                                "fast_bf16": cpu_has_fast_bf16()}, indent=2))


def loop_main(args: argparse.Namespace) -> None:
    """``--loop``: ``loop_bench.run`` and its JSON."""
    import loop_bench

    config = loop_bench.plan_config(args.plan, args.device, args.config)
    config = apply_values(config, {"train.steps_per_epoch": args.steps_per_epoch},
                          source="bench_train")
    modes = args.modes.split(",") if args.modes else None
    rows = loop_bench.run(config, max(args.steps, 20), args.epochs, modes)
    rows["plan"] = args.config or args.plan
    kind = torch.device(args.device).type
    path = Path(args.json or f"benchmarks/results/train_loop_{kind}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
