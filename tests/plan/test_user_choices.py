"""What the user fixes (``--set``, options) is what the planner times, and the run keeps it."""

from __future__ import annotations

import pytest

from unetkit.data.synthetic import write_blobs_dataset
from unetkit.plan import planner
from unetkit.plan.auto import run_config
from unetkit.plan.user import UserChoices


@pytest.fixture(scope="module")
def iso3d(tmp_path_factory):
    return write_blobs_dataset(tmp_path_factory.mktemp("iso") / "d", 4, (32, 40, 32))


@pytest.fixture
def timed(fake_steps):
    """Record every timed config; a step costs 0.1 s per 100,000 voxels x width / 16, and
    twice that with the clDice loss."""
    configs = []

    def fake(config):
        configs.append(config)
        d, m = config.data, config.model
        voxels = d.batch_size
        for n in d.patch_size:
            voxels *= n
        width = m.widths[0] if m.widths else m.base_width
        loss = 2.0 if config.train.loss.name.startswith("cldice") else 1.0
        return 0.1 * voxels / 1e5 * width / 16 * loss

    fake_steps(fake)
    return configs


def test_the_planner_times_the_loss_and_batch_the_user_set(timed, iso3d):
    plain = planner.make_plan(iso3d, "6000s", device="cpu")  # 3D: >= ENOUGH_STEPS[3]
    assert plain.config.model.spatial_dims == 3
    steps = {c.base_width: c.steps for c in plain.candidates if c.spatial_dims == 3}
    timed.clear()
    user = UserChoices({"train.time_budget": "6000s"},
                       ["train.loss.name=cldice", "data.batch_size=1"])
    plan = planner.make_plan(iso3d, "6000s", device="cpu", user=user)
    assert timed and all(c.train.loss.name == "cldice" and c.data.batch_size == 1
                         for c in timed)
    chosen = next(c for c in plan.candidates if c.chosen)
    assert chosen.batch_size == 1
    # a step of batch 1 with a loss twice as dear: the same network affords 2x fewer steps
    # per sample than batch 4 would; the steps counted are of the step that will train
    planned_batch = plain.config.data.batch_size
    assert chosen.steps == pytest.approx(steps[chosen.base_width] * planned_batch / 2, rel=0.01)
    assert plan.config.train.loss.name == "cldice" and plan.config.data.batch_size == 1


def test_a_network_the_user_sized_is_the_only_candidate(timed, iso3d):
    user = UserChoices({}, ["model.base_width=8"])
    plan = planner.make_plan(iso3d, "600s", device="cpu", user=user)
    assert [(c.base_width, c.chosen) for c in plan.candidates] == [(8, True)]
    assert {c.model.base_width for c in timed} == {8} and all(c.model.widths is None
                                                              for c in timed)
    reason = {d.field: d.reason for d in plan.decisions}["model.widths"]
    assert reason.startswith("the network you set")


def test_fixed_slices_are_planned_as_slices_without_timing_3d(timed, iso3d):
    config, plan = run_config(iso3d, None, {"train.time_budget": "600s"},
                              ["data.slice_axis=0"])
    assert {c.model.spatial_dims for c in timed} == {2}
    assert config.data.slice_axis == 0 and config.model.spatial_dims == 2
    assert plan.config is config


def test_a_fixed_3d_network_is_not_replanned_as_slices(timed, iso3d):
    # 3D steps this dear afford < 2000 steps: without the user's choice the plan goes 2D
    assert planner.make_plan(iso3d, "60s", device="cpu").config.model.spatial_dims == 2
    timed.clear()
    config, _ = run_config(iso3d, None, {"train.time_budget": "60s"}, ["model.spatial_dims=3"])
    assert config.model.spatial_dims == 3 and {c.model.spatial_dims for c in timed} == {3}


def test_unetkit_plan_times_and_writes_what_set_fixes(timed, iso3d, tmp_path):
    from typer.testing import CliRunner

    from unetkit.cli import app
    from unetkit.config import load_config

    out = tmp_path / "plan.yaml"
    result = CliRunner().invoke(app, ["plan", str(iso3d), "--time", "600s", "-o", str(out),
                                      "--set", "data.batch_size=1"])
    assert result.exit_code == 0, result.output
    assert timed and {c.data.batch_size for c in timed} == {1}
    assert load_config(out).data.batch_size == 1
    bad = CliRunner().invoke(app, ["plan", str(iso3d), "--set", "train.lr=fast"])
    assert bad.exit_code == 2 and "train.lr" in bad.output


def test_2d_or_3d_the_user_fixed_is_given_as_the_users_choice(timed, iso3d):
    """The plan's reason for 2D on slices is the user's option, not a step count the planner
    never compared (it timed no 3D candidate)."""
    _, plan = run_config(iso3d, None, {"train.time_budget": "600s"}, ["data.slice_axis=0"])
    reasons = {d.field: d.reason for d in plan.decisions}
    assert reasons["model.spatial_dims"] == "set by you (data.slice_axis)"
    assert reasons["data.slice_axis"] == "set by you (data.slice_axis)"
    _, plan = run_config(iso3d, None, {"train.time_budget": "60s"}, ["model.spatial_dims=3"])
    assert {d.field: d.reason for d in plan.decisions}["model.spatial_dims"] == \
        "set by you (model.spatial_dims)"
    # planned: the planner's own reason
    plan = planner.make_plan(iso3d, "60s", device="cpu")
    assert "set by you" not in {d.field: d.reason for d in plan.decisions}["model.spatial_dims"]


def test_every_field_the_user_set_is_listed_with_the_value_that_trains(timed, iso3d, tmp_path):
    """A planned value the user replaced is not printed with the planner's value and reason
    (batch 9 "about 358,400 voxels per step" while batch 1 trains); a field the planner does
    not decide is listed too."""
    config, plan = run_config(iso3d, None, {"train.time_budget": "600s"},
                              ["data.batch_size=1", "model.norm=batch", "train.grad_clip=2.0"])
    decided = {d.field: (d.value, d.reason) for d in plan.decisions}
    assert decided["data.batch_size"] == (1, "set by you")
    assert decided["model.norm"] == ("batch", "set by you")
    assert decided["train.grad_clip"] == (2.0, "set by you")  # the planner has no decision
    assert decided["train.time_budget"] == ("600s", "set by you")
    assert config.data.batch_size == 1 and config.model.norm == "batch"
    assert "set by you" not in decided["data.patch_size"][1]  # planned fields keep theirs
    out = plan.write(tmp_path / "plan.yaml").read_text()
    assert "# data.batch_size = 1: set by you" in out
