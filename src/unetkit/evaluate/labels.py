"""Which labels an evaluation scores and what they are called.

Names come from ``--labels`` (``labels=``) when given; else from an nnU-Net ``dataset.json``
in the ground-truth folder or its parent (``Dataset/labelsTs/`` -> ``Dataset/dataset.json``);
else ``class1``, ``class2``, ... Without ``--labels`` every foreground label of ``dataset.json``
is scored, and every other non-zero value the ground truth holds; a ``dataset.json`` that
declares regions (``unetkit.data.regions``) has its regions scored instead (unless ``--labels``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from unetkit.config.regions import Region
from unetkit.data.dataset import read_dataset_json
from unetkit.data.regions import read_regions


def dataset_json_labels(gt_dir: str | Path) -> tuple[dict[int, str], Path | None]:
    """Foreground ``{label: name}`` of the ``dataset.json`` in ``gt_dir`` or its parent, and
    the file read (``({}, None)`` when there is none).

    Raises:
        DatasetError: the file is not valid JSON (a ``ValueError``).
    """
    candidate = dataset_json_folder(gt_dir)
    if candidate is None:
        return {}, None
    labels, _ = read_dataset_json(candidate)
    return {v: n for v, n in (labels or {}).items() if v != 0}, candidate / "dataset.json"


def dataset_json_folder(gt_dir: str | Path) -> Path | None:
    """The folder of the ``dataset.json`` that describes ``gt_dir``: ``gt_dir`` or its parent."""
    folder = Path(gt_dir).resolve()
    return next((c for c in (folder, folder.parent) if (c / "dataset.json").is_file()), None)


def dataset_json_regions(gt_dir: str | Path) -> list[Region] | None:
    """The regions the ``dataset.json`` of ``gt_dir`` declares (``unetkit.data.regions``), or
    None.

    Raises:
        DatasetError: its regions are not usable (one line naming the file).
    """
    folder = dataset_json_folder(gt_dir)
    declaration = read_regions(folder) if folder is not None else None
    return declaration.regions if declaration is not None else None


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
