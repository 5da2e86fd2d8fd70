"""A plan that fills a GPU: a launch-bound step grows in patch, batch and width up to the
device's memory.

On a CPU a step's time grows with the width and the voxels per step, and the budget rule
(``candidates.choose_width``) sizes the run. Small steps on a GPU are bound by kernel launches,
not arithmetic: on an H200, hippocampus 3D steps (batch 4 of 40x56x40) took 0.023 s at base 16
and 0.020 s at base 32, and the CPU rule stopped at base 32 with 7763 steps affordable in 3
minutes. When the widest candidate's step is at most ``LAUNCH_BOUND`` times the narrowest's,
the step is launch-bound and the plan grows, one doubling at a time, in turn:

- the patch, towards the median image (nnU-Net: context first; the CPU cap of
  ``rules.PATCH_VOXELS`` does not apply), with the pooling that fits it;
- the batch, up to nnU-Net's cap: a batch covers at most ``DATASET_SHARE`` of the data set's
  voxels (hippocampus, 260 cases: batch 9 of 40x56x40);
- the first-stage width, up to ``GROWN_WIDTH`` (stages capped at ``rules.MAX_WIDTH``).

A grown candidate is timed like the others (``candidates.time_candidate``; on CUDA with its
peak memory) and kept while its step takes at most ``LAUNCH_BOUND`` times the launch-bound step,
affords ``ENOUGH_STEPS`` and fits the memory bound (``memory.memory_bound``: a share of the free
GPU memory); one that an estimate already puts over the bound is not timed. An axis stops at
its cap or its first refusal, which the plan prints. Only devices with a memory bound (CUDA)
grow: a CPU plan is the budget rule's alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unetkit.config import Config, apply_values, field_value
from unetkit.plan import memory, rules
from unetkit.plan.candidates import ENOUGH_STEPS, time_candidate
from unetkit.plan.fingerprint import Fingerprint
from unetkit.plan.plan_types import Candidate, gib, size_text
from unetkit.plan.rules import Decision

LAUNCH_BOUND = 1.25  # a step at most this much dearer for 2-4x the work: launch-bound
DATASET_SHARE = 0.05  # nnU-Net: a batch covers at most 5% of the data set's voxels
GROWN_WIDTH = 64  # widest first stage a launch-bound plan grows to (nnU-Net plans 32)
MAX_GROWTHS = 12  # grown candidates timed at most
AXES = ("patch", "batch", "width")
CAPS = {"patch": "at the median image", "batch": f"at {DATASET_SHARE:.0%} of the data set's "
        "voxels", "width": f"at base {GROWN_WIDTH}"}
# What each axis changes, and the user-fixed fields that keep it from growing.
FIELDS = {"patch": ("data.patch_size", "model.depth", "model.strides", "model.kernel_sizes"),
          "batch": ("data.batch_size",), "width": ("model.widths", "model.base_width")}
FIXING = {"patch": {"data.patch_size", "model.depth", "model.strides", "model.kernel_sizes",
                    "model.widths", "model.base_width"},
          "batch": {"data.batch_size"}, "width": {"model.widths", "model.base_width",
                                                  "model.depth"}}


@dataclass
class Growth:
    """The grown config, its chosen candidate, the grown candidates timed (kept or not) and
    the decisions that replace the budget rule's for the fields that grew."""

    config: Config
    chosen: Candidate
    candidates: list[Candidate] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)


def launch_bound(candidates: list[Candidate]) -> str | None:
    """Why the budget rule's candidates (narrowest first) show a launch-bound step, or None:
    the widest was chosen and its step takes at most ``LAUNCH_BOUND`` times the narrowest's."""
    if len(candidates) < 2 or not candidates[-1].chosen:
        return None
    narrow, wide = candidates[0], candidates[-1]
    if wide.step_s > LAUNCH_BOUND * narrow.step_s:
        return None
    return (f"base {narrow.base_width} {narrow.step_s:.3f} s/step, base {wide.base_width} "
            f"{wide.step_s:.3f} s/step: the step does not grow with width, it is bound by "
            "kernel launches, not arithmetic")


def grow(config: Config, candidates: list[Candidate], fp: Fingerprint, budget_s: float,
         bound: int, settle: Callable[[Config], Config], fixed: set[str],
         width_reason: str = "", progress: Callable[[str], None] | None = None
         ) -> Growth | None:
    """Grow the chosen candidate of ``candidates`` (the budget rule's, timed on ``config``)
    while its step stays launch-bound and under ``bound`` bytes; None when the step is not
    launch-bound. ``settle`` lays the user's choices over a grown config; ``fixed``: the
    fields the user set (their axes do not grow); ``width_reason``: the budget rule's reason
    for ``model.widths``, extended when the width does not grow."""
    why = launch_bound(candidates)
    if why is None:
        return None
    floor = max(c.step_s for c in candidates)
    growth = Growth(config, next(c for c in candidates if c.chosen))
    axes = [axis for axis in AXES if not FIXING[axis] & fixed]
    stops = {axis: f"set by you ({', '.join(sorted(FIXING[axis] & fixed))})" for axis in AXES
             if axis not in axes}
    while axes and len(growth.candidates) < MAX_GROWTHS:
        for axis in list(axes):
            stop = _try(axis, growth, fp, budget_s, bound, floor, settle, progress)
            if stop:
                stops[axis] = stop
                axes.remove(axis)
    stops.update({axis: f"after {MAX_GROWTHS} grown candidates" for axis in axes})
    growth.decisions = _decisions(config, growth, why, floor, bound, stops, width_reason)
    return growth


def _try(axis: str, growth: Growth, fp: Fingerprint, budget_s: float, bound: int,
         floor: float, settle: Callable[[Config], Config],
         progress: Callable[[str], None] | None) -> str:
    """Grow ``axis`` of ``growth`` once; '' when kept, else why the axis stops."""
    values = _proposal(axis, growth.config, fp)
    if values is None:
        return CAPS[axis]
    config = settle(apply_values(growth.config, values, source="plan"))
    predicted = _predicted_memory(config, growth)
    what = _step_text(config)
    if predicted > bound:
        return f"{what} would need about {gib(predicted)}, over the memory bound"
    candidate = time_candidate(config, budget_s)
    if candidate.memory_bytes is None:
        candidate.memory_bytes = predicted
    growth.candidates.append(candidate)
    if candidate.step_s > LAUNCH_BOUND * floor:
        candidate.note = f"over {LAUNCH_BOUND:g}x the launch-bound {floor:.3f} s/step"
    elif candidate.steps < ENOUGH_STEPS[config.model.spatial_dims]:
        candidate.note = f"fewer than {ENOUGH_STEPS[config.model.spatial_dims]} steps"
    elif candidate.memory_bytes > bound:
        candidate.note = "over the memory bound"
    if progress is not None:
        progress(candidate.describe())
    if candidate.note:
        return f"{what}: {candidate.note}"
    growth.chosen.chosen, candidate.chosen = False, True
    growth.config, growth.chosen = config, candidate
    return ""


def _proposal(axis: str, config: Config, fp: Fingerprint) -> dict[str, Any] | None:
    """The config values of one doubling along ``axis``, None at its cap."""
    d, m = config.data, config.model
    dims, base = m.spatial_dims, m.widths[0] if m.widths else m.base_width
    if axis == "width":
        return None if 2 * base > GROWN_WIDTH else {
            "model.widths": rules.widths(2 * base, m.depth, dims), "model.base_width": 2 * base}
    if axis == "batch":
        data_voxels = fp.cases * rules.case_voxels(fp, d.target_spacing)
        cap = int(DATASET_SHARE * data_voxels / math.prod(d.patch_size))
        batch = min(2 * d.batch_size, cap)
        return {"data.batch_size": batch} if batch > d.batch_size else None
    shape, spacing = rules.planning_grid(fp, d.target_spacing, d.slice_axis)
    shaped = {x.field: x.value for x in rules.network_shape(shape, spacing, dims,
                                                           2 * math.prod(d.patch_size))}
    if math.prod(shaped["data.patch_size"]) <= math.prod(d.patch_size):
        return None
    depth = shaped["model.depth"]
    return {"model.strides": None, "model.kernel_sizes": None, **shaped,
            "model.widths": rules.widths(base, depth, dims)}


def _predicted_memory(config: Config, growth: Growth) -> int:
    """Bytes a step of ``config`` will take: the estimate, scaled by the measured peak of the
    current candidate to the estimate of its config where that was measured (on CUDA)."""
    estimate = memory.training_memory(config)
    current = growth.chosen
    if not current.memory_measured or not current.memory_bytes:
        return estimate
    return int(current.memory_bytes * estimate / memory.training_memory(growth.config))


def _step_text(config: Config) -> str:
    """``base 64, 8x40x56x40``."""
    d, m = config.data, config.model
    return f"base {m.widths[0] if m.widths else m.base_width}, " \
           f"{size_text([d.batch_size, *d.patch_size])}"


def _decisions(start: Config, growth: Growth, why: str, floor: float, bound: int,
               stops: dict[str, str], width_reason: str) -> list[Decision]:
    """A decision for every field that grew, and for ``model.widths`` in any case (after
    ``width_reason``, the budget rule's, when the width did not grow), quoting the kept
    candidate's measurement and why each axis stopped."""
    c = growth.chosen
    kept = "nothing grown fits" if growth.config is start else \
        f"kept {_step_text(growth.config)} at {c.timing()}, {gib(c.memory_bytes or 0)}"
    rule = (f"the GPU step is launch-bound ({why}); grown while a step takes at most "
            f"{LAUNCH_BOUND:g}x {floor:.3f} s and fits {gib(bound)} "
            f"({memory.MEMORY_SHARE:.0%} of the free memory): {kept}; stopped: "
            + "; ".join(f"{axis} {stops[axis]}" for axis in AXES if axis in stops))
    out = []
    for axis in AXES:
        for name in FIELDS[axis]:
            before, after = field_value(start, name), field_value(growth.config, name)
            if name == "model.base_width" and growth.config.model.widths:
                out.append(Decision(name, after, "the first stage of model.widths"))
            elif before != after:
                out.append(Decision(name, after, f"{before} -> {after}: {rule}"))
            elif name == "model.widths":
                out.append(Decision(name, after, f"{width_reason}; {rule}"))
    return out
