"""Which files belong to which case: predictions, ground truth, regions of interest, probabilities.

Cases are matched by file name without suffix (``case_01.png`` <-> ``case_01.nii.gz``), also
after dropping a ``_mask`` / ``_seg`` / ``_label`` / ``_gt`` / ``_pred`` ending.
"""

from __future__ import annotations

import re
from pathlib import Path

from unetkit.data import io

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


def match_cases(pred_dir: Path, gt_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """Pairs ``(case, prediction, ground truth)`` and the ground-truth cases with no prediction.

    Raises:
        FileNotFoundError: a folder is missing or no case matches.
    """
    preds = case_files(Path(pred_dir), "predictions")
    gts = case_files(Path(gt_dir), "ground truth")
    pairs = [(key, preds[key], gts[key]) for key in sorted(gts) if key in preds]
    if not pairs:
        raise FileNotFoundError(f"no prediction in {pred_dir} matches a ground truth in {gt_dir} "
                                f"(compared names: {sorted(preds)[:3]} vs {sorted(gts)[:3]})")
    return pairs, [key for key in sorted(gts) if key not in preds]
