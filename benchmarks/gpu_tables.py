"""Markdown tables of a GPU check record (``benchmarks/gpu_check.py``)."""

from __future__ import annotations

from gpu_loop import loop_markdown

HOLDOUT = "every:5:4"  # the held-out split of the hippocampus training (every fifth case)


def _number(value: object, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) \
        else str(value)


def markdown(record: dict) -> str:
    """The record as Markdown tables."""
    lines = [f"## GPU check: {record.get('device', '?')}, torch {record.get('torch', '?')}", ""]
    tests = record.get("tests")
    if tests:
        counts = {k: sum(t["outcome"] == k for t in tests["tests"])
                  for k in ("passed", "failed", "error", "skipped")}
        lines += [f"### GPU tests ({tests['status']}): " + ", ".join(
            f"{v} {k}" for k, v in counts.items()), "", "| test | outcome | detail |",
            "|---|---|---|"]
        lines += [f"| {t['test']} | {t['outcome']} | {t['detail']} |" for t in tests["tests"]]
        lines.append("")
    training = record.get("training")
    if training:
        lines += [f"### Zero-config training on hippocampus (--time {record['train_time']}, "
                  f"held out: {training.get('holdout', HOLDOUT)})", ""]
        if training["status"] == "ok":
            names = list(training["dice"])
            lines += ["| test cases | steps | train s | " + " | ".join(
                f"Dice {n}" for n in names) + " | mean Dice |",
                "|---" * (4 + len(names)) + "|",
                f"| {training['test_cases']} | {training['steps']} | "
                f"{_number(training['train_s'], 0)} | " + " | ".join(
                    _number(training["dice"][n], 4) for n in names)
                + f" | {_number(training['mean_dice'], 4)} |"]
        else:
            lines.append(f"status: {training['status']}")
        lines.append("")
    if record.get("loop"):
        lines += loop_markdown(record["loop"])
    if record.get("throughput"):
        lines += ["### Training step, same plan", "",
                  "| plan | implementation | precision | it/s | GFLOP/s | peak MiB |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['plan']} | {r['implementation']} | "
                  + (f"{r.get('precision', '-')} | {_number(r['it_per_s'])} | "
                     f"{_number(r['gflop_per_s'], 0)} | {_number(r['peak_mb'], 0)} |"
                     if r["status"] == "ok" else f"{r['status']} | | | |")
                  for r in record["throughput"]]
        lines.append("")
    if record.get("inference"):
        lines += ["### Sliding-window inference, same network", "",
                  "| volume | implementation | precision | s | Mvoxel/s | peak MiB | "
                  "label agreement |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['volume']} | {r['implementation']} | "
                  + (f"{r['precision']} | {_number(r['seconds'])} | "
                     f"{_number(r['mvoxel_per_s'], 1)} | {_number(r['peak_mb'], 0)} | "
                     f"{_number(r.get('label_agreement'), 5)} |"
                     if r["status"] == "ok" else f"{r['status']} | | | | |")
                  for r in record["inference"]]
    return "\n".join(lines)
