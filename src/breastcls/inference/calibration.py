"""Temperature scaling and operating thresholds: fitted on the selection set, applied unchanged.

The model record (:mod:`breastcls.inference.record`) keeps one :class:`Calibration` per TTA;
training fits the plain one and :func:`breastcls.calibrate` any other, explicitly. Fitting on
the set one then reports would make the
report flatter itself (a temperature fitted on the images it is scored on, thresholds that reach
their target sensitivity by construction), so :func:`fit_calibration` accepts selection-set
predictions only, and the test set sees the result unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.inference.decision import (
    apply_temperature,
    binary_view,
    choose_thresholds,
    fit_temperature,
    positive_group,
)
from breastcls.interfaces import DataRole, Predictions

__all__ = [
    "MIN_SELECTION_IMAGES",
    "TEMPERATURE_BOUNDS",
    "Calibration",
    "apply_calibration",
    "fit_calibration",
]

MIN_SELECTION_IMAGES = 20
"""Fewer selection images than this (or fewer than 5 of a class) fit no temperature."""
TEMPERATURE_BOUNDS = (0.25, 4.0)
"""A fitted temperature is clipped into this range; outside it the fit says more about the
selection set's size than about the model."""
_MIN_PER_CLASS = 5
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """How a model's outputs become calibrated probabilities and decisions, for one TTA.

    Attributes:
        temperature: The temperature applied to the probabilities (``None``: none fitted).
        thresholds: Operating thresholds on the positive score, by name (empty: none chosen).
        positive: The class (or class group) the thresholds are about.
        rule: How an image is called positive, in words.
        tta: The test-time augmentation of the predictions it was fitted on.
        fitted_on: The set it was fitted on (the selection set), or ``None`` when nothing was
            fitted (a bare model file: raw outputs, and the arg-max decision).
        n_images: Images it was fitted on.
        n_patients: Patients (or groups) those images came from, when known.
        notes: Why a temperature was skipped or bounded, in words for the report.
    """

    temperature: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    positive: str | None = None
    rule: str | None = None
    tta: str = "none"
    fitted_on: DataRole | None = None
    n_images: int = 0
    n_patients: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def operating_thresholds(self) -> dict[str, float]:
        """The thresholds decisions are made at: those chosen, or ``default`` (0.5, the arg-max
        decision of a binary model) when none were."""
        return dict(self.thresholds) or {"default": 0.5}

    @property
    def decision_threshold(self) -> tuple[str, float]:
        """The one threshold a single call is made at, as ``(name, value)``: the Youden
        threshold when one was chosen (the evaluation report's headline), else the first
        operating threshold (``default``, 0.5, for a model without a calibration)."""
        thresholds = self.operating_thresholds
        name = "youden" if "youden" in thresholds else next(iter(thresholds))
        return name, float(thresholds[name])

    def apply(self, probabilities: FloatArray) -> FloatArray:
        """The calibrated probabilities of a model's raw outputs (the temperature applied)."""
        raw = np.asarray(probabilities, dtype=np.float64)
        return raw if self.temperature is None else apply_temperature(raw, self.temperature)

    def describe(self) -> str:
        """Where the calibration comes from, in one sentence for reports and cards."""
        if self.fitted_on is None:
            return (
                f"Not calibrated (TTA {self.tta}): raw model outputs; thresholds, where shown, "
                "are the arg-max decision or were chosen on the scored data itself (optimistic)."
            )
        temperature = (
            f"Temperature {self.temperature:.3f}" if self.temperature is not None
            else "No temperature"
        )
        patients = f", {self.n_patients} patients" if self.n_patients is not None else ""
        return (
            f"{temperature} and thresholds fitted on the {self.fitted_on.label} "
            f"({self.n_images} images{patients}, TTA {self.tta}), applied unchanged here."
        )

    @classmethod
    def from_dict(cls, recorded: Mapping[str, Any], *, tta: str) -> Calibration:
        """Read back :meth:`to_dict`."""
        fitted_on = recorded.get("fitted_on")
        patients = recorded.get("n_patients")
        temperature = recorded.get("temperature")
        return cls(
            temperature=None if temperature is None else float(temperature),
            thresholds={
                str(k): float(v) for k, v in dict(recorded.get("thresholds") or {}).items()
            },
            positive=recorded.get("positive_class"),
            rule=recorded.get("rule"),
            tta=tta,
            fitted_on=None if fitted_on is None else DataRole(str(fitted_on).removesuffix(" set")),
            n_images=int(recorded.get("n_images", 0)),
            n_patients=None if patients is None else int(patients),
            notes=tuple(str(note) for note in recorded.get("notes", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the model record and in evaluation settings."""
        return {
            "fitted_on": self.fitted_on.value if self.fitted_on is not None else None,
            "temperature": self.temperature,
            "thresholds": dict(self.thresholds),
            "positive_class": self.positive,
            "rule": self.rule,
            "tta": self.tta,
            "n_images": self.n_images,
            "n_patients": self.n_patients,
            "notes": list(self.notes),
            "description": self.describe(),
        }


def _temperature(predictions: Predictions) -> tuple[float | None, tuple[str, ...]]:
    """Fit a temperature, or skip or bound a degenerate fit and say why."""
    n = len(predictions.y_true)
    per_class = np.bincount(predictions.y_true, minlength=len(predictions.class_names))
    if n < MIN_SELECTION_IMAGES or per_class.min() < _MIN_PER_CLASS:
        return None, (
            f"temperature scaling skipped: the selection set has {n} images "
            f"({int(per_class.min())} in its smallest class); it needs {MIN_SELECTION_IMAGES} "
            f"and {_MIN_PER_CLASS} per class for a fit that means anything",
        )
    if np.all(predictions.y_pred == predictions.y_true):
        return None, (
            "temperature scaling skipped: the model classifies every selection image correctly, "
            "and the fit would push every probability to 0 or 1",
        )
    fitted = fit_temperature(predictions.probabilities, predictions.y_true)
    low, high = TEMPERATURE_BOUNDS
    if low <= fitted <= high:
        return fitted, ()
    bounded = min(max(fitted, low), high)
    return bounded, (
        f"temperature bounded: the fit gave {fitted:.3g}, outside [{low:g}, {high:g}]; "
        f"{bounded:g} is used",
    )


def fit_calibration(
    predictions: Predictions,
    *,
    tta: str = "none",
    target_specificity: float = 0.95,
    target_sensitivity: float = 0.95,
) -> Calibration:
    """Fit temperature scaling and choose operating thresholds on selection-set predictions.

    Thresholds are chosen on the temperature-scaled probabilities, which is what they are
    applied to.

    Args:
        predictions: The model's raw probabilities on the selection set, made with ``tta``.
        tta: The test-time augmentation the predictions were made with.
        target_specificity: Specificity the ``sensitivity_at_specificity`` threshold keeps.
        target_sensitivity: Sensitivity the ``specificity_at_sensitivity`` threshold keeps.

    Raises:
        ValueError: ``predictions`` are not from the selection set.
    """
    if predictions.role is not DataRole.SELECTION:
        raise ValueError(
            f"Calibration is fitted on the selection set only, not on {predictions.role}."
        )
    temperature, notes = _temperature(predictions)
    calibrated = apply_calibration(predictions, Calibration(temperature=temperature))
    view = binary_view(calibrated)
    return Calibration(
        temperature=temperature,
        thresholds=choose_thresholds(
            view.y_true,
            view.score,
            target_specificity=target_specificity,
            target_sensitivity=target_sensitivity,
        ),
        positive=view.positive,
        rule=(
            f"an image is {view.positive} when its score, "
            f"{positive_group(predictions.class_names).describe(predictions.class_names)}, "
            "is >= the threshold"
        ),
        tta=tta,
        fitted_on=DataRole.SELECTION,
        n_images=len(predictions.y_true),
        n_patients=len({p for p in predictions.patient_ids if p is not None}) or None,
        notes=notes,
    )


def apply_calibration(predictions: Predictions, calibration: Calibration) -> Predictions:
    """Return ``predictions`` (raw model outputs) with the calibration applied: calibrated
    probabilities, the raw ones kept beside them, the thresholds attached."""
    return dataclasses.replace(
        predictions,
        probabilities=calibration.apply(predictions.probabilities),
        raw_probabilities=predictions.probabilities,
        temperature=calibration.temperature,
        thresholds=dict(calibration.thresholds),
    )
