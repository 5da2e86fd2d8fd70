"""Issue 31: a plan that agrees with itself. The layout is part of each candidate, so the width
is chosen on the steps that will train; every number the plan prints is the measurement its
decision used; the written config's base width is the network's."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from unetkit.plan import planner
from unetkit.plan.user import UserChoices

CONTIGUOUS_S = {8: 0.13, 16: 0.26, 32: 0.52}  # s/step; channels-last steps take 2.2x as long


def _seconds(config) -> float:
    step = CONTIGUOUS_S[config.model.widths[0]]
    return step * (2.2 if config.train.channels_last == "on" else 1.0)


@pytest.fixture(scope="module")
def photographs(tmp_path_factory):
    """Three RGB photographs (3 x 288 x 320) with two-label masks of round blobs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("he")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:288, :320]
    for i in range(3):
        mask = np.zeros((288, 320), np.uint8)
        for cy, cx in rng.integers(30, 260, size=(6, 2)):
            mask[(yy - cy) ** 2 + (xx - cx) ** 2 < 20 ** 2] = 255
        image = (rng.random((288, 320, 3)) * 80 + mask[..., None] * 0.6).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"he{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"he{i}.png")
    return root


def test_the_width_is_the_widest_affordable_in_the_layout_it_trains_in(photographs,
                                                                       fake_steps):
    timed = fake_steps(_seconds)
    plan = planner.make_plan(photographs, "600s", device="cpu")
    chosen = next(c for c in plan.candidates if c.chosen)
    # 600 s x 0.85: contiguous base 8 3923 steps, 16 1961, 32 980; channels-last base 8 1783,
    # 16 891. Chosen on channels-last steps the width would be 8 (issue 31); contiguous: 16.
    assert plan.config.train.channels_last == "off" and chosen.layout == "contiguous"
    assert plan.config.model.widths[0] == 16 == chosen.base_width
    assert chosen.steps >= planner.ENOUGH_STEPS[2]
    wider = [c for c in plan.candidates if c.base_width == 32]
    assert wider and wider[0].layout == "contiguous" and wider[0].steps < planner.ENOUGH_STEPS[2]
    assert {(c.model.widths[0], c.train.channels_last) for c in timed} == {
        (w, layout) for w in (8, 16, 32) for layout in ("on", "off")}
    # the layout fixed by hand plans the same network
    fixed = planner.make_plan(photographs, "600s", device="cpu",
                              user=UserChoices({}, ["train.channels_last=off"]))
    assert fixed.config.model.widths == plan.config.model.widths


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def test_every_number_in_the_printed_plan_is_the_measurement_behind_it(photographs,
                                                                      fake_steps, tmp_path):
    from unetkit.cli import app
    from unetkit.config import load_config
    from unetkit.runtime.checkpoint import build_model_from_config

    fake_steps(_seconds)
    out = tmp_path / "plan.yaml"
    done = CliRunner().invoke(app, ["plan", str(photographs), "--time", "600s", "--device",
                                    "cpu", "-o", str(out)])
    assert done.exit_code == 0, done.output
    timing_lines = [line.removeprefix("timing ") for line in done.stderr.splitlines()
                    if line.startswith("timing ")]
    printed = [line.strip().removeprefix("candidate ").removesuffix("  <- chosen")
               for line in done.stdout.splitlines() if line.strip().startswith("candidate ")]
    assert timing_lines and printed == timing_lines  # stderr and stdout say the same
    step = re.compile(r"base width (\d+), \d+x\d+x\d+: ([\d.]+) s/step (\S+), (\d+) steps in "
                      r"the budget \((\S+) ([\d.]+) s/step\)")
    for line in printed:  # each candidate's numbers are its own timings in each layout
        assert step.search(line), line
        width, step_s, layout, steps, other, other_s = step.search(line).groups()
        contiguous_s = CONTIGUOUS_S[int(width)]
        assert (layout, other) == ("contiguous", "channels-last")
        assert (step_s, other_s) == (f"{contiguous_s:.3f}", f"{2.2 * contiguous_s:.3f}")
        assert int(steps) == int(600 * planner.TRAIN_SHARE / contiguous_s)
    text = out.read_text()
    comments = dict(line[2:].split(" = ", 1) for line in text.splitlines()
                    if line.startswith("# ") and " = " in line)
    chosen = next(c for c in printed if "base width 16," in c)
    measured = _numbers(chosen.split(": ", 1)[1])  # 0.260, 1961, 0.572
    widths_reason = comments["model.widths"].split(": ", 1)[1]
    assert _numbers(widths_reason) == [str(planner.ENOUGH_STEPS[2]), *measured[:2]]
    layout_reason = comments["train.channels_last"].split(": ", 1)[1]
    assert sorted(_numbers(layout_reason)[:2]) == sorted([measured[0], measured[2]])
    assert measured[1] in layout_reason
    assert f"# candidate {chosen} <- chosen" in text
    # the written config agrees with itself and builds the network the plan timed
    body = yaml.safe_load(text)
    assert body["model"]["base_width"] == body["model"]["widths"][0] == 16
    model = build_model_from_config(load_config(out))
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.out_channels == 16


def test_widths_you_set_are_written_with_their_base_width(photographs, fake_steps):
    fake_steps(_seconds)
    widths = [16, 32, 64, 128, 256, 512]
    plan = planner.make_plan(photographs, "600s", device="cpu",
                             user=UserChoices({}, [f"model.widths={widths}"]))
    assert plan.config.model.widths == widths and plan.config.model.base_width == 16
    assert [c.base_width for c in plan.candidates] == [16]
