"""ROC and precision-recall curves of an evaluation's threshold-free scores, as one PNG.

The pooled curve (every pixel of every case inside its region of interest: the published
protocol) is drawn bold, each case's curve as a light line behind it; the legend gives the
areas. A dot marks where the written masks operate (their pooled sensitivity, specificity and
precision).
"""

from __future__ import annotations

import io
import math
from typing import Any

_POOLED, _CASES, _POINT = "#1f5fa8", "#9aa5b1", "#d1495b"


def _label(name: str, value: float) -> str:
    return f"{name} ({'n/a' if math.isnan(value) else f'{value:.4f}'})"


def roc_pr_png(scores: Any, dpi: int = 90) -> bytes:
    """ROC (left) and PR (right) curves of a ``ProbabilityScores`` with curves, as PNG bytes.

    Args:
        scores: ``unetkit.metrics.probability.ProbabilityScores`` computed with curve points.
        dpi: resolution of the PNG.
    """
    import matplotlib.pyplot as plt

    pooled, mean = scores.pooled, scores.mean
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.6))
    for index, curve in enumerate(scores.case_curves):
        first = index == 0
        roc.plot(curve["fpr"], curve["tpr"], color=_CASES, lw=0.8, alpha=0.6,
                 label=_label("cases, mean AUC", mean["roc_auc"]) if first else None)
        pr.plot(curve["recall"], curve["precision"], color=_CASES, lw=0.8, alpha=0.6,
                label=_label("cases, mean AP", mean["pr_auc"]) if first else None)
    curve = scores.pooled_curves
    roc.plot(curve["fpr"], curve["tpr"], color=_POOLED, lw=2.2,
             label=_label("pooled, AUC", pooled["roc_auc"]))
    pr.plot(curve["recall"], curve["precision"], color=_POOLED, lw=2.2,
            label=_label("pooled, AP", pooled["pr_auc"]))
    roc.plot([0, 1], [0, 1], ls="--", lw=0.8, color="#888888", label="chance")
    total = pooled["tp"] + pooled["fp"] + pooled["fn"] + pooled["tn"]
    prevalence = (pooled["tp"] + pooled["fn"]) / total if total else math.nan
    pr.axhline(prevalence, ls="--", lw=0.8, color="#888888",
               label=f"chance (prevalence {prevalence:.3f})")
    roc.plot([1 - pooled["specificity"]], [pooled["sensitivity"]], "o", color=_POINT,
             label=f"masks as written (accuracy {pooled['accuracy']:.4f})")
    pr.plot([pooled["sensitivity"]], [pooled["precision"]], "o", color=_POINT,
            label=f"masks as written (F1 {pooled['f1']:.4f})")
    roc.set(xlabel="false positive rate (1 - specificity)",
            ylabel="true positive rate (sensitivity)", title="ROC curve")
    pr.set(xlabel="recall (sensitivity)", ylabel="precision", title="precision-recall curve")
    for ax, where in ((roc, "lower right"), (pr, "lower left")):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(loc=where, fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()
