"""``make_plan``: a data folder and a time budget -> a complete config, each value with its reason.

1. the fingerprint (``unetkit.plan.fingerprint``);
2. the rules (``unetkit.plan.rules``, ``task_rules``): dimensionality, spacing, normalisation,
   patch and pooling, batch, loss and decision, augmentation, sampling, validation;
3. the budget (``unetkit.plan.candidates``): candidate networks (first-stage widths
   ``CANDIDATE_WIDTHS``) are timed on the device for a few real training steps, each in the
   memory layout it would train in, and the widest one that still affords ``ENOUGH_STEPS``
   optimisation steps in the budget is chosen (the narrowest when none does). The rule and its
   evidence (steps reached and held-out scores on three real data sets): ``docs/planner.md``;
4. on a GPU whose step is launch-bound (``unetkit.plan.grow``): the chosen step grows in patch,
   batch and width up to the device's memory (``unetkit.plan.memory``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from unetkit.config import Config, apply_values, parse_duration
from unetkit.config.run_schema import BINARY_LOSSES
from unetkit.plan import memory, rules, task_rules
from unetkit.plan.candidates import (  # noqa: F401 - the budget rule's names, re-exported
    CANDIDATE_WIDTHS,
    ENOUGH_STEPS,
    LAYOUT_GAIN,
    TRAIN_SHARE,
    choose_width,
    layout_decision,
)
from unetkit.plan.fingerprint import Fingerprint, fingerprint_dataset
from unetkit.plan.grow import grow
from unetkit.plan.plan_types import Plan, size_text
from unetkit.plan.rules import Decision
from unetkit.plan.user import UserChoices
from unetkit.runtime.device import pick_device

log = logging.getLogger(__name__)

# 2D budgets too short for ENOUGH_STEPS full-size steps train on patches SHRINK times smaller
# (same batch). Not below SMALL_PATCH_VOXELS.
SHRINK = 4
SMALL_PATCH_VOXELS = 128 * 128
DEFAULT_BUDGET_S = 600.0  # planning without a budget: as for ten minutes


def _apply(config: Config, decisions: list[Decision]) -> Config:
    return apply_values(config, {d.field: d.value for d in decisions}, source="plan")


def _value(decisions: list[Decision], name: str, default: Any = None) -> Any:
    for decision in reversed(decisions):
        if decision.field == name:
            return decision.value
    return default


def plan_rules(fp: Fingerprint, slices: bool = False, shrink: int = 1) -> list[Decision]:
    """Every rule-based decision for a fingerprint (no timing); ``slices``: volumes as 2D
    slices (the alternative the budget may choose); ``shrink``: patches and voxels per step
    ``shrink`` times smaller (the batch stays), for budgets too short for full-size steps."""
    decisions = rules.dimensionality(fp, slices)
    dims, slice_axis = _value(decisions, "model.spatial_dims"), _value(decisions,
                                                                       "data.slice_axis")
    decisions += rules.target_spacing(fp, slice_axis)
    shape, spacing = rules.planning_grid(fp, _value(decisions, "data.target_spacing"),
                                         slice_axis)
    decisions += rules.normalization(fp)
    full = rules.network_shape(shape, spacing, dims)
    batch = rules.batch_size(_value(full, "data.patch_size"), dims)
    if shrink > 1:  # each axis of the full-size patch shrink ** (1 / dims) times shorter
        full_patch = _value(full, "data.patch_size")
        full = rules.network_shape([n / shrink ** (1 / dims) for n in full_patch], spacing, dims)
        why = (f"the budget affords fewer than {ENOUGH_STEPS[dims]} steps of the narrowest network "
               f"at the full-size patch {size_text(full_patch)}")
        full = [Decision(d.field, d.value, f"{shrink}x fewer voxels per patch: {why}")
                if d.field == "data.patch_size" else d for d in full]
        batch = Decision(batch.field, batch.value, f"the full-size batch, kept: {why}")
    decisions += [*full, batch]
    anisotropic = max(spacing) > rules.ANISOTROPY * min(spacing)
    decisions += task_rules.loss_and_decision(fp)
    decisions += task_rules.augmentation(fp, dims, anisotropic)
    decisions += task_rules.image_offset(fp)
    decisions += task_rules.sampling_and_split(fp)
    labels = len(fp.label_fractions)
    sigmoid = _value(decisions, "train.loss.name") in BINARY_LOSSES
    outputs = (len(fp.regions), f"{len(fp.regions)} regions (a sigmoid output each)") \
        if fp.regions else (1 if sigmoid else labels,
                            f"{labels} labels" + (" (one sigmoid output)" if sigmoid else ""))
    slices = 2 * _value(decisions, "data.slice_context", 0) + 1  # 2.5D: slices per input
    decisions += [Decision("model.in_channels", fp.channels * slices, "channels of the images"
                           + (f" x {slices} slices" if slices > 1 else "")),
                  Decision("model.out_channels", *outputs),
                  Decision("model.norm", "instance", "instance norm (nnU-Net): independent of "
                           "the small CPU batches"),
                  Decision("model.deep_supervision", True, "deep supervision (nnU-Net): "
                           "faster learning of the coarse decoder stages"),
                  Decision("train.lr", 0.002, "AdamW 2e-3 with a poly schedule planned to the "
                           "end of the budget")]
    return decisions


def make_plan(data_dir: str | Path, time_budget: str | None = None, *, device: str = "auto",
              fingerprint: Fingerprint | None = None, elapsed_s: float = 0.0,
              progress: Callable[[str], None] | None = None,
              user: UserChoices | None = None) -> Plan:
    """Plan a run on ``data_dir`` for ``time_budget`` (e.g. ``"15m"``) on ``device``.

    Volumes that a 3D network could take are also planned as 2D slices; the budget decides:
    3D when one of its candidates affords ``ENOUGH_STEPS[3]`` steps, else the 2D plan.

    Args:
        data_dir: the data folder (``unetkit.data`` layouts).
        time_budget: the whole run's budget; None plans as for ten minutes and trains
            ``train.epochs`` epochs.
        device: where the candidates are timed and the run will train.
        fingerprint: an already computed fingerprint (else read from ``data_dir``).
        elapsed_s: seconds of the budget already used (planning included by the caller).
        progress: called with one line per step of the planning.
        user: what the user fixed (``--set``, options): laid over every planned config
            before it is timed, so the timings are of what will train; a fixed
            ``data.slice_axis`` or ``model.spatial_dims`` is not planned the other way, a
            fixed ``data.patch_size`` not shrunk.
    """
    user = user or UserChoices()
    fp = fingerprint or fingerprint_dataset(data_dir,
                                            ignore_label=user.value("data.ignore_label"))
    if user.value("data.regions"):  # regions set by hand: one output each
        chosen = user.apply(Config()).data
        fp = replace(fp, regions=[r.model_dump() for r in chosen.regions or []],
                     regions_class_order=chosen.regions_class_order)
    budget_s = parse_duration(time_budget) if time_budget else DEFAULT_BUDGET_S
    values = {"train.device": device, "train.time_budget": time_budget}
    fixed = user.fields

    def timed(slices: bool = False, shrink: int = 1) -> Plan:
        return _timed_plan(fp, plan_rules(fp, slices, shrink), values, budget_s - elapsed_s,
                           progress, user)

    plan = timed(slices=user.value("data.slice_axis") is not None)
    if plan.config.model.spatial_dims == 3 and not fixed & {"model.spatial_dims",
                                                            "data.slice_axis"} \
            and not any(c.chosen and c.steps >= ENOUGH_STEPS[3] for c in plan.candidates):
        plan = _instead(plan, timed(slices=True))
    if _too_few_steps(plan) and math.prod(plan.config.data.patch_size) > SMALL_PATCH_VOXELS \
            and "data.patch_size" not in fixed:
        plan = _instead(plan, timed(plan.config.data.slice_axis is not None, SHRINK))
    plan.decisions = user.marked(plan.decisions, plan.config)  # "from --init" where it fixes
    log.info("plan: %s", ", ".join(f"{d.field}={d.value}" for d in plan.decisions))
    return plan


def _instead(old: Plan, new: Plan) -> Plan:
    """``new``, listing the candidates ``old`` timed too (not chosen)."""
    for candidate in old.candidates:
        candidate.chosen = False
    new.candidates = old.candidates + new.candidates
    return new


def _too_few_steps(plan: Plan) -> bool:
    """A 2D plan whose chosen (narrowest) candidate affords fewer than ``ENOUGH_STEPS`` steps."""
    dims = plan.config.model.spatial_dims
    return dims == 2 and not any(c.chosen and c.steps >= ENOUGH_STEPS[dims]
                                 for c in plan.candidates)


def _timed_plan(fp: Fingerprint, decisions: list[Decision], values: dict[str, Any],
                budget_s: float, progress: Callable[[str], None] | None,
                user: UserChoices) -> Plan:
    """Rule decisions + timed width candidates (grown on a launch-bound GPU) + the layout they
    were timed in + the validation period, as a ``Plan``; the user's choices are laid over the
    config after every step."""
    def settle(config: Config, new: list[Decision]) -> Config:
        return user.apply(_apply(config, new))

    config = settle(apply_values(Config(), values, source="plan"), decisions)
    dims = config.model.spatial_dims
    budget_s = max(budget_s, 1.0)
    bound = memory.memory_bound(pick_device(config.train.device))
    candidates, width = choose_width(config, budget_s, dims, progress, user.sizes_network(),
                                     estimate=bound is not None)
    config = settle(config, width)
    decisions = [*decisions, *width]
    grown = None if bound is None else grow(config, candidates, fp, budget_s, bound,
                                            lambda c: settle(c, []), user.fields,
                                            width[0].reason, progress)
    if grown is not None:
        candidates += grown.candidates
        config, decisions = grown.config, _replaced(decisions, grown.decisions)
    chosen = next(c for c in candidates if c.chosen)
    layout = layout_decision(config, chosen)
    decisions += layout
    config = settle(config, layout)
    d = config.data
    val_cases = round(fp.cases * d.val_fraction)
    passes = chosen.steps * d.batch_size * math.prod(d.patch_size) / max(
        (fp.cases - val_cases) * rules.case_voxels(fp, d.target_spacing), 1.0)
    augment = task_rules.augmentation_for_passes(fp, passes, d.augment.affine_prob)
    decisions += augment
    config = settle(config, augment)
    val_voxels = val_cases * math.prod(fp.median_shape)
    decisions.append(rules.validation_period(
        chosen.step_s, config.train.steps_per_epoch, val_voxels,
        2 ** len(config.infer.tta_axes), math.prod(d.patch_size) * d.batch_size))
    return Plan(settle(config, decisions[-1:]), fp, decisions, candidates)


def _replaced(decisions: list[Decision], new: list[Decision]) -> list[Decision]:
    """``decisions`` with each field of ``new`` decided by ``new`` (in place, else appended)."""
    by_field = {d.field: d for d in new}
    out = [by_field.pop(d.field, d) for d in decisions]
    return out + list(by_field.values())


def steps_per_second(plan: Plan) -> float:
    """The chosen candidate's training steps per second."""
    chosen = next(c for c in plan.candidates if c.chosen)
    return 1.0 / chosen.step_s if chosen.step_s > 0 else math.inf
