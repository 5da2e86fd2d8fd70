"""The ``infer`` section of ``docs/BENCHMARKS.md`` from ``benchmarks/results/infer.json``.

Every part stored in the JSON (one per ``--part`` and sizes, merged across runs) becomes a table
under its own command line; the issue's targets are checked on the figures present.
"""

from __future__ import annotations

import re
from pathlib import Path

TARGETS = {2: (1024, 5.0), 3: (160, 10.0)}  # whole-image size, speed-up over MONAI


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _machine(part: dict) -> str:
    m = part["machine"]
    return (f"{m['cpu']} ({m['kind']}, {m['threads']} threads), torch {m['torch']}, "
            f"onnxruntime {m['onnxruntime']}; best of {part['repeats']} interleaved rounds")


def _engines(part: dict) -> list[str]:
    lines = ["| case | engine | seconds | speed vs torch fp32 channels-last | max abs diff | "
             "first call (s) |", "|---|---|---|---|---|---|"]
    for r in part["rows"]:
        lines.append(f"| {r['case']} | {r['engine']} | {r['seconds']:.2f} | "
                     f"{r['speed_vs_torch']:.2f}x | {r['max_abs_diff']:.1e} | "
                     f"{_f(r.get('first_call_s'), '{:.1f}')} |")
    return lines


def _predict(part: dict) -> list[str]:
    dims = part["dims"]
    lines = ["| method | size | engine, precision | window x tiles | seconds | speed-up vs "
             "MONAI | Dice vs MONAI | Dice vs auto | Dice vs one forward | cost per voxel vs "
             f"same method at {part['whole_size']}^{dims} | vs one forward at "
             f"{part['whole_size']}^{dims} |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in part["rows"]:
        engine = f"{r['engine']}, {r['precision']}" if "engine" in r else "torch, fp32 NCHW"
        window = (f"{'x'.join(map(str, r['window']))} x {'x'.join(map(str, r['tiles']))}"
                  if "window" in r else f"{part['roi']} (overlap 0.5)")
        name = r["method"] + (" (auto)" if r.get("auto") else "")
        lines.append(f"| {name} | {r['size']}^{dims} | {engine} | {window} | "
                     f"{r['seconds']:.2f} | {_f(r['speedup_vs_monai'], '{:.2f}x')} | "
                     f"{_f(r['dice_vs_monai'], '{:.4f}')} | {_f(r['dice_vs_auto'], '{:.4f}')} | "
                     f"{_f(r.get('dice_vs_one_forward'), '{:.4f}')} | "
                     f"{_f(r['cost_vs_same_at_whole_size'], '{:.2f}x')} | "
                     f"{_f(r['cost_vs_one_forward'], '{:.2f}x')} |")
    size, target = TARGETS[dims]
    auto = [r for r in part["rows"] if r.get("auto")]
    hits = [r for r in auto if r["size"] == size and r["speedup_vs_monai"] is not None]
    for r in hits:
        verdict = "met" if r["speedup_vs_monai"] >= target and r["dice_vs_monai"] >= 0.999 \
            else "missed"
        lines += ["", f"Target {target:g}x MONAI at {size}^{dims} with label Dice >= 0.999: "
                  f"{r['speedup_vs_monai']:.2f}x at Dice {r['dice_vs_monai']:.4f} ({verdict})."]
    largest = max((r for r in auto), key=lambda r: r["size"], default=None)
    if largest is not None and largest["size"] > size:
        cost = largest["cost_vs_same_at_whole_size"]
        if cost is not None:
            lines.append(f"Target: {largest['size']}^{dims} at most 1.2x the per-voxel cost of "
                         f"{size}^{dims}: {cost:.2f}x ({'met' if cost <= 1.2 else 'missed'}).")
    return lines


def _memory(part: dict) -> list[str]:
    lines = ["| input | engine | budget (MB) | window x tiles | estimate (MB) | measured peak "
             "(MB) | peak / budget | seconds |", "|---|---|---|---|---|---|---|---|"]
    for r in part["rows"]:
        lines.append(f"| {r['size']}^{r['dims']} | {r['engine']} | {r['budget_mb']:.0f} | "
                     f"{'x'.join(map(str, r['window']))} x {'x'.join(map(str, r['tiles']))} | "
                     f"{r['estimate_mb']:.0f} | {r['peak_mb']:.0f} | {r['ratio']:.3f} | "
                     f"{r['seconds']:.1f} |")
    worst = max(r["ratio"] for r in part["rows"])
    lines += ["", f"Target: peak <= 1.05 x budget: worst {worst:.3f} "
              f"({'met' if worst <= 1.05 else 'missed'})."]
    return lines


TITLES = {"engines": "Engines: one forward of the default network",
          "2d": "2D prediction vs MONAI (labels, default settings)",
          "3d": "3D prediction vs MONAI (labels, default settings)",
          "memory": "Peak memory of one prediction vs infer.memory_budget_mb"}
ORDER = ["engines", "2d", "3d", "memory"]


def section(results: dict) -> list[str]:
    """The markdown lines of the ``infer`` section."""
    lines = ["<!-- section: infer -->",
             "## Inference: unetkit predict vs MONAI, engines, tiling, memory (default network)",
             "",
             "The default network (UNet, base width 32, depth 4, batch norm, two classes) trained "
             "for a few dozen steps on synthetic cells (2D) or blobs (3D). MONAI: "
             "`sliding_window_inference(roi 256 / 96, overlap 0.5, mode='gaussian', "
             "sw_batch_size 4)`, fp32, the plain model. unetkit: `Predictor.from_checkpoint(...)"
             ".predict(image, probabilities=False)` (what `unetkit predict` writes) with the "
             "default `InferConfig` (2048 MB budget) and `infer.engine` as named; '(auto)' marks "
             "the engine `auto` picks here. 'one forward' is the whole image in one window "
             "(a 64 GB budget). Dice is between foreground labels. Analysis: "
             "`docs/inference.md`.", ""]
    parts = sorted(results["parts"].items(),
                   key=lambda kv: (ORDER.index(kv[1]["part"]), kv[0]))
    for _, part in parts:
        render = {"engines": _engines, "2d": _predict, "3d": _predict,
                  "memory": _memory}[part["part"]]
        lines += [f"### {TITLES[part['part']]}", "",
                  f"Command: `{part['command']}` ({_machine(part)}).", "", *render(part), ""]
    return lines


def write_docs(results: dict, path: Path) -> None:
    """Replace the text under ``<!-- section: infer -->`` up to the next section anchor."""
    text = path.read_text()
    pattern = re.compile(r"<!-- section: infer -->.*?(?=<!-- section: |\Z)", re.S)
    path.write_text(pattern.sub(lambda _: "\n".join(section(results)) + "\n", text, count=1))
