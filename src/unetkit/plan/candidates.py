"""Candidate networks, each timed on the device that will train it and in the layout it would
train in, and the budget rule that picks one (``choose_width``).

The memory layout is part of each candidate: on a CPU with ``train.channels_last: auto`` every
candidate is timed channels-last and contiguous, and its step is the faster one's (contiguous
when it takes under ``LAYOUT_GAIN`` of the channels-last step). Widths are compared on the
steps they would train, so the chosen width is the widest affordable in its own layout
(issue 31: a photograph plan chose base 8 on channels-last steps, then trained contiguous
steps 2.2x faster, in which base 16 was affordable). Elsewhere the config's own setting is
timed: on CUDA ``auto`` is the runtime's rule (``timing.training_precision``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from unetkit.config import Config, apply_values
from unetkit.plan import memory, rules, timing
from unetkit.plan.plan_types import LAYOUTS, Candidate
from unetkit.plan.rules import Decision
from unetkit.runtime.device import pick_device

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
# 3D: hippocampus on an AVX512-BF16 CPU, two seeds each, 3D base 16 with 1750-1800 steps (timed
# 1549) scored 0.005-0.007 below 2D slices base 32 with 3150-3250 (seed-to-seed spread 0.0015;
# results/peers_hip_dec5*), so 3D needs more than 1800 steps here (it was 800, placed by runs of
# 350-550 steps); where above 2000 3D overtakes slices is not measured.
ENOUGH_STEPS = {2: 1500, 3: 2000}
LAYOUT_GAIN = 0.95  # train contiguous when its step takes < 95% of the channels-last one
TRAIN_SHARE = 0.85  # of the budget left after planning: the rest validates and calibrates


def affordable_steps(step_s: float, budget_s: float) -> int:
    """Training steps of ``step_s`` seconds in the ``TRAIN_SHARE`` of ``budget_s``."""
    return 0 if math.isinf(step_s) else int(budget_s * TRAIN_SHARE / step_s)


def layouts_to_time(config: Config) -> list[str]:
    """The ``train.channels_last`` settings a candidate is timed in: both on a CPU when the
    config leaves it to ``auto`` (which one is faster depends on the CPU, the network and the
    precision: 0-20% either way on an AVX2 EPYC, 2.2x for contiguous bf16 steps on an
    AVX512-BF16 one), else the config's own (on CUDA ``auto`` is the runtime's rule)."""
    cpu = pick_device(config.train.device).type == "cpu"
    return ["on", "off"] if config.train.channels_last == "auto" and cpu \
        else [config.train.channels_last]


def time_candidate(config: Config, budget_s: float,
                   progress: Callable[[str], None] | None = None, estimate: bool = False
                   ) -> Candidate:
    """``config``'s network timed in each layout of ``layouts_to_time``; the candidate holds
    the layout it would train in and that layout's step, and its step's peak memory where the
    timing measured it (CUDA), else the estimate when ``estimate`` asks for one. ``progress``
    gets the line the plan prints for it."""
    device = pick_device(config.train.device)
    timed = {}
    for setting in layouts_to_time(config):
        layout_config = apply_values(config, {"train.channels_last": setting}, source="plan")
        layout = LAYOUTS[timing.training_precision(layout_config, device).channels_last]
        timed[layout] = timing.time_steps(layout_config)
    layout = next(iter(timed))
    if len(timed) == 2:
        faster = timed["contiguous"].step_s < LAYOUT_GAIN * timed["channels-last"].step_s
        layout = "contiguous" if faster else "channels-last"
    used = timed.pop(layout)
    other = next(iter(timed.values()), None)
    d, m = config.data, config.model
    candidate = Candidate(
        m.widths[0] if m.widths else m.base_width, used.step_s,
        affordable_steps(used.step_s, budget_s), spatial_dims=m.spatial_dims,
        patch_size=list(d.patch_size), batch_size=d.batch_size, layout=layout,
        other_layout_s=other.step_s if other is not None else None,
        memory_bytes=used.peak_bytes, memory_measured=used.peak_bytes is not None)
    if estimate and candidate.memory_bytes is None:
        candidate.memory_bytes = memory.training_memory(config)
    if progress is not None:
        progress(candidate.describe())
    return candidate


def choose_width(config: Config, budget_s: float, dims: int,
                 progress: Callable[[str], None] | None = None, user_sized: bool = False,
                 estimate: bool = False) -> tuple[list[Candidate], list[Decision]]:
    """Time the candidate widths, narrowest first, and keep the widest that affords
    ``ENOUGH_STEPS`` steps in its own layout; timing stops at the first that does not (wider
    ones are slower). ``user_sized``: the user set the network's size, which is then the only
    candidate; ``estimate``: estimate the memory of candidates it is not measured for.
    Returns the candidates and the ``model.widths`` / ``model.base_width`` decisions, whose
    reasons quote the chosen candidate's measurement."""
    if user_sized:
        chosen = time_candidate(config, budget_s, progress, estimate)
        chosen.chosen = True
        return [chosen], _width_decisions(config.model.widths, "the network you set "
                                          f"({chosen.timing()} in the budget)")
    candidates: list[Candidate] = []
    for base in CANDIDATE_WIDTHS[dims]:
        widths = rules.widths(base, config.model.depth, dims)
        candidates.append(time_candidate(apply_values(config, {"model.widths": widths},
                                                      source="plan"), budget_s, progress,
                                         estimate))
        if candidates[-1].steps < ENOUGH_STEPS[dims]:
            break
    enough = [c for c in candidates if c.steps >= ENOUGH_STEPS[dims]]
    chosen = enough[-1] if enough else candidates[0]
    chosen.chosen = True
    reason = (f"widest candidate affording >= {ENOUGH_STEPS[dims]} steps in the budget "
              f"({chosen.timing()}; the threshold is placed by single runs, docs/planner.md)"
              if enough else
              f"no candidate affords {ENOUGH_STEPS[dims]} steps: the narrowest "
              f"({chosen.timing()})")
    return candidates, _width_decisions(rules.widths(chosen.base_width, config.model.depth,
                                                     dims), reason)


def _width_decisions(widths: list[int] | None, reason: str) -> list[Decision]:
    """``model.widths`` with ``reason``, and ``model.base_width`` matching its first stage, so
    a written config never shows a base width the network does not have."""
    decisions = [Decision("model.widths", widths, reason)]
    if widths:
        decisions.append(Decision("model.base_width", widths[0], "the first stage of "
                                  "model.widths (which sets every stage)"))
    return decisions


def layout_decision(config: Config, chosen: Candidate) -> list[Decision]:
    """``train.channels_last`` as the chosen candidate was timed: on/off when both layouts
    were (a CPU with ``auto``), nothing otherwise (the config's setting stays)."""
    if chosen.other_layout_s is None:
        return []
    other = LAYOUTS[chosen.layout == "contiguous"]
    timing_text = (f"{chosen.step_s:.3f} s/step {chosen.layout}, {chosen.other_layout_s:.3f} "
                   f"s/step {other} on this CPU")
    if chosen.layout == "channels-last":
        return [Decision("train.channels_last", "on", f"{timing_text}: contiguous is not "
                         f"under {LAYOUT_GAIN:.0%} of channels-last")]
    return [Decision("train.channels_last", "off", f"{timing_text}: {chosen.steps} steps in "
                     "the budget")]
