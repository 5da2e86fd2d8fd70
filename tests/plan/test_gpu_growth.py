"""Issue 27, part 4: a plan that fills a GPU. With a memory bound (a CUDA device, faked here)
and a launch-bound step (flat timings, as measured on an H200) the plan grows in patch, batch
and width up to the bound; with CPU-like timings it is the budget rule's plan."""

from __future__ import annotations

import dataclasses

import pytest

from unetkit.config import apply_values, config_to_dict
from unetkit.data.synthetic import write_blobs_dataset, write_cells_dataset
from unetkit.plan import grow, memory, planner
from unetkit.plan.fingerprint import fingerprint_dataset
from unetkit.plan.user import UserChoices

TIB = 2**40


@pytest.fixture(scope="module")
def hippocampus(tmp_path_factory):
    """An nnU-Net-style 3D data set of 35x50x35 volumes (hippocampus' median) and its
    fingerprint as for hippocampus' 260 cases."""
    root = write_blobs_dataset(tmp_path_factory.mktemp("hip") / "Dataset004", 4, (35, 50, 35))
    return root, dataclasses.replace(fingerprint_dataset(root), cases=260)


@pytest.fixture
def gpu(monkeypatch):
    """``gpu(bound)``: plan as on a CUDA device offering ``bound`` bytes."""
    def install(bound: int) -> None:
        monkeypatch.setattr(memory, "memory_bound", lambda device: bound)
    return install


def _plan(data, budget="180s", user=None):
    root, fp = data
    return planner.make_plan(root, budget, device="cpu", fingerprint=fp, user=user)


def _steps(plan):
    return [(c.base_width, c.batch_size, c.patch_size, c.chosen) for c in plan.candidates]


def test_a_launch_bound_step_grows_batch_and_width_to_their_caps(hippocampus, gpu, fake_steps):
    gpu(TIB)
    fake_steps(lambda config: 0.02)  # the H200's 3D steps: base 16 0.023 s, base 32 0.020 s
    plan = _plan(hippocampus)
    m, d = plan.config.model, plan.config.data
    # nnU-Net's 3d_fullres plan of hippocampus: batch 9 of 40x56x40, widths 32-256 (4 stages)
    assert m.spatial_dims == 3 and d.patch_size == [40, 56, 40]
    cap = int(grow.DATASET_SHARE * 260 * 35 * 50 * 35 / (40 * 56 * 40))
    assert d.batch_size == cap == 8  # 5% of the data set's voxels
    assert m.widths == [64, 128, 256, 320] and m.base_width == 64
    assert _steps(plan) == [(16, 4, [40, 56, 40], False), (32, 4, [40, 56, 40], False),
                            (32, 8, [40, 56, 40], False), (64, 8, [40, 56, 40], True)]
    reasons = {x.field: x.reason for x in plan.decisions}
    assert reasons["data.batch_size"].startswith("4 -> 8: the GPU step is launch-bound")
    assert "patch at the median image" in reasons["model.widths"]
    assert "batch at 5% of the data set's voxels" in reasons["model.widths"]
    chosen = plan.candidates[-1]
    assert chosen.memory_bytes == memory.training_memory(plan.config)  # estimated: no CUDA


def test_growth_stops_at_the_memory_bound(hippocampus, gpu, fake_steps):
    gpu(TIB)
    fake_steps(lambda config: 0.02)
    roomy = _plan(hippocampus)
    batch8 = next(c for c in roomy.candidates if (c.base_width, c.batch_size) == (32, 8))
    bound = batch8.memory_bytes + 1
    gpu(bound)
    timed = fake_steps(lambda config: 0.02)
    plan = _plan(hippocampus)
    assert (plan.config.model.widths[0], plan.config.data.batch_size) == (32, 8)
    chosen = next(c for c in plan.candidates if c.chosen)
    assert chosen.memory_bytes <= bound
    wider = apply_values(plan.config, {"model.widths": [64, 128, 256, 320]})
    assert memory.training_memory(wider) > bound  # the next growth does not fit
    assert all(c.model.widths[0] < 64 for c in timed)  # and is not even timed
    reason = {x.field: x.reason for x in plan.decisions}["model.widths"]
    assert "width base 64, 8x40x56x40 would need about" in reason
    assert "over the memory bound" in reason


def test_measured_peaks_rule_where_the_timing_measured_them(hippocampus, gpu, fake_steps):
    """On CUDA the timing measures each candidate's peak: the estimate only scales it, and a
    candidate measured over the bound is not kept."""
    def peak(config):  # a quarter of the fp32 estimate, base 64 far more
        factor = 10.0 if config.model.widths[0] == 64 else 0.25
        return int(factor * memory.training_memory(config))

    gpu(TIB)
    fake_steps(lambda config: 0.02)
    batch8 = next(c for c in _plan(hippocampus).candidates if c.batch_size == 8)
    bound = int(0.6 * batch8.memory_bytes)  # the estimate of batch 8 would not fit
    gpu(bound)
    fake_steps(lambda config: 0.02, peak)
    plan = _plan(hippocampus)
    assert plan.config.data.batch_size == 8 and plan.config.model.widths[0] == 32
    kept = next(c for c in plan.candidates if c.chosen)
    assert kept.memory_measured and kept.memory_bytes <= bound and "measured" in kept.describe()
    refused = [c for c in plan.candidates if c.base_width == 64]
    assert len(refused) == 1 and refused[0].note == "over the memory bound"
    assert refused[0].memory_bytes > bound and not refused[0].chosen


def test_cpu_like_timings_plan_as_without_a_bound(hippocampus, gpu, fake_steps):
    def cpu_like(config):  # seconds grow with width and voxels per step
        d = config.data
        return 1e-7 * config.model.widths[0] ** 2 * d.batch_size * 40 * 56 * 40

    fake_steps(cpu_like)
    plain = _plan(hippocampus, "3m")
    gpu(TIB)
    bounded = _plan(hippocampus, "3m")
    assert config_to_dict(bounded.config) == config_to_dict(plain.config)
    assert [(x.field, x.value, x.reason) for x in bounded.decisions] == \
        [(x.field, x.value, x.reason) for x in plain.decisions]
    assert len(bounded.candidates) == len(plain.candidates)


def test_a_step_that_grows_with_the_batch_keeps_its_batch(hippocampus, gpu, fake_steps):
    gpu(TIB)
    fake_steps(lambda config: 0.005 * config.data.batch_size)  # flat in width only
    plan = _plan(hippocampus)
    assert plan.config.data.batch_size == 4 and plan.config.model.widths[0] == 64
    refused = next(c for c in plan.candidates if c.batch_size == 8)
    assert refused.note == "over 1.25x the launch-bound 0.020 s/step" and not refused.chosen
    fixed = _plan(hippocampus, user=UserChoices({}, ["data.batch_size=2"]))
    assert fixed.config.data.batch_size == 2  # what the user set never grows
    assert "batch set by you (data.batch_size)" in \
        {x.field: x.reason for x in fixed.decisions}["model.widths"]


def test_images_larger_than_a_cpu_patch_grow_the_patch(tmp_path, gpu, fake_steps):
    cells = write_cells_dataset(tmp_path / "cells", 3, (512, 512), seed=1)
    fake_steps(lambda config: 0.02)
    cpu = planner.make_plan(cells, "180s", device="cpu")
    assert cpu.config.data.patch_size == [256, 256]
    gpu(TIB)
    plan = planner.make_plan(cells, "180s", device="cpu")
    assert plan.config.data.patch_size == [512, 512]
    assert plan.config.data.batch_size == cpu.config.data.batch_size  # 5% cap below it
    assert plan.config.model.widths == [64, 128, 256, 512, 512, 512]
    patches = [c.patch_size for c in plan.candidates]
    assert patches[:3] == [[256, 256]] * 3 and [512, 512] in patches
    reason = {x.field: x.reason for x in plan.decisions}["data.patch_size"]
    assert reason.startswith("[256, 256] -> [512, 512]: the GPU step is launch-bound")
