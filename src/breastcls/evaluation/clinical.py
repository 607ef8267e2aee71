"""Clinical metrics as plain functions of labels and scores: binary rates, operating thresholds,
bootstrap confidence intervals, calibration (ECE, temperature scaling) and patient aggregation.

The binary view of any classifier: the positive class is ``malignant`` when the classes include
it, else the last class (one-vs-rest), and an image's score is its probability of that class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.interfaces import Predictions

__all__ = [
    "BinaryView",
    "PatientRow",
    "apply_temperature",
    "binary_rates",
    "binary_view",
    "bootstrap_intervals",
    "choose_thresholds",
    "expected_calibration_error",
    "fit_temperature",
    "patient_rows",
    "positive_class_index",
    "reliability_bins",
    "safe_auc",
    "threshold_names",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_EPSILON = 1e-12
NOTHING_POSITIVE = float(np.nextafter(1.0, 2.0))
"""The threshold that calls no image positive (scores never exceed 1)."""


def positive_class_index(class_names: Sequence[str]) -> int:
    """Return the index of the positive class: ``malignant`` when present, else the last class."""
    names = list(class_names)
    return names.index("malignant") if "malignant" in names else len(names) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryView:
    """Predictions seen as positive class vs the rest.

    Attributes:
        positive: Name of the positive class.
        y_true: Whether each image is truly positive.
        score: Each image's probability of the positive class.
        y_pred: Whether the model's top class is the positive one.
    """

    positive: str
    y_true: BoolArray
    score: FloatArray
    y_pred: BoolArray


def binary_view(predictions: Predictions) -> BinaryView:
    """Return the positive-vs-rest view of ``predictions``."""
    index = positive_class_index(predictions.class_names)
    return BinaryView(
        positive=predictions.class_names[index],
        y_true=np.asarray(predictions.y_true == index),
        score=np.asarray(predictions.probabilities[:, index], dtype=np.float64),
        y_pred=np.asarray(predictions.y_pred == index),
    )


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def binary_rates(y_true: BoolArray, y_pred: BoolArray) -> dict[str, Any]:
    """Return sensitivity (recall), specificity, precision (PPV), NPV, accuracy, F1 and counts.

    A rate whose denominator is zero is ``None``.
    """
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = int(np.sum(y_true & y_pred))
    fp = int(np.sum(~y_true & y_pred))
    tn = int(np.sum(~y_true & ~y_pred))
    fn = int(np.sum(y_true & ~y_pred))
    return {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "accuracy": _ratio(tp + tn, tp + tn + fp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def threshold_names(*, target_specificity: float, target_sensitivity: float) -> dict[str, str]:
    """Return the keys of :func:`choose_thresholds`'s result and what each one means."""
    return {
        "default": "0.5 (the arg-max decision of a binary model)",
        "youden": "maximises Youden's J = sensitivity + specificity - 1",
        f"sensitivity_at_specificity_{target_specificity:g}": (
            f"highest sensitivity with specificity >= {target_specificity:g}"
        ),
        f"specificity_at_sensitivity_{target_sensitivity:g}": (
            f"highest specificity with sensitivity >= {target_sensitivity:g}"
        ),
    }


def choose_thresholds(
    y_true: BoolArray,
    score: FloatArray,
    *,
    target_specificity: float = 0.95,
    target_sensitivity: float = 0.95,
) -> dict[str, float]:
    """Choose operating thresholds on the positive score (an image is positive when
    ``score >= threshold``).

    Meant for validation data; the thresholds are then applied unchanged to test data.

    Returns:
        ``default`` (0.5), ``youden`` (maximises sensitivity + specificity - 1),
        ``sensitivity_at_specificity_<t>`` (the most sensitive threshold whose specificity is at
        least ``t``) and ``specificity_at_sensitivity_<t>`` (the most specific threshold whose
        sensitivity is at least ``t``). A threshold that calls nothing positive is
        :data:`NOTHING_POSITIVE`.
    """
    from sklearn.metrics import roc_curve

    names = list(
        threshold_names(
            target_specificity=target_specificity, target_sensitivity=target_sensitivity
        )
    )
    y_true = np.asarray(y_true, dtype=bool)
    chosen = {names[0]: 0.5}
    if y_true.all() or not y_true.any():
        return {**chosen, names[1]: 0.5, names[2]: 0.5, names[3]: 0.5}
    fpr, tpr, thresholds = roc_curve(y_true, score, drop_intermediate=False)
    thresholds = np.where(np.isfinite(thresholds), thresholds, NOTHING_POSITIVE)
    specificity = 1.0 - fpr
    # Ties are broken towards the higher threshold (fewer positives), the first in sklearn's order.
    chosen[names[1]] = float(thresholds[int(np.argmax(tpr - fpr))])
    meets = np.flatnonzero(specificity >= target_specificity - 1e-12)
    chosen[names[2]] = float(thresholds[meets[np.argmax(tpr[meets])]])
    meets = np.flatnonzero(tpr >= target_sensitivity - 1e-12)
    chosen[names[3]] = float(thresholds[meets[np.argmax(specificity[meets])]])
    return chosen


def apply_temperature(probabilities: FloatArray, temperature: float) -> FloatArray:
    """Return ``softmax(log(p) / T)``: the model's softmax with its logits divided by ``T``.

    Log-probabilities differ from the logits by a per-row constant, which softmax ignores, so
    temperature scaling needs only the probabilities.
    """
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _EPSILON, 1.0))
    scaled = logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def _nll(probabilities: FloatArray, y_true: IntArray) -> float:
    picked = probabilities[np.arange(len(y_true)), y_true]
    return float(-np.mean(np.log(np.clip(picked, _EPSILON, 1.0))))


def fit_temperature(probabilities: FloatArray, y_true: IntArray) -> float:
    """Fit the temperature that minimises the negative log-likelihood of ``y_true`` (Guo et al.,
    2017), searched on ``log T`` within ``[0.05, 20]``. Meant for validation data."""
    from scipy.optimize import minimize_scalar

    y_true = np.asarray(y_true, dtype=np.int64)
    result = minimize_scalar(
        lambda log_t: _nll(apply_temperature(probabilities, math.exp(log_t)), y_true),
        bounds=(math.log(0.05), math.log(20.0)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(result.x))


def reliability_bins(
    probabilities: FloatArray, y_true: IntArray, *, n_bins: int = 10
) -> list[dict[str, Any]]:
    """Group images by top-class confidence into ``n_bins`` equal-width bins ``(lo, hi]``.

    Returns:
        Per non-empty bin: ``lower``, ``upper``, ``count``, mean ``confidence`` and ``accuracy``.
    """
    confidence = np.asarray(probabilities).max(axis=1)
    correct = np.asarray(probabilities).argmax(axis=1) == np.asarray(y_true)
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        members = index == b
        if members.any():
            bins.append(
                {
                    "lower": b / n_bins,
                    "upper": (b + 1) / n_bins,
                    "count": int(members.sum()),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                }
            )
    return bins


def expected_calibration_error(
    probabilities: FloatArray, y_true: IntArray, *, n_bins: int = 10
) -> float:
    """Return the expected calibration error: ``sum_b n_b / n * |accuracy_b - confidence_b|``
    over equal-width bins of top-class confidence."""
    n = len(y_true)
    bins = reliability_bins(probabilities, y_true, n_bins=n_bins)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins))


def _weighted_auc(y_true: BoolArray, score: FloatArray, weights: FloatArray) -> FloatArray:
    """ROC AUC of one labelled score vector under each row of ``weights`` (resample counts).

    The Mann-Whitney statistic with weights, ties counting one half; NaN where a row gives no
    weight to one of the classes. Equal to scikit-learn's ``roc_auc_score`` with
    ``sample_weight``.
    """
    order = np.argsort(score, kind="stable")
    sorted_score = score[order]
    positive = y_true[order]
    w = weights[:, order]
    starts = np.flatnonzero(np.r_[True, sorted_score[1:] != sorted_score[:-1]])
    group_pos = np.add.reduceat(w * positive, starts, axis=1)
    group_neg = np.add.reduceat(w * ~positive, starts, axis=1)
    negatives_below = np.cumsum(group_neg, axis=1) - group_neg
    pairs = (group_pos * (negatives_below + 0.5 * group_neg)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(pairs / (group_pos.sum(axis=1) * group_neg.sum(axis=1)), np.float64)


def _resample_weights(
    predictions: Predictions, rng: np.random.Generator, n_resamples: int
) -> tuple[FloatArray, str]:
    """Draw how often each image enters each resample, and say what was resampled.

    When every image has a patient id, whole patients are drawn with replacement (a patient's
    images are correlated, so resampling images would understate the uncertainty); otherwise
    images are.
    """
    n = len(predictions.y_true)
    patients = predictions.patient_ids
    if len(patients) == n and all(patients):
        names, patient_of_image = np.unique(np.array(patients, dtype=str), return_inverse=True)
        counts = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), n_resamples)
        return counts[:, patient_of_image].astype(np.float64), "patients"
    counts = rng.multinomial(n, np.full(n, 1.0 / n), n_resamples)
    return counts.astype(np.float64), "images"


def bootstrap_intervals(
    predictions: Predictions,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[dict[str, dict[str, float | None]], str]:
    """Percentile bootstrap confidence intervals, resampling patients (or images) with replacement.

    Accuracy is the multi-class accuracy of the top class; sensitivity, specificity and F1 are
    those of the positive class (top-class decision); AUC uses the positive score. Whole patients
    are resampled when every image has a patient id, images otherwise. Resamples in which a
    statistic is undefined (no positive image, say) are left out of that statistic.

    Returns:
        For each statistic its point ``estimate`` on all images, ``low`` and ``high``; and what
        was resampled (``patients`` or ``images``).
    """
    view = binary_view(predictions)
    weights, unit = _resample_weights(predictions, np.random.default_rng(seed), n_resamples)
    correct = (predictions.y_true == predictions.y_pred).astype(np.float64)
    yt, yp = view.y_true, view.y_pred
    tp = weights @ (yt & yp)
    fp = weights @ (~yt & yp)
    tn = weights @ (~yt & ~yp)
    fn = weights @ (yt & ~yp)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = {
            "accuracy": (weights @ correct) / weights.sum(axis=1),
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "f1": 2 * tp / (2 * tp + fp + fn),
            "auc": _weighted_auc(yt, view.score, weights),
        }
    rates = binary_rates(yt, yp)
    full_auc = _weighted_auc(yt, view.score, np.ones((1, len(yt))))[0]
    estimates = {
        "accuracy": float(np.mean(correct)),
        "sensitivity": rates["sensitivity"],
        "specificity": rates["specificity"],
        "f1": rates["f1"],
        "auc": None if math.isnan(full_auc) else float(full_auc),
    }
    tail = (1.0 - level) / 2.0 * 100.0
    out: dict[str, dict[str, float | None]] = {}
    for name, values in samples.items():
        finite = values[np.isfinite(values)]
        if estimates[name] is None or finite.size == 0:
            out[name] = {"estimate": estimates[name], "low": None, "high": None}
            continue
        low, high = np.percentile(finite, [tail, 100.0 - tail])
        out[name] = {"estimate": estimates[name], "low": float(low), "high": float(high)}
    return out, unit


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientRow:
    """One patient's aggregate.

    Attributes:
        patient_id: The patient.
        label: The patient's true class (the most common true class of its images).
        score: Mean of its images' positive-class probabilities: the patient score.
        n_images: Number of images.
        images_correct: Share of its images whose top class is right.
        magnifications: The magnifications of its images.
    """

    patient_id: str
    label: int
    score: float
    n_images: int
    images_correct: float
    magnifications: tuple[int, ...]


def patient_rows(predictions: Predictions, rows: Sequence[int] | None = None) -> list[PatientRow]:
    """Aggregate images per patient (rows without a patient id are left out).

    The patient score is the mean of the patient's images' positive-class probabilities: every
    image counts once, so a patient's score does not depend on how confident one image is.

    Args:
        predictions: The image-level predictions.
        rows: Restrict to these row indices (e.g. one magnification).
    """
    positive = positive_class_index(predictions.class_names)
    chosen = range(len(predictions.y_true)) if rows is None else rows
    groups: dict[str, list[int]] = {}
    patients = predictions.patient_ids
    for i in chosen:
        patient = patients[i] if i < len(patients) else None
        if patient:
            groups.setdefault(patient, []).append(i)
    mags = predictions.magnifications
    result = []
    for patient, members in sorted(groups.items()):
        labels = predictions.y_true[members]
        counts = np.bincount(labels, minlength=len(predictions.class_names))
        result.append(
            PatientRow(
                patient_id=patient,
                label=int(np.argmax(counts)),
                score=float(predictions.probabilities[members, positive].mean()),
                n_images=len(members),
                images_correct=float(np.mean(predictions.y_pred[members] == labels)),
                magnifications=tuple(
                    sorted({m for i in members if i < len(mags) and (m := mags[i]) is not None})
                ),
            )
        )
    return result


def safe_auc(y_true: BoolArray, score: FloatArray) -> float | None:
    """Return scikit-learn's ROC AUC, or ``None`` when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true, dtype=bool)
    if y_true.all() or not y_true.any():
        return None
    return float(roc_auc_score(y_true, score))
