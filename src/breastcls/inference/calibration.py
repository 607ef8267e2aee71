"""Temperature scaling and operating thresholds: fitted on the selection set, applied unchanged.

A model's folder keeps them in ``temperature.json`` and ``thresholds.json`` (per TTA, see
:meth:`~breastcls.runs.folder.RunFolder.calibration`); this module is the only one that reads
or writes them. Fitting on the set one then reports would make the
report flatter itself (a temperature fitted on the images it is scored on, thresholds that reach
their target sensitivity by construction), so :func:`fit_calibration` accepts selection-set
predictions only, and the test set sees the result unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.errors import ModelLoadError
from breastcls.inference.decision import (
    apply_temperature,
    binary_view,
    choose_thresholds,
    fit_temperature,
    positive_group,
)
from breastcls.interfaces import DataRole, Predictions
from breastcls.io import atomic_write_json, read_json_file
from breastcls.runs.folder import RunFolder

__all__ = [
    "MIN_SELECTION_IMAGES",
    "TEMPERATURE_BOUNDS",
    "Calibration",
    "apply_calibration",
    "fit_calibration",
    "has_calibration",
    "read_calibration",
    "write_calibration",
]

MIN_SELECTION_IMAGES = 20
"""Fewer selection images than this (or fewer than 5 of a class) fit no temperature."""
TEMPERATURE_BOUNDS = (0.25, 4.0)
"""A fitted temperature is clipped into this range; outside it the fit says more about the
selection set's size than about the model."""
_MIN_PER_CLASS = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibration:
    """What a model's folder says about turning its outputs into calibrated decisions.

    Attributes:
        temperature: The temperature applied to the probabilities (``None``: none fitted).
        thresholds: Operating thresholds on the positive score, by name (empty: none chosen).
        positive: The class (or class group) the thresholds are about.
        rule: How an image is called positive, in words.
        tta: The test-time augmentation of the predictions it was fitted on.
        n_images: Selection images it was fitted on.
        notes: Why a temperature was skipped or bounded, in words for the report.
    """

    temperature: float | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)
    positive: str | None = None
    rule: str | None = None
    tta: str = "none"
    n_images: int = 0
    notes: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, recorded: Mapping[str, Any], *, tta: str) -> Calibration:
        """Read back :meth:`to_dict` (an evaluation's recorded calibration)."""
        return cls(
            temperature=recorded.get("temperature"),
            thresholds=recorded.get("thresholds") or {},
            positive=recorded.get("positive_class"),
            rule=recorded.get("rule"),
            tta=tta,
            n_images=int(recorded.get("n_images", 0)),
            notes=tuple(recorded.get("notes", ())),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form recorded in evaluation settings and reports."""
        return {
            "fitted_on": DataRole.SELECTION.label,
            "temperature": self.temperature,
            "thresholds": dict(self.thresholds),
            "positive_class": self.positive,
            "rule": self.rule,
            "tta": self.tta,
            "n_images": self.n_images,
            "notes": list(self.notes),
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
        n_images=len(predictions.y_true),
        notes=notes,
    )


def apply_calibration(predictions: Predictions, calibration: Calibration) -> Predictions:
    """Return ``predictions`` (raw model outputs) with the temperature applied and the
    thresholds attached."""
    probabilities = predictions.probabilities
    if calibration.temperature is not None:
        probabilities = apply_temperature(probabilities, calibration.temperature)
    return dataclasses.replace(
        predictions,
        probabilities=probabilities,
        temperature=calibration.temperature,
        thresholds=dict(calibration.thresholds),
    )


def has_calibration(folder: Path, tta: str = "none") -> bool:
    """Whether ``folder`` holds a calibration fitted on predictions made with ``tta``."""
    return any(path.is_file() for path in RunFolder(folder).calibration(tta))


def write_calibration(folder: Path, calibration: Calibration) -> None:
    """Write the calibration's temperature and thresholds files into ``folder`` (atomically)."""
    temperature_file, thresholds_file = RunFolder(folder).calibration(calibration.tta)
    atomic_write_json(
        temperature_file,
        {
            "temperature": calibration.temperature,
            "fitted_on": DataRole.SELECTION.value,
            "tta": calibration.tta,
            "n_images": calibration.n_images,
            "notes": list(calibration.notes),
            "method": "temperature scaling (Guo et al., 2017): softmax(log p / T), T minimises NLL",
        },
    )
    atomic_write_json(
        thresholds_file,
        {
            "positive_class": calibration.positive,
            "chosen_on": DataRole.SELECTION.value,
            "tta": calibration.tta,
            "rule": calibration.rule,
            "thresholds": dict(calibration.thresholds),
        },
    )


def read_calibration(folder: Path, tta: str = "none") -> Calibration:
    """Read the calibration saved in ``folder`` for predictions made with ``tta`` (an empty one
    when it holds none).

    Raises:
        ModelLoadError: A calibration file is unreadable or malformed.
    """
    temperature_file, thresholds_file = RunFolder(folder).calibration(tta)
    try:
        saved = read_json_file(temperature_file) if temperature_file.is_file() else {}
        chosen = read_json_file(thresholds_file) if thresholds_file.is_file() else {}
        temperature = saved.get("temperature")
        if temperature is not None and not float(temperature) > 0:
            raise ValueError(f"temperature {temperature} is not positive")
        return Calibration(
            temperature=None if temperature is None else float(temperature),
            thresholds={str(k): float(v) for k, v in chosen.get("thresholds", {}).items()},
            positive=chosen.get("positive_class"),
            rule=chosen.get("rule"),
            tta=tta,
            n_images=int(saved.get("n_images", 0)),
            notes=tuple(str(note) for note in saved.get("notes", ())),
        )
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelLoadError(
            f"The calibration files in {folder} ({temperature_file.name}, "
            f"{thresholds_file.name}) are malformed ({type(error).__name__}: {error}): delete "
            "them, or retrain."
        ) from error
