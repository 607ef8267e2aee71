"""The patient-level clinical metrics: patient results (Spanhol et al.'s patient recognition
rate, the selection set's operating points on the patient score) and the breakdown by
magnification, each with class-stratified bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.evaluation.clinical import (
    DEFAULT_BOOTSTRAP,
    BootstrapOptions,
    Interval,
    PatientRow,
    Resampling,
    bootstrap_interval,
    exact_bounds,
    image_statistics,
    patient_rows,
    patient_statistics,
    stratified_resampling,
    subset,
)
from breastcls.evaluation.sections import (
    as_dicts,
    interval_warnings,
    intervals_of,
    intervals_sentence,
    operating_point,
    patient_warnings,
    positive_fields,
    rates_with_auc,
    side_counts,
    unavailable,
    with_warnings,
)
from breastcls.inference.decision import BinaryView, binary_view, positive_group
from breastcls.interfaces import MetricSection, Predictions

__all__ = ["MagnificationMetric", "PatientMetric", "magnification_metric", "patient_metric"]


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
        bootstrap: Resamples, seed (the same seed gives the same intervals) and confidence
            level of the intervals.
    """

    bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Patient accuracy, sensitivity, specificity, AUC and recognition rate, with intervals;
        the per-patient table; the selection set's operating points on the patient score."""
        rows = patient_rows(predictions)
        if not rows:
            return unavailable(
                "patient",
                "Patient level",
                "No patient ids are known for these images: no patient-level results.",
                level="patient",
            )
        view = binary_view(predictions)
        truth = np.array([row.positive for row in rows])
        score = np.array([row.score for row in rows])
        resampling = stratified_resampling(predictions, self.bootstrap)
        intervals = intervals_of(
            patient_statistics(rows), resampling.patient_weights, level=self.bootstrap.level
        )
        counts = {view.positive: int(truth.sum()), view.negative: int((~truth).sum())}
        warnings = patient_warnings(predictions, counts, intervals, self.bootstrap.n_resamples)
        method = resampling.describe(resampled="patients")
        values: dict[str, Any] = {
            "available": True,
            **positive_fields(view),
            "n_patients": len(rows),
            "n_images": sum(row.n_images for row in rows),
            **rates_with_auc(truth, score >= 0.5, score),
            "patient_recognition_rate": float(np.mean([row.images_correct for row in rows])),
            "intervals": as_dicts(intervals),
            "exact": exact_bounds(rows, level=self.bootstrap.level),
            "interval_method": method,
            "warnings": warnings,
            "patients": _patient_table(rows, predictions.class_names, view),
        }
        text = self._explanation(predictions, view, method)
        if predictions.thresholds:
            values["operating_points"] = [
                operating_point(
                    name,
                    threshold,
                    truth,
                    score,
                    resampling.patient_weights,
                    level=self.bootstrap.level,
                    rates=("sensitivity", "specificity", "accuracy"),
                )
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
            text=with_warnings(text, warnings),
            level="patient",
        )

    def _explanation(
        self, predictions: Predictions, view: BinaryView, method: dict[str, Any]
    ) -> str:
        described = positive_group(predictions.class_names).describe(predictions.class_names)
        intervals = intervals_sentence(method["method"], self.bootstrap)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class MagnificationMetric:
    """Image-level accuracy, sensitivity, specificity and AUC, and the patient recognition rate,
    for each magnification, each with a class-stratified bootstrap interval drawn within that
    magnification's images.

    Attributes:
        bootstrap: Resamples, seed (the same seed gives the same intervals) and confidence
            level of the intervals.
    """

    bootstrap: BootstrapOptions = DEFAULT_BOOTSTRAP

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """One row per magnification, with its ``intervals``."""
        mags = predictions.magnifications
        known = sorted({m for m in mags if m is not None})
        title = "By magnification"
        if not known:
            return unavailable(
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
            resampling = stratified_resampling(part, self.bootstrap)
            method = resampling.describe()
            intervals = self._intervals(part, resampling)
            warnings += interval_warnings(
                side_counts(part, resampling.per_class),
                resampling.resampled,
                intervals,
                self.bootstrap.n_resamples,
                prefix=f"{magnification}X: ",
            )
            breakdown.append(
                _magnification_row(magnification, part, rows, resampling.patients, intervals)
            )
        text = intervals_sentence(
            f"{method['method']} within each magnification's images", self.bootstrap
        )
        return MetricSection(
            name="magnification",
            title=title,
            values={
                "available": True,
                **positive_fields(view),
                "breakdown": breakdown,
                "interval_method": method,
                "warnings": warnings,
            },
            text=with_warnings(text, warnings),
            level="patient",
        )

    def _intervals(self, part: Predictions, resampling: Resampling) -> dict[str, Interval]:
        """Image-level intervals of one magnification's images, and the patient recognition
        rate's when its patients are known."""
        statistics = image_statistics(part)
        kept = ("accuracy", "binary_accuracy", "sensitivity", "specificity", "auc")
        intervals = intervals_of(
            {k: statistics[k] for k in kept if k in statistics},
            resampling.image_weights,
            level=self.bootstrap.level,
        )
        if resampling.patients:
            recognition = patient_statistics(list(resampling.patients))["patient_recognition_rate"]
            intervals["patient_recognition_rate"] = bootstrap_interval(
                recognition, resampling.patient_weights, level=self.bootstrap.level
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
    binary = rates_with_auc(view.y_true, view.y_pred, view.score)
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
        "intervals": as_dicts(intervals),
    }


magnification_metric = MagnificationMetric()
"""The ``magnification`` metric with its defaults (1000 resamples, seed 0, 95%)."""
