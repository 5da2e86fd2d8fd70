"""Shared pieces of the data-set benchmarks: hold-out splits as symlink folders, the exact
``unetkit`` commands a user types, and scoring with unetkit's own metrics.

A split never copies data: ``WORK/train`` and ``WORK/test`` hold symlinks to the original files,
in the original layout (``images/`` + ``masks/`` [+ ``fov/``] or nnU-Net ``imagesTr/`` +
``labelsTr/`` + ``dataset.json``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from unetkit.data.dataset import discover_cases, find_layout

UNETKIT = [sys.executable, "-m", "unetkit"]


def held_out(case_ids: list[str], spec: str) -> list[str]:
    """Cases held out by ``spec``: ``every:5:4`` (index % 5 == 4), ``ids:a,b`` or ``range:15-19``
    (indices into the sorted ids)."""
    kind, _, value = spec.partition(":")
    ids = sorted(case_ids)
    if kind == "every":
        step, rest = (int(v) for v in value.split(":"))
        return [c for i, c in enumerate(ids) if i % step == rest]
    if kind == "range":
        low, high = (int(v) for v in value.split("-"))
        return ids[low:high + 1]
    if kind == "ids":
        return [c for c in value.split(",") if c]
    raise ValueError(f"hold-out {spec!r}: use every:N:K, range:A-B or ids:a,b")


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    os.symlink(source.resolve(), target)


def make_split(data_dir: Path, work: Path, spec: str) -> tuple[Path, Path, list[str]]:
    """``(train_dir, test_dir, test_ids)``: symlink folders in ``data_dir``'s own layout.

    Extra folders that pair by name with the images (``fov/``, ``roi/``) are split the same way.
    """
    data_dir, work = Path(data_dir), Path(work)
    image_dir, mask_dir = find_layout(data_dir)
    cases = discover_cases(data_dir)
    test_ids = held_out([c.case_id for c in cases], spec)
    for name in ("train", "test"):
        shutil.rmtree(work / name, ignore_errors=True)
    extras = [d for d in data_dir.iterdir() if d.is_dir() and d.name in ("fov", "roi")]
    for case in cases:
        split = work / ("test" if case.case_id in test_ids else "train")
        for path in case.image_paths:
            _link(path, split / image_dir.name / path.name)
        if case.mask_path is not None:
            _link(case.mask_path, split / mask_dir.name / case.mask_path.name)
        for extra in extras:
            for path in extra.glob(case.case_id + ".*"):
                _link(path, split / extra.name / path.name)
    for split in ("train", "test"):
        if (data_dir / "dataset.json").is_file():
            shutil.copy(data_dir / "dataset.json", work / split / "dataset.json")
    return work / "train", work / "test", test_ids


def run(command: list[str], log: Path) -> float:
    """Run a command (output to ``log``); its wall-clock seconds. Raises on failure."""
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}); see {log}")
    return time.monotonic() - started


def cpu_name() -> str:
    """The CPU model and its bf16 support, for the benchmark record."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                 if ln.startswith("model name")), "unknown")
    flags = "avx512_bf16" if "avx512_bf16" in text else "avx512" if "avx512f" in text else "avx2"
    return f"{name} ({flags}, {os.cpu_count()} cores)"


def case_file(folder: Path, case_id: str) -> Path:
    """The file of ``case_id`` in ``folder`` (``case.ext`` or nnU-Net's ``case_0000.ext``)."""
    for pattern in (f"{case_id}.*", f"{case_id}_0000.*"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise FileNotFoundError(f"{folder}: no file for case {case_id}")


def dice_scores(pred_dir: Path, truth_dir: Path, case_ids: list[str], labels: list[int]
                ) -> dict[str, dict[int, float]]:
    """``{case: {label: Dice}}`` with ``unetkit.metrics`` (masks read as unetkit reads them)."""
    from unetkit.data.io import read_mask
    from unetkit.metrics import case_metrics

    scores = {}
    for case_id in case_ids:
        pred, _ = read_mask(case_file(pred_dir, case_id))
        truth, _ = read_mask(case_file(truth_dir, case_id))
        metrics = case_metrics(np.asarray(pred, np.int64), np.asarray(truth, np.int64), labels,
                               metrics=("dice",))
        scores[case_id] = {label: metrics[label]["dice"] for label in labels}
    return scores


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented JSON (NaN as null)."""
    def clean(value):  # noqa: ANN001, ANN202
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, float) and not np.isfinite(value):
            return None
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(data), indent=2))
