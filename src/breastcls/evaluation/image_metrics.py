"""The image-level clinical metrics: ROC and precision-recall curves, bootstrap intervals of the
headline figures, operating thresholds and calibration.

Every interval is a class-stratified percentile bootstrap
(:func:`~breastcls.evaluation.clinical.stratified_resampling`): whole patients are drawn within
each class when patient ids are known, images otherwise. Sections with intervals record how
under ``interval_method`` and list ``warnings`` (a class with fewer than five patients, a
statistic undefined in some resamples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.evaluation.clinical import (
    DEFAULT_BOOTSTRAP,
    BootstrapOptions,
    Resampling,
    exact_bounds,
    expected_calibration_error,
    image_statistics,
    reliability_bins,
    safe_auc,
    stratified_resampling,
)
from breastcls.evaluation.sections import (
    as_dicts,
    interval_warnings,
    intervals_of,
    operating_point,
    patient_warnings,
    positive_fields,
    side_counts,
    with_warnings,
)
from breastcls.inference.decision import (
    binary_view,
    choose_thresholds,
    positive_group,
    threshold_names,
)
from breastcls.interfaces import MetricSection, Predictions

__all__ = ["BootstrapMetric", "CalibrationMetric", "ThresholdsMetric", "roc_metric"]


def roc_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """ROC and precision-recall curves of the positive class, with AUC and average precision."""
    from sklearn.metrics import average_precision_score

    from breastcls.evaluation.curves import plot_precision_recall, plot_roc

    view = binary_view(predictions)
    values: dict[str, Any] = {
        **positive_fields(view),
        "n_positive": int(view.y_true.sum()),
        "n_negative": int((~view.y_true).sum()),
        "auc": safe_auc(view.y_true, view.score),
        "average_precision": None,
    }
    if values["auc"] is None:
        return MetricSection(
            name="roc",
            title="ROC and precision-recall curves",
            values=values,
            text="Only one class is present: ROC and precision-recall curves are undefined.",
        )
    values["average_precision"] = float(average_precision_score(view.y_true, view.score))
    figures = (
        plot_roc(view.y_true, view.score, out_dir / "roc.png", positive=view.positive),
        plot_precision_recall(
            view.y_true, view.score, out_dir / "precision_recall.png", positive=view.positive
        ),
    )
    return MetricSection(
        name="roc", title="ROC and precision-recall curves", values=values, figures=figures
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapMetric:
    """Seeded class-stratified percentile-bootstrap confidence intervals of the image-level
    headline figures, resampling whole patients when known.

    Attributes:
        bootstrap: Resamples, seed (the same seed gives the same intervals) and confidence
            level of the intervals.
    """

    bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Intervals for accuracy, sensitivity, specificity, F1 and AUC (and, with more than two
        classes, the accuracy of the positive-vs-rest decision)."""
        view = binary_view(predictions)
        resampling = stratified_resampling(predictions, self.bootstrap)
        intervals = intervals_of(
            image_statistics(predictions), resampling.image_weights, level=self.bootstrap.level
        )
        unit = resampling.resampled
        counts = side_counts(predictions, resampling.per_class)
        warnings = (
            patient_warnings(predictions, counts, intervals, self.bootstrap.n_resamples)
            if unit == "patients"
            else interval_warnings(counts, unit, intervals, self.bootstrap.n_resamples)
        )
        caveat = (
            "Whole patients are drawn, so the correlation of one patient's images is respected."
            if unit == "patients"
            else "Patient ids are unknown: if several images come from one patient, these "
            "intervals are narrower than the true uncertainty."
        )
        return MetricSection(
            name="bootstrap",
            title=f"{self.bootstrap.level:.0%} bootstrap confidence intervals",
            values={
                **positive_fields(view),
                "resampled": unit,
                "method": resampling.method,
                "n_resamples": self.bootstrap.n_resamples,
                "seed": self.bootstrap.seed,
                "level": self.bootstrap.level,
                "resampled_per_class": counts,
                "interval_method": resampling.describe(),
                "intervals": as_dicts(intervals),
                "exact_per_patient": exact_bounds(resampling.patients, level=self.bootstrap.level),
                "warnings": warnings,
            },
            text=_interval_text(resampling, caveat, warnings),
        )


def _interval_text(resampling: Resampling, caveat: str, warnings: list[str]) -> str:
    unit = resampling.resampled
    options = resampling.options
    text = (
        f"{options.level:.0%} percentile intervals, {resampling.method}: {options.n_resamples} "
        f"resamples (seed {options.seed}), {unit} drawn with replacement within each true "
        f"class, so every resample has as many {unit} of each class as the evaluated set. "
        f"{caveat}".rstrip()
    )
    return with_warnings(text, warnings)


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdsMetric:
    """Operating points on the positive class's probability.

    The thresholds come with the predictions when they were chosen earlier on the selection set
    (``thresholds.json`` of a run), and are then applied unchanged; otherwise they are chosen on
    these predictions, which is only honest for the selection set.

    Each operating point's sensitivity and specificity carry class-stratified bootstrap
    intervals drawn with the same seed, so the same resamples, as the ``bootstrap`` section.

    Attributes:
        target_specificity: Specificity floor of ``sensitivity_at_specificity_<t>``.
        target_sensitivity: Sensitivity floor of ``specificity_at_sensitivity_<t>``.
        bootstrap: Resamples, seed (the same seed gives the same intervals) and confidence
            level of the intervals.
    """

    target_specificity: float = 0.95
    target_sensitivity: float = 0.95
    bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Sensitivity, specificity, precision, NPV, accuracy and F1 at each threshold."""
        view = binary_view(predictions)
        described = positive_group(predictions.class_names).describe(predictions.class_names)
        meanings = threshold_names(
            target_specificity=self.target_specificity, target_sensitivity=self.target_sensitivity
        )
        if predictions.thresholds:
            thresholds = dict(predictions.thresholds)
            source = "selection set (chosen there, applied unchanged)"
        else:
            thresholds = choose_thresholds(
                view.y_true,
                view.score,
                target_specificity=self.target_specificity,
                target_sensitivity=self.target_sensitivity,
            )
            source = "these predictions (fitted on the data they are evaluated on)"
        resampling = stratified_resampling(predictions, self.bootstrap)
        points = [
            operating_point(
                name,
                threshold,
                view.y_true,
                view.score,
                resampling.image_weights,
                level=self.bootstrap.level,
                rates=("sensitivity", "specificity", "precision", "npv", "accuracy", "f1"),
            )
            for name, threshold in thresholds.items()
        ]
        text = "\n".join(f"{name}: {meanings.get(name, 'given')}" for name in thresholds)
        return MetricSection(
            name="thresholds",
            title="Operating thresholds",
            values={
                **positive_fields(view),
                "chosen_on": source,
                "operating_points": points,
                "interval_method": resampling.describe(),
            },
            text=(
                f"An image is called {view.positive} when its score, {described}, is >= the "
                f"threshold.\n{text}"
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationMetric:
    """Expected calibration error and the reliability diagram.

    When the predictions were temperature-scaled and carry the model's raw outputs, the ECE
    before scaling is reported too.

    Attributes:
        n_bins: Number of equal-width confidence bins.
    """

    n_bins: int = 10

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """ECE, Brier score (positive class), NLL and reliability bins."""
        from breastcls.evaluation.curves import plot_reliability

        probabilities = predictions.probabilities
        y_true = predictions.y_true
        bins = reliability_bins(probabilities, y_true, n_bins=self.n_bins)
        ece = expected_calibration_error(probabilities, y_true, n_bins=self.n_bins)
        view = binary_view(predictions)
        picked = probabilities[np.arange(len(y_true)), y_true]
        values: dict[str, Any] = {
            "ece": ece,
            "n_bins": self.n_bins,
            "brier": float(np.mean((view.score - view.y_true) ** 2)),
            "nll": float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0)))),
            "temperature": predictions.temperature,
            "ece_before_temperature": None,
            "bins": bins,
        }
        if predictions.temperature is not None and predictions.raw_probabilities is not None:
            values["ece_before_temperature"] = expected_calibration_error(
                predictions.raw_probabilities, y_true, n_bins=self.n_bins
            )
        figure = plot_reliability(bins, out_dir / "reliability.png", n_bins=self.n_bins, ece=ece)
        note = (
            f"Probabilities temperature-scaled with T = {predictions.temperature:.3f} "
            "(fitted on the selection set)."
            if predictions.temperature is not None
            else "Raw model probabilities (no temperature scaling)."
        )
        return MetricSection(
            name="calibration",
            title="Calibration",
            values=values,
            figures=(figure,),
            text=note,
        )
