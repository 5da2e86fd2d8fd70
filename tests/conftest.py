"""Shared test fixtures: small real checkpoints (unetkit UNet, a few hundred weights) built
inside the tests, precision as a test axis, and simulated CPU kinds.

* ``precision``: tests whose outcome depends on the precision take this fixture and run once in
  fp32 and once in bf16 on every CPU (bf16 is emulated where the CPU lacks it, so those cases
  stay small), with the tolerances of ``Precision``. Checkpoints and training configs of the
  other tests pin fp32, so that no test's outcome depends on what ``precision: auto`` picks on
  the machine that runs it.
* ``pretend_cpu(kind)``: unetkit's CPU detection (``runtime.device``, ``runtime.engine``) sees an
  AMX, AVX512-BF16, AVX512 or AVX2 CPU; ``--cpu-bf16=off|on`` does the same for a whole run
  (``pytest --cpu-bf16=off`` runs the suite as a CPU without native bf16 would).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from unetkit.config import Config, config_to_dict
from unetkit.nn import build_model
from unetkit.runtime import device, engine
from unetkit.runtime.checkpoint import save_checkpoint

pytest_plugins = ["pytester"]  # tests/runtime/test_cpu_detection.py runs the harness option

# --- precision as a test axis -------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """One precision of the test axis and what a test may expect of it.

    ``atol``: the largest absolute difference of class probabilities allowed between two
    networks with the same weights when one of them runs in this precision and the other in
    fp32 (torch against onnxruntime's fp32, bf16 autocast against fp32). bf16 keeps 8 bits of
    mantissa (relative rounding 2**-9 per operation): on the test checkpoints
    (``build_checkpoint``, 2D and 3D) bf16 probabilities were at most 5.3e-4 from fp32's, and
    5e-3 allows ten times that. fp32 engines differ only in the order of summation.
    """

    name: str
    atol: float

    @property
    def overrides(self) -> list[str]:
        """``--set`` style values that pin training and inference to this precision."""
        return [f"train.precision={self.name}", f"infer.precision={self.name}"]

    @property
    def settings(self) -> dict[str, str]:
        """``Predictor`` settings that run inference in this precision."""
        return {"infer.precision": self.name}


PRECISIONS = {"fp32": Precision("fp32", 1e-5), "bf16": Precision("bf16", 5e-3)}


@pytest.fixture(params=list(PRECISIONS))
def precision(request: pytest.FixtureRequest) -> Precision:
    """Each precision of the test axis in turn (fp32, bf16), on every CPU."""
    return PRECISIONS[request.param]


# --- simulated CPU kinds ------------------------------------------------------------------

#: /proc/cpuinfo flags and torch's CPU capability of each kind ``pretend_cpu`` simulates
CPU_KINDS = {
    "amx": ({"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}, "AVX512"),
    "avx512_bf16": ({"avx2", "avx512f", "avx512_bf16"}, "AVX512"),
    "avx512": ({"avx2", "avx512f"}, "AVX512"),
    "avx2": ({"avx2", "fma"}, "AVX2"),
}
BF16_FLAGS = {"amx_tile", "amx_bf16", "amx_int8", "avx512_bf16"}


def clear_cpu_caches() -> None:
    """Forget what the cached CPU detection found (it runs again on the next call)."""
    for cached in (device.cpu_flags, device.cpu_has_fast_bf16, engine.cpu_kind):
        cached.cache_clear()


def _pretend_flags(patch: pytest.MonkeyPatch, folder: Path, flags: set[str],
                   capability: str | None = None) -> None:
    """unetkit's detection reads ``flags`` and (when given) torch's ``capability``."""
    cpuinfo = folder / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: " + " ".join(sorted(flags)) + "\n")
    patch.setattr(device, "CPUINFO", cpuinfo)
    patch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: "amx_tile" in flags,
                  raising=False)
    patch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: "avx512_bf16" in flags,
                  raising=False)
    if capability is not None:
        patch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    clear_cpu_caches()


@pytest.fixture
def pretend_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """``pretend_cpu(kind)``: unetkit's detection sees a CPU of that ``CPU_KINDS`` kind (only
    the detection: torch's kernels stay this CPU's)."""

    def pretend(kind: str) -> None:
        flags, capability = CPU_KINDS[kind]
        _pretend_flags(monkeypatch, tmp_path, set(flags), capability)

    yield pretend
    clear_cpu_caches()  # the next detection runs without this test's CPU


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-bf16", choices=("auto", "on", "off"), default="auto",
        help="what unetkit's CPU detection reports for native bf16 during the run, in the "
             "test processes: auto (this CPU), on (AMX/AVX512-BF16: precision auto = bf16, "
             "emulated where the CPU lacks it), off (AVX2/AVX512: precision auto = fp32)")


@pytest.fixture(scope="session", autouse=True)
def _cpu_bf16(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``--cpu-bf16=on|off`` for the whole session (a test harness option; the library has no
    switch for it). Only the detection changes: ``on`` on a CPU without bf16 runs bf16
    emulated, and tests of native bf16 kernels (``test_models``' layout check) then expect
    kernels the CPU lacks. Subprocesses detect the real CPU; the tests that start them pin
    their precision."""
    mode = request.config.getoption("--cpu-bf16")
    if mode == "auto":
        yield
        return
    flags = set(device.cpu_flags()) - BF16_FLAGS | ({"avx512_bf16"} if mode == "on" else set())
    with pytest.MonkeyPatch.context() as patch:
        _pretend_flags(patch, tmp_path_factory.mktemp("cpu"), flags)
        yield
    clear_cpu_caches()


# --- checkpoints --------------------------------------------------------------------------


def build_checkpoint(
    path: Path,
    *,
    out_channels: int = 3,
    spatial_dims: int = 2,
    in_channels: int = 1,
    padding: str = "same",
    depth: int = 2,
    normalization: dict[str, Any] | None = None,
    mask_values: dict[int, int] | None = None,
    infer: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    seed: int = 0,
    **model: Any,
) -> Path:
    """Write a checkpoint of a tiny UNet with non-trivial BatchNorm statistics.

    ``model``: further ``model`` config fields, e.g. ``strides`` and ``kernel_sizes``.
    """
    config = Config.model_validate({
        "model": {"spatial_dims": spatial_dims, "in_channels": in_channels,
                  "out_channels": out_channels, "base_width": 4, "depth": depth,
                  "padding": padding, "norm": "batch", **model},
        "data": data or {},
        "train": {"precision": "fp32"},
        "infer": {"precision": "fp32", **(infer or {})},
    })
    torch.manual_seed(seed)
    model = build_model("unet", **config.model.build_options())
    for module in model.modules():  # random running statistics so that fusion is exercised
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    labels = {i: ("background" if i == 0 else f"c{i}") for i in range(max(out_channels, 2))}
    checkpoint = {
        "config": config_to_dict(config),
        "model_state": model.state_dict(),
        "labels": labels,
        "preprocessing": {"normalization": normalization or {"scheme": "zscore"}},
    }
    if mask_values is not None:
        checkpoint["mask_values"] = mask_values
    return save_checkpoint(checkpoint, path)


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """``make_checkpoint(name="model.pt", **options)`` -> path of a fresh checkpoint."""

    def make(name: str = "model.pt", **options: Any) -> Path:
        return build_checkpoint(tmp_path / name, **options)

    return make


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)`` makes ``folder`` read-only for the test: mode 0555, which the
    kernel enforces for a normal user. Root ignores the mode, so under root nothing may be
    created, renamed or removed inside the folder the way the kernel refuses it to other users:
    ``os.open`` with ``O_CREAT`` of a new file, ``open()`` (``io.open``) of a new file for
    writing, ``os.mkdir``, ``os.replace``/``os.rename``/``os.unlink`` raise
    ``PermissionError``."""
    import builtins
    import errno
    import io
    import os

    folders: list[Path] = []
    real = {"open": os.open, "mkdir": os.mkdir, "replace": os.replace, "rename": os.rename,
            "unlink": os.unlink, "builtin_open": builtins.open}

    def inside(path: Any) -> bool:
        if isinstance(path, int):
            return False
        target = Path(os.fsdecode(path)).absolute()
        return any(target.parent.resolve() == folder for folder in folders)

    def refuse(path: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))

    def guarded_open(path, flags, mode=0o777, *, dir_fd=None):  # noqa: ANN001, ANN202
        if flags & os.O_CREAT and inside(path) and not os.path.exists(path):
            refuse(path)
        return real["open"](path, flags, mode, dir_fd=dir_fd)

    def guarded_builtin_open(file, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        if any(c in mode for c in "wax+") and inside(file) and not os.path.exists(file):
            refuse(file)
        return real["builtin_open"](file, mode, *args, **kwargs)

    def guarded(name: str, *checked: int):  # noqa: ANN202
        def call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            for index in checked:
                if inside(args[index]):
                    refuse(args[index])
            return real[name](*args, **kwargs)
        return call

    def make(folder: Path) -> Path:
        folder.chmod(0o555)
        folders.append(folder.resolve())
        if os.geteuid() == 0 and len(folders) == 1:
            monkeypatch.setattr(os, "open", guarded_open)
            monkeypatch.setattr(builtins, "open", guarded_builtin_open)
            monkeypatch.setattr(io, "open", guarded_builtin_open)
            monkeypatch.setattr(os, "mkdir", guarded("mkdir", 0))
            monkeypatch.setattr(os, "replace", guarded("replace", 0, 1))
            monkeypatch.setattr(os, "rename", guarded("rename", 0, 1))
            monkeypatch.setattr(os, "unlink", guarded("unlink", 0))
        return folder

    yield make
    monkeypatch.undo()
    for folder in folders:
        folder.chmod(0o755)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """The tests' own ``$XDG_CACHE_HOME`` (one per session): training records step timings
    there (``unetkit.runtime.compile``) and no test may read or write the user's cache. A test
    whose outcome depends on cached timings sets a folder of its own."""
    import os

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


class RecordingBackend:
    """Warm-up calls run ``fn``; a capture records ``fn`` (computing nothing, as a CUDA graph's
    capture) and its replay calls it again on the static buffers it closed over."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail, self.warmed, self.captures, self.replays = fail, 0, 0, 0

    def warm(self, fn):
        self.warmed += 1
        return fn()

    def capture(self, fn):
        self.captures += 1
        if self.fail is not None:
            raise self.fail

        def replay():
            self.replays += 1
            return fn()

        return replay


@pytest.fixture
def recording_backend():
    """``RecordingBackend``: a CUDA graph's capture and replay as the CPU can run them."""
    return RecordingBackend


@pytest.fixture
def memory_peak():
    """``memory_peak(size, budget_mb, *models, precision="fp32", batch_size=1)`` ->
    ``{"peak": bytes, "precision": plan name}``: the RSS high-water mark of the second
    prediction of a ``size`` x ``size`` image in a fresh process, after ``malloc_trim``
    (``tests/infer/memory_probe.py``; several models: their ensemble), with this checkout's
    unetkit first on the path. Skips where there is no Linux ``/proc`` or no glibc."""
    import json
    import os
    import platform
    import subprocess
    import sys

    import unetkit

    if not Path("/proc/self/clear_refs").exists() or platform.libc_ver()[0] != "glibc":
        pytest.skip("measuring a peak needs Linux /proc and glibc (malloc_trim)")

    def measure(size: int, budget_mb: float, *models: Path, precision: str = "fp32",
                batch_size: int = 1) -> dict[str, Any]:
        source = str(Path(unetkit.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([source,
                                                            os.environ.get("PYTHONPATH", "")])}
        script = Path(__file__).with_name("infer") / "memory_probe.py"
        out = subprocess.run([sys.executable, str(script), str(size), str(budget_mb),
                              precision, str(batch_size), *map(str, models)],
                             capture_output=True, text=True, check=True, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])

    return measure
