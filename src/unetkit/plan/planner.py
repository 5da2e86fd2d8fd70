"""``make_plan``: a data folder and a time budget -> a complete config, each value with its reason.

1. the fingerprint (``unetkit.plan.fingerprint``);
2. the rules (``unetkit.plan.rules``, ``task_rules``): dimensionality, spacing, normalisation,
   patch and pooling, batch, loss and decision, augmentation, sampling, validation;
3. the budget: candidate networks (first-stage widths ``CANDIDATE_WIDTHS``) are timed on the
   device for a few real training steps, and the widest one that still affords ``ENOUGH_STEPS``
   optimisation steps in the budget is chosen (the narrowest when none does). The rule and its
   evidence (steps reached and held-out scores on three real data sets): ``docs/planner.md``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unetkit.config import Config, apply_values, parse_duration
from unetkit.config.run_schema import BINARY_LOSSES
from unetkit.plan import rules, task_rules
from unetkit.plan.fingerprint import Fingerprint, fingerprint_dataset
from unetkit.plan.plan_types import Candidate, Plan, size_text
from unetkit.plan.rules import Decision
from unetkit.plan.timing import time_steps
from unetkit.plan.user import UserChoices
from unetkit.runtime.device import pick_device

log = logging.getLogger(__name__)

# First-stage widths timed as candidates. 3D starts at 16: a width-8 3D U-Net never learned the
# smaller of the two hippocampus labels (Dice 0 after 100-400 steps, with instance or batch
# norm, lr 5e-4 or 2e-3) where width 16 learned both (short diagnostic runs, not kept;
# docs/planner.md).
CANDIDATE_WIDTHS = {2: (8, 16, 32), 3: (16, 32)}
# Steps a network needs at CPU budgets, one rule for width, patch and dimensionality: a wider
# candidate only when it affords them; when even the narrowest does not, 2D patches shrink and
# 3D volumes train as 2D slices. Evidence (docs/planner.md, section 3), single runs: on
# hippocampus 2D base 32 with 700 steps lost 0.014 mean Dice to base 16 with 1900, which beat
# base 8 with 4500 by 0.005 (results/peers_hip_2d, _zero, _w8), so the edge lies between 700 and
# 1900; 1500 within that range came from DRIVE runs whose results were not kept, and the kept
# DRIVE fold-0 pair (950 steps of 8x256^2 against 2300 of 8x128^2) does not separate them.
ENOUGH_STEPS = {2: 1500, 3: 800}
# 2D budgets too short for ENOUGH_STEPS full-size steps train on patches SHRINK times smaller
# (same batch). Not below SMALL_PATCH_VOXELS.
SHRINK = 4
SMALL_PATCH_VOXELS = 128 * 128
LAYOUT_GAIN = 0.95  # train contiguous when its step takes < 95% of the channels-last one
TRAIN_SHARE = 0.85  # of the budget left after planning: the rest validates and calibrates
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
    target = _value(decisions, "data.target_spacing") or list(fp.median_spacing)
    spacing = [t if t is not None else s for t, s in zip(target, fp.median_spacing, strict=True)]
    shape = [n * s / t for n, s, t in zip(fp.median_shape, fp.median_spacing, spacing,
                                          strict=True)]
    if slice_axis is not None:
        shape = [n for a, n in enumerate(shape) if a != slice_axis]
        spacing = [s for a, s in enumerate(spacing) if a != slice_axis]
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
    slices = 2 * _value(decisions, "data.slice_context", 0) + 1  # 2.5D: slices per input
    decisions += [Decision("model.in_channels", fp.channels * slices, "channels of the images"
                           + (f" x {slices} slices" if slices > 1 else "")),
                  Decision("model.out_channels", 1 if sigmoid else labels,
                           f"{labels} labels" + (" (one sigmoid output)" if sigmoid else "")),
                  Decision("model.norm", "instance", "instance norm (nnU-Net): independent of "
                           "the small CPU batches"),
                  Decision("model.deep_supervision", True, "deep supervision (nnU-Net): "
                           "faster learning of the coarse decoder stages"),
                  Decision("train.lr", 0.002, "AdamW 2e-3 with a poly schedule planned to the "
                           "end of the budget")]
    return decisions


def choose_width(config: Config, budget_s: float, dims: int,
                 progress: Callable[[str], None] | None = None, user_sized: bool = False
                 ) -> tuple[list[Candidate], Decision]:
    """Time the candidate widths, narrowest first, and keep the widest that affords
    ``ENOUGH_STEPS`` steps; timing stops at the first that does not (wider ones are slower).
    ``user_sized``: the user set the network's size, which is then the only candidate."""
    if user_sized:
        m = config.model
        chosen = _timed_candidate(config, m.widths[0] if m.widths else m.base_width, budget_s,
                                  progress)
        chosen.chosen = True
        return [chosen], Decision("model.widths", config.model.widths,
                                  f"the network you set ({chosen.steps} steps in the budget)")
    candidates: list[Candidate] = []
    for base in CANDIDATE_WIDTHS[dims]:
        widths = rules.widths(base, config.model.depth, dims)
        candidates.append(_timed_candidate(apply_values(config, {"model.widths": widths}), base,
                                           budget_s, progress))
        if candidates[-1].steps < ENOUGH_STEPS[dims]:
            break
    enough = [c for c in candidates if c.steps >= ENOUGH_STEPS[dims]]
    chosen = enough[-1] if enough else candidates[0]
    chosen.chosen = True
    reason = (f"widest candidate affording >= {ENOUGH_STEPS[dims]} steps in the budget "
              f"({chosen.steps} steps at {chosen.step_s:.2f} s; the threshold is placed by "
              "single runs, docs/planner.md)" if enough else
              f"no candidate affords {ENOUGH_STEPS[dims]} steps: the narrowest "
              f"({chosen.steps} steps)")
    return candidates, Decision("model.widths", rules.widths(chosen.base_width,
                                                             config.model.depth, dims), reason)


def _timed_candidate(config: Config, base_width: int, budget_s: float,
                     progress: Callable[[str], None] | None) -> Candidate:
    """``config``'s network timed on its device, with the steps it affords in the budget."""
    step_s = time_steps(config)
    d = config.data
    candidate = Candidate(base_width, step_s, _affordable_steps(step_s, budget_s),
                          spatial_dims=config.model.spatial_dims,
                          patch_size=list(d.patch_size), batch_size=d.batch_size)
    if progress is not None:
        progress(candidate.describe())
    return candidate


def _affordable_steps(step_s: float, budget_s: float) -> int:
    """Training steps of ``step_s`` seconds in the ``TRAIN_SHARE`` of ``budget_s``."""
    return int(budget_s * TRAIN_SHARE / step_s)


def choose_layout(config: Config, chosen: Candidate, budget_s: float) -> list[Decision]:
    """On a CPU, time the chosen network once more in the contiguous (NCHW) layout and train
    in whichever layout steps faster (``chosen`` is updated to it).

    Channels-last is not faster everywhere: on a 2-core AVX2 EPYC the default network's fp32
    training step was slower channels-last (docs/BENCHMARKS.md, training section), while
    inference was faster in it; timing both settles it per machine and network.
    """
    if config.train.channels_last != "auto" or pick_device(config.train.device).type != "cpu":
        return []
    contiguous_s = time_steps(apply_values(config, {"train.channels_last": "off"}))
    timing = f"{contiguous_s:.2f} s/step contiguous, {chosen.step_s:.2f} s channels-last"
    if contiguous_s >= LAYOUT_GAIN * chosen.step_s:
        return [Decision("train.channels_last", "on", f"{timing} on this CPU")]
    chosen.step_s = contiguous_s
    chosen.steps = _affordable_steps(contiguous_s, budget_s)
    return [Decision("train.channels_last", "off",
                     f"{timing} on this CPU: {chosen.steps} steps in the budget")]


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
    fp = fingerprint or fingerprint_dataset(data_dir)
    budget_s = parse_duration(time_budget) if time_budget else DEFAULT_BUDGET_S
    values = {"train.device": device, "train.time_budget": time_budget}
    user = user or UserChoices()
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
    """Rule decisions + timed width candidates + the validation period, as a ``Plan``; the
    user's choices are laid over the config after every step."""
    def settle(config: Config, new: list[Decision]) -> Config:
        return user.apply(_apply(config, new))

    config = settle(apply_values(Config(), values, source="plan"), decisions)
    dims = config.model.spatial_dims
    budget_s = max(budget_s, 1.0)
    candidates, width = choose_width(config, budget_s, dims, progress, user.sizes_network())
    config = settle(config, [width])
    chosen = next(c for c in candidates if c.chosen)
    layout = choose_layout(config, chosen, budget_s)
    decisions = [*decisions, width, *layout]
    config = settle(config, layout)
    d = config.data
    val_cases = round(fp.cases * d.val_fraction)
    passes = chosen.steps * d.batch_size * math.prod(d.patch_size) / max(
        (fp.cases - val_cases) * _case_voxels(fp, config), 1.0)
    augment = task_rules.augmentation_for_passes(fp, passes, d.augment.affine_prob)
    decisions += augment
    config = settle(config, augment)
    val_voxels = val_cases * math.prod(fp.median_shape)
    decisions.append(rules.validation_period(
        chosen.step_s, config.train.steps_per_epoch, val_voxels,
        2 ** len(config.infer.tta_axes), math.prod(d.patch_size) * d.batch_size))
    return Plan(settle(config, decisions[-1:]), fp, decisions, candidates)


def _case_voxels(fp: Fingerprint, config: Config) -> float:
    """Voxels of the median case at the planned target spacing (what training samples from)."""
    target = config.data.target_spacing or fp.median_spacing
    return math.prod(n * s / (t or s) for n, s, t in zip(fp.median_shape, fp.median_spacing,
                                                          target, strict=True))


def steps_per_second(plan: Plan) -> float:
    """The chosen candidate's training steps per second."""
    chosen = next(c for c in plan.candidates if c.chosen)
    return 1.0 / chosen.step_s if chosen.step_s > 0 else math.inf
