"""``benchmarks/memory_vs_nnunet.py``: the bytes autograd keeps for unetkit's training step are at
most what it keeps for nnU-Net v2's on the same plan (bf16 autocast, on the CPU).

The reference network is nnU-Net's own ``PlainConvUNet`` (``dynamic-network-architectures``,
installed by ``make`` with ``--no-deps``); its loss is the real nnunetv2 one where nnunetv2 is
installed, else ``nnunet_reference.ReproducedDCandCE`` (what that loss keeps, reproduced op for
op; checked against nnunetv2 where both are present)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import memory_vs_nnunet as memory  # noqa: E402
import nnunet_reference  # noqa: E402

needs_network = pytest.mark.skipif(not nnunet_reference.network_installed(),
                                   reason="dynamic-network-architectures is not installed")


def test_saved_bytes_counts_each_storage_once_and_leaves_parameters_out():
    weight = torch.nn.Parameter(torch.randn(4, 4))
    x = torch.randn(3, 4, requires_grad=True)

    def run():
        y = x @ weight  # saves x and the parameter
        z = y.exp()  # saves its result z
        return (z * z).sum() + (y[1:] * y[:2]).sum()  # z twice more, two views of y

    kept = memory.saved_bytes(run, [weight])
    assert kept.storages == [(3 * 4 * 4, "float32")] * 3  # x, z, y; once each; no weight
    assert kept.total == 3 * 48 and kept.by_dtype == {"float32": 144}


@needs_network
@pytest.mark.parametrize("plan", memory.PLANS, ids=[p.name for p in memory.PLANS])
def test_unetkit_keeps_at_most_what_nnunet_keeps(plan):
    row = memory.compare(plan)
    # before the lean step: 1.24x (3D) and 1.11x (2D) on these plans
    assert row["ratio"] <= 1.0, row
    assert row["unetkit_by_dtype_mib"].get("float32", 0.0) < 1.0  # nothing float32 but stats
    assert "int64" not in row["unetkit_by_dtype_mib"]  # no pooling indices, no int64 labels


@needs_network
def test_the_reproduced_loss_is_nnunets():
    pytest.importorskip("nnunetv2")
    plan = memory.Plan("tiny", (32, 32, 32), 2, (8, 16, 32, 64))
    real, source = memory.nnunet_bytes(plan)
    reproduced, _ = memory.nnunet_bytes(plan, reproduced=True)
    assert source == "nnunetv2" and real == reproduced
    torch.manual_seed(0)
    model = nnunet_reference.plain_conv_unet(plan.widths, plan.dims, plan.classes)
    image, mask = memory._batch(plan, memory.CPU)
    with torch.no_grad():
        outputs = model(image)
        targets = nnunet_reference.nnunet_targets(mask, outputs)
        values = [nnunet_reference.nnunet_loss(len(targets), flag)[0](outputs, targets)
                  for flag in (False, True)]
    assert values[0].item() == pytest.approx(values[1].item(), rel=1e-6)


def test_deep_supervision_weights_are_nnunets():
    assert nnunet_reference.deep_supervision_weights(4) == pytest.approx(
        [4 / 7, 2 / 7, 1 / 7, 0.0])
