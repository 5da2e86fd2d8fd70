"""The GPU check's loop part: the hippocampus-sized training step and the training loop around
it (``bench_train.py --loop``, ``loop_bench``), against issue 27's targets.

The step is the zero-config GPU plan of Task04 (3D, batch 4 of 40x56x40, widths 32-256,
instance norm, deep supervision), timed bare in each step mode asked for (eager, a CUDA graph of
the whole step, ``torch.compile``), then inside ``train_one_epoch`` as ``unetkit train`` runs it
(``auto``: the measured step mode, workers, augmentation on the device). Targets: the best bare
step at least 3x the 45 steps/s measured before issue 27, and the loop at least 90% of the bare
step of the mode it ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOOP_RESERVE_S = 75.0  # two step modes' warm-up, three loop variants of three epochs of 50
STEP_BEFORE = 45.0  # steps/s of the bare eager step on an H200 before issue 27
STEP_TARGET = 3 * STEP_BEFORE
SHARE_TARGET = 0.9


def run_loop(timeout_s: float, env: dict[str, str], device: str = "cuda",
             plan: str = "hippocampus", modes: str = "eager,graphs", steps: int = 100,
             epochs: int = 2, steps_per_epoch: int = 50) -> dict:
    """``bench_train.py --loop`` in a child process; its measurements summarised."""
    with tempfile.TemporaryDirectory() as folder:
        record = Path(folder) / "loop.json"
        command = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), "--loop",
                   "--device", device, "--plan", plan, "--modes", modes, "--steps", str(steps),
                   "--epochs", str(epochs), "--steps-per-epoch", str(steps_per_epoch),
                   "--json", str(record)]
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": f"timed out after {timeout_s:.0f} s"}
        if done.returncode != 0 or not record.is_file():
            return {"status": f"exit code {done.returncode}",
                    "output_tail": (done.stdout + done.stderr)[-2000:]}
        return loop_summary(json.loads(record.read_text()))


def loop_summary(rows: dict) -> dict:
    """The best bare step, the ``auto`` loop and its share of the bare step, with the targets.

    ``rows`` is ``loop_bench.run``'s record: ``{"step": {mode: {"steps_per_s", "warmup_s"}},
    "loop": {variant: {"steps_per_s", "mode", "ratio", ...}}, "config": ...}``.
    """
    step = rows["step"]
    best = max(step, key=lambda mode: step[mode]["steps_per_s"])
    auto = rows["loop"]["auto"]
    return {"status": "ok", "config": rows.get("config", {}),
            "step": {mode: {"steps_per_s": r["steps_per_s"], "warmup_s": r["warmup_s"]}
                     for mode, r in step.items()},
            "best_mode": best, "best_steps_per_s": step[best]["steps_per_s"],
            "step_target": STEP_TARGET, "step_vs_before": step[best]["steps_per_s"] / STEP_BEFORE,
            "loop": {variant: {"steps_per_s": r["steps_per_s"], "mode": r["mode"],
                               "share": r["ratio"], "workers": r["workers"],
                               "augment": r["augment"]}
                     for variant, r in rows["loop"].items()},
            "loop_share": auto["ratio"], "share_target": SHARE_TARGET}


def loop_markdown(loop: dict) -> list[str]:
    """The loop part as Markdown lines."""
    lines = ["### Hippocampus-sized step and the training loop around it", ""]
    if loop["status"] != "ok":
        return lines + [f"status: {loop['status']}", ""]
    c = loop["config"]
    lines += [f"Plan: batch {c.get('batch')} of {'x'.join(map(str, c.get('patch', [])))}, "
              f"widths {c.get('widths')}, {c.get('precision')}.", "",
              "| | mode | steps/s | warm-up s | share of the bare step |", "|---|---|---|---|---|"]
    lines += [f"| bare step | {mode} | {r['steps_per_s']:.1f} | {r['warmup_s']:.1f} | |"
              for mode, r in loop["step"].items()]
    lines += [f"| loop ({variant}) | {r['mode']} | {r['steps_per_s']:.1f} | | "
              + ("-" if r["share"] is None else f"{r['share']:.0%}") + " |"
              for variant, r in loop["loop"].items()]
    share = loop["loop_share"]
    lines += ["", f"Best bare step: {loop['best_steps_per_s']:.1f} steps/s ({loop['best_mode']}), "
              f"{loop['step_vs_before']:.2f}x the {STEP_BEFORE:.0f} steps/s before issue 27 "
              f"(target {STEP_TARGET:.0f}); the loop (auto): "
              + ("-" if share is None else f"{share:.0%}")
              + f" of its bare step (target {SHARE_TARGET:.0%}).", ""]
    return lines
