"""Built-in clinical metrics: ROC/PR, bootstrap intervals, operating thresholds, calibration,
patient level and magnification breakdown. Each is a metric plugin like any third party's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.evaluation.clinical import (
    binary_rates,
    binary_view,
    bootstrap_intervals,
    choose_thresholds,
    expected_calibration_error,
    patient_rows,
    reliability_bins,
    safe_auc,
    threshold_names,
)
from breastcls.interfaces import Metric, MetricSection, Predictions
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry

__all__ = [
    "BootstrapMetric",
    "CalibrationMetric",
    "ThresholdsMetric",
    "magnification_metric",
    "patient_metric",
    "roc_metric",
]


def roc_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """ROC and precision-recall curves of the positive class, with AUC and average precision."""
    from sklearn.metrics import average_precision_score

    from breastcls.evaluation.curves import plot_precision_recall, plot_roc

    view = binary_view(predictions)
    values: dict[str, Any] = {
        "positive_class": view.positive,
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
    """Seeded percentile-bootstrap confidence intervals, resampling whole patients when known.

    Attributes:
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling: the same seed gives the same intervals.
        level: Confidence level.
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Intervals for accuracy, sensitivity, specificity, F1 and AUC."""
        intervals, unit = bootstrap_intervals(
            predictions, n_resamples=self.n_resamples, seed=self.seed, level=self.level
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
                "positive_class": binary_view(predictions).positive,
                "resampled": unit,
                "n_resamples": self.n_resamples,
                "seed": self.seed,
                "level": self.level,
                "intervals": intervals,
            },
            text=(
                f"Percentile bootstrap over {unit} ({self.n_resamples} resamples, seed "
                f"{self.seed}). {caveat}"
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ThresholdsMetric:
    """Operating points on the positive class's probability.

    The thresholds come with the predictions when they were chosen earlier on validation data
    (``thresholds.json`` of a run), and are then applied unchanged; otherwise they are chosen on
    these predictions, which is only honest for validation data.

    Attributes:
        target_specificity: Specificity floor of ``sensitivity_at_specificity_<t>``.
        target_sensitivity: Sensitivity floor of ``specificity_at_sensitivity_<t>``.
    """

    target_specificity: float = 0.95
    target_sensitivity: float = 0.95

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Sensitivity, specificity, precision, NPV, accuracy and F1 at each threshold."""
        view = binary_view(predictions)
        meanings = threshold_names(
            target_specificity=self.target_specificity, target_sensitivity=self.target_sensitivity
        )
        if predictions.thresholds:
            thresholds = dict(predictions.thresholds)
            source = "validation data (chosen there, applied unchanged)"
        else:
            thresholds = choose_thresholds(
                view.y_true,
                view.score,
                target_specificity=self.target_specificity,
                target_sensitivity=self.target_sensitivity,
            )
            source = "these predictions (fitted on the data they are evaluated on)"
        points = []
        for name, threshold in thresholds.items():
            rates = binary_rates(view.y_true, view.score >= threshold)
            points.append(
                {
                    "name": name,
                    "threshold": threshold,
                    **{key: rates[key] for key in ("sensitivity", "specificity", "precision")},
                    **{key: rates[key] for key in ("npv", "accuracy", "f1")},
                }
            )
        text = "\n".join(f"{name}: {meanings.get(name, 'given')}" for name in thresholds)
        return MetricSection(
            name="thresholds",
            title="Operating thresholds",
            values={
                "positive_class": view.positive,
                "chosen_on": source,
                "operating_points": points,
            },
            text=f"An image is called {view.positive} when its probability >= threshold.\n{text}",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationMetric:
    """Expected calibration error and the reliability diagram.

    When the predictions were temperature-scaled, the ECE before scaling is reported too.

    Attributes:
        n_bins: Number of equal-width confidence bins.
    """

    n_bins: int = 10

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """ECE, Brier score (positive class), NLL and reliability bins."""
        from breastcls.evaluation.clinical import apply_temperature
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
        if predictions.temperature is not None:
            raw = apply_temperature(probabilities, 1.0 / predictions.temperature)
            values["ece_before_temperature"] = expected_calibration_error(
                raw, y_true, n_bins=self.n_bins
            )
        figure = plot_reliability(bins, out_dir / "reliability.png", n_bins=self.n_bins, ece=ece)
        note = (
            f"Probabilities temperature-scaled with T = {predictions.temperature:.3f} "
            "(fitted on validation data)."
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


def patient_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """Patient-level results: patient score = mean of its images' positive probability.

    A patient is called positive when its score is at least 0.5, and, for each operating
    threshold chosen on validation data (``predictions.thresholds``), when it reaches that
    threshold. Spanhol et al.'s patient recognition rate is the mean over patients of the share
    of that patient's images whose top class is right.
    """
    rows = patient_rows(predictions)
    if not rows:
        return MetricSection(
            name="patient",
            title="Patient level",
            values={"available": False},
            text="No patient ids are known for these images: no patient-level results.",
            level="patient",
        )
    view = binary_view(predictions)
    positive = predictions.class_names.index(view.positive)
    truth = np.array([row.label == positive for row in rows])
    score = np.array([row.score for row in rows])
    values: dict[str, Any] = {
        "available": True,
        "positive_class": view.positive,
        "n_patients": len(rows),
        "n_images": sum(row.n_images for row in rows),
        **_rates_with_auc(truth, score >= 0.5, score),
        "patient_recognition_rate": float(np.mean([row.images_correct for row in rows])),
        "patients": [
            {
                "patient_id": row.patient_id,
                "true": predictions.class_names[row.label],
                "score": round(row.score, 6),
                "predicted": view.positive if row.score >= 0.5 else "other",
                "n_images": row.n_images,
                "images_correct": round(row.images_correct, 6),
                "magnifications": ", ".join(f"{m}X" for m in row.magnifications),
            }
            for row in rows
        ],
    }
    if len(predictions.class_names) == 2:
        negative = predictions.class_names[1 - positive]
        for item in values["patients"]:
            if item["predicted"] == "other":
                item["predicted"] = negative
    text = (
        f"Patient score = mean of the patient's images' probability of {view.positive}; "
        "a patient is called positive when the score is >= 0.5. Patient recognition rate "
        "(Spanhol et al., 2016) = mean over patients of the share of their images "
        "classified correctly."
    )
    if predictions.thresholds:
        values["operating_points"] = [
            {"name": name, "threshold": threshold, **_patient_rates(truth, score >= threshold)}
            for name, threshold in predictions.thresholds.items()
        ]
        text += (
            " Operating points: the thresholds chosen on validation images, applied unchanged "
            "to the patient score."
        )
    return MetricSection(
        name="patient", title="Patient level", values=values, text=text, level="patient"
    )


def _patient_rates(truth: Any, called: Any) -> dict[str, float | None]:
    rates = binary_rates(truth, called)
    return {key: rates[key] for key in ("sensitivity", "specificity", "accuracy")}


def magnification_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """Image-level accuracy, sensitivity, specificity and AUC, and the patient recognition rate,
    for each magnification."""
    mags = predictions.magnifications
    known = sorted({m for m in mags if m is not None})
    if not known:
        return MetricSection(
            name="magnification",
            title="By magnification",
            values={"available": False},
            text="No magnification is known for these images.",
            level="patient",
        )
    view = binary_view(predictions)
    breakdown = []
    for magnification in known:
        rows = [i for i, m in enumerate(mags) if m == magnification]
        patients = patient_rows(predictions, rows)
        breakdown.append(
            {
                "magnification": f"{magnification}X",
                "n_images": len(rows),
                "n_patients": len(patients),
                **_rates_with_auc(view.y_true[rows], view.y_pred[rows], view.score[rows]),
                "patient_recognition_rate": (
                    float(np.mean([p.images_correct for p in patients])) if patients else None
                ),
            }
        )
    return MetricSection(
        name="magnification",
        title="By magnification",
        values={"available": True, "positive_class": view.positive, "breakdown": breakdown},
        level="patient",
    )


@hookimpl
def breastcls_register_metrics(registry: PluginRegistry[Metric]) -> None:
    """Register ``roc``, ``bootstrap``, ``thresholds``, ``calibration``, ``patient`` and
    ``magnification``."""
    registry.add("roc", roc_metric, summary="ROC and precision-recall curves, AUC and AP")
    registry.add(
        "bootstrap",
        BootstrapMetric(),
        summary="seeded bootstrap 95% CIs: accuracy, sensitivity, specificity, F1, AUC",
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
        summary="patient score = mean image probability; patient recognition rate",
    )
    registry.add("magnification", magnification_metric, summary="results for each magnification")
