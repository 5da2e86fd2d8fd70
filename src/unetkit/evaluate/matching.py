"""Which files belong to which case: predictions, ground truth, regions of interest, probabilities.

Cases are matched by file name without suffix (``case_01.png`` <-> ``case_01.nii.gz``), also
after dropping a ``_mask`` / ``_seg`` / ``_label`` / ``_gt`` / ``_pred`` ending. nnU-Net's
channel files: ``unetkit predict`` names a prediction by its case id (``case.nii.gz`` for
``case_0000.nii.gz``), which pairs with ``labelsTs/case.nii.gz``; a file that still carries the
first channel's ``_0000`` pairs too when no file is named by the case id itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from unetkit.data import io

_FIRST_CHANNEL = "_0000"
_ENDING = re.compile(r"[_-](mask|masks|seg|label|labels|gt|pred|prediction)$", re.IGNORECASE)


def case_key(path: Path) -> str:
    """Matching key of a file: its name without suffix and without a mask-like ending."""
    return _ENDING.sub("", io.split_suffix(path)[0])


def case_files(folder: Path, what: str = "folder") -> dict[str, Path]:
    """``{case key: file}`` of the readable files in ``folder`` (its ``masks/`` sub-folder when
    it holds no image itself: a data folder).

    Raises:
        FileNotFoundError: ``folder`` is not a folder (``what`` names it in the message).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder ({what})")
    if (folder / "masks").is_dir() and not any(io.is_supported(p) for p in folder.iterdir()
                                               if p.is_file()):
        folder = folder / "masks"
    return {case_key(p): p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and io.is_supported(p)}


def find_case(files: dict[str, Path], key: str) -> Path | None:
    """The file of case ``key`` in ``{case key: file}``: named by the case id, else by its first
    channel file (``key_0000``); None when neither is there."""
    return files.get(key, files.get(key + _FIRST_CHANNEL))


def match_cases(pred_dir: Path, gt_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pairs ``(case, prediction, ground truth)`` and the ground-truth cases with no prediction.

    Raises:
        FileNotFoundError: a folder is missing or no case matches.
    """
    preds = case_files(Path(pred_dir), "predictions")
    gts = case_files(Path(gt_dir), "ground truth")
    found = {key: find_case(preds, key) for key in sorted(gts)}
    pairs = [(key, path, gts[key]) for key, path in found.items() if path is not None]
    if not pairs:
        raise FileNotFoundError(f"no prediction in {pred_dir} matches a ground truth in {gt_dir} "
                                f"(compared names: {sorted(preds)[:3]} vs {sorted(gts)[:3]})")
    return pairs, [key for key, path in found.items() if path is None]
