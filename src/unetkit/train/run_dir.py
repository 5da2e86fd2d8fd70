"""The run directory: config.yaml, metrics.csv, train.log, checkpoints, curves, TensorBoard.

Layout of ``RUN/``::

    config.yaml        the full validated config of the run
    metrics.csv        one row per epoch: train loss, val loss, val Dice per class, lr, seconds
    train.log          the log of the run (also what the console shows)
    last.pt, best.pt   checkpoints (``unetkit.runtime.checkpoint`` format)
    progress.png       training curves (like nnU-Net's progress.png)
    tensorboard/       optional TensorBoard events (``train.tensorboard: true``)

Only rank 0 creates any of this.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from unetkit.runtime.atomic import atomic_path, remove_partials, write_text
from unetkit.runtime.outputs import check_outside, folder_problem, protected_folders

LOGGER_NAME = "unetkit"


def default_run_dir(root: str | Path = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>`` (a suffix is added when that folder exists)."""
    base = Path(root) / datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "config.yaml")  # what marks a run


def check_run_dir(out_dir: str | Path, resume: bool = False,
                  data_dir: str | Path | None = None) -> Path:
    """The checks of ``claim_run_dir`` without creating anything (``unetkit train`` runs them
    before it plans the run).

    A folder holding any of ``RUN_FILES`` is never written into unless resuming, a new run
    never goes into the data (``data_dir`` itself or its ``images/``, ``masks/``, ... folders,
    ``unetkit.runtime.outputs``), and the folder must be writable.

    Raises:
        FileExistsError: ``out_dir`` already holds a run and ``resume`` is False.
        OutputError: ``out_dir`` lies in the data (a new run only).
        OSError: ``out_dir`` cannot be created or written (one line naming it).
    """
    out = Path(out_dir)
    found = [] if resume else [name for name in RUN_FILES if (out / name).exists()]
    if found:
        hint = (f"use --resume {out} or another folder" if "last.pt" in found else
                "choose another folder (a run is never overwritten)")
        raise FileExistsError(f"--out {out}: already holds a run ({', '.join(found)}); {hint}")
    if data_dir is not None and not resume:
        check_outside(out, "--out", protected_folders([], [data_dir]))
    problem = folder_problem(out)
    if problem is not None:
        raise OSError(f"--out {out}: cannot write the run there ({problem})")
    return out


def claim_run_dir(out_dir: str | Path, resume: bool = False,
                  data_dir: str | Path | None = None) -> tuple[Path, bool]:
    """Check (``check_run_dir``) and create ``out_dir`` before any data is loaded (rank 0).
    Resuming removes the temporary files a killed writer left behind.

    Returns:
        ``(out_dir, created)``: ``created`` when this call made the folder
        (``release_run_dir`` removes it again if the run never starts).

    Raises:
        FileExistsError, OutputError, OSError: as ``check_run_dir``.
    """
    out = check_run_dir(out_dir, resume, data_dir)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        failure = OSError(f"--out {out}: cannot write the run there "
                          f"({error.strerror or error})")
        failure.errno = error.errno
        raise failure from None
    if resume:
        _remove_stale_temporaries(out)
    return out, created


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Temporary files of a writer killed mid-write (kill -9): ours, and those of unetkit
    versions that wrote ``.last.pt.XXXX.tmp`` / ``.progress.XXXX.png``."""
    removed = remove_partials(run_dir)
    for pattern in (".last.pt.*.tmp", ".best.pt.*.tmp", ".progress.*.png"):
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logging.getLogger(__name__).info("removed %d temporary file(s) of an interrupted "
                                         "write: %s", len(removed),
                                         ", ".join(p.name for p in removed))


def release_run_dir(out: Path, created: bool) -> None:
    """Remove a folder ``claim_run_dir`` created when the run stopped before writing to it."""
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def attach_log_file(run_dir: Path) -> logging.Handler:
    """Send the ``unetkit`` logger's records to ``run_dir/train.log`` too; returns the handler."""
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def detach_log_file(handler: logging.Handler) -> None:
    """Undo ``attach_log_file``."""
    logging.getLogger(LOGGER_NAME).removeHandler(handler)
    handler.close()


def metric_columns(label_names: dict[int, str]) -> list[str]:
    """Columns of metrics.csv; one ``dice_<name>`` per foreground label."""
    dice = [f"dice_{name}" for label, name in sorted(label_names.items()) if label != 0]
    return ["epoch", "step", "train_loss", "val_loss", "val_dice", *dice, "lr", "seconds"]


class MetricsLog:
    """Appends one row per epoch to ``metrics.csv`` (kept across resumes; later rows win)."""

    def __init__(self, path: Path, label_names: dict[int, str]) -> None:
        self.path = path
        self.columns = metric_columns(label_names)

    def append(self, row: dict[str, Any]) -> None:
        """Write ``row`` (missing columns left empty, NaN written as empty)."""
        new = not self.path.exists()
        with self.path.open("a", newline="") as handle:
            self._write(handle, [row], header=new)

    def truncate_after(self, epoch: int) -> None:
        """Drop rows of epochs after ``epoch`` (a resumed run re-does them); the file is
        replaced atomically, so a crash keeps the old rows rather than none."""
        rows = read_metrics(self.path)
        if not rows:
            return
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as handle:
            self._write(handle, [row for row in rows if row["epoch"] <= epoch], header=True)

    def _write(self, handle: Any, rows: list[dict[str, Any]], header: bool) -> None:
        writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
        if header:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.csv as dicts of floats (``epoch``/``step`` as int, empty -> NaN)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if key in ("epoch", "step"):
                    row[key] = int(value)
                else:
                    row[key] = float(value) if value not in ("", None) else math.nan
            rows.append(row)
    return rows


class TensorBoardLog:
    """Optional TensorBoard scalars (needs ``pip install unetkit[tensorboard]``)."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(
                "train.tensorboard: the tensorboard package is not installed; "
                "pip install 'unetkit[tensorboard]' or set train.tensorboard=false"
            ) from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        """Write every numeric, finite value of ``row`` at ``row['step']``."""
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, float) and math.isfinite(value):
                self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        """Close the event file."""
        self.writer.close()


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically (``runtime.atomic.write_text``: a crash leaves the old
    file or the new one; a failed write raises ``WriteError`` naming the path)."""
    write_text(path, json.dumps(data, indent=2))


def store_end_of_run(run_dir: Path, store: Callable[[Path, dict[str, Any]], None],
                     record: dict[str, Any], step: int, json_name: str) -> None:
    """Write an end-of-run choice (threshold, post-processing) with ``store`` into ``best.pt``
    (trained to ``step``), into ``last.pt`` when it holds the same weights, and as
    ``RUN/json_name``."""
    from unetkit.runtime.checkpoint import TrainingState, load_checkpoint

    store(run_dir / "best.pt", record)
    last = run_dir / "last.pt"
    if last.is_file() and TrainingState.from_checkpoint(load_checkpoint(last)).step == step:
        store(last, record)
    write_json(run_dir / json_name, record)
