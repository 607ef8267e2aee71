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
import numpy.typing as npt

from breastcls.data.breakhis import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES
from breastcls.interfaces import Predictions

__all__ = [
    "FEW_PATIENTS",
    "BinaryView",
    "Interval",
    "PatientRow",
    "PositiveGroup",
    "Resampling",
    "Statistic",
    "apply_temperature",
    "binary_rates",
    "binary_view",
    "bootstrap_interval",
    "bootstrap_intervals",
    "choose_thresholds",
    "expected_calibration_error",
    "few_units_warnings",
    "fit_temperature",
    "image_statistics",
    "patient_rows",
    "patient_statistics",
    "percentile_interval",
    "positive_class_index",
    "positive_group",
    "reliability_bins",
    "safe_auc",
    "stratified_resampling",
    "subset",
    "threshold_names",
    "weighted_auc",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_EPSILON = 1e-12
NOTHING_POSITIVE = float(np.nextafter(1.0, 2.0))
"""The threshold that calls no image positive (scores never exceed 1)."""


FEW_PATIENTS = 5
"""A class with fewer patients (or images, without patient ids) than this gets a warning."""


def positive_class_index(class_names: Sequence[str]) -> int:
    """Return the index of one positive class: ``malignant`` when present, else the last class.

    Superseded by :func:`positive_group`, which also handles subtype class names (whose positive
    group is several classes); this function ignores subtypes and returns the last class.
    """
    names = list(class_names)
    return names.index("malignant") if "malignant" in names else len(names) - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PositiveGroup:
    """The classes that count as positive in the binary (clinical) view of a classifier.

    Attributes:
        name: Name of the positive side (``malignant``, or the positive class's name).
        negative: Name of the other side: the other class of a binary task, ``benign`` for
            subtypes, else ``not <name>``.
        indices: Indices of the classes in the group.
        summed: Whether the group is the malignant subtypes, whose probabilities are summed; an
            image is then called positive when that sum is at least 0.5, not by its top class.
    """

    name: str
    negative: str
    indices: tuple[int, ...]
    summed: bool = False

    def score(self, probabilities: npt.ArrayLike) -> FloatArray:
        """Return each row's probability of the group: the sum over its classes (at most 1)."""
        values = np.asarray(probabilities, dtype=np.float64)[:, list(self.indices)].sum(axis=1)
        return np.asarray(np.minimum(values, 1.0), dtype=np.float64)

    def contains(self, labels: npt.ArrayLike) -> BoolArray:
        """Return whether each label (a class index) is in the group."""
        return np.isin(np.asarray(labels), self.indices)

    def called(self, probabilities: npt.ArrayLike) -> BoolArray:
        """Return whether each row is called positive by the default decision: the top class
        is in the group, or, for the summed malignant subtypes, their probability is >= 0.5."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if self.summed:
            return np.asarray(self.score(probabilities) >= 0.5)
        return self.contains(probabilities.argmax(axis=1))

    def describe(self, class_names: Sequence[str]) -> str:
        """Say in words what an image's score is."""
        if self.summed:
            members = ", ".join(class_names[i] for i in self.indices)
            return f"P({self.name}) = the sum of the probabilities of {members}"
        return f"the probability of {self.name}"


def positive_group(class_names: Sequence[str]) -> PositiveGroup:
    """Return the positive side of the binary view of a classifier with these classes.

    ``malignant`` when it is a class; the malignant subtypes (named ``malignant``, scores summed)
    when every class is a BreakHis subtype (A, F, PT, TA, DC, LC, MC, PC; any case) and both
    benign and malignant ones are present; else the last class (one-vs-rest).
    """
    names = list(class_names)
    if "malignant" in names:
        index = names.index("malignant")
        negative = names[1 - index] if len(names) == 2 else "not malignant"
        return PositiveGroup(name="malignant", negative=negative, indices=(index,))
    upper = [name.upper() for name in names]
    malignant = tuple(i for i, name in enumerate(upper) if name in MALIGNANT_SUBTYPES)
    subtypes = set(BENIGN_SUBTYPES) | set(MALIGNANT_SUBTYPES)
    if malignant and len(malignant) < len(names) and all(name in subtypes for name in upper):
        return PositiveGroup(name="malignant", negative="benign", indices=malignant, summed=True)
    last = len(names) - 1
    negative = names[0] if len(names) == 2 else f"not {names[last]}"
    return PositiveGroup(name=names[last], negative=negative, indices=(last,))


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryView:
    """Predictions seen as the positive class (or group) vs the rest.

    Attributes:
        positive: Name of the positive side (``malignant`` for the malignant subtypes).
        negative: Name of the other side.
        positive_classes: The class names that count as positive.
        y_true: Whether each image is truly positive.
        score: Each image's probability of the positive class (or group).
        y_pred: Whether the model calls the image positive (see :meth:`PositiveGroup.called`).
    """

    positive: str
    negative: str
    positive_classes: tuple[str, ...]
    y_true: BoolArray
    score: FloatArray
    y_pred: BoolArray


def binary_view(predictions: Predictions) -> BinaryView:
    """Return the positive-vs-rest view of ``predictions`` (see :func:`positive_group`)."""
    group = positive_group(predictions.class_names)
    return BinaryView(
        positive=group.name,
        negative=group.negative,
        positive_classes=tuple(predictions.class_names[i] for i in group.indices),
        y_true=group.contains(predictions.y_true),
        score=group.score(predictions.probabilities),
        y_pred=group.called(predictions.probabilities),
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

    Meant for the selection set; the thresholds are then applied unchanged to the test set.

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
    2017), searched on ``log T`` within ``[0.05, 20]``. Meant for the selection set."""
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
        n_resamples: Number of resamples.
        seed: Seed of the draws.
    """

    resampled: Literal["patients", "images"]
    image_weights: FloatArray
    patients: tuple[PatientRow, ...]
    patient_weights: FloatArray
    per_class: tuple[int, ...]
    n_resamples: int
    seed: int

    @property
    def method(self) -> str:
        """Name the method: ``class-stratified patient bootstrap`` (or ``image``)."""
        return f"class-stratified {self.resampled[:-1]} bootstrap"

    def describe(
        self, *, level: float, resampled: Literal["patients", "images"] | None = None
    ) -> dict[str, Any]:
        """Return the JSON record of how intervals were computed.

        Args:
            level: Confidence level.
            resampled: What the intervals drew, when not :attr:`resampled` (patient-level
                statistics draw ``patients`` even when some images lack a patient id).
        """
        unit = resampled or self.resampled
        return {
            "method": f"class-stratified {unit[:-1]} bootstrap",
            "resampled": unit,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": level,
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
    predictions: Predictions, *, n_resamples: int = 1000, seed: int = 0
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
        n_resamples: Number of resamples.
        seed: Seed: the same seed gives the same draws.
    """
    rng = np.random.default_rng(seed)
    rows = tuple(patient_rows(predictions))
    n_classes = len(predictions.class_names)
    patient_classes = np.array([row.label for row in rows], dtype=np.int64)
    patient_weights = _stratified_counts(patient_classes, rng, n_resamples)
    n = len(predictions.y_true)
    ids = predictions.patient_ids
    if rows and len(ids) == n and all(ids):
        position = {row.patient_id: i for i, row in enumerate(rows)}
        patient_of_image = np.array([position[str(p)] for p in ids], dtype=np.int64)
        return Resampling(
            resampled="patients",
            image_weights=patient_weights[:, patient_of_image],
            patients=rows,
            patient_weights=patient_weights,
            per_class=tuple(int(c) for c in np.bincount(patient_classes, minlength=n_classes)),
            n_resamples=n_resamples,
            seed=seed,
        )
    labels = np.asarray(predictions.y_true, dtype=np.int64)
    return Resampling(
        resampled="images",
        image_weights=_stratified_counts(labels, rng, n_resamples),
        patients=rows,
        patient_weights=patient_weights,
        per_class=tuple(int(c) for c in np.bincount(labels, minlength=n_classes)),
        n_resamples=n_resamples,
        seed=seed,
    )


def few_units_warnings(
    counts: Mapping[str, int], unit: str, *, prefix: str = "", minimum: int = FEW_PATIENTS
) -> list[str]:
    """Warn about each class with fewer than ``minimum`` patients (or images).

    Returns:
        ``["class X has 3 patients: intervals are unreliable", ...]`` (``prefix`` first).
    """
    singular = unit[:-1] if unit.endswith("s") else unit
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
        "sensitivity": lambda w: _weighted_ratio(w, truth & called, truth),
        "specificity": lambda w: _weighted_ratio(w, ~truth & ~called, ~truth),
        "auc": lambda w: weighted_auc(truth, score, w),
        "patient_recognition_rate": recognition,
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
    )


def bootstrap_intervals(
    predictions: Predictions,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[dict[str, dict[str, float | None]], str]:
    """Class-stratified percentile bootstrap intervals of the image-level headline statistics.

    See :func:`stratified_resampling` (what is drawn) and :func:`image_statistics` (what is
    measured).

    Returns:
        For each statistic its point ``estimate`` on all images, ``low`` and ``high``; and what
        was resampled (``patients`` or ``images``).
    """
    resampling = stratified_resampling(predictions, n_resamples=n_resamples, seed=seed)
    intervals = {
        name: bootstrap_interval(statistic, resampling.image_weights, level=level).as_dict()
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
    """

    patient_id: str
    label: int
    positive: bool
    score: float
    n_images: int
    images_correct: float
    magnifications: tuple[int, ...]


def patient_rows(predictions: Predictions, rows: Sequence[int] | None = None) -> list[PatientRow]:
    """Aggregate images per patient (rows without a patient id are left out).

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
