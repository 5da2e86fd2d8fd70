"""Which overlapping regions an evaluation scores, and the metrics of one case per region.

A data set with overlapping regions (``unetkit.data.regions``) is scored per region, as nnU-Net
scores one: the prediction's region against the ground truth's, every metric
(``unetkit.metrics.regions``), the regions numbered ``1..R`` where labels would be. The regions
are ``regions=`` (``--region``); else those the ``dataset.json`` of the ground truth (its folder
or the parent) declares; else those of the region model that made the predictions, as
``PRED/predict.json`` records them (PNG or TIFF data have no ``dataset.json``); never when
``--labels`` asks for labels. Pixels that are not scored (the ignore label of the ground
truth, outside a region of interest) are off in every region of both maps.
"""

from __future__ import annotations

from pathlib import Path

from unetkit.config.regions import Region
from unetkit.data.regions import read_regions
from unetkit.evaluate.cases import LoadedCase
from unetkit.evaluate.tables import EVAL_METRICS
from unetkit.infer.manifest import read_manifest
from unetkit.metrics import case_metrics
from unetkit.metrics.regions import region_case_metrics


def scored_regions(gt_dir: str | Path, pred_dir: str | Path, labels: dict[int, str] | None,
                   regions: list[Region] | None) -> list[Region] | None:
    """The regions to score (module docstring), or None to score labels.

    Raises:
        DatasetError: the ``dataset.json``'s regions are not usable (one line naming it).
    """
    if regions is not None or labels is not None:
        return regions or None
    folder = Path(gt_dir).resolve()
    for candidate in (folder, folder.parent):
        if (candidate / "dataset.json").is_file():
            declared = read_regions(candidate)
            if declared is not None:
                return declared.regions
            break
    recorded = read_manifest(Path(pred_dir)).decision.get("regions") or []
    return [Region.model_validate(region) for region in recorded] or None


def case_scores(case: LoadedCase, labels: list[int], regions: list[Region] | None, tau: float
                ) -> dict[int, dict[str, float]]:
    """``EVAL_METRICS`` of one case per label, or per region ``1..R`` when ``regions`` are
    given. Unscored pixels (outside the region of interest, ignored by the ground truth:
    ``case.roi``) are background in both label maps already; for regions they are also off in
    every region map, even a region that holds the background."""
    if regions:
        return region_case_metrics(case.pred, case.gt, [r.labels for r in regions],
                                   spacing=case.spacing, metrics=EVAL_METRICS, tau=tau,
                                   scored=case.roi)
    return case_metrics(case.pred, case.gt, labels, spacing=case.spacing, metrics=EVAL_METRICS,
                        tau=tau)
