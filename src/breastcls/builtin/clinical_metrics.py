"""Built-in clinical metrics: ROC/PR, bootstrap intervals, operating thresholds, calibration,
patient level, magnification breakdown and the per-class (subtype) section. Each is a metric
plugin like any third party's.

Every interval is a class-stratified percentile bootstrap (:func:`stratified_resampling`): whole
patients are drawn within each class when patient ids are known, images otherwise. Sections with
intervals record how under ``interval_method`` and list ``warnings`` (a class with fewer than five
patients, a statistic undefined in some resamples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from breastcls.evaluation.clinical import (
    Interval,
    PatientRow,
    Resampling,
    binary_rates,
    bootstrap_interval,
    decision_statistics,
    exact_bounds,
    expected_calibration_error,
    few_units_warnings,
    image_statistics,
    patient_rows,
    patient_statistics,
    percentile_interval,
    reliability_bins,
    safe_auc,
    single_unit_warnings,
    stratified_resampling,
    subset,
    unit_noun,
    weighted_auc,
    zero_width_warnings,
)
from breastcls.inference.decision import (
    BinaryView,
    FloatArray,
    binary_view,
    choose_thresholds,
    positive_group,
    threshold_names,
)
from breastcls.interfaces import Metric, MetricSection, Predictions
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry

__all__ = [
    "BootstrapMetric",
    "CalibrationMetric",
    "MagnificationMetric",
    "PatientMetric",
    "SubtypeMetric",
    "ThresholdsMetric",
    "magnification_metric",
    "patient_metric",
    "roc_metric",
]


def _side_counts(predictions: Predictions, per_class: tuple[int, ...]) -> dict[str, int]:
    """Add per-class unit counts up into the two sides of the binary view."""
    group = positive_group(predictions.class_names)
    positive = sum(count for i, count in enumerate(per_class) if i in group.indices)
    return {group.name: positive, group.negative: sum(per_class) - positive}


def _undefined_warnings(
    intervals: dict[str, Interval], n_resamples: int, *, prefix: str = ""
) -> list[str]:
    return [
        f"{prefix}{name} was undefined in {interval.undefined} of {n_resamples} resamples "
        "(a class's images lie in other classes' patients); its interval uses the others"
        for name, interval in intervals.items()
        if interval.undefined and interval.estimate is not None
    ]


def _intervals_of(
    statistics: dict[str, Any], weights: FloatArray, *, level: float
) -> dict[str, Interval]:
    return {
        name: bootstrap_interval(statistic, weights, level=level)
        for name, statistic in statistics.items()
    }


def _as_dicts(intervals: dict[str, Interval]) -> dict[str, dict[str, float | None]]:
    return {name: interval.as_dict() for name, interval in intervals.items()}


def _interval_warnings(
    counts: dict[str, int],
    unit: str,
    intervals: dict[str, Interval],
    n_resamples: int,
    *,
    prefix: str = "",
) -> list[str]:
    """Warn about classes with few resampled units, statistics undefined in some resamples
    and intervals of zero width."""
    return (
        few_units_warnings(counts, unit, prefix=prefix)
        + _undefined_warnings(intervals, n_resamples, prefix=prefix)
        + zero_width_warnings(intervals, prefix=prefix)
    )


def _patient_warnings(
    predictions: Predictions, counts: dict[str, int], intervals: dict[str, Interval], n: int
) -> list[str]:
    """The warnings of intervals drawn by patient: a side that is one patient (biopsy) first,
    then :func:`_interval_warnings` with patients named as the units they are."""
    noun = unit_noun(predictions, 2)
    return single_unit_warnings(
        counts, lambda count: unit_noun(predictions, count)
    ) + _interval_warnings(counts, noun, intervals, n)


def _with_warnings(text: str, warnings: list[str]) -> str:
    return "\n".join([text, *(f"Warning: {warning}." for warning in warnings)])


def _intervals_sentence(how: str, *, level: float, n_resamples: int, seed: int) -> str:
    return f"{level:.0%} intervals: {how}, {n_resamples} resamples (seed {seed})."


def _positive_fields(view: BinaryView) -> dict[str, Any]:
    return {"positive_class": view.positive, "positive_classes": list(view.positive_classes)}


def _unavailable(
    name: str, title: str, reason: str, *, level: Literal["image", "patient"] = "image"
) -> MetricSection:
    """A section recording that these predictions lack what the metric needs."""
    return MetricSection(
        name=name, title=title, values={"available": False}, text=reason, level=level
    )


def roc_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """ROC and precision-recall curves of the positive class, with AUC and average precision."""
    from sklearn.metrics import average_precision_score

    from breastcls.evaluation.curves import plot_precision_recall, plot_roc

    view = binary_view(predictions)
    values: dict[str, Any] = {
        **_positive_fields(view),
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
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling: the same seed gives the same intervals.
        level: Confidence level.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Intervals for accuracy, sensitivity, specificity, F1 and AUC (and, with more than two
        classes, the accuracy of the positive-vs-rest decision)."""
        view = binary_view(predictions)
        resampling = stratified_resampling(
            predictions, n_resamples=self.n_resamples, seed=self.seed
        )
        intervals = _intervals_of(
            image_statistics(predictions), resampling.image_weights, level=self.level
        )
        unit = resampling.resampled
        counts = _side_counts(predictions, resampling.per_class)
        warnings = (
            _patient_warnings(predictions, counts, intervals, self.n_resamples)
            if unit == "patients"
            else _interval_warnings(counts, unit, intervals, self.n_resamples)
        )
        caveat = (
            "Whole patients are drawn, so the correlation of one patient's images is respected."
            if unit == "patients"
            else "Patient ids are unknown: if several images come from one patient, these "
            "intervals are narrower than the true uncertainty."
        )
        return MetricSection(
            name="bootstrap",
            title=f"{self.level:.0%} bootstrap confidence intervals",
            values={
                **_positive_fields(view),
                "resampled": unit,
                "method": resampling.method,
                "n_resamples": self.n_resamples,
                "seed": self.seed,
                "level": self.level,
                "resampled_per_class": counts,
                "interval_method": resampling.describe(level=self.level),
                "intervals": _as_dicts(intervals),
                "exact_per_patient": exact_bounds(resampling.patients, level=self.level),
                "warnings": warnings,
            },
            text=_interval_text(resampling, self.level, caveat, warnings),
        )


def _interval_text(resampling: Resampling, level: float, caveat: str, warnings: list[str]) -> str:
    unit = resampling.resampled
    text = (
        f"{level:.0%} percentile intervals, {resampling.method}: {resampling.n_resamples} "
        f"resamples (seed {resampling.seed}), {unit} drawn with replacement within each true "
        f"class, so every resample has as many {unit} of each class as the evaluated set. "
        f"{caveat}".rstrip()
    )
    return _with_warnings(text, warnings)


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
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        level: Confidence level.
    """

    target_specificity: float = 0.95
    target_sensitivity: float = 0.95
    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

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
        resampling = stratified_resampling(
            predictions, n_resamples=self.n_resamples, seed=self.seed
        )
        points = [
            self._point(view, name, threshold, resampling.image_weights)
            for name, threshold in thresholds.items()
        ]
        text = "\n".join(f"{name}: {meanings.get(name, 'given')}" for name in thresholds)
        return MetricSection(
            name="thresholds",
            title="Operating thresholds",
            values={
                **_positive_fields(view),
                "chosen_on": source,
                "operating_points": points,
                "interval_method": resampling.describe(level=self.level),
            },
            text=(
                f"An image is called {view.positive} when its score, {described}, is >= the "
                f"threshold.\n{text}"
            ),
        )

    def _point(
        self, view: BinaryView, name: str, threshold: float, weights: FloatArray
    ) -> dict[str, Any]:
        """One operating point: its rates, and its sensitivity's and specificity's intervals."""
        called = view.score >= threshold
        rates = binary_rates(view.y_true, called)
        intervals = _intervals_of(
            decision_statistics(view.y_true, called), weights, level=self.level
        )
        return {
            "name": name,
            "threshold": threshold,
            **{key: rates[key] for key in ("sensitivity", "specificity", "precision")},
            **{key: rates[key] for key in ("npv", "accuracy", "f1")},
            "intervals": _as_dicts(intervals),
        }


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


def _rates_with_auc(y_true: Any, y_pred: Any, score: Any) -> dict[str, Any]:
    rates = binary_rates(y_true, y_pred)
    return {
        "accuracy": rates["accuracy"],
        "sensitivity": rates["sensitivity"],
        "specificity": rates["specificity"],
        "auc": safe_auc(y_true, score),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientMetric:
    """Patient-level results with class-stratified patient-bootstrap intervals.

    The patient score is the mean of its images' positive score (probability of the positive
    class, or of the summed malignant subtypes). A patient is called positive when its score is
    at least 0.5, and, for each operating threshold chosen on the selection set
    (``predictions.thresholds``), when it reaches that threshold. Spanhol et al.'s patient
    recognition rate is the mean over patients of the share of that patient's images whose top
    class is right.

    Attributes:
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        level: Confidence level.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Patient accuracy, sensitivity, specificity, AUC and recognition rate, with intervals;
        the per-patient table; the selection set's operating points on the patient score."""
        rows = patient_rows(predictions)
        if not rows:
            return _unavailable(
                "patient",
                "Patient level",
                "No patient ids are known for these images: no patient-level results.",
                level="patient",
            )
        view = binary_view(predictions)
        truth = np.array([row.positive for row in rows])
        score = np.array([row.score for row in rows])
        resampling = stratified_resampling(
            predictions, n_resamples=self.n_resamples, seed=self.seed
        )
        intervals = _intervals_of(
            patient_statistics(rows), resampling.patient_weights, level=self.level
        )
        counts = {view.positive: int(truth.sum()), view.negative: int((~truth).sum())}
        warnings = _patient_warnings(predictions, counts, intervals, self.n_resamples)
        method = resampling.describe(level=self.level, resampled="patients")
        values: dict[str, Any] = {
            "available": True,
            **_positive_fields(view),
            "n_patients": len(rows),
            "n_images": sum(row.n_images for row in rows),
            **_rates_with_auc(truth, score >= 0.5, score),
            "patient_recognition_rate": float(np.mean([row.images_correct for row in rows])),
            "intervals": _as_dicts(intervals),
            "exact": exact_bounds(rows, level=self.level),
            "interval_method": method,
            "warnings": warnings,
            "patients": _patient_table(rows, predictions.class_names, view),
        }
        text = self._explanation(predictions, view, method)
        if predictions.thresholds:
            values["operating_points"] = [
                _patient_point(name, threshold, truth, score, resampling, level=self.level)
                for name, threshold in predictions.thresholds.items()
            ]
            text += (
                " Operating points: the thresholds chosen on the selection set, applied "
                "unchanged to the patient score."
            )
        return MetricSection(
            name="patient",
            title="Patient level",
            values=values,
            text=_with_warnings(text, warnings),
            level="patient",
        )

    def _explanation(
        self, predictions: Predictions, view: BinaryView, method: dict[str, Any]
    ) -> str:
        described = positive_group(predictions.class_names).describe(predictions.class_names)
        intervals = _intervals_sentence(
            method["method"], level=self.level, n_resamples=self.n_resamples, seed=self.seed
        )
        return (
            f"Patient score = mean of the patient's images' score ({described}); a patient is "
            f"called {view.positive} when the score is >= 0.5. Patient recognition rate "
            "(Spanhol et al., 2016) = mean over patients of the share of their images "
            f"classified correctly. {intervals}"
        )


def _patient_table(
    rows: list[PatientRow], class_names: tuple[str, ...], view: BinaryView
) -> list[dict[str, Any]]:
    return [
        {
            "patient_id": row.patient_id,
            "true": class_names[row.label],
            "score": round(row.score, 6),
            "predicted": view.positive if row.score >= 0.5 else view.negative,
            "n_images": row.n_images,
            "images_correct": round(row.images_correct, 6),
            "magnifications": ", ".join(f"{m}X" for m in row.magnifications),
            "slides": ", ".join(row.slides),
        }
        for row in rows
    ]


patient_metric = PatientMetric()
"""The ``patient`` metric with its defaults (1000 resamples, seed 0, 95%)."""


def _patient_rates(truth: Any, called: Any) -> dict[str, float | None]:
    rates = binary_rates(truth, called)
    return {key: rates[key] for key in ("sensitivity", "specificity", "accuracy")}


def _patient_point(
    name: str, threshold: float, truth: Any, score: Any, resampling: Resampling, *, level: float
) -> dict[str, Any]:
    """One operating point on the patient score, with intervals from the patient resamples."""
    called = score >= threshold
    intervals = _intervals_of(
        decision_statistics(truth, called), resampling.patient_weights, level=level
    )
    return {
        "name": name,
        "threshold": threshold,
        **_patient_rates(truth, called),
        "intervals": _as_dicts(intervals),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class MagnificationMetric:
    """Image-level accuracy, sensitivity, specificity and AUC, and the patient recognition rate,
    for each magnification, each with a class-stratified bootstrap interval drawn within that
    magnification's images.

    Attributes:
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        level: Confidence level.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """One row per magnification, with its ``intervals``."""
        mags = predictions.magnifications
        known = sorted({m for m in mags if m is not None})
        title = "By magnification"
        if not known:
            return _unavailable(
                "magnification",
                title,
                "No magnification is known for these images.",
                level="patient",
            )
        view = binary_view(predictions)
        breakdown = []
        warnings: list[str] = []
        method: dict[str, Any] = {}
        for magnification in known:
            rows = [i for i, m in enumerate(mags) if m == magnification]
            part = subset(predictions, rows)
            resampling = stratified_resampling(part, n_resamples=self.n_resamples, seed=self.seed)
            method = resampling.describe(level=self.level)
            intervals = self._intervals(part, resampling)
            warnings += _interval_warnings(
                _side_counts(part, resampling.per_class),
                resampling.resampled,
                intervals,
                self.n_resamples,
                prefix=f"{magnification}X: ",
            )
            breakdown.append(
                _magnification_row(magnification, part, rows, resampling.patients, intervals)
            )
        text = _intervals_sentence(
            f"{method['method']} within each magnification's images",
            level=self.level,
            n_resamples=self.n_resamples,
            seed=self.seed,
        )
        return MetricSection(
            name="magnification",
            title=title,
            values={
                "available": True,
                **_positive_fields(view),
                "breakdown": breakdown,
                "interval_method": method,
                "warnings": warnings,
            },
            text=_with_warnings(text, warnings),
            level="patient",
        )

    def _intervals(self, part: Predictions, resampling: Resampling) -> dict[str, Interval]:
        """Image-level intervals of one magnification's images, and the patient recognition
        rate's when its patients are known."""
        statistics = image_statistics(part)
        kept = ("accuracy", "binary_accuracy", "sensitivity", "specificity", "auc")
        intervals = _intervals_of(
            {k: statistics[k] for k in kept if k in statistics},
            resampling.image_weights,
            level=self.level,
        )
        if resampling.patients:
            recognition = patient_statistics(list(resampling.patients))["patient_recognition_rate"]
            intervals["patient_recognition_rate"] = bootstrap_interval(
                recognition, resampling.patient_weights, level=self.level
            )
        return intervals


def _magnification_row(
    magnification: int,
    part: Predictions,
    rows: list[int],
    patients: tuple[PatientRow, ...],
    intervals: dict[str, Interval],
) -> dict[str, Any]:
    """One magnification's figures. ``accuracy`` is the top-class accuracy, as its interval
    (with subtypes, the positive-vs-rest one is ``binary_accuracy``, with its own interval)."""
    view = binary_view(part)
    binary = _rates_with_auc(view.y_true, view.y_pred, view.score)
    several = len(part.class_names) > 2
    return {
        "magnification": f"{magnification}X",
        "n_images": len(rows),
        "n_patients": len(patients),
        **binary,
        "accuracy": float(np.mean(part.y_true == part.y_pred)),
        **({"binary_accuracy": binary["accuracy"]} if several else {}),
        "patient_recognition_rate": (
            float(np.mean([p.images_correct for p in patients])) if patients else None
        ),
        "intervals": _as_dicts(intervals),
    }


magnification_metric = MagnificationMetric()
"""The ``magnification`` metric with its defaults (1000 resamples, seed 0, 95%)."""


_Resampled = tuple[float, FloatArray]
"""A statistic's estimate on the evaluated set and its values in the resamples."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SubtypeMetric:
    """Per-class one-vs-rest AUC, macro one-vs-rest AUC and balanced accuracy, with
    class-stratified bootstrap intervals; for classifiers of more than two classes (the BreakHis
    subtypes).

    Attributes:
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        level: Confidence level.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Per class: one-vs-rest AUC with its interval and recall; macro AUC and balanced
        accuracy with theirs."""
        names = predictions.class_names
        title = "Per class: one-vs-rest AUC and balanced accuracy"
        if len(names) <= 2:
            return _unavailable(
                "subtype", title, "Two classes: the ROC and bootstrap sections cover them."
            )
        resampling = stratified_resampling(
            predictions, n_resamples=self.n_resamples, seed=self.seed
        )
        aucs, recalls = _one_vs_rest_statistics(predictions, resampling.image_weights)
        intervals: dict[str, Interval] = {
            "macro_auc": _mean_interval(list(aucs.values()), level=self.level),
            "balanced_accuracy": _mean_interval(list(recalls.values()), level=self.level),
        }
        counts = {name: resampling.per_class[c] for c, name in enumerate(names)}
        warnings = _interval_warnings(counts, resampling.resampled, intervals, self.n_resamples)
        values: dict[str, Any] = {
            "available": True,
            **_as_dicts(intervals),
            "macro_over": [names[c] for c in aucs],
            "per_class": self._per_class_table(predictions, resampling, aucs, recalls),
            "interval_method": resampling.describe(level=self.level),
            "warnings": warnings,
        }
        text = (
            "One-vs-rest AUC of each class's probability; macro AUC = their mean over the "
            "classes present (macro_over); balanced accuracy = mean recall of the top-class "
            "decision over the classes present. "
            + _intervals_sentence(
                resampling.method,
                level=self.level,
                n_resamples=self.n_resamples,
                seed=self.seed,
            )
        )
        return MetricSection(
            name="subtype", title=title, values=values, text=_with_warnings(text, warnings)
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
                percentile_interval(aucs[c][0], aucs[c][1], level=self.level)
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


@hookimpl
def breastcls_register_metrics(registry: PluginRegistry[Metric]) -> None:
    """Register ``roc``, ``bootstrap``, ``thresholds``, ``calibration``, ``patient``,
    ``magnification`` and ``subtype``."""
    registry.add("roc", roc_metric, summary="ROC and precision-recall curves, AUC and AP")
    registry.add(
        "bootstrap",
        BootstrapMetric(),
        summary="class-stratified patient bootstrap 95% CIs: accuracy, sensitivity, "
        "specificity, F1, AUC",
    )
    registry.add(
        "thresholds",
        ThresholdsMetric(),
        summary="operating points: 0.5, Youden's J, sensitivity/specificity at 95% targets",
    )
    registry.add(
        "calibration", CalibrationMetric(), summary="expected calibration error, reliability plot"
    )
    registry.add(
        "patient",
        patient_metric,
        summary="patient score = mean image probability; patient recognition rate; 95% CIs",
    )
    registry.add(
        "magnification",
        magnification_metric,
        summary="results for each magnification, with 95% CIs",
    )
    registry.add(
        "subtype",
        SubtypeMetric(),
        summary="more than two classes: per-class and macro one-vs-rest AUC, balanced "
        "accuracy, 95% CIs",
    )
