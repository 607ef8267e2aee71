"""The pieces the clinical metrics' sections share: intervals of named statistics and their
warnings, the positive class's fields, the sentence that says how intervals were drawn, and the
section that records a metric is unavailable."""

from __future__ import annotations

from typing import Any, Literal

from breastcls.evaluation.clinical import (
    BootstrapOptions,
    Interval,
    binary_rates,
    bootstrap_interval,
    decision_statistics,
    few_units_warnings,
    safe_auc,
    single_unit_warnings,
    unit_noun,
    zero_width_warnings,
)
from breastcls.inference.decision import BinaryView, FloatArray, positive_group
from breastcls.interfaces import MetricSection, Predictions

__all__ = [
    "as_dicts",
    "interval_warnings",
    "intervals_of",
    "intervals_sentence",
    "operating_point",
    "patient_warnings",
    "positive_fields",
    "rates_with_auc",
    "side_counts",
    "unavailable",
    "with_warnings",
]


def side_counts(predictions: Predictions, per_class: tuple[int, ...]) -> dict[str, int]:
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


def intervals_of(
    statistics: dict[str, Any], weights: FloatArray, *, level: float
) -> dict[str, Interval]:
    """The bootstrap interval of each named statistic over the same resample ``weights``."""
    return {
        name: bootstrap_interval(statistic, weights, level=level)
        for name, statistic in statistics.items()
    }


def as_dicts(intervals: dict[str, Interval]) -> dict[str, dict[str, float | None]]:
    """The intervals as JSON records, by name."""
    return {name: interval.as_dict() for name, interval in intervals.items()}


def interval_warnings(
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


def patient_warnings(
    predictions: Predictions, counts: dict[str, int], intervals: dict[str, Interval], n: int
) -> list[str]:
    """The warnings of intervals drawn by patient: a side that is one patient (biopsy) first,
    then :func:`interval_warnings` with patients named as the units they are."""
    noun = unit_noun(predictions, 2)
    return single_unit_warnings(
        counts, lambda count: unit_noun(predictions, count)
    ) + interval_warnings(counts, noun, intervals, n)


def with_warnings(text: str, warnings: list[str]) -> str:
    """``text`` followed by one ``Warning: ...`` line per warning."""
    return "\n".join([text, *(f"Warning: {warning}." for warning in warnings)])


def intervals_sentence(how: str, options: BootstrapOptions) -> str:
    """The sentence that says how a section's intervals were drawn."""
    return (
        f"{options.level:.0%} intervals: {how}, {options.n_resamples} resamples "
        f"(seed {options.seed})."
    )


def positive_fields(view: BinaryView) -> dict[str, Any]:
    """The positive class (or group) and the classes it holds."""
    return {"positive_class": view.positive, "positive_classes": list(view.positive_classes)}


def unavailable(
    name: str, title: str, reason: str, *, level: Literal["image", "patient"] = "image"
) -> MetricSection:
    """A section recording that these predictions lack what the metric needs."""
    return MetricSection(
        name=name, title=title, values={"available": False}, text=reason, level=level
    )


def rates_with_auc(y_true: Any, y_pred: Any, score: Any) -> dict[str, Any]:
    """Accuracy, sensitivity and specificity of a decision, and the AUC of its score."""
    rates = binary_rates(y_true, y_pred)
    return {
        "accuracy": rates["accuracy"],
        "sensitivity": rates["sensitivity"],
        "specificity": rates["specificity"],
        "auc": safe_auc(y_true, score),
    }


def operating_point(
    name: str,
    threshold: float,
    truth: Any,
    score: Any,
    weights: FloatArray,
    *,
    level: float,
    rates: tuple[str, ...],
) -> dict[str, Any]:
    """One operating point: the ``rates`` of calling positive every score at or above
    ``threshold``, and the intervals of its sensitivity and specificity over the resample
    ``weights`` (of the units the scores belong to: images or patients)."""
    called = score >= threshold
    found = binary_rates(truth, called)
    intervals = intervals_of(decision_statistics(truth, called), weights, level=level)
    return {
        "name": name,
        "threshold": threshold,
        **{key: found[key] for key in rates},
        "intervals": as_dicts(intervals),
    }
