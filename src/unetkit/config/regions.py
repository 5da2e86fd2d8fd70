"""Overlapping regions (nnU-Net's region-based training): the config objects and their checks.

A region is a named set of label values of the integer masks: BraTS' whole tumour ``{1, 2, 3}``,
tumour core ``{2, 3}`` and enhancing tumour ``{3}``. A region model has one sigmoid output per
region (no background channel) and learns each region's membership map; its prediction paints
``regions_class_order[i]`` where region ``i`` is predicted, in that order (later regions
overwrite earlier ones), which turns the regions back into a label map. Region label values must
be the consecutive labels ``0..K-1`` (nnU-Net's rule), so a label value is also its class index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import Field

from unetkit.config.section import Section


class Region(Section):
    """One region: a name and the label values whose union it is."""

    name: str = Field(..., min_length=1, description="what the region is called in metrics and "
                      "reports, e.g. whole_tumor")
    labels: list[int] = Field(..., min_length=1, description="the label values it is the union "
                              "of, e.g. [1, 2, 3]")


def coerce_regions(value: Any) -> Any:
    """Accept the short forms of ``data.regions`` and return the long one.

    ``[[1, 2, 3], [2, 3], [3]]`` (named ``region1``, ``region2``, ...), ``{"whole_tumor": [1, 2,
    3], "enhancing_tumor": 3}`` (in order; a single value is a one-label region) and
    ``[{"name": ..., "labels": [...]}]`` all give ``[{"name": ..., "labels": [...]}, ...]``;
    anything else is left for pydantic to refuse.
    """
    if isinstance(value, Mapping):
        return [{"name": str(name), "labels": _as_list(labels)} for name, labels in value.items()]
    if isinstance(value, list):
        return [{"name": f"region{i + 1}", "labels": _as_list(item)}
                if isinstance(item, (list, tuple, int)) else item
                for i, item in enumerate(value)]
    return value


def _as_list(labels: Any) -> Any:
    return [labels] if isinstance(labels, int) else list(labels) if isinstance(
        labels, (list, tuple)) else labels


def region_problem(regions: Sequence[Region] | None, order: Sequence[int] | None,
                   labels: Iterable[int] | None = None) -> str | None:
    """What is wrong with a region declaration, in one phrase; None when nothing is.

    Args:
        regions: the regions, or None (no region training).
        order: ``regions_class_order``: the label painted for each region, in painting order.
        labels: the label values of the data set when known (every region label and every
            painted label must be one of them).
    """
    if regions is None:
        return "regions_class_order is set without regions" if order is not None else None
    if not regions:
        return "regions is empty (leave it null for label training)"
    if order is None:
        return ("regions_class_order is missing: the label painted where each region is "
                "predicted, one per region, in painting order (e.g. [1, 2, 3])")
    if len(order) != len(regions):
        return (f"regions_class_order has {len(order)} entries for {len(regions)} regions (one "
                "label per region, painted in this order)")
    names = [region.name for region in regions]
    if len(set(names)) < len(names):
        return f"region names {names} repeat a name"
    negative = sorted({v for r in regions for v in r.labels if v < 0} | {v for v in order if v < 0})
    if negative:
        return f"label values are never negative; got {negative}"
    if labels is None:
        return None
    known = {int(v) for v in labels}
    for region in regions:
        unknown = sorted(set(region.labels) - known)
        if unknown:
            return (f"region {region.name!r} holds label {unknown[0]}, which is not among the "
                    f"labels {sorted(known)}")
    unknown = sorted(set(order) - known)
    if unknown:
        return (f"regions_class_order paints label {unknown[0]}, which is not among the labels "
                f"{sorted(known)}")
    return None


def ignore_problem(regions: Sequence[Region] | None, ignore: int | None,
                   order: Sequence[int] | None = None) -> str | None:
    """What is wrong with an ignore label next to regions, in one phrase; None when nothing is:
    the ignore label marks unlabelled pixels, which are in no region, so no region may hold
    it and no region may paint it."""
    if not regions or ignore is None:
        return None
    for region in regions:
        if int(ignore) in region.labels:
            return (f"region {region.name!r} holds the ignore label {ignore}; unlabelled "
                    "pixels are in no region (leave it out of the region)")
    if order is not None and int(ignore) in order:
        return (f"regions_class_order paints the ignore label {ignore}; predictions never hold "
                "it (paint a class)")
    return None


def region_labels(order: Sequence[int], declared: Iterable[int] = ()) -> list[int]:
    """The label values of a region task: background, every painted label and the declared
    ones, sorted."""
    return sorted({0, *(int(v) for v in order), *(int(v) for v in declared)})


def region_names(regions: Sequence[Region]) -> dict[int, str]:
    """``{k: name}`` of the regions numbered from 1 (the keys metrics and reports use, like the
    foreground labels of label training)."""
    return {index + 1: region.name for index, region in enumerate(regions)}
