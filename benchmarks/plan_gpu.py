"""Benchmark: what the planner plans on a GPU, and how its memory estimate compares with the
peaks it measures.

    python benchmarks/plan_gpu.py ../shared/data/hippocampus --time 3m \\
        --json benchmarks/results/plan_gpu_hippocampus.json

Plans DATA for the budget on the device (``unetkit plan``'s planner, nothing trained) and prints
one row per timing the planner ran: network, batch x patch, layout setting, seconds per step,
the peak memory measured while timing, the estimate (``unetkit.plan.memory``) and their ratio;
then the plan's candidate lines and its width, batch and patch decisions. On a GPU the
planner grows a launch-bound step up to the memory bound (docs/planner.md, section 3); without
CUDA the script says so and exits 0 (``--device cpu`` plans on the CPU anyway).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", help="data folder")
    parser.add_argument("--time", default="3m", help="training budget to plan for")
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()

    import torch

    from unetkit.plan import memory, planner, timing

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: skipped")
        return
    device = torch.device(args.device)
    bound = memory.memory_bound(device)
    timed = []  # (config, StepTiming) of every timing the planner ran
    original = timing.time_steps

    def recording(config, *rest, **options):  # noqa: ANN001, ANN002, ANN003, ANN202
        result = original(config, *rest, **options)
        timed.append((config, result))
        return result

    timing.time_steps = recording
    plan = planner.make_plan(args.data, args.time, device=args.device,
                             progress=lambda line: print(f"timing {line}", file=sys.stderr))
    rows = [{"dims": c.model.spatial_dims, "widths": c.model.widths, "batch": c.data.batch_size,
             "patch": c.data.patch_size, "channels_last": c.train.channels_last,
             "step_s": t.step_s, "peak_bytes": t.peak_bytes, "out_of_memory": t.out_of_memory,
             "estimate_bytes": memory.training_memory(c)} for c, t in timed]
    print(f"memory bound: {bound / 2**30:.2f} GiB" if bound else "memory bound: none")
    print("| dims | widths | batch x patch | channels_last | s/step | peak GiB | estimate GiB | "
          "estimate / peak |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        peak = r["peak_bytes"] or 0
        print(f"| {r['dims']}D | {r['widths']} | {'x'.join(map(str, [r['batch'], *r['patch']]))}"
              f" | {r['channels_last']} | {r['step_s']:.3f} | {peak / 2**30:.2f} | "
              f"{r['estimate_bytes'] / 2**30:.2f} | "
              f"{r['estimate_bytes'] / peak if peak else float('nan'):.2f} |")
    for c in plan.candidates:
        print(f"candidate {c.describe()}" + ("  <- chosen" if c.chosen else ""))
    for d in plan.decisions:
        if d.field in ("model.widths", "data.batch_size", "data.patch_size"):
            print(f"{d.field} = {d.value}: {d.reason}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "data": args.data, "time": args.time, "device": torch.cuda.get_device_name(device)
            if device.type == "cuda" else "cpu", "memory_bound_bytes": bound, "timings": rows,
            "candidates": [c.describe() for c in plan.candidates],
            "decisions": [[d.field, d.value, d.reason] for d in plan.decisions]}, indent=1))


if __name__ == "__main__":
    main()
