"""Class-stratified bootstrap intervals: hand-checkable inputs (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

from breastcls.errors import ConfigError
from breastcls.evaluation.clinical import (
    BootstrapOptions,
    Interval,
    bootstrap_interval,
    bootstrap_intervals,
    few_units_warnings,
    image_statistics,
    patient_rows,
    patient_statistics,
    percentile_interval,
    stratified_resampling,
)
from breastcls.evaluation.image_metrics import BootstrapMetric
from breastcls.evaluation.patient_metrics import MagnificationMetric, PatientMetric
from breastcls.inference.decision import binary_view
from breastcls.interfaces import Predictions

HERE = Path(".")


def _patients(
    labels: list[int],
    *,
    per_patient: int = 4,
    separated: bool = False,
    seed: int = 0,
    magnifications: tuple[int, ...] = (40, 100),
) -> Predictions:
    """Binary predictions of patients ``p0, p1, ...`` with the given classes (1 = malignant).

    ``separated``: every malignant image scores above every benign one (scores 0.6-0.9 against
    0.1-0.4), so every decision at 0.5 is right.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(labels, per_patient)
    if separated:
        score = np.where(y == 1, rng.uniform(0.6, 0.9, y.size), rng.uniform(0.1, 0.4, y.size))
    else:
        score = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, y.size), 0.01, 0.99)
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=y.astype(np.int64),
        probabilities=np.stack([1 - score, score], axis=1),
        patient_ids=tuple(f"p{i:02d}" for i in np.repeat(np.arange(len(labels)), per_patient)),
        magnifications=tuple(magnifications[i % len(magnifications)] for i in range(y.size)),
    )


def test_a_perfectly_separated_set_gives_intervals_of_one() -> None:
    p = _patients([0] * 6 + [1] * 6, separated=True)
    intervals, unit = bootstrap_intervals(p, BootstrapOptions(n_resamples=300, seed=0))
    assert unit == "patients"
    for name in ("accuracy", "sensitivity", "specificity", "f1", "auc"):
        assert intervals[name] == {"estimate": 1.0, "low": 1.0, "high": 1.0}, name
    patient = PatientMetric(bootstrap=BootstrapOptions(n_resamples=300))(p, out_dir=HERE).values[
        "intervals"
    ]
    for name in ("accuracy", "sensitivity", "specificity", "auc", "patient_recognition_rate"):
        assert patient[name] == {"estimate": 1.0, "low": 1.0, "high": 1.0}, name


def test_stratification_keeps_each_class_patient_count_in_every_draw() -> None:
    labels = [0] * 7 + [1] * 3
    p = _patients(labels, per_patient=3)
    resampling = stratified_resampling(p, BootstrapOptions(n_resamples=500, seed=4))
    assert resampling.resampled == "patients"
    assert resampling.per_class == (7, 3)
    classes = np.array([row.label for row in resampling.patients])
    weights = resampling.patient_weights
    assert weights.shape == (500, 10)
    np.testing.assert_array_equal(weights[:, classes == 0].sum(axis=1), 7)
    np.testing.assert_array_equal(weights[:, classes == 1].sum(axis=1), 3)
    # Draws do vary within a class (it is a bootstrap, not the identity).
    assert (weights[:, classes == 1] != 1).any()
    # Images follow their patient: every image of a patient has the patient's count.
    image_of_patient = np.repeat(np.arange(10), 3)
    np.testing.assert_array_equal(resampling.image_weights, weights[:, image_of_patient])


def test_a_class_of_one_patient_is_in_every_draw_so_no_draw_is_undefined() -> None:
    # Nine benign patients and one malignant one. An unstratified patient bootstrap leaves the
    # malignant patient out of about (9/10)^10 = 35% of the draws, where sensitivity and AUC are
    # undefined; stratified, that patient is drawn exactly once every time.
    p = _patients([0] * 9 + [1], per_patient=4)
    resampling = stratified_resampling(p, BootstrapOptions(n_resamples=400, seed=0))
    np.testing.assert_array_equal(resampling.patient_weights[:, -1], 1.0)
    for name, statistic in image_statistics(p).items():
        interval = bootstrap_interval(statistic, resampling.image_weights)
        assert interval.undefined == 0, name
        assert interval.low is not None and interval.high is not None, name


def test_images_are_drawn_within_each_class_without_patient_ids() -> None:
    y = np.array([0] * 30 + [1] * 12)
    score = np.linspace(0.05, 0.95, y.size)
    p = Predictions(
        class_names=("benign", "malignant"),
        y_true=y,
        probabilities=np.stack([1 - score, score], axis=1),
    )
    resampling = stratified_resampling(p, BootstrapOptions(n_resamples=300, seed=1))
    assert resampling.resampled == "images" and resampling.per_class == (30, 12)
    assert resampling.patients == () and resampling.patient_weights.shape == (300, 0)
    np.testing.assert_array_equal(resampling.image_weights[:, y == 0].sum(axis=1), 30)
    np.testing.assert_array_equal(resampling.image_weights[:, y == 1].sum(axis=1), 12)


def test_the_weighted_statistics_equal_sklearn_with_sample_weights() -> None:
    p = _patients([0, 1] * 5, per_patient=5, seed=2)
    view = binary_view(p)
    weights = stratified_resampling(p, BootstrapOptions(n_resamples=6, seed=3)).image_weights
    statistics = image_statistics(p)
    values = {name: statistic(weights) for name, statistic in statistics.items()}
    for row, w in enumerate(weights):
        expected = {
            "accuracy": accuracy_score(p.y_true, p.y_pred, sample_weight=w),
            "sensitivity": recall_score(view.y_true, view.y_pred, sample_weight=w),
            "specificity": recall_score(~view.y_true, ~view.y_pred, sample_weight=w),
            "f1": f1_score(view.y_true, view.y_pred, sample_weight=w),
            "auc": roc_auc_score(view.y_true, view.score, sample_weight=w),
        }
        for name, value in expected.items():
            assert values[name][row] == pytest.approx(value), name


def test_bootstrap_interval_works_for_any_statistic() -> None:
    # A statistic of one's own: the mean of a per-patient value. Two patients of one class, with
    # values 0 and 1: a resample's mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4, so the
    # 95% interval is [0, 1] around the estimate 1/2.
    value = np.array([0.0, 1.0])

    def mean(weights: np.ndarray) -> np.ndarray:
        return (weights @ value) / weights.sum(axis=1)  # type: ignore[no-any-return]

    p = _patients([0, 0], per_patient=1)
    resampling = stratified_resampling(p, BootstrapOptions(n_resamples=2000, seed=0))
    interval = bootstrap_interval(mean, resampling.patient_weights)
    assert interval == Interval(estimate=0.5, low=0.0, high=1.0, undefined=0)
    share_of_halves = np.mean(mean(resampling.patient_weights) == 0.5)
    assert share_of_halves == pytest.approx(0.5, abs=0.05)


def test_percentile_interval_by_hand() -> None:
    samples = np.arange(101, dtype=np.float64)  # percentiles are the values themselves
    interval = percentile_interval(50.0, samples, level=0.9)
    assert (interval.estimate, interval.low, interval.high) == (50.0, pytest.approx(5.0), 95.0)
    assert interval.undefined == 0
    with_nan = np.r_[samples, [np.nan, np.nan]]
    assert percentile_interval(50.0, with_nan, level=0.9).undefined == 2
    assert percentile_interval(None, samples) == Interval(estimate=None, low=None, high=None)


def test_patient_section_intervals_contain_its_figures_and_say_how() -> None:
    p = _patients([0] * 6 + [1] * 6, per_patient=4, seed=5)
    section = PatientMetric(bootstrap=BootstrapOptions(n_resamples=400, seed=2))(p, out_dir=HERE)
    values = section.values
    assert values["interval_method"] == {
        "method": "class-stratified patient bootstrap",
        "resampled": "patients",
        "n_resamples": 400,
        "seed": 2,
        "level": 0.95,
        "interval": "percentile",
    }
    # Every benign patient is right and the two classes' scores never cross: those intervals
    # have zero width, which is named (issue 25 #2), and 6 of 6 gets an exact bound.
    assert [w.split(":")[0] for w in values["warnings"]] == ["specificity", "auc"]
    assert "zero-width interval [1.000, 1.000]" in values["warnings"][0]
    assert values["exact"]["specificity"]["low"] == pytest.approx(0.5407, abs=1e-4)
    for name in ("accuracy", "sensitivity", "specificity", "auc", "patient_recognition_rate"):
        interval = values["intervals"][name]
        assert interval["estimate"] == pytest.approx(values[name]), name
        assert interval["low"] <= interval["estimate"] <= interval["high"], name
    # The recognition rate by hand: the mean over patients of their share of right images.
    right = (p.y_pred == p.y_true).reshape(12, 4)  # patient i holds images 4i .. 4i + 3
    expected = right.mean(axis=1).mean()
    rows = patient_rows(p)
    assert values["patient_recognition_rate"] == pytest.approx(expected)
    recognition = patient_statistics(rows)["patient_recognition_rate"]
    assert recognition(np.ones((1, 12)))[0] == pytest.approx(expected)


def test_few_patients_give_a_clear_warning() -> None:
    p = _patients([0] * 6 + [1] * 3, per_patient=2)
    bootstrap = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=200))(p, out_dir=HERE)
    expected = "class malignant has 3 patients: intervals are unreliable"
    assert bootstrap.values["warnings"] == [expected]
    assert bootstrap.values["resampled_per_class"] == {"malignant": 3, "benign": 6}
    assert f"Warning: {expected}." in (bootstrap.text or "")
    assert PatientMetric(bootstrap=BootstrapOptions(n_resamples=200))(p, out_dir=HERE).values[
        "warnings"
    ] == [expected]
    assert few_units_warnings({"A": 1, "B": 5}, "patients") == [
        "class A has 1 patient: intervals are unreliable"
    ]


def test_bootstrap_section_records_the_method() -> None:
    p = _patients([0] * 5 + [1] * 5)
    values = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=100, seed=3))(
        p, out_dir=HERE
    ).values
    assert values["method"] == "class-stratified patient bootstrap"
    assert (values["resampled"], values["n_resamples"], values["level"]) == ("patients", 100, 0.95)
    assert values["interval_method"]["method"] == values["method"]
    assert values["warnings"] == []


def test_each_magnification_has_intervals_drawn_within_it() -> None:
    p = _patients([0] * 5 + [1] * 5, per_patient=4, seed=6, magnifications=(40, 200))
    section = MagnificationMetric(bootstrap=BootstrapOptions(n_resamples=300))(p, out_dir=HERE)
    assert section.values["interval_method"]["method"] == "class-stratified patient bootstrap"
    for row in section.values["breakdown"]:
        intervals = row["intervals"]
        assert set(intervals) == {
            "accuracy",
            "sensitivity",
            "specificity",
            "auc",
            "patient_recognition_rate",
        }
        for name, interval in intervals.items():
            assert interval["estimate"] == pytest.approx(row[name]), name
            assert interval["low"] <= interval["estimate"] <= interval["high"], name
    # Five patients per class at each magnification: no warning.
    assert section.values["warnings"] == []
    few = MagnificationMetric(bootstrap=BootstrapOptions(n_resamples=50))(
        _patients([0] * 5 + [1] * 2), out_dir=HERE
    )
    assert (
        "40X: class malignant has 2 patients: intervals are unreliable" in (few.values["warnings"])
    )


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("n_resamples", 0, "at least 1"),
        ("n_resamples", 10.0, "whole number"),
        ("n_resamples", True, "whole number"),
        ("seed", -1, ">= 0"),
        ("level", 1.0, "strictly between 0 and 1"),
        ("level", 0.0, "strictly between 0 and 1"),
    ],
)
def test_bootstrap_options_refuse_values_out_of_range(field: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError, match=f"{field} .*{says}"):
        BootstrapOptions(**{field: value})  # type: ignore[arg-type]


def test_bootstrap_options_set_the_draws_and_the_recorded_method() -> None:
    p = _patients([0] * 5 + [1] * 5)
    options = BootstrapOptions(n_resamples=40, seed=9, level=0.9)
    resampling = stratified_resampling(p, options)
    assert resampling.image_weights.shape == (40, len(p.y_true))
    assert resampling.describe()["n_resamples"] == 40
    assert (resampling.describe()["seed"], resampling.describe()["level"]) == (9, 0.9)
    again = stratified_resampling(p, BootstrapOptions(n_resamples=40, seed=9))
    assert np.array_equal(again.image_weights, resampling.image_weights)
