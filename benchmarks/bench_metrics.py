"""Benchmark: Dice + HD95 on a 256^3 pair, unetkit vs MONAI, measured side by side in one run.

Prints a table, writes JSON (``--json``) and replaces the ``metrics`` section of
``docs/BENCHMARKS.md`` (unless ``--no-docs``). ``--large`` also times unetkit alone on a
512x512x300 pair (the size the toolkit promises to handle in seconds).

    .venv/bin/python benchmarks/bench_metrics.py [--repeats 3] [--large]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy.ndimage import zoom

from unetkit.metrics import case_metrics

ROOT = Path(__file__).resolve().parents[1]
SPACING = (1.5, 0.8, 0.8)


def make_pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An organ-like ellipsoid and a prediction with a smoothly deformed, shifted boundary."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    grid = np.meshgrid(*axes, indexing="ij", sparse=True)
    radius = sum((g / r) ** 2 for g, r in zip(grid, (0.6, 0.5, 0.55), strict=True))
    coarse = rng.standard_normal((8, 8, 8)).astype(np.float32)
    wobble = zoom(coarse, [n / 8 for n in shape], order=1, output=np.float32)
    gt = radius < 1.0
    shifted = sum((g - d) ** 2 / r**2 for g, d, r in
                  zip(grid, (0.03, -0.02, 0.0), (0.6, 0.5, 0.55), strict=True))
    pred = shifted + 0.08 * wobble < 1.0
    return pred.astype(np.uint8), gt.astype(np.uint8)


def time_call(function: Callable[[], dict[str, float]], repeats: int) -> tuple[float, dict]:
    """Median wall time over ``repeats`` runs and the last result."""
    times, result = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def unetkit_run(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    return case_metrics(pred, gt, [1], spacing=SPACING, metrics=("dice", "hd95"))[1]


def monai_run(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    p = torch.from_numpy(pred == 1)[None, None]
    g = torch.from_numpy(gt == 1)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = compute_dice(p.float(), g.float(), include_background=True)
        hd = compute_hausdorff_distance(p, g, include_background=True, percentile=95,
                                        spacing=SPACING)
    return {"dice": float(dice), "hd95": float(hd)}


def write_docs(results: dict, command: str) -> None:
    """Replace the text under ``<!-- section: metrics -->`` up to the next section anchor."""
    path = ROOT / "docs" / "BENCHMARKS.md"
    big = results["cases"][0]
    lines = [
        "<!-- section: metrics -->",
        "## Metrics: Dice + HD95 on a 256^3 pair",
        "",
        f"Command: `{command}` ({results['machine']}, torch {results['torch']}, "
        f"{results['repeats']} repeats, median).",
        "Ellipsoid vs deformed/shifted prediction, spacing (1.5, 0.8, 0.8) mm; MONAI "
        "`compute_dice` + `compute_hausdorff_distance(percentile=95)` from the same label maps.",
        "",
        "| pair | unetkit (s) | MONAI (s) | MONAI / unetkit | Dice (both) | HD95 mm (both) |",
        "|---|---|---|---|---|---|",
        f"| {big['shape']} | {big['unetkit_s']:.2f} | {big['monai_s']:.2f} | "
        f"{big['speedup']:.2f}x | {big['unetkit']['dice']:.4f} / {big['monai']['dice']:.4f} | "
        f"{big['unetkit']['hd95']:.3f} / {big['monai']['hd95']:.3f} |",
    ]
    if "large" in results:
        large = results["large"]
        lines += ["", f"unetkit alone on a {large['shape']} pair (Dice + HD95): "
                  f"{large['unetkit_s']:.2f} s."]
    text = path.read_text()
    section = "\n".join(lines) + "\n\n"
    pattern = re.compile(r"<!-- section: metrics -->.*?(?=<!-- section: |\Z)", re.S)
    path.write_text(pattern.sub(lambda _: section, text, count=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--large", action="store_true", help="also time a 512x512x300 pair")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" /
                        "metrics.json")
    parser.add_argument("--no-docs", action="store_true", help="do not edit docs/BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(2)

    shape = (args.size,) * 3
    pred, gt = make_pair(shape)
    ours_s, ours = time_call(lambda: unetkit_run(pred, gt), args.repeats)
    monai_s, ref = time_call(lambda: monai_run(pred, gt), args.repeats)
    case = {"shape": "x".join(map(str, shape)), "unetkit_s": ours_s, "monai_s": monai_s,
            "speedup": monai_s / ours_s, "unetkit": ours, "monai": ref}
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
               "torch": torch.__version__, "repeats": args.repeats, "cases": [case]}
    print(f"{'pair':<14}{'unetkit s':>11}{'MONAI s':>10}{'ratio':>8}{'dice':>9}{'hd95':>9}")
    print(f"{case['shape']:<14}{ours_s:>11.2f}{monai_s:>10.2f}{case['speedup']:>7.2f}x"
          f"{ours['dice']:>9.4f}{ours['hd95']:>9.3f}")
    print(f"{'(MONAI)':<43}{ref['dice']:>9.4f}{ref['hd95']:>9.3f}")
    if args.large:
        del pred, gt
        big_pred, big_gt = make_pair((512, 512, 300))
        large_s, large = time_call(lambda: unetkit_run(big_pred, big_gt), 1)
        results["large"] = {"shape": "512x512x300", "unetkit_s": large_s, "unetkit": large}
        print(f"{'512x512x300':<14}{large_s:>11.2f}{'-':>10}{'-':>8}{large['dice']:>9.4f}"
              f"{large['hd95']:>9.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    if not args.no_docs:
        command = "python benchmarks/bench_metrics.py" + (" --large" if args.large else "")
        write_docs(results, command)


if __name__ == "__main__":
    main()
