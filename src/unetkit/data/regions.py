"""Regions declared in an nnU-Net ``dataset.json`` (region-based training as nnU-Net v2 reads it).

::

    "labels": {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3],
               "enhancing_tumor": 3},
    "regions_class_order": [1, 2, 3]

A data set declares regions when one of its label entries is a list of more than one value.
Then every entry except the background and ``ignore`` is a region, in the file's order (a single
value is a one-label region), and ``regions_class_order`` says which label is painted where each
region is predicted (later regions overwrite earlier ones). The masks stay integer label maps;
their values are the background, the painted labels and the labels declared on their own, and
must be the consecutive ``0..K-1``. An ``ignore`` label (unlabelled pixels,
``unetkit.data.ignore``) lies above them all and in no region, painted by none. Every problem is
one ``DatasetError`` line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetkit.config.regions import Region, ignore_problem, region_labels, region_problem
from unetkit.data.dataset import DatasetError
from unetkit.data.dataset_json import read_dataset_json
from unetkit.data.ignore import IGNORE_NAME  # nnU-Net's unlabelled pixels: never a region


@dataclass(frozen=True)
class RegionDeclaration:
    """The regions of a data set, the label painted for each (``order``) and the file's path."""

    regions: list[Region]
    order: list[int]
    source: Path

    @property
    def labels(self) -> list[int]:
        """The label values the masks may hold (background, painted and single labels)."""
        singles = [r.labels[0] for r in self.regions if len(r.labels) == 1]
        return region_labels(self.order, singles)


def _values(name: str, value: Any, path: Path) -> list[int]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise DatasetError(f"{path}: label {name!r} is {value!r}; expected a label value or a "
                           "list of label values (a region)")
    return [int(v) for v in items]


def regions_of(meta: dict[str, Any], path: Path) -> RegionDeclaration | None:
    """The regions of a parsed ``dataset.json`` (``path`` names it in errors); None without.

    Raises:
        DatasetError: a region holds a label that is neither painted nor declared on its own,
            ``regions_class_order`` is missing or of the wrong length, the ``ignore`` label is
            in a region, painted or not the highest value, or the labels are not ``0..K-1``.
    """
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw or str(next(iter(raw))).lstrip("-").isdigit():
        return None  # none, or nnU-Net v1 ({"0": "background"}): labels only
    entries = {str(k): _values(str(k), v, path) for k, v in raw.items() if str(k) != IGNORE_NAME}
    if not any(len(set(values)) > 1 for values in entries.values()):
        return None
    regions = [Region(name=name, labels=sorted(set(values))) for name, values in entries.items()
               if set(values) != {0}]
    order = meta.get("regions_class_order")
    if order is not None and not (isinstance(order, list)
                                  and all(isinstance(v, int) for v in order)):
        raise DatasetError(f"{path}: regions_class_order {order!r} is not a list of labels")
    declaration = RegionDeclaration(regions, order, path)
    problem = region_problem(regions, order)  # the form first, then the labels
    problem = problem or _unlabelled_problem(declaration, raw.get(IGNORE_NAME))
    problem = problem or region_problem(regions, order, declaration.labels)
    problem = problem or _not_consecutive(declaration.labels)
    if problem is not None:
        raise DatasetError(f"{path}: {problem}")
    return declaration


def _unlabelled_problem(declaration: RegionDeclaration, ignore: Any) -> str | None:
    """What is wrong with the file's ``ignore`` label next to its regions: held or painted by
    a region, or not above every region label (nnU-Net's convention); None if nothing is."""
    if not isinstance(ignore, int) or isinstance(ignore, bool):
        return None  # none (or not a value: read_dataset_json refuses that)
    problem = ignore_problem(declaration.regions, ignore, declaration.order)
    if problem is None and ignore < max(declaration.labels):
        problem = (f"the label 'ignore' ({ignore}) must have the highest value (nnU-Net's "
                   f"convention); the regions' labels are {declaration.labels}")
    return problem


def _not_consecutive(values: list[int]) -> str | None:
    if values == list(range(len(values))):
        return None
    return f"region-based training needs the labels 0..K-1 (nnU-Net's rule); these are {values}"


def read_regions(root: str | Path) -> RegionDeclaration | None:
    """The regions of ``root/dataset.json``; None when there is no such file or it declares
    none (``regions_of``).

    Raises:
        DatasetError: the file is in neither nnU-Net form (``read_dataset_json``'s message, so
            every command names the same problem) or its regions are not usable (one line).
    """
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None
    read_dataset_json(root)  # the strict reading first
    return regions_of(json.loads(path.read_text()), path)


def resolve_regions(regions: list[Region] | None, order: list[int] | None,
                    root: str | Path) -> RegionDeclaration | None:
    """The regions a run trains on: ``data.regions`` / ``data.regions_class_order`` when set
    (already checked by the config), else those ``root/dataset.json`` declares, else None."""
    if regions:
        return RegionDeclaration(list(regions), list(order or []), Path("data.regions"))
    return read_regions(root)


def region_label_names(declared: dict[int, str] | None,
                       declaration: RegionDeclaration) -> dict[int, str]:
    """``{label value: name}`` of a region task: the declared labels (``data.labels`` or
    dataset.json), the background and every painted label, named as declared, else after the
    last region that paints it, else ``classN``.

    Raises:
        DatasetError: a region holds a label outside them, or they are not ``0..K-1``
            (names ``declaration.source``).
    """
    names = {int(k): str(v) for k, v in (declared or {}).items()}
    values = sorted(set(names) | set(declaration.labels))
    problem = region_problem(declaration.regions, declaration.order, values)
    problem = problem or _not_consecutive(values)
    if problem is not None:
        raise DatasetError(f"{declaration.source}: {problem}")
    own = declared_region_names(declaration)
    return {v: names.get(v) or own.get(v, f"class{v}") for v in values}


def declared_region_names(declaration: RegionDeclaration) -> dict[int, str]:
    """``{label value: name}`` of the labels a region declaration holds (``.labels``): the
    background, each painted label after the last region that paints it, else ``classN``."""
    painted = {label: region.name for region, label in zip(declaration.regions,
                                                            declaration.order, strict=True)}
    return {v: "background" if v == 0 else painted.get(v, f"class{v}")
            for v in declaration.labels}
