"""Planning a fine-tuning run: the ``--init`` checkpoint's network is the only one timed, its
fields show ``from --init``, and the rest is planned for the new data."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from unetkit.cli import app
from unetkit.data.synthetic import write_blobs_dataset
from unetkit.nn.sizes import axis_multiples
from unetkit.plan.auto import run_config
from unetkit.train.init_source import InitError, fixed_fields

runner = CliRunner()


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    return write_blobs_dataset(tmp_path_factory.mktemp("blobs") / "d", 4, (30, 38, 30))


@pytest.fixture
def checkpoint3d(make_checkpoint):
    return make_checkpoint("ckpt3d.pt", spatial_dims=3, depth=3, out_channels=2,
                           widths=[8, 12, 16, 24], data={"normalization": {"scheme": "minmax"}})


@pytest.fixture
def timed(fake_steps):
    return fake_steps(lambda config: 0.01)


def test_the_planner_keeps_the_checkpoints_network(timed, blobs, checkpoint3d):
    config, plan = run_config(blobs, None, {"train.time_budget": "600s",
                                            "train.init": str(checkpoint3d)}, [])
    assert {tuple(c.model.widths) for c in timed} == {(8, 12, 16, 24)}  # the only candidate
    assert [(c.base_width, c.chosen) for c in plan.candidates] == [(8, True)]
    m = config.model
    assert (m.spatial_dims, m.depth, m.widths, m.norm) == (3, 3, [8, 12, 16, 24], "batch")
    assert config.data.normalization.scheme == "minmax" and config.data.slice_axis is None
    assert str(config.train.init) == str(checkpoint3d)
    multiples = axis_multiples(3, None, 3)
    assert all(n % k == 0 for n, k in zip(config.data.patch_size, multiples, strict=True))
    reasons = {d.field: d.reason for d in plan.decisions}
    for name in fixed_fields():
        if name != "data.normalization":  # a section: its fields are listed one by one
            assert reasons[name] == f"from --init {checkpoint3d}", name
    assert reasons["data.normalization.scheme"] == f"from --init {checkpoint3d}"
    # what the weights leave free is still planned for these data
    assert reasons["data.batch_size"].startswith("about")
    assert config.model.out_channels == 3  # the blobs have three labels; the head is new
    assert not reasons["train.lr"].startswith("from")


def test_plan_prints_from_init(timed, blobs, checkpoint3d):
    result = runner.invoke(app, ["plan", str(blobs), "--time", "600s", "--init",
                                 str(checkpoint3d)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "model.widths" in text and "from --init" in text


def test_a_setting_against_the_checkpoint_is_refused(timed, blobs, checkpoint3d):
    with pytest.raises(InitError, match="model.depth: --init .* fixes model.depth to 3"):
        run_config(blobs, None, {"train.init": str(checkpoint3d)}, ["model.depth=2"])
    with pytest.raises(InitError, match="data.normalization.scheme: .* fixes "
                                        "data.normalization"):
        run_config(blobs, None, {"train.init": str(checkpoint3d)},
                   ["data.normalization.scheme=zscore"])
    assert not timed  # refused before any timing
    same, _ = run_config(blobs, None, {"train.init": str(checkpoint3d)}, ["model.depth=3"])
    assert same.model.depth == 3
