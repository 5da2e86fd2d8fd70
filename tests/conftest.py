"""Small real checkpoints (unetkit UNet, a few hundred weights) built inside the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unetkit.config import Config, config_to_dict
from unetkit.nn import build_model
from unetkit.runtime.checkpoint import save_checkpoint


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
