"""Bytes autograd keeps for backward: unetkit's training step vs nnU-Net v2's, on the CPU.

    python benchmarks/memory_vs_nnunet.py [--json benchmarks/results/memory_vs_nnunet.json]

A training step's memory is what autograd saves during forward + loss, kept until backward
reaches it. This counts it on the CPU, where no GPU is needed, with
``torch.autograd.graph.saved_tensors_hooks``: every tensor saved for backward, each storage once,
parameters excluded (both sides keep theirs anyway). The figure is deterministic (no timing).

* unetkit: its network and loss as ``unetkit train`` calls them (``train.loop.train_step``):
  instance norm, deep supervision, Dice + CE; forward under bf16 autocast, loss after it.
* nnU-Net v2: ``PlainConvUNet`` with the same stages, widths, kernels, patch and batch, and its
  ``DC_and_CE_loss`` with deep supervision, both under the autocast context as
  ``nnUNetTrainer.train_step`` runs them (bf16 here: fp16 autocast is for CUDA), targets
  prepared beforehand as its data loader does (``nnunet_reference.py``). The real nnunetv2 loss
  when it is installed, else the reproduction (the ``loss`` field says which).

The plans are those of ``gpu_bench.PLANS`` at a CPU-sized patch (same widths and depths).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nnunet_reference  # noqa: E402
from gpu_bench import Plan, unetkit_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
PLANS = [Plan("3d 64^3", (64, 64, 64), 2, (32, 64, 128, 256, 320, 320)),
         Plan("2d 256^2", (256, 256), 4, (32, 64, 128, 256, 512, 512, 512))]


@dataclass
class SavedBytes:
    """Bytes of the storages autograd saved: in all, per dtype, and ``(bytes, dtype)`` of each
    storage in the order they were first saved."""

    total: int
    by_dtype: dict[str, int]
    storages: list[tuple[int, str]]


def saved_bytes(run: Callable[[], object], exclude: list[torch.Tensor] = ()) -> SavedBytes:
    """Bytes of every storage saved for backward while ``run()`` records its graph.

    Each storage counts once (a view and its base, or a tensor saved by two operations, are one
    allocation); storages of ``exclude`` (the parameters) do not count. The saved tensors stay
    referenced until the count is made, so no address is reused in between.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, tuple[int, str]] = {}
    kept: list[torch.Tensor] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in skip and pointer not in seen:
            seen[pointer] = (storage.nbytes(), str(tensor.dtype).removeprefix("torch."))
            kept.append(tensor.detach())
        return tensor.detach()  # (the tensor itself would make a reference cycle)

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run()
    by_dtype: dict[str, int] = {}
    for size, dtype in seen.values():
        by_dtype[dtype] = by_dtype.get(dtype, 0) + size
    del result
    kept.clear()
    return SavedBytes(sum(by_dtype.values()), dict(sorted(by_dtype.items())),
                      list(seen.values()))


def _batch(plan: Plan, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(plan.batch, 1, *plan.patch, generator=generator)
    mask = torch.randint(0, plan.classes, (plan.batch, *plan.patch), generator=generator)
    return image.to(device), mask.to(device)


def unetkit_bytes(plan: Plan, device: torch.device = CPU, layout: str = "auto") -> SavedBytes:
    """unetkit's forward + loss on ``plan`` as ``train_step`` runs it: bf16 autocast on the CPU,
    ``precision: auto`` on a GPU, ``channels_last`` as ``layout`` resolves for the plan's norm."""
    from unetkit.runtime.checkpoint import build_model_from_config
    from unetkit.runtime.device import (
        autocast,
        model_to_memory_format,
        resolve_precision,
        to_memory_format,
    )
    from unetkit.train import builders

    config = unetkit_config(plan, device)
    precision = resolve_precision("bf16" if device.type == "cpu" else "auto", layout, device,
                                  config.model.norm)
    torch.manual_seed(0)
    model = build_model_from_config(config).to(device)
    model_to_memory_format(model, precision, plan.dims)
    loss_fn = builders.build_loss_fn(config)
    image, mask = _batch(plan, device)
    image = to_memory_format(image, precision)

    def step() -> torch.Tensor:
        with autocast(precision, device):
            output = model(image)
        return loss_fn(output, mask)

    return saved_bytes(step, list(model.parameters()))


def nnunet_bytes(plan: Plan, device: torch.device = CPU,
                 reproduced: bool = False) -> tuple[SavedBytes, str]:
    """nnU-Net v2's forward + loss on ``plan`` as ``nnUNetTrainer.train_step`` runs them: both
    under autocast (fp16 on a GPU, as nnU-Net; bf16 on the CPU, where nnU-Net itself would not
    autocast), and which loss ran (``nnunet_reference.nnunet_loss``)."""
    torch.manual_seed(0)
    model = nnunet_reference.plain_conv_unet(plan.widths, plan.dims, plan.classes).to(device)
    image, mask = _batch(plan, device)
    with torch.no_grad():
        targets = nnunet_reference.nnunet_targets(mask, model(image[:1]))
    loss_fn, source = nnunet_reference.nnunet_loss(len(targets), reproduced)
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype):
            return loss_fn(model(image), targets)

    return saved_bytes(step, list(model.parameters())), source


def compare(plan: Plan, reproduced: bool = False) -> dict:
    """One row: both sides' saved bytes (MiB, per dtype) and unetkit / nnU-Net."""
    ours = unetkit_bytes(plan, CPU, "off")
    theirs, source = nnunet_bytes(plan, CPU, reproduced)
    mib = 2.0**20
    return {"plan": plan.name, "batch": plan.batch, "patch": list(plan.patch),
            "widths": list(plan.widths), "loss": source,
            "unetkit_mib": ours.total / mib, "nnunet_mib": theirs.total / mib,
            "ratio": ours.total / theirs.total,
            "unetkit_by_dtype_mib": {k: v / mib for k, v in ours.by_dtype.items()},
            "nnunet_by_dtype_mib": {k: v / mib for k, v in theirs.by_dtype.items()}}


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path,
                        default=ROOT / "benchmarks" / "results" / "memory_vs_nnunet.json")
    parser.add_argument("--reproduced", action="store_true",
                        help="use the reproduction of nnU-Net's loss even if nnunetv2 is installed")
    args = parser.parse_args(argv)
    if not nnunet_reference.network_installed():
        print("dynamic-network-architectures is not installed: "
              "pip install --no-deps dynamic-network-architectures")
        return 1
    rows = [compare(plan, args.reproduced) for plan in PLANS]
    print("| plan | batch | nnU-Net loss | unetkit MiB | nnU-Net MiB | unetkit / nnU-Net |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['plan']} | {r['batch']} | {r['loss']} | {r['unetkit_mib']:.1f} | "
              f"{r['nnunet_mib']:.1f} | {r['ratio']:.3f}x |")
    record = {"torch": torch.__version__, "autocast": "bf16 (CPU)", "rows": rows,
              "packages": {name: _version(name) for name in
                           ("nnunetv2", "dynamic-network-architectures")},
              "command": "python benchmarks/memory_vs_nnunet.py"}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=2))
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
