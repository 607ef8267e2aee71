"""Clinical metrics as plain functions of labels and scores: binary rates, operating thresholds,
class-stratified bootstrap confidence intervals, calibration (ECE, temperature scaling) and
patient aggregation.

The binary view of any classifier (:func:`positive_group`): the positive class is ``malignant``
when the classes include it; when the classes are BreakHis subtypes that include malignant ones,
the positive *group* is the malignant subtypes, named ``malignant``, and an image's score is the
sum of their probabilities; otherwise the positive class is the last class (one-vs-rest). An
image's score is its probability of the positive class (or group).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from breastcls.data.breakhis import accession_number, follows_breakhis_scheme
from breastcls.errors import ConfigError
from breastcls.inference.decision import (
    BoolArray,
    FloatArray,
    IntArray,
    binary_view,
    positive_group,
)
from breastcls.interfaces import Predictions

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "EXACT_BELOW",
    "FEW_PATIENTS",
    "BootstrapOptions",
    "Interval",
    "PatientRow",
    "Resampling",
    "Statistic",
    "binary_rates",
    "bootstrap_interval",
    "bootstrap_intervals",
    "decision_statistics",
    "exact_bounds",
    "exact_interval",
    "expected_calibration_error",
    "few_units_warnings",
    "image_statistics",
    "patient_rows",
    "patient_statistics",
    "percentile_interval",
    "reliability_bins",
    "safe_auc",
    "single_unit_warnings",
    "stratified_resampling",
    "subset",
    "unit_ids",
    "unit_noun",
    "weighted_auc",
    "zero_width_warnings",
]


FEW_PATIENTS = 5
"""A class with fewer patients (or images, without patient ids) than this gets a warning."""

EXACT_BELOW = 10
"""A rate over fewer patients than this (or one of 0 or 1) gets an exact binomial bound beside
its bootstrap interval: a bootstrap over a handful of patients cannot show its own width."""


def unit_ids(predictions: Predictions) -> tuple[str | None, ...]:
    """The unit (patient) each image is aggregated, resampled and counted by.

    :attr:`~breastcls.interfaces.Predictions.groups` (the split's group key) when given; else
    the accession number of the image's patient id, so the slides ``14-29960AB`` and
    ``14-29960CD`` of one biopsy count once (``None``: unknown).
    """
    n = len(predictions.y_true)
    if len(predictions.groups) == n:
        return predictions.groups
    ids = predictions.patient_ids if len(predictions.patient_ids) == n else (None,) * n
    return tuple(accession_number(p) if p else None for p in ids)


def unit_noun(predictions: Predictions, count: int) -> str:
    """How messages name ``count`` units: ``biopsy``/``biopsies`` when the units are the
    accession numbers of BreakHis slide ids, else ``patient``/``patients``."""
    ids = [p for p in predictions.patient_ids if p]
    units = unit_ids(predictions)
    biopsies = bool(ids) and all(
        follows_breakhis_scheme(p) and unit == accession_number(p)
        for p, unit in zip(predictions.patient_ids, units, strict=False)
        if p
    )
    if biopsies:
        return "biopsy" if count == 1 else "biopsies"
    return "patient" if count == 1 else "patients"


def exact_interval(successes: int, trials: int, *, level: float = 0.95) -> tuple[float, float]:
    """Return the exact (Clopper-Pearson) binomial interval of ``successes`` out of ``trials``.

    Its coverage is at least ``level`` for every true rate: 5 of 5 gives [0.478, 1.000] at 95%,
    where a bootstrap of the same five patients gives [1.000, 1.000].
    """
    from scipy.stats import beta

    tail = (1.0 - level) / 2.0
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    )
    return low, high


def exact_bounds(
    rows: Sequence[PatientRow], *, threshold: float = 0.5, level: float = 0.95
) -> dict[str, dict[str, Any]]:
    """Exact per-patient bounds of patient accuracy, sensitivity and specificity where a
    bootstrap says too little: a rate of 0 or 1, or fewer than :data:`EXACT_BELOW` patients.

    Each patient is one trial (called positive when its score reaches ``threshold``).

    Returns:
        Per statistic: ``successes``, ``trials``, ``low``, ``high`` and ``method``.
    """
    truth = np.array([row.positive for row in rows], dtype=bool)
    called = np.array([row.score >= threshold for row in rows], dtype=bool)
    counts = {
        "accuracy": (int(np.sum(truth == called)), len(rows)),
        "sensitivity": (int(np.sum(truth & called)), int(truth.sum())),
        "specificity": (int(np.sum(~truth & ~called)), int((~truth).sum())),
    }
    bounds: dict[str, dict[str, Any]] = {}
    for name, (successes, trials) in counts.items():
        if trials and (trials < EXACT_BELOW or successes in (0, trials)):
            low, high = exact_interval(successes, trials, level=level)
            bounds[name] = {
                "successes": successes,
                "trials": trials,
                "low": low,
                "high": high,
                "method": "Clopper-Pearson exact binomial, one trial per patient",
            }
    return bounds


def single_unit_warnings(counts: Mapping[str, int], noun: Callable[[int], str]) -> list[str]:
    """Name each side of the binary view that is a single patient (or biopsy): its rate is one
    patient's outcome, not an estimate (``benign: 1 biopsy: specificity cannot be estimated``).

    Args:
        counts: Units of the positive side, then of the negative side.
        noun: How to name ``n`` units (:func:`unit_noun`).
    """
    rates = ("sensitivity", "specificity")
    return [
        f"{name}: 1 {noun(1)}: {rate} cannot be estimated"
        for (name, count), rate in zip(counts.items(), rates, strict=False)
        if count == 1
    ]


def zero_width_warnings(intervals: Mapping[str, Interval], *, prefix: str = "") -> list[str]:
    """Name each bootstrap interval of zero width: every resample agreed, which with few
    patients shows how few there are, not certainty."""
    return [
        f"{prefix}{name}: zero-width interval [{interval.low:.3f}, {interval.high:.3f}]: every "
        "resample gave the same value, which shows how few patients there are, not certainty"
        for name, interval in intervals.items()
        if interval.low is not None and interval.low == interval.high
    ]


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


def weighted_auc(y_true: BoolArray, score: FloatArray, weights: FloatArray) -> FloatArray:
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


Statistic = Callable[[FloatArray], FloatArray]
"""A statistic under resampling: maps a ``(k, n)`` matrix of weights (how often each of ``n``
images or patients enters each of ``k`` resamples) to its ``k`` values, NaN where undefined."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Interval:
    """A percentile bootstrap confidence interval.

    Attributes:
        estimate: The statistic on the evaluated set itself (``None`` when undefined there).
        low: Lower bound (``None`` when the estimate is undefined).
        high: Upper bound.
        undefined: Number of resamples in which the statistic was undefined (left out).
    """

    estimate: float | None
    low: float | None
    high: float | None
    undefined: int = 0

    def as_dict(self) -> dict[str, float | None]:
        """Return ``{"estimate", "low", "high"}`` for ``metrics.json``."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def percentile_interval(
    estimate: float | None, samples: FloatArray, *, level: float = 0.95
) -> Interval:
    """Return the percentile interval of a statistic's resampled ``samples`` around ``estimate``.

    NaN samples (resamples in which the statistic is undefined) are left out and counted; with a
    class-stratified resampling they occur only when a class's images are spread over patients of
    other classes (see :func:`stratified_resampling`).
    """
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    undefined = int(samples.size - finite.size)
    if estimate is None or not math.isfinite(estimate):
        return Interval(estimate=None, low=None, high=None, undefined=undefined)
    if finite.size == 0:
        return Interval(estimate=float(estimate), low=None, high=None, undefined=undefined)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return Interval(estimate=float(estimate), low=float(low), high=float(high), undefined=undefined)


def bootstrap_interval(
    statistic: Statistic, weights: FloatArray, *, level: float = 0.95
) -> Interval:
    """Return the percentile bootstrap interval of any statistic.

    The one function behind every interval: the estimate is ``statistic`` with every image (or
    patient) counted once, the interval the percentiles of ``statistic(weights)``.

    Args:
        statistic: The statistic as a function of resample weights (:data:`Statistic`).
        weights: ``(n_resamples, n)`` draws, e.g. :attr:`Resampling.image_weights` or
            :attr:`Resampling.patient_weights`.
        level: Confidence level.
    """
    weights = np.asarray(weights, dtype=np.float64)
    full = statistic(np.ones((1, weights.shape[1])))[0]
    return percentile_interval(float(full), statistic(weights), level=level)


@dataclass(frozen=True, slots=True, kw_only=True)
class BootstrapOptions:
    """How every bootstrap interval is drawn: how many resamples, from which seed, at which
    confidence level.

    Attributes:
        n_resamples: Number of bootstrap resamples (at least 1).
        seed: Seed of the resampling (at least 0): the same seed gives the same intervals.
        level: Confidence level, strictly between 0 and 1.

    Raises:
        ConfigError: A value is out of range (named, with what is allowed).
    """

    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if isinstance(self.n_resamples, bool) or not isinstance(self.n_resamples, int):
            raise ConfigError(
                f"Bootstrap n_resamples {self.n_resamples!r} must be a whole number, e.g. 1000."
            )
        if self.n_resamples < 1:
            raise ConfigError(
                f"Bootstrap n_resamples {self.n_resamples} must be at least 1; 1000 is usual."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"Bootstrap seed {self.seed!r} must be a whole number >= 0.")
        if isinstance(self.level, bool) or not (
            isinstance(self.level, int | float) and 0.0 < self.level < 1.0
        ):
            raise ConfigError(
                f"Bootstrap confidence level {self.level!r} must lie strictly between 0 and 1, "
                "e.g. 0.95."
            )


DEFAULT_BOOTSTRAP = BootstrapOptions()
"""1000 resamples, seed 0, 95% intervals: what every section uses unless told otherwise."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Resampling:
    """The draws of a class-stratified bootstrap of one set of predictions.

    Attributes:
        resampled: ``patients`` when every image has a patient id (whole patients are drawn),
            else ``images``.
        image_weights: ``(n_resamples, n_images)``: how often each image enters each resample.
        patients: The patients, in :func:`patient_rows` order (empty without patient ids).
        patient_weights: ``(n_resamples, n_patients)``: how often each patient enters each
            resample; the same draws as ``image_weights`` when ``resampled == "patients"``.
        per_class: Number of resampled units (patients or images) of each class, in class
            order; every resample keeps these counts.
        options: The resamples, seed and confidence level of the draws and their intervals.
    """

    resampled: Literal["patients", "images"]
    image_weights: FloatArray
    patients: tuple[PatientRow, ...]
    patient_weights: FloatArray
    per_class: tuple[int, ...]
    options: BootstrapOptions

    @property
    def method(self) -> str:
        """Name the method: ``class-stratified patient bootstrap`` (or ``image``)."""
        return f"class-stratified {self.resampled[:-1]} bootstrap"

    def describe(self, *, resampled: Literal["patients", "images"] | None = None) -> dict[str, Any]:
        """Return the JSON record of how intervals were computed.

        Args:
            resampled: What the intervals drew, when not :attr:`resampled` (patient-level
                statistics draw ``patients`` even when some images lack a patient id).
        """
        unit = resampled or self.resampled
        return {
            "method": f"class-stratified {unit[:-1]} bootstrap",
            "resampled": unit,
            "n_resamples": self.options.n_resamples,
            "seed": self.options.seed,
            "level": self.options.level,
            "interval": "percentile",
        }


def _stratified_counts(classes: IntArray, rng: np.random.Generator, n_resamples: int) -> FloatArray:
    """Draw, within each class separately, as many units as it has, with replacement."""
    counts = np.zeros((n_resamples, len(classes)), dtype=np.float64)
    for klass in np.unique(classes):
        members = np.flatnonzero(classes == klass)
        size = len(members)
        counts[:, members] = rng.multinomial(size, np.full(size, 1.0 / size), n_resamples)
    return counts


def stratified_resampling(
    predictions: Predictions, options: BootstrapOptions = DEFAULT_BOOTSTRAP
) -> Resampling:
    """Draw a class-stratified bootstrap of ``predictions``.

    When every image has a patient id, whole patients are drawn with replacement (a patient's
    images are correlated, so resampling images would understate the uncertainty), within each
    true class separately (a patient's class is the most common class of its images): each
    resample has as many patients of each class as the evaluated set, so a statistic that needs
    both classes (sensitivity, specificity, AUC) is defined in every resample whenever it is
    defined on the evaluated set, and no resample is dropped. Otherwise images are drawn, also
    within each class. Patients with ids are drawn (for patient-level statistics) in both cases.

    Args:
        predictions: The predictions to resample.
        options: Number of resamples and seed (the same seed gives the same draws); its level
            is what :meth:`Resampling.describe` records.
    """
    n_resamples = options.n_resamples
    rng = np.random.default_rng(options.seed)
    rows = tuple(patient_rows(predictions))
    n_classes = len(predictions.class_names)
    patient_classes = np.array([row.label for row in rows], dtype=np.int64)
    patient_weights = _stratified_counts(patient_classes, rng, n_resamples)
    ids = unit_ids(predictions)
    if rows and all(ids):
        position = {row.patient_id: i for i, row in enumerate(rows)}
        patient_of_image = np.array([position[str(p)] for p in ids], dtype=np.int64)
        return Resampling(
            resampled="patients",
            image_weights=patient_weights[:, patient_of_image],
            patients=rows,
            patient_weights=patient_weights,
            per_class=tuple(int(c) for c in np.bincount(patient_classes, minlength=n_classes)),
            options=options,
        )
    labels = np.asarray(predictions.y_true, dtype=np.int64)
    return Resampling(
        resampled="images",
        image_weights=_stratified_counts(labels, rng, n_resamples),
        patients=rows,
        patient_weights=patient_weights,
        per_class=tuple(int(c) for c in np.bincount(labels, minlength=n_classes)),
        options=options,
    )


def few_units_warnings(
    counts: Mapping[str, int], unit: str, *, prefix: str = "", minimum: int = FEW_PATIENTS
) -> list[str]:
    """Warn about each class with fewer than ``minimum`` patients (or images).

    Returns:
        ``["class X has 3 patients: intervals are unreliable", ...]`` (``prefix`` first).
    """
    singular = "biopsy" if unit == "biopsies" else unit.removesuffix("s")
    return [
        f"{prefix}class {name} has {count} {singular if count == 1 else unit}: "
        "intervals are unreliable"
        for name, count in counts.items()
        if count < minimum
    ]


def _weighted_ratio(
    weights: FloatArray, numerator: BoolArray, denominator: BoolArray
) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(
            (weights @ numerator.astype(np.float64)) / (weights @ denominator.astype(np.float64)),
            dtype=np.float64,
        )


def _weighted_f1(weights: FloatArray, y_true: BoolArray, y_pred: BoolArray) -> FloatArray:
    """F1 = 2 TP / (2 TP + FP + FN) = 2 r / (1 + r) with r = TP / (TP + FP + FN)."""
    share = _weighted_ratio(weights, y_true & y_pred, y_true | y_pred)
    return np.asarray(2.0 * share / (1.0 + share), dtype=np.float64)


def image_statistics(predictions: Predictions) -> dict[str, Statistic]:
    """Return the image-level headline statistics as functions of image weights.

    ``accuracy`` is the multi-class accuracy of the top class; ``sensitivity``, ``specificity``
    and ``f1`` are those of the positive class (or group) under the default decision
    (:meth:`PositiveGroup.called`); ``auc`` uses the positive score. With more than two classes,
    ``binary_accuracy`` is the accuracy of the positive-vs-rest decision.
    """
    view = binary_view(predictions)
    yt, yp = view.y_true, view.y_pred
    correct = np.asarray(predictions.y_true == predictions.y_pred)
    everything = np.ones_like(yt)
    statistics: dict[str, Statistic] = {
        "accuracy": lambda w: _weighted_ratio(w, correct, everything),
        "sensitivity": lambda w: _weighted_ratio(w, yt & yp, yt),
        "specificity": lambda w: _weighted_ratio(w, ~yt & ~yp, ~yt),
        "f1": lambda w: _weighted_f1(w, yt, yp),
        "auc": lambda w: weighted_auc(yt, view.score, w),
    }
    if len(predictions.class_names) > 2:
        statistics["binary_accuracy"] = lambda w: _weighted_ratio(w, yt == yp, everything)
    return statistics


def patient_statistics(
    rows: Sequence[PatientRow], *, threshold: float = 0.5
) -> dict[str, Statistic]:
    """Return the patient-level headline statistics as functions of patient weights.

    A patient is called positive when its score reaches ``threshold``; ``accuracy``,
    ``sensitivity``, ``specificity`` and ``auc`` are over patients; ``patient_recognition_rate``
    (Spanhol et al., 2016) is the mean over patients of the share of their images whose top class
    is right.
    """
    truth = np.array([row.positive for row in rows], dtype=bool)
    score = np.array([row.score for row in rows], dtype=np.float64)
    called = score >= threshold
    share = np.array([row.images_correct for row in rows], dtype=np.float64)
    everything = np.ones_like(truth)

    def recognition(w: FloatArray) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray((w @ share) / w.sum(axis=1), dtype=np.float64)

    return {
        "accuracy": lambda w: _weighted_ratio(w, truth == called, everything),
        **decision_statistics(truth, called),
        "auc": lambda w: weighted_auc(truth, score, w),
        "patient_recognition_rate": recognition,
    }


def decision_statistics(truth: BoolArray, called: BoolArray) -> dict[str, Statistic]:
    """Return ``sensitivity`` and ``specificity`` of the decision ``called`` as functions of
    weights: an operating point's rates, resampled with the same draws as every other figure."""
    truth = np.asarray(truth, dtype=bool)
    called = np.asarray(called, dtype=bool)
    return {
        "sensitivity": lambda w: _weighted_ratio(w, truth & called, truth),
        "specificity": lambda w: _weighted_ratio(w, ~truth & ~called, ~truth),
    }


def subset(predictions: Predictions, rows: Sequence[int]) -> Predictions:
    """Return the predictions of the given rows only (e.g. one magnification's images)."""
    index = list(rows)

    def pick(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(values[i] for i in index) if len(values) == len(predictions.y_true) else ()

    return Predictions(
        class_names=predictions.class_names,
        y_true=np.asarray(predictions.y_true)[index],
        probabilities=np.asarray(predictions.probabilities)[index],
        paths=pick(predictions.paths),
        patient_ids=pick(predictions.patient_ids),
        magnifications=pick(predictions.magnifications),
        thresholds=predictions.thresholds,
        temperature=predictions.temperature,
        groups=pick(predictions.groups),
    )


def bootstrap_intervals(
    predictions: Predictions, options: BootstrapOptions = DEFAULT_BOOTSTRAP
) -> tuple[dict[str, dict[str, float | None]], str]:
    """Class-stratified percentile bootstrap intervals of the image-level headline statistics.

    See :func:`stratified_resampling` (what is drawn) and :func:`image_statistics` (what is
    measured).

    Returns:
        For each statistic its point ``estimate`` on all images, ``low`` and ``high``; and what
        was resampled (``patients`` or ``images``).
    """
    resampling = stratified_resampling(predictions, options)
    intervals = {
        name: bootstrap_interval(statistic, resampling.image_weights, level=options.level).as_dict()
        for name, statistic in image_statistics(predictions).items()
    }
    return intervals, resampling.resampled


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientRow:
    """One patient's aggregate.

    Attributes:
        patient_id: The patient.
        label: The patient's true class (the most common true class of its images).
        positive: Whether that class is in the positive group (:func:`positive_group`).
        score: Mean of its images' positive scores (probability of the positive class or
            group): the patient score.
        n_images: Number of images.
        images_correct: Share of its images whose top class is right.
        magnifications: The magnifications of its images.
        slides: The patient ids (slides) of its images, when the patient is a group of several.
    """

    patient_id: str
    label: int
    positive: bool
    score: float
    n_images: int
    images_correct: float
    magnifications: tuple[int, ...]
    slides: tuple[str, ...] = ()


def patient_rows(predictions: Predictions, rows: Sequence[int] | None = None) -> list[PatientRow]:
    """Aggregate images per patient: per :func:`unit_ids`, the split's group (rows without one
    are left out), so two slides of one biopsy are one patient.

    The patient score is the mean of the patient's images' positive scores (probability of the
    positive class, or the summed malignant subtypes): every image counts once, so a patient's
    score does not depend on how confident one image is.

    Args:
        predictions: The image-level predictions.
        rows: Restrict to these row indices (e.g. one magnification).
    """
    group = positive_group(predictions.class_names)
    score = group.score(predictions.probabilities)
    chosen = range(len(predictions.y_true)) if rows is None else rows
    groups: dict[str, list[int]] = {}
    units = unit_ids(predictions)
    for i in chosen:
        if units[i]:
            groups.setdefault(str(units[i]), []).append(i)
    mags = predictions.magnifications
    slides = predictions.patient_ids
    result = []
    for patient, members in sorted(groups.items()):
        labels = predictions.y_true[members]
        counts = np.bincount(labels, minlength=len(predictions.class_names))
        label = int(np.argmax(counts))
        result.append(
            PatientRow(
                patient_id=patient,
                label=label,
                positive=label in group.indices,
                score=float(score[members].mean()),
                n_images=len(members),
                images_correct=float(np.mean(predictions.y_pred[members] == labels)),
                magnifications=tuple(
                    sorted({m for i in members if i < len(mags) and (m := mags[i]) is not None})
                ),
                slides=tuple(
                    sorted({p for i in members if i < len(slides) and (p := slides[i]) is not None})
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
