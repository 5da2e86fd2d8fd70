"""Step modes: which ones a device and the options leave, which one runs, the timing cache."""

from __future__ import annotations

import json

import pytest
import torch

from unetkit.runtime.compile import (
    StepSupport,
    Timing,
    TimingCache,
    candidate_modes,
    choose_mode,
    decide,
    run_cost,
    step_key,
    support,
)

GPU = StepSupport("cuda", compiler=True)
CPU = StepSupport("cpu", compiler=True)


@pytest.mark.parametrize(("compile", "graphs", "allowed", "modes"), [
    ("auto", "auto", GPU, ["eager", "compile", "graphs", "compile+graphs"]),
    ("auto", "auto", CPU, ["eager", "compile"]),
    ("off", "auto", GPU, ["eager", "graphs"]),
    ("on", "auto", GPU, ["compile", "compile+graphs"]),
    ("on", "on", GPU, ["compile+graphs"]),
    ("off", "off", GPU, ["eager"]),
    ("auto", "auto", StepSupport("cuda", True, scaler=True), ["eager", "compile"]),
    ("auto", "auto", StepSupport("cuda", True, distributed=True), ["eager", "compile"]),
    ("auto", "auto", StepSupport("cpu", compiler=False), ["eager"]),
    ("auto", "auto", StepSupport("mps", compiler=True), ["eager"]),
])
def test_candidate_modes(compile, graphs, allowed, modes):
    assert candidate_modes(compile, graphs, allowed) == (modes, [])


def test_an_option_the_device_cannot_honour_is_dropped_with_its_reason():
    modes, reasons = candidate_modes("auto", "on", CPU)
    assert modes == ["eager", "compile"]
    assert reasons == ["train.cuda_graphs: on, but CUDA graphs need a CUDA device; running "
                       "without"]
    modes, reasons = candidate_modes("on", "off", StepSupport("cpu", compiler=False))
    assert modes == ["eager"] and "needs a C++ compiler" in reasons[0]
    scaler = StepSupport("cuda", True, scaler=True)
    assert "GradScaler" in candidate_modes("off", "on", scaler)[1][0]


def test_support_of_this_cpu():
    allowed = support(torch.device("cpu"))
    assert allowed.device_type == "cpu" and not allowed.scaler and not allowed.distributed


def test_choose_mode_decides_from_measurements():
    both = ["eager", "compile"]
    fast_compile = {"eager": Timing(0.02), "compile": Timing(0.005, setup_s=30.0)}
    assert choose_mode(["eager"], {}, "cuda") == "eager"
    assert choose_mode(both, fast_compile, "cpu") == "compile"
    assert choose_mode(both, {}, "cuda") is None  # a GPU tries them
    assert choose_mode(both, {}, "cpu") == "eager"  # a CPU never compiles unasked
    assert choose_mode(both, {"compile": Timing(0.005)}, "cpu") == "eager"
    assert choose_mode(both, {"eager": Timing(0.02)}, "cpu") == "eager"
    # a compile that costs more than it saves loses in a short run, wins in a long one:
    # 1000 steps: eager 20 s, compile 5 + 30 s; 10000 steps: 200 s against 80 s
    assert choose_mode(both, fast_compile, "cpu", steps=1000) == "eager"
    assert choose_mode(both, fast_compile, "cpu", steps=10000) == "compile"
    # a time budget of 60 s: eager does 3000 steps, compile (60 - 30) / 0.005 = 6000
    assert choose_mode(both, fast_compile, "cpu", budget_s=60.0) == "compile"
    assert choose_mode(both, fast_compile, "cpu", budget_s=35.0) == "eager"


def test_run_cost():
    timing = Timing(0.01, setup_s=2.0)
    assert run_cost(timing) == 0.01
    assert run_cost(timing, steps=100) == pytest.approx(3.0)
    assert run_cost(timing, budget_s=12.0) == pytest.approx(-1000.0)


def test_timing_cache_round_trip_and_merge(tmp_path):
    cache = TimingCache(tmp_path / "sub" / "timings.json")
    assert cache.get("k") == {}
    cache.put("k", {"eager": Timing(0.02)})
    cache.put("k", {"compile": Timing(0.01, 12.5)})
    cache.put("other", {"eager": Timing(1.0)})
    assert cache.get("k") == {"eager": Timing(0.02, 0.0), "compile": Timing(0.01, 12.5)}
    assert TimingCache(tmp_path / "sub" / "timings.json").get("other") == {"eager": Timing(1.0)}


def test_a_corrupt_or_unwritable_cache_is_an_empty_one(tmp_path):
    path = tmp_path / "timings.json"
    path.write_text("{not json")
    assert TimingCache(path).get("k") == {}
    path.write_text(json.dumps({"k": {"eager": {"step_s": -1}, "graphs": "x",
                                      "bogus": {"step_s": 1}, "compile": {"step_s": 0.5}}}))
    assert TimingCache(path).get("k") == {"compile": Timing(0.5)}
    blocker = tmp_path / "file"
    blocker.write_text("")
    TimingCache(blocker / "timings.json").put("k", {"eager": Timing(0.1)})  # no exception


def test_step_key_tells_steps_apart():
    cpu = torch.device("cpu")
    a = step_key(cpu, {"patch": [32, 32], "batch": 2})
    assert a == step_key(cpu, {"batch": 2, "patch": [32, 32]})
    assert a != step_key(cpu, {"patch": [32, 32], "batch": 4})


def test_a_short_budget_tries_no_compile_it_never_measured():
    eager = {"eager": Timing(0.02)}
    assert decide("auto", "auto", GPU, eager, budget_s=180.0) == (
        ["eager", "graphs"], None, [])  # graphs still tried, compile not
    assert decide("auto", "auto", GPU, eager, budget_s=3600.0)[:2] == (
        ["eager", "compile", "graphs", "compile+graphs"], None)
    assert decide("auto", "auto", GPU, eager, steps=5000)[1] is None  # no budget: tried
    measured = {**eager, "compile": Timing(0.004, 60.0), "graphs": Timing(0.005, 0.5)}
    # a measured compile counts with its set-up: in 180 s graphs does 35,900 steps, compile
    # (180 - 60) / 0.004 = 30,000
    assert decide("auto", "auto", GPU, measured, budget_s=180.0)[:2] == (
        ["eager", "compile", "graphs"], "graphs")
    assert decide("on", "off", GPU, {}, budget_s=60.0)[:2] == (["compile"], "compile")
