"""Prediction folder vs ground-truth folder -> per-case table, summary and an HTML report.

Cases are matched by file name without suffix (``case_01.png`` <-> ``case_01.nii.gz``), also
after dropping a ``_mask`` / ``_seg`` / ``_label`` / ``_gt`` / ``_pred`` ending. Every metric
comes from ``unetkit.metrics.case_metrics``; the summary from ``unetkit.metrics.aggregate``.
Outputs, self-contained in one folder: ``per_case.csv``, ``summary.json``, ``report.html``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data import io
from unetkit.metrics import aggregate, case_metrics, foreground_mean

log = logging.getLogger(__name__)

EVAL_METRICS = ("dice", "iou", "hd95", "assd", "surface_dice", "volume_difference")
_ENDING = re.compile(r"[_-](mask|masks|seg|label|labels|gt|pred|prediction)$", re.IGNORECASE)


@dataclass
class EvaluationResult:
    """Per-case metrics ``{case: {label: {metric: value}}}``, their summary and written files."""

    per_case: dict[str, dict[int, dict[str, float]]]
    summary: dict[str, Any]
    labels: dict[int, str]
    files: dict[str, Path] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)


def case_key(path: Path) -> str:
    """Matching key of a file: its name without suffix and without a mask-like ending."""
    return _ENDING.sub("", io.split_suffix(path)[0])


def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
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
    preds, gts = _files(Path(pred_dir)), _files(Path(gt_dir))
    pairs = [(key, preds[key], gts[key]) for key in sorted(gts) if key in preds]
    if not pairs:
        raise FileNotFoundError(f"no prediction in {pred_dir} matches a ground truth in {gt_dir} "
                                f"(compared names: {sorted(preds)[:3]} vs {sorted(gts)[:3]})")
    return pairs, [key for key in sorted(gts) if key not in preds]


def evaluate_folders(
    pred_dir: str | Path,
    gt_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    labels: dict[int, str] | None = None,
    spacing: Sequence[float] | None = None,
    tau: float = 1.0,
    images_dir: str | Path | None = None,
    report: Callable[..., Path] | None = None,
) -> EvaluationResult:
    """Score every prediction against its ground truth; write CSV, JSON (and HTML) outputs.

    Args:
        pred_dir: folder of predicted masks.
        gt_dir: folder of ground-truth masks (or a data folder with a ``masks`` sub-folder).
        out_dir: where to write ``per_case.csv``, ``summary.json`` and the report; None: no files.
        labels: ``{label: name}`` to score (default: every non-zero label in the ground truth).
        spacing: voxel size per axis (default: each ground-truth file's own spacing).
        tau: surface-Dice tolerance in the units of the spacing.
        images_dir: images to draw the overlays on (matched by name; default: none, the
            overlays then show the masks alone).
        report: ``report(out_dir, result, overlays)`` writing ``report.html`` (e.g.
            ``unetkit.report.write_html_report``); None: no HTML.

    Returns:
        The ``EvaluationResult``; cases that failed (unreadable, shape mismatch) are listed in
        ``failed`` and left out.
    """
    pairs, missing = match_cases(Path(pred_dir), Path(gt_dir))
    loaded, failed = {}, [(key, "no prediction") for key in missing]
    for key, pred_path, gt_path in pairs:
        try:
            pred, _ = io.read_mask(pred_path)
            gt, geometry = io.read_mask(gt_path)
            pred, gt = _as_labels(pred), _as_labels(gt)
            if pred.shape != gt.shape:
                raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ "
                                 "in shape")
            loaded[key] = (pred, gt, tuple(spacing) if spacing else geometry.spacing)
        except Exception as exc:  # report and go on with the other cases
            failed.append((key, f"{type(exc).__name__}: {exc}"))
            log.warning("%s: not evaluated (%s)", key, exc)
    if not loaded:
        raise ValueError(f"no case could be evaluated: {failed[:3]}")
    if labels is None:
        values = sorted({int(v) for _, gt, _ in loaded.values() for v in np.unique(gt)} - {0})
        labels = {v: f"class{v}" for v in values or [1]}
    per_case = {key: case_metrics(pred, gt, sorted(labels), spacing=sp, metrics=EVAL_METRICS,
                                  tau=tau) for key, (pred, gt, sp) in loaded.items()}
    result = EvaluationResult(per_case, aggregate(per_case), dict(labels), failed=failed)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.files["csv"] = write_csv(result, out / "per_case.csv")
        result.files["json"] = write_summary(result, out / "summary.json")
        if report is not None:
            overlays = _overlay_cases(result, loaded, images_dir)
            result.files["html"] = report(out, result, overlays)
    return result


def _as_labels(mask: np.ndarray) -> np.ndarray:
    """A binary mask stored as 0/255 holding only 255 (all foreground) -> 1, as read_mask does
    for masks holding both values."""
    if mask.size and mask.max() == 255 and np.isin(mask, (0, 255)).all():
        return (mask == 255).astype(np.uint8)
    return mask


def case_score(result: EvaluationResult, case: str) -> float:
    """Mean foreground Dice of one case (NaN if undefined)."""
    return foreground_mean(result.per_case[case]).get("dice", math.nan)


def ranked_cases(result: EvaluationResult) -> list[str]:
    """Cases from best to worst mean Dice (undefined last)."""
    scores = {case: case_score(result, case) for case in result.per_case}
    return sorted(scores, key=lambda c: (math.isnan(scores[c]), -np.nan_to_num(scores[c])))


def _overlay_cases(result: EvaluationResult, loaded: dict, images_dir: str | Path | None,
                   count: int = 3) -> list[dict[str, Any]]:
    """Image, prediction and ground truth of the best and worst ``count`` cases."""
    ranked = ranked_cases(result)
    chosen = [("best", c) for c in ranked[:count]]
    chosen += [("worst", c) for c in ranked[::-1][:count] if c not in ranked[:count]]
    images = _files(Path(images_dir)) if images_dir else {}
    out = []
    for kind, case in chosen:
        pred, gt, _ = loaded[case]
        image = None
        if case in images:
            try:
                image = io.read_image(images[case])[0]
            except Exception as exc:  # an overlay without its image is still useful
                log.warning("%s: image not readable for the overlay (%s)", case, exc)
        if image is None or image.shape[1:] != gt.shape:
            image = gt[None].astype(np.float32)
        out.append({"kind": kind, "case": case, "score": case_score(result, case),
                    "image": image, "pred": pred, "gt": gt})
    return out


def table_rows(result: EvaluationResult) -> list[dict[str, Any]]:
    """One row per case and label: ``case, label, name`` and every metric."""
    rows = []
    for case, per_label in result.per_case.items():
        for label, values in per_label.items():
            rows.append({"case": case, "label": label, "name": result.labels.get(label, ""),
                         **values})
    return rows


def write_csv(result: EvaluationResult, path: Path) -> Path:
    """``per_case.csv``: one row per case and label (empty cell for NaN)."""
    rows = table_rows(result)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "label", "name", *EVAL_METRICS])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v)
                             for k, v in row.items()})
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_summary(result: EvaluationResult, path: Path) -> Path:
    """``summary.json``: labels, aggregate statistics, per-case foreground means, failures."""
    data = {"labels": result.labels, "metrics": list(EVAL_METRICS), **result.summary,
            "failed": [{"case": c, "error": e} for c, e in result.failed]}
    path.write_text(json.dumps(_json_safe(data), indent=2))
    return path
