"""From a model's probabilities to a clinical decision: the positive side (malignant, or the
malignant subtypes), temperature scaling and operating thresholds.

The binary view of any classifier (:func:`positive_group`): the positive class is ``malignant``
when the classes include it; when the classes are BreakHis subtypes that include malignant ones,
the positive *group* is the malignant subtypes, named ``malignant``, and an image's score is the
sum of their probabilities; otherwise the positive class is the last class (one-vs-rest).
Fitting happens on the selection set (:mod:`breastcls.inference.calibration`); evaluation and
prediction apply the result unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from breastcls.data.breakhis import BENIGN_SUBTYPES, MALIGNANT_SUBTYPES
from breastcls.interfaces import Predictions

__all__ = [
    "NOTHING_POSITIVE",
    "BinaryView",
    "PositiveGroup",
    "apply_temperature",
    "binary_view",
    "choose_thresholds",
    "fit_temperature",
    "positive_group",
    "threshold_names",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_EPSILON = 1e-12
NOTHING_POSITIVE = float(np.nextafter(1.0, 2.0))
"""The threshold that calls no image positive (scores never exceed 1)."""


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
        ``default`` (0.5), ``youden`` (maximises sensitivity + specificity - 1; every cut
        between the lowest score it calls positive and the next score below gives the same
        decisions, so it is their midpoint: on a perfectly separated set, halfway between the
        highest negative and the lowest positive score, not the lowest positive score itself),
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
    best = int(np.argmax(tpr - fpr))
    below = thresholds[best + 1] if 0 < best < len(thresholds) - 1 else thresholds[best]
    chosen[names[1]] = float((thresholds[best] + below) / 2.0)
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
