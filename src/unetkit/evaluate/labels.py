"""Which labels an evaluation scores and what they are called.

Names come from ``--labels`` (``labels=``) when given; else from an nnU-Net ``dataset.json``
in the ground-truth folder or its parent (``Dataset/labelsTs/`` -> ``Dataset/dataset.json``);
else ``class1``, ``class2``, ... Without ``--labels`` every foreground label of ``dataset.json``
is scored, and every other non-zero value the ground truth holds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from unetkit.data.dataset import read_dataset_json


def dataset_json_labels(gt_dir: str | Path) -> tuple[dict[int, str], Path | None]:
    """Foreground ``{label: name}`` of the ``dataset.json`` in ``gt_dir`` or its parent, and
    the file read (``({}, None)`` when there is none).

    Raises:
        DatasetError: the file is not valid JSON (a ``ValueError``).
    """
    folder = Path(gt_dir).resolve()
    for candidate in (folder, folder.parent):
        if (candidate / "dataset.json").is_file():
            labels, _ = read_dataset_json(candidate)
            return {v: n for v, n in (labels or {}).items() if v != 0}, candidate / "dataset.json"
    return {}, None


def scored_labels(gt_dir: str | Path, given: dict[int, str] | None,
                  found: Iterable[int]) -> dict[int, str]:
    """``{label: name}`` to score (module docstring).

    Args:
        gt_dir: the ground-truth folder.
        given: ``--labels`` (an empty name is filled from ``dataset.json`` or ``classN``), or
            None.
        found: the values the ground truth holds.
    """
    declared, _ = dataset_json_labels(gt_dir)
    if given is not None:
        values = sorted(given)
    else:
        values = sorted(set(declared) | ({int(v) for v in found} - {0})) or [1]
    return {v: (given or {}).get(v) or declared.get(v) or f"class{v}" for v in values}
