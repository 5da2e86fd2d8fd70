"""``precision: auto`` on CPUs, through the real detection with the CPU simulated (the root
conftest's ``pretend_cpu``: cpuinfo flags, torch's probes), its caches, and the harness option
``--cpu-bf16`` that runs a whole session as another kind of CPU would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetkit.runtime import device, engine
from unetkit.runtime.device import cpu_has_fast_bf16, resolve_precision

CPU = torch.device("cpu")
ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.mark.parametrize(("kind", "expected"), [
    ("amx", "bf16"), ("avx512_bf16", "bf16"), ("avx512", "fp32"), ("avx2", "fp32")])
def test_auto_is_bf16_exactly_on_cpus_with_native_bf16(pretend_cpu, kind, expected) -> None:
    pretend_cpu(kind)
    plan = resolve_precision("auto", "auto", CPU)
    assert (plan.name, plan.use_scaler, plan.channels_last) == (expected, False, True)
    assert engine.cpu_kind() == kind
    # explicit choices do not depend on the CPU
    assert resolve_precision("fp32", "auto", CPU).name == "fp32"
    assert resolve_precision("bf16", "off", CPU).name == "bf16"
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        resolve_precision("fp16", "auto", CPU)


def test_flags_come_from_the_flags_line(tmp_path, monkeypatch, pretend_cpu) -> None:
    pretend_cpu("avx2")  # clears the caches now and after the test
    info = tmp_path / "info"
    info.write_text("processor\t: 0\nmodel name\t: Xeon amx_bf16 edition\nflags\t\t: fpu avx2 "
                    "avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n")
    monkeypatch.setattr(device, "CPUINFO", info)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    device.cpu_flags.cache_clear()
    device.cpu_has_fast_bf16.cache_clear()
    engine.cpu_kind.cache_clear()
    assert device.cpu_flags() == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_has_fast_bf16()  # the flag, where torch's probe says no
    assert engine.cpu_kind() == "avx512_bf16"  # not amx: the model name is no flag
    for text in ("processor\t: 0\n", None):
        if text is None:
            info.unlink()
        else:
            info.write_text(text)
        device.cpu_flags.cache_clear()
        device.cpu_has_fast_bf16.cache_clear()
        assert device.cpu_flags() == frozenset() and not cpu_has_fast_bf16()


def test_probes_decide_first_and_a_failing_probe_is_no_answer(monkeypatch, pretend_cpu) -> None:
    pretend_cpu("avx2")

    def fails() -> bool:
        raise RuntimeError("cpuinfo not initialised")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", fails)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    device.cpu_has_fast_bf16.cache_clear()
    assert cpu_has_fast_bf16()
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")  # an older torch
    device.cpu_has_fast_bf16.cache_clear()
    assert not cpu_has_fast_bf16()  # the flags of an AVX2 CPU


def test_detection_runs_once_until_cleared(monkeypatch, pretend_cpu) -> None:
    pretend_cpu("avx512")
    calls = []
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: calls.append(1) or False)
    device.cpu_has_fast_bf16.cache_clear()
    assert not cpu_has_fast_bf16() and not cpu_has_fast_bf16()
    assert calls == [1]


PROBE_TEST = """
import torch
from unetkit.runtime.device import resolve_precision
from unetkit.runtime.engine import cpu_kind


def test_auto(pretend_cpu):
    assert resolve_precision("auto", "auto", torch.device("cpu")).name == "{expected}"
    assert cpu_kind() {kind_check}
    pretend_cpu("amx")  # a test's own CPU wins inside it
    assert cpu_kind() == "amx"


def test_after(precision):
    assert resolve_precision("auto", "auto", torch.device("cpu")).name == "{expected}"
"""


@pytest.mark.parametrize(("mode", "expected", "kind_check"), [
    ("off", "fp32", "in ('avx512', 'avx2', 'other')"), ("on", "bf16", "== 'avx512_bf16'")])
def test_the_cpu_bf16_option_sets_the_detection_for_a_run(pytester, mode, expected,
                                                          kind_check) -> None:
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makepyfile(test_probe=PROBE_TEST.format(expected=expected, kind_check=kind_check))
    result = pytester.runpytest_inprocess(f"--cpu-bf16={mode}", "-p", "no:cacheprovider",
                                          "-q")
    result.assert_outcomes(passed=3)
