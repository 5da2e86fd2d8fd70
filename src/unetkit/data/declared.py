"""The labels a data set declares: its classes, its ignore label and its overlapping regions.

One resolution for the data doctor, training and the planner's fingerprint, so that the three
agree on what a mask may hold:

* the classes: ``data.labels`` (``--labels``) or ``dataset.json``'s; with overlapping regions
  (``data.regions``, else ``dataset.json``'s: ``unetkit.data.regions``) also the background
  and every label the regions paint or declare on their own, named as declared, else after the
  region that paints them (``region_label_names``);
* the ignore label (``unetkit.data.ignore.ignore_value``): ``data.ignore_label``, else the label
  named ``ignore`` in the declared labels. It is checked against the classes and the region
  labels together: nnU-Net's ``ignore`` has the highest value of all, and a configured one may
  not be a class. It is never a class (no network channel), and a region that holds or paints
  it is refused: an unlabelled pixel is in no region, so it counts in no region's loss or
  metric (training masks carry ``IGNORE`` there, ``train.loss.ignore_index``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unetkit.config.regions import Region, ignore_problem
from unetkit.data.dataset_json import read_dataset_json
from unetkit.data.geometry import DatasetError
from unetkit.data.ignore import class_labels, ignore_value
from unetkit.data.regions import (
    RegionDeclaration,
    declared_region_names,
    region_label_names,
    resolve_regions,
)

Labels = dict[int, str] | list[int]


@dataclass(frozen=True)
class DeclaredLabels:
    """What ``declare_labels`` found.

    Attributes:
        classes: the class label values, named when the names are known (a dict), or the bare
            values of ``--labels``; None: none declared (the masks' values are the classes).
        ignore: the mask value of unlabelled pixels, or None.
        regions: the overlapping regions trained and scored, or None (label training).
    """

    classes: Labels | None
    ignore: int | None = None
    regions: RegionDeclaration | None = None

    def allowed(self) -> Labels | None:
        """The values a mask may hold: the classes and the ignore label (None: any value)."""
        if self.classes is None or self.ignore is None:
            return self.classes
        if isinstance(self.classes, dict):
            return {**self.classes, self.ignore: "ignore"}
        return sorted({*self.classes, self.ignore})


def declare_labels(root: str | Path, labels: Labels | None = None,
                   ignore_label: int | None = None, regions: list[Region] | None = None,
                   order: list[int] | None = None) -> DeclaredLabels:
    """The classes, ignore label and regions of the data folder ``root`` (module docstring).

    Args:
        root: the data folder (its ``dataset.json`` is read when present).
        labels: ``data.labels`` / ``--labels``; None: ``dataset.json``'s.
        ignore_label: ``data.ignore_label``; None: the label named ``ignore``.
        regions, order: ``data.regions`` / ``data.regions_class_order``; None: ``dataset.json``'s.

    Raises:
        DatasetError: ``dataset.json`` or its regions are not usable, or the ignore label breaks
            nnU-Net's convention or is a class (one line naming the file or option).
    """
    declared = labels or read_dataset_json(root)[0]
    declaration = resolve_regions(regions, order, root)
    if isinstance(declared, list):  # bare values: no names, so no label named ignore
        return DeclaredLabels(declared, ignore_value(ignore_label, None), declaration)
    if declaration is None:
        ignore = ignore_value(ignore_label, declared)
        return DeclaredLabels(class_labels(declared, ignore), ignore)
    named = {**declared_region_names(declaration), **(declared or {})}
    ignore = ignore_value(ignore_label, named)
    problem = ignore_problem(declaration.regions, ignore, declaration.order)
    if problem is not None:
        raise DatasetError(f"{declaration.source}: {problem}")
    return DeclaredLabels(region_label_names(class_labels(named, ignore), declaration), ignore,
                          declaration)
