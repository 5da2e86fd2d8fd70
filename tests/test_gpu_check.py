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


@pytest.mark.skipif(not gpu_bench.nnunet_installed(),
                    reason="dynamic-network-architectures is not installed")
def test_nnunet_row_on_the_cpu() -> None:
    row = gpu_bench.nnunet_training(TINY_2D, CPU, steps=2, warmup=1)
    assert row["status"] == "ok" and row["it_per_s"] > 0
    assert row["precision"] == "fp32, eager" and row["loss"] in ("nnunetv2", "reproduced")


@pytest.mark.skipif(not gpu_bench.nnunet_installed(),
                    reason="dynamic-network-architectures is not installed")
def test_the_compiled_nnunet_row_compiles_the_network_and_the_dice_term(monkeypatch) -> None:
    # as nnUNetTrainer does by default: torch.compile(network) and loss.dc = torch.compile(...)
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module: compiled.append(module) or module)
    row = gpu_bench.nnunet_training(TINY_2D, CPU, steps=1, warmup=1, compiled=True)
    assert row["status"] == "ok" and row["precision"] == "fp32, compiled"
    assert [type(m).__name__ for m in compiled] == ["MemoryEfficientSoftDiceLoss"
                                                    if row["loss"] == "nnunetv2"
                                                    else "ReproducedSoftDice", "PlainConvUNet"]


def test_throughput_rows_that_do_not_fit_say_so_in_priority_order() -> None:
    rows = gpu_check.throughput(gpu_check.Deadline(0.0), reserve_s=100.0)
    assert [(r["plan"], r["implementation"]) for r in rows] == [
        ("3d_fullres 128^3", "unetkit"), ("3d_fullres 128^3", "nnU-Net v2"),
        ("2d 512^2", "unetkit"), ("2d 512^2", "nnU-Net v2"),
        ("3d_fullres 128^3", "nnU-Net v2 compiled"), ("2d 512^2", "nnU-Net v2 compiled"),
        ("3d_fullres 128^3", "unetkit, other layout"), ("2d 512^2", "unetkit, other layout")]
    assert {r["status"] for r in rows} == {"skipped: out of time"}


def test_the_hippocampus_folder_is_found_or_reported_missing(tmp_path) -> None:
    assert gpu_check.find_hippocampus(tmp_path) is None
    (tmp_path / "dataset.json").write_text("{}")
    assert gpu_check.find_hippocampus(tmp_path) == tmp_path


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
              "training": {"status": "ok", "holdout": "every:5:4", "test_cases": 40,
                           "steps": 900, "train_s": 181.0, "seconds": 200.0,
                           "dice": {"Anterior": 0.88, "Posterior": 0.86}, "mean_dice": 0.87},
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
    assert "| 40 | 900 | 181 | 0.8800 | 0.8600 | 0.8700 |" in text
    assert "held out: every:5:4" in text
    record["training"] = {"status": "skipped: no hippocampus data (--hippocampus)"}
    assert "status: skipped: no hippocampus data" in gpu_check.markdown(record)


LOOP_RECORD = {
    "step": {"eager": {"steps_per_s": 60.0, "warmup_s": 1.0, "mode": "eager"},
             "graphs": {"steps_per_s": 150.0, "warmup_s": 4.0, "mode": "graphs"}},
    "step_augmented": {"eager": {"steps_per_s": 55.0, "warmup_s": 1.0, "mode": "eager"}},
    "loop": {"today": {"steps_per_s": 31.0, "mode": "eager", "workers": 0, "augment": "train",
                       "step_share": 0.5, "ratio": 31.0 / 60.0},
             "auto": {"steps_per_s": 138.0, "mode": "graphs", "workers": 3,
                      "augment": "train", "step_share": 0.2, "ratio": 138.0 / 150.0}},
    "config": {"patch": [40, 56, 40], "batch": 4, "dims": 3, "widths": [32, 64, 128, 256],
               "precision": "bf16"},
}


def test_the_loop_part_reads_the_best_step_and_the_loops_share_against_the_targets() -> None:
    import gpu_loop

    loop = gpu_loop.loop_summary(LOOP_RECORD)
    assert loop["best_mode"] == "graphs" and loop["best_steps_per_s"] == 150.0
    assert loop["step_vs_before"] == pytest.approx(150.0 / 45.0)  # issue 27: >= 3x of 45
    assert loop["loop_share"] == pytest.approx(0.92) and loop["share_target"] == 0.9
    text = gpu_check.markdown({"device": "GPU", "torch": "2", "train_time": "3m", "loop": loop})
    assert "| bare step | graphs | 150.0 | 4.0 | |" in text
    assert "| loop (auto) | graphs | 138.0 | | 92% |" in text
    assert "Best bare step: 150.0 steps/s (graphs), 3.33x the 45 steps/s" in text
    assert "batch 4 of 40x56x40, widths [32, 64, 128, 256], bf16" in text
    failed = gpu_check.markdown({"device": "GPU", "torch": "2", "train_time": "3m",
                                 "loop": {"status": "timed out after 90 s"}})
    assert "status: timed out after 90 s" in failed


def test_the_loop_part_runs_the_loop_benchmark_in_a_child_process() -> None:
    import gpu_loop

    loop = gpu_loop.run_loop(240, gpu_check._env(), device="cpu", plan="small", modes="eager",
                             steps=20, epochs=1, steps_per_epoch=4)
    assert loop["status"] == "ok", loop
    assert set(loop["step"]) == {"eager"} and loop["best_steps_per_s"] > 0
    assert set(loop["loop"]) == {"today", "workers", "auto"} and loop["loop_share"] > 0
    assert loop["config"]["patch"] == [64, 64] and loop["config"]["batch"] == 4
