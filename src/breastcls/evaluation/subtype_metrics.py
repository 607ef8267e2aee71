"""The per-class (subtype) metric: one-vs-rest AUC of each class, macro AUC and balanced
accuracy, with class-stratified bootstrap intervals, for classifiers of more than two classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.evaluation.clinical import (
    DEFAULT_BOOTSTRAP,
    BootstrapOptions,
    Interval,
    Resampling,
    percentile_interval,
    stratified_resampling,
    weighted_auc,
)
from breastcls.evaluation.sections import (
    as_dicts,
    interval_warnings,
    intervals_sentence,
    unavailable,
    with_warnings,
)
from breastcls.inference.decision import FloatArray
from breastcls.interfaces import MetricSection, Predictions

__all__ = ["SubtypeMetric"]


_Resampled = tuple[float, FloatArray]
"""A statistic's estimate on the evaluated set and its values in the resamples."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtypeMetric:
    """Per-class one-vs-rest AUC, macro one-vs-rest AUC and balanced accuracy, with
    class-stratified bootstrap intervals; for classifiers of more than two classes (the BreakHis
    subtypes).

    Attributes:
        bootstrap: Resamples, seed (the same seed gives the same intervals) and confidence
            level of the intervals.
    """

    bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Per class: one-vs-rest AUC with its interval and recall; macro AUC and balanced
        accuracy with theirs."""
        names = predictions.class_names
        title = "Per class: one-vs-rest AUC and balanced accuracy"
        if len(names) <= 2:
            return unavailable(
                "subtype", title, "Two classes: the ROC and bootstrap sections cover them."
            )
        resampling = stratified_resampling(predictions, self.bootstrap)
        aucs, recalls = _one_vs_rest_statistics(predictions, resampling.image_weights)
        intervals: dict[str, Interval] = {
            "macro_auc": _mean_interval(list(aucs.values()), level=self.bootstrap.level),
            "balanced_accuracy": _mean_interval(list(recalls.values()), level=self.bootstrap.level),
        }
        counts = {name: resampling.per_class[c] for c, name in enumerate(names)}
        warnings = interval_warnings(
            counts, resampling.resampled, intervals, self.bootstrap.n_resamples
        )
        values: dict[str, Any] = {
            "available": True,
            **as_dicts(intervals),
            "macro_over": [names[c] for c in aucs],
            "per_class": self._per_class_table(predictions, resampling, aucs, recalls),
            "interval_method": resampling.describe(),
            "warnings": warnings,
        }
        text = (
            "One-vs-rest AUC of each class's probability; macro AUC = their mean over the "
            "classes present (macro_over); balanced accuracy = mean recall of the top-class "
            "decision over the classes present. "
            + intervals_sentence(resampling.method, self.bootstrap)
        )
        return MetricSection(
            name="subtype", title=title, values=values, text=with_warnings(text, warnings)
        )

    def _per_class_table(
        self,
        predictions: Predictions,
        resampling: Resampling,
        aucs: dict[int, _Resampled],
        recalls: dict[int, _Resampled],
    ) -> dict[str, dict[str, Any]]:
        y_true = np.asarray(predictions.y_true)
        per_class: dict[str, dict[str, Any]] = {}
        for c, name in enumerate(predictions.class_names):
            interval = (
                percentile_interval(aucs[c][0], aucs[c][1], level=self.bootstrap.level)
                if c in aucs
                else Interval(estimate=None, low=None, high=None)
            )
            per_class[name] = {
                "n_images": int((y_true == c).sum()),
                "n_patients": (
                    resampling.per_class[c] if resampling.resampled == "patients" else None
                ),
                "auc": interval.estimate,
                "auc_low": interval.low,
                "auc_high": interval.high,
                "recall": recalls[c][0] if c in recalls else None,
            }
        return per_class


def _one_vs_rest_statistics(
    predictions: Predictions, weights: FloatArray
) -> tuple[dict[int, _Resampled], dict[int, _Resampled]]:
    """Each present class's one-vs-rest AUC (when some images are of other classes) and recall
    of the top-class decision, keyed by class index."""
    full = np.ones((1, len(predictions.y_true)))
    y_true = np.asarray(predictions.y_true)
    y_pred = np.asarray(predictions.y_pred)
    probabilities = np.asarray(predictions.probabilities, dtype=np.float64)
    aucs: dict[int, _Resampled] = {}
    recalls: dict[int, _Resampled] = {}
    for c in range(len(predictions.class_names)):
        truth = y_true == c
        if not truth.any():
            continue
        hit = (truth & (y_pred == c)).astype(np.float64)

        def recall(w: FloatArray, hit: FloatArray = hit, truth: Any = truth) -> FloatArray:
            return np.asarray((w @ hit) / (w @ truth.astype(np.float64)), dtype=np.float64)

        recalls[c] = (float(recall(full)[0]), recall(weights))
        if not truth.all():
            aucs[c] = (
                float(_auc(truth, probabilities[:, c], full)[0]),
                _auc(truth, probabilities[:, c], weights),
            )
    return aucs, recalls


def _auc(truth: Any, score: FloatArray, weights: FloatArray) -> FloatArray:
    return weighted_auc(np.asarray(truth, dtype=bool), score, weights)


def _mean_interval(parts: list[_Resampled], *, level: float) -> Interval:
    """Interval of the mean of several statistics (estimates and resampled values)."""
    if not parts:
        return Interval(estimate=None, low=None, high=None)
    estimate = float(np.mean([estimate for estimate, _ in parts]))
    samples = np.mean(np.stack([values for _, values in parts]), axis=0)
    return percentile_interval(estimate, samples, level=level)
