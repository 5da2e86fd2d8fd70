"""``benchmarks/gpu_check.py`` prepared on the CPU: it skips at once without CUDA, and its
pieces (throughput rows, the nnU-Net row without nnU-Net, inference against MONAI, the JUnit
reading and the Markdown tables) work on tiny plans on any machine."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_bench  # noqa: E402
import gpu_check  # noqa: E402

CPU = torch.device("cpu")
TINY_2D = gpu_bench.Plan("tiny 2d", (32, 32), 2, (4, 8, 16))
TINY_3D = gpu_bench.Plan("tiny 3d", (16, 16, 16), 1, (4, 8), classes=2)


def test_without_cuda_the_check_says_skipped_and_exits_0_quickly(tmp_path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, whatever the machine has
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--json",
                           str(tmp_path / "gpu.json")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no CUDA device: skipped"
    assert time.monotonic() - started < 60 and not (tmp_path / "gpu.json").exists()


def test_the_makefile_has_a_gpu_check_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "\ngpu-check: $(STAMP)\n\t$(PY) benchmarks/gpu_check.py" in makefile
    assert "gpu-check" in makefile.split(".PHONY:")[1].splitlines()[0]


@pytest.mark.parametrize("plan", [TINY_2D, TINY_3D], ids=["2d", "3d"])
def test_unetkit_training_row_on_the_cpu(plan) -> None:
    row = gpu_bench.unetkit_training(plan, CPU, steps=2, warmup=1)
    assert row["status"] == "ok" and row["it_per_s"] > 0 and row["gflop_per_s"] > 0
    assert row["peak_mb"] is None and row["parameters"] > 0  # peak memory: CUDA only


def test_the_unetkit_config_has_the_plans_stages() -> None:
    config = gpu_bench.unetkit_config(gpu_bench.PLANS[0], CPU)
    assert config.model.widths == [32, 64, 128, 256, 320, 320] and config.model.depth == 5
    assert config.model.strides == [[2, 2, 2]] * 5 and config.model.deep_supervision
    assert config.data.patch_size == [128, 128, 128] and config.data.batch_size == 2


def test_nnunet_row_says_not_installed_without_nnunet(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in (
        "nnunetv2", "dynamic_network_architectures") else real(name, *a))
    assert gpu_bench.nnunet_training(TINY_2D, CPU) == {"status": "not installed"}


@pytest.mark.skipif(not gpu_bench.nnunet_installed(), reason="nnU-Net v2 is not installed")
def test_nnunet_row_on_the_cpu() -> None:
    row = gpu_bench.nnunet_training(TINY_2D, CPU, steps=2, warmup=1)
    assert row["status"] == "ok" and row["it_per_s"] > 0


def test_inference_rows_agree_with_monai() -> None:
    pytest.importorskip("monai")
    rows = gpu_bench.inference(TINY_2D, CPU, (70, 50), repeats=1)
    assert rows["unetkit"]["status"] == rows["MONAI"]["status"] == "ok"
    assert rows["unetkit"]["label_agreement"] > 0.99
    assert rows["unetkit"]["seconds"] > 0


def test_junit_outcomes_and_markdown(tmp_path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite><testcase name="test_a"/>'
        '<testcase name="test_b"><skipped message="no CUDA device: GPU checks skipped"/>'
        '</testcase><testcase name="test_c"><failure message="assert 1 == 2&#10;more"/>'
        '</testcase></testsuite></testsuites>')
    tests = gpu_check.junit_outcomes(report)
    assert [t["outcome"] for t in tests] == ["passed", "skipped", "failed"]
    assert tests[2]["detail"] == "assert 1 == 2"
    record = {"device": "GPU", "torch": "2", "train_time": "60s",
              "tests": {"status": "pytest exit code 1", "tests": tests},
              "training": {"2d": {"status": "ok", "device": "cuda", "epochs": 3, "steps": 90,
                                  "best_val_dice": 0.8, "seconds": 70.0}},
              "throughput": [{"plan": "p", "implementation": "unetkit", "status": "ok",
                              "precision": "bf16", "it_per_s": 5.0, "gflop_per_s": 900.0,
                              "peak_mb": 1000.0},
                             {"plan": "p", "implementation": "nnU-Net v2",
                              "status": "not installed"}],
              "inference": [{"volume": "8x8", "implementation": "MONAI",
                             "status": "not installed"}]}
    text = gpu_check.markdown(record)
    assert "1 passed, 1 failed, 0 error, 1 skipped" in text
    assert "| p | unetkit | bf16 | 5.00 | 900 | 1000 |" in text
    assert "| p | nnU-Net v2 | not installed |" in text
    assert "| 2d | ok | cuda | 3 | 90 | 0.8000 | 70 |" in text
