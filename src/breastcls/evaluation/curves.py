"""Plots of the clinical metrics: ROC, precision-recall and reliability diagrams (PNG files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.evaluation.plots import pyplot, save_figure

__all__ = ["plot_precision_recall", "plot_reliability", "plot_roc"]


def plot_roc(
    y_true: npt.NDArray[np.bool_],
    score: npt.NDArray[np.float64],
    path: Path,
    *,
    positive: str,
    operating_points: Mapping[str, tuple[float, float]] = {},
) -> Path:
    """Plot the ROC curve with its AUC, and mark operating points ``name: (fpr, tpr)``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = pyplot()
    fpr, tpr, _ = roc_curve(y_true, score)
    auc = roc_auc_score(y_true, score)
    figure, axes = plt.subplots(figsize=(5, 4.6))
    axes.plot(fpr, tpr, lw=2, label=f"ROC (AUC = {auc:.3f})")
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    for name, (x, y) in operating_points.items():
        axes.scatter([x], [y], s=36, zorder=3, label=name)
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.set_title(f"ROC curve, positive class: {positive}")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return save_figure(figure, path)


def plot_precision_recall(
    y_true: npt.NDArray[np.bool_], score: npt.NDArray[np.float64], path: Path, *, positive: str
) -> Path:
    """Plot the precision-recall curve with its average precision and the prevalence line."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    plt = pyplot()
    precision, recall, _ = precision_recall_curve(y_true, score)
    ap = average_precision_score(y_true, score)
    figure, axes = plt.subplots(figsize=(5, 4.6))
    axes.step(recall, precision, where="post", lw=2, label=f"AP = {ap:.3f}")
    prevalence = float(np.mean(y_true))
    axes.axhline(prevalence, ls="--", color="grey", lw=1, label=f"prevalence {prevalence:.2f}")
    axes.set_xlabel("recall (sensitivity)")
    axes.set_ylabel("precision (PPV)")
    axes.set_title(f"Precision-recall, positive class: {positive}")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize=8)
    return save_figure(figure, path)


def plot_reliability(
    bins: Sequence[Mapping[str, Any]], path: Path, *, n_bins: int, ece: float
) -> Path:
    """Plot a reliability diagram: accuracy against confidence per bin, with bin counts."""
    plt = pyplot()
    figure, (axes, counts) = plt.subplots(
        2, 1, figsize=(5, 5.4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    width = 1.0 / n_bins
    lowers = [b["lower"] for b in bins]
    axes.bar(
        lowers,
        [b["accuracy"] for b in bins],
        width=width,
        align="edge",
        edgecolor="black",
        alpha=0.75,
        label="accuracy",
    )
    axes.bar(
        lowers,
        [b["confidence"] - b["accuracy"] for b in bins],
        bottom=[b["accuracy"] for b in bins],
        width=width,
        align="edge",
        color="red",
        alpha=0.25,
        label="gap",
    )
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(f"Reliability diagram (ECE = {ece:.3f})")
    axes.legend(loc="upper left", fontsize=8)
    counts.bar(lowers, [b["count"] for b in bins], width=width, align="edge", color="grey")
    counts.set_xlabel("confidence (top-class probability)")
    counts.set_ylabel("images")
    counts.set_xlim(0, 1)
    return save_figure(figure, path)
