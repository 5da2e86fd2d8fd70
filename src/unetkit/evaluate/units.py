"""Units of the evaluation's numbers, and how they are written for people.

Distances (HD95, ASSD, the surface-Dice tolerance) are in the units of the spacing, volumes in
those units to the power of the dimension. Which units those are:

* ``mm``: the ground truth's geometry has an affine (NIfTI, NRRD, MHA, DICOM: millimetres by
  their standards), or ``--spacing`` was given (read as millimetres);
* ``pixels`` / ``voxels``: no spacing is known (PNG, JPEG, plain NumPy: spacing 1);
* ``spacing units``: a spacing without a stated unit (a TIFF's resolution, an ``.npz``'s
  ``spacing`` without an affine).

Cases of one evaluation that disagree give ``mixed units``.
"""

from __future__ import annotations

import math

from unetkit.data.geometry import length_unit
from unetkit.data.io import Geometry

DISTANCE_METRICS = ("hd95", "assd", "hausdorff")
VOLUME_METRICS = ("volume_difference",)
_POWER = {2: "²", 3: "³"}


def spacing_unit(geometry: Geometry, given: bool = False) -> str:
    """The length unit of a case: ``mm``, ``voxels`` or ``spacing units`` (module doc;
    ``metric_units`` says ``pixels`` for 2-D cases)."""
    if given:
        return "mm"
    unit = length_unit(geometry)
    return "voxels" if unit == "pixels" else unit


def common_unit(units: list[str]) -> str:
    """One unit for all cases: theirs when they agree, else ``mixed units``."""
    found = sorted(set(units))
    return found[0] if len(found) == 1 else "mixed units"


def metric_units(metrics: tuple[str, ...], unit: str, spatial_dims: int) -> dict[str, str]:
    """``{metric: unit}`` for every metric with a unit (distances, volumes); ``voxels`` reads
    ``pixels`` in 2-D and a volume of voxels is a count of them."""
    if unit == "voxels" and spatial_dims == 2:
        unit = "pixels"
    volume = unit if unit in ("voxels", "pixels", "mixed units") else \
        f"{unit}{_POWER.get(spatial_dims, f'^{spatial_dims}')}"
    units = {}
    for metric in metrics:
        if metric in DISTANCE_METRICS:
            units[metric] = unit
        elif metric in VOLUME_METRICS:
            units[metric] = volume
    return units


def header(metric: str, units: dict[str, str]) -> str:
    """A column header with its unit: ``hd95 [mm]``; the metric alone when it has none."""
    return f"{metric} [{units[metric]}]" if metric in units else metric


def format_value(value: float) -> str:
    """A number for a table: 4 significant digits, whole numbers with thousands separators
    from 1,000 on (``27,390`` rather than ``2.739e+04``); ``-`` for NaN."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return f"{value:,}"
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == 0 or abs(value) >= 0.001:
        return f"{value:.4g}"
    return f"{value:.2e}"


def quantity(value: float, unit: str) -> str:
    """``value`` with its unit, singular for exactly one: ``1 pixel``, ``2 pixels``, ``1 mm``."""
    if float(value) == 1.0 and unit.endswith("s"):
        unit = unit[:-1]
    return f"{value:g} {unit}"
