"""Clinical metrics against scikit-learn and hand-computed values (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from breastcls.evaluation.clinical import (
    BootstrapOptions,
    binary_rates,
    bootstrap_intervals,
    expected_calibration_error,
    patient_rows,
)
from breastcls.evaluation.image_metrics import (
    BootstrapMetric,
    CalibrationMetric,
    ThresholdsMetric,
    roc_metric,
)
from breastcls.evaluation.patient_metrics import magnification_metric, patient_metric
from breastcls.evaluation.subtype_metrics import SubtypeMetric
from breastcls.inference.decision import (
    apply_temperature,
    binary_view,
    choose_thresholds,
    fit_temperature,
    positive_group,
)
from breastcls.interfaces import Predictions

SUBTYPES = ("A", "DC", "F", "LC", "MC", "PC", "PT", "TA")  # the subtask's sorted class names
MALIGNANT = (1, 3, 4, 5)  # DC, LC, MC, PC


def _predictions(n: int = 120, seed: int = 3, **extra: object) -> Predictions:
    """Benign/malignant predictions of a fair but imperfect model (malignant = class 1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    score = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.25, size=n), 0.001, 0.999)
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=y.astype(np.int64),
        probabilities=np.stack([1 - score, score], axis=1),
        **extra,  # type: ignore[arg-type]
    )


def test_positive_class_is_malignant_when_present_else_last() -> None:
    assert positive_group(("malignant", "benign")).indices == (0,)
    assert positive_group(("benign", "malignant")).indices == (1,)
    assert positive_group(("cat", "dog", "fox")).indices == (2,)


def test_positive_group_is_the_malignant_subtypes_for_subtype_classes() -> None:
    group = positive_group(SUBTYPES)
    assert (group.name, group.negative, group.indices, group.summed) == (
        "malignant",
        "benign",
        MALIGNANT,
        True,
    )
    assert positive_group(("A", "DC", "F")).indices == (1,)
    binary = positive_group(("benign", "malignant"))
    assert (binary.name, binary.negative, binary.indices, binary.summed) == (
        "malignant",
        "benign",
        (1,),
        False,
    )
    assert positive_group(("malignant", "benign")).indices == (0,)
    # Generic names, and subtypes that are all malignant, keep the last class vs the rest.
    generic = positive_group(("cat", "dog", "eel"))
    assert (generic.name, generic.negative, generic.indices) == ("eel", "not eel", (2,))
    assert positive_group(("DC", "LC")).indices == (1,)
    assert positive_group(("DC", "LC")).name == "LC"


def _subtype_predictions(
    n_per_class: int = 12, seed: int = 0, patients_per_class: int = 6
) -> Predictions:
    """Eight-subtype predictions of a fair model, ``patients_per_class`` patients per subtype."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(8), n_per_class)
    logits = rng.normal(0, 1.0, size=(y.size, 8))
    logits[np.arange(y.size), y] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    per_patient = n_per_class // patients_per_class
    patients = tuple(
        f"{SUBTYPES[label]}-{(i % n_per_class) // per_patient}" for i, label in enumerate(y)
    )
    return Predictions(
        class_names=SUBTYPES,
        y_true=y.astype(np.int64),
        probabilities=probabilities,
        patient_ids=patients,
        magnifications=tuple(40 if i % 2 else 400 for i in range(y.size)),
    )


def test_subtype_image_scored_malignant_when_the_malignant_sum_is_higher() -> None:
    # TA (benign) is the top class at 0.40, but DC + LC + MC + PC = 0.15 * 4 = 0.60.
    row = [0.0, 0.15, 0.0, 0.15, 0.15, 0.15, 0.0, 0.40]
    benign_row = [0.30, 0.10, 0.30, 0.05, 0.05, 0.0, 0.10, 0.10]  # P(malignant) = 0.20
    p = Predictions(
        class_names=SUBTYPES,
        y_true=np.array([7, 1]),  # truly TA (benign), truly DC (malignant)
        probabilities=np.array([row, benign_row]),
    )
    assert SUBTYPES[int(p.y_pred[0])] == "TA"
    view = binary_view(p)
    assert view.positive == "malignant" and view.negative == "benign"
    assert view.positive_classes == ("DC", "LC", "MC", "PC")
    assert view.score == pytest.approx([0.60, 0.20])
    assert view.y_pred.tolist() == [True, False]
    assert view.y_true.tolist() == [False, True]


def test_subtype_clinical_sections_use_p_malignant_as_the_sum(tmp_path: Path) -> None:
    p = _subtype_predictions()
    summed = p.probabilities[:, list(MALIGNANT)].sum(axis=1)
    truth = np.isin(p.y_true, MALIGNANT)
    view = binary_view(p)
    np.testing.assert_allclose(view.score, summed)
    np.testing.assert_array_equal(view.y_true, truth)
    np.testing.assert_array_equal(view.y_pred, summed >= 0.5)
    roc = roc_metric(p, out_dir=tmp_path).values
    assert roc["positive_class"] == "malignant"
    assert roc["auc"] == pytest.approx(roc_auc_score(truth, summed))
    thresholds = ThresholdsMetric()(p, out_dir=tmp_path)
    assert "the sum of the probabilities of DC, LC, MC, PC" in (thresholds.text or "")
    default = thresholds.values["operating_points"][0]
    assert default["sensitivity"] == pytest.approx(recall_score(truth, summed >= 0.5))
    calibration = CalibrationMetric()(p, out_dir=tmp_path).values
    assert calibration["brier"] == pytest.approx(np.mean((summed - truth) ** 2))
    # Patients: the score is the mean of their images' summed probabilities.
    rows = patient_rows(p)
    first = [i for i, patient in enumerate(p.patient_ids) if patient == rows[0].patient_id]
    assert rows[0].score == pytest.approx(summed[first].mean())
    assert [row.positive for row in rows] == [row.label in MALIGNANT for row in rows]
    patient = patient_metric(p, out_dir=tmp_path).values
    assert {row["predicted"] for row in patient["patients"]} <= {"malignant", "benign"}
    patient_truth = np.array([row.positive for row in rows])
    patient_score = np.array([row.score for row in rows])
    assert patient["auc"] == pytest.approx(roc_auc_score(patient_truth, patient_score))
    bootstrap = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=200))(
        p, out_dir=tmp_path
    ).values
    assert bootstrap["intervals"]["sensitivity"]["estimate"] == pytest.approx(
        recall_score(truth, summed >= 0.5)
    )
    assert bootstrap["intervals"]["binary_accuracy"]["estimate"] == pytest.approx(
        np.mean(truth == (summed >= 0.5))
    )
    assert bootstrap["resampled_per_class"] == {"malignant": 24, "benign": 24}


def test_subtype_section_equals_sklearn_with_intervals(tmp_path: Path) -> None:
    p = _subtype_predictions()
    section = SubtypeMetric(bootstrap=BootstrapOptions(n_resamples=300))(p, out_dir=tmp_path)
    values = section.values
    assert values["available"] is True
    for c, name in enumerate(SUBTYPES):
        row = values["per_class"][name]
        expected = roc_auc_score(p.y_true == c, p.probabilities[:, c])
        assert row["auc"] == pytest.approx(expected), name
        assert row["auc_low"] <= row["auc"] <= row["auc_high"], name
        assert (row["n_images"], row["n_patients"]) == (12, 6)
        assert row["recall"] == pytest.approx(recall_score(p.y_true == c, p.y_pred == c))
    macro = roc_auc_score(p.y_true, p.probabilities, multi_class="ovr", average="macro")
    assert values["macro_auc"]["estimate"] == pytest.approx(macro)
    assert values["balanced_accuracy"]["estimate"] == pytest.approx(
        balanced_accuracy_score(p.y_true, p.y_pred)
    )
    for name in ("macro_auc", "balanced_accuracy"):
        interval = values[name]
        assert interval["low"] < interval["estimate"] < interval["high"], name
    assert values["interval_method"]["method"] == "class-stratified patient bootstrap"
    assert values["macro_over"] == list(SUBTYPES)
    assert values["warnings"] == []


def test_subtype_section_of_a_perfect_model_and_of_few_patients(tmp_path: Path) -> None:
    y = np.repeat(np.arange(8), 4)
    probabilities = np.full((y.size, 8), 0.02)
    probabilities[np.arange(y.size), y] = 0.86
    perfect = Predictions(
        class_names=SUBTYPES,
        y_true=y.astype(np.int64),
        probabilities=probabilities,
        patient_ids=tuple(f"{SUBTYPES[label]}-{i % 2}" for i, label in enumerate(y)),
    )
    values = SubtypeMetric(bootstrap=BootstrapOptions(n_resamples=100))(
        perfect, out_dir=tmp_path
    ).values
    for name in ("macro_auc", "balanced_accuracy"):
        assert values[name] == {"estimate": 1.0, "low": 1.0, "high": 1.0}, name
    assert all(
        (r["auc"], r["auc_low"], r["auc_high"]) == (1.0, 1.0, 1.0)
        for r in values["per_class"].values()
    )
    # Two patients per subtype: every class is warned about, and so are the two intervals of
    # zero width.
    assert values["warnings"][0] == "class A has 2 patients: intervals are unreliable"
    assert len(values["warnings"]) == 10
    assert [w.split(":")[0] for w in values["warnings"][8:]] == ["macro_auc", "balanced_accuracy"]


def test_subtype_section_is_off_for_two_classes(tmp_path: Path) -> None:
    section = SubtypeMetric()(_predictions(), out_dir=tmp_path)
    assert section.values == {"available": False}


def test_binary_rates_equal_sklearn() -> None:
    p = _predictions()
    view = binary_view(p)
    rates = binary_rates(view.y_true, view.y_pred)
    assert rates["sensitivity"] == pytest.approx(recall_score(view.y_true, view.y_pred))
    assert rates["specificity"] == pytest.approx(recall_score(~view.y_true, ~view.y_pred))
    assert rates["f1"] == pytest.approx(f1_score(view.y_true, view.y_pred))
    assert rates["accuracy"] == pytest.approx(accuracy_score(view.y_true, view.y_pred))
    assert rates["tp"] + rates["fp"] + rates["tn"] + rates["fn"] == 120


def test_roc_metric_equals_sklearn_and_writes_plots(tmp_path: Path) -> None:
    p = _predictions()
    section = roc_metric(p, out_dir=tmp_path)
    score = p.probabilities[:, 1]
    assert section.values["auc"] == pytest.approx(roc_auc_score(p.y_true, score))
    assert section.values["average_precision"] == pytest.approx(
        average_precision_score(p.y_true, score)
    )
    assert 0.7 < section.values["auc"] < 1.0
    assert {f.name for f in section.figures} == {"roc.png", "precision_recall.png"}
    assert all(f.stat().st_size > 1000 for f in section.figures)


def test_roc_metric_with_one_class_has_no_auc(tmp_path: Path) -> None:
    p = _predictions()
    only = Predictions(
        class_names=p.class_names,
        y_true=np.ones_like(p.y_true),
        probabilities=p.probabilities,
    )
    section = roc_metric(only, out_dir=tmp_path)
    assert section.values["auc"] is None
    assert section.figures == ()


def test_bootstrap_is_reproducible_and_contains_the_estimate() -> None:
    p = _predictions()
    first, unit = bootstrap_intervals(p, BootstrapOptions(n_resamples=400, seed=7))
    again, _ = bootstrap_intervals(p, BootstrapOptions(n_resamples=400, seed=7))
    other, _ = bootstrap_intervals(p, BootstrapOptions(n_resamples=400, seed=8))
    assert unit == "images"
    assert first == again
    assert first != other
    view = binary_view(p)
    assert first["auc"]["estimate"] == pytest.approx(roc_auc_score(view.y_true, view.score))
    assert first["f1"]["estimate"] == pytest.approx(f1_score(view.y_true, view.y_pred))
    assert first["accuracy"]["estimate"] == pytest.approx(accuracy_score(p.y_true, p.y_pred))
    for name in ("accuracy", "sensitivity", "specificity", "f1", "auc"):
        interval = first[name]
        assert interval["low"] < interval["estimate"] < interval["high"], name
        assert interval["high"] - interval["low"] < 0.35


def test_bootstrap_resampled_auc_equals_sklearn_with_sample_weights() -> None:
    # The vectorised weighted AUC used per resample equals sklearn's (with ties).
    from breastcls.evaluation.clinical import weighted_auc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=40).astype(bool)
    score = rng.integers(0, 6, size=40) / 5.0
    weights = rng.integers(0, 4, size=(5, 40)).astype(np.float64)
    aucs = weighted_auc(y, score, weights)
    for row in range(5):
        expected = roc_auc_score(y, score, sample_weight=weights[row])
        assert aucs[row] == pytest.approx(expected)


def test_bootstrap_resamples_whole_patients_when_they_are_known() -> None:
    # Ten patients of 12 images each; all of a patient's images are right or all wrong, so the
    # errors are clustered. Drawing patients must show that uncertainty: resampling the 120
    # images as if independent gives an accuracy interval about sqrt(12) times too narrow.
    n_patients, per_patient = 10, 12
    y = np.tile([0, 1], n_patients * per_patient // 2)
    wrong = np.repeat(np.arange(n_patients) < 3, per_patient)
    predicted = np.where(wrong, 1 - y, y)
    probabilities = np.eye(2)[predicted] * 0.8 + 0.1
    patients = tuple(f"p{i}" for i in np.repeat(np.arange(n_patients), per_patient))
    clustered = Predictions(
        class_names=("benign", "malignant"),
        y_true=y.astype(np.int64),
        probabilities=probabilities,
        patient_ids=patients,
    )
    by_patient, unit = bootstrap_intervals(clustered, BootstrapOptions(n_resamples=2000, seed=0))
    assert unit == "patients"
    independent = Predictions(
        class_names=clustered.class_names,
        y_true=clustered.y_true,
        probabilities=clustered.probabilities,
    )
    by_image, unit = bootstrap_intervals(independent, BootstrapOptions(n_resamples=2000, seed=0))
    assert unit == "images"

    def width(intervals: dict[str, dict[str, float | None]]) -> float:
        return float(intervals["accuracy"]["high"]) - float(intervals["accuracy"]["low"])  # type: ignore[arg-type]

    assert by_patient["accuracy"]["estimate"] == by_image["accuracy"]["estimate"] == 0.7
    assert width(by_patient) > 2.5 * width(by_image)


def test_bootstrap_metric_section() -> None:
    section = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=200, seed=1))(
        _predictions(), out_dir=Path(".")
    )
    assert section.values["seed"] == 1 and section.values["resampled"] == "images"
    assert section.values["method"] == "class-stratified image bootstrap"
    assert set(section.values["intervals"]) == {
        "accuracy",
        "sensitivity",
        "specificity",
        "f1",
        "auc",
    }


def test_thresholds_match_a_brute_force_search() -> None:
    p = _predictions()
    view = binary_view(p)
    chosen = choose_thresholds(
        view.y_true, view.score, target_specificity=0.9, target_sensitivity=0.9
    )
    _, _, candidates = roc_curve(view.y_true, view.score)
    candidates = candidates[np.isfinite(candidates)]

    def rates(t: float) -> tuple[float, float]:
        r = binary_rates(view.y_true, view.score >= t)
        return r["sensitivity"], r["specificity"]

    best_j = max(sum(rates(t)) - 1 for t in candidates)
    assert sum(rates(chosen["youden"])) - 1 == pytest.approx(best_j)
    sens, spec = rates(chosen["sensitivity_at_specificity_0.9"])
    assert spec >= 0.9
    assert sens == pytest.approx(max(rates(t)[0] for t in candidates if rates(t)[1] >= 0.9))
    sens, spec = rates(chosen["specificity_at_sensitivity_0.9"])
    assert sens >= 0.9
    assert spec == pytest.approx(max(rates(t)[1] for t in candidates if rates(t)[0] >= 0.9))
    assert chosen["default"] == 0.5


def test_thresholds_chosen_on_the_selection_set_are_applied_unchanged_to_test() -> None:
    selection = _predictions(seed=1)
    view = binary_view(selection)
    chosen = choose_thresholds(view.y_true, view.score)
    test = _predictions(seed=2, thresholds=chosen)
    section = ThresholdsMetric()(test, out_dir=Path("."))
    assert section.values["chosen_on"].startswith("selection set")
    test_view = binary_view(test)
    for point in section.values["operating_points"]:
        assert point["threshold"] == chosen[point["name"]]
        expected = recall_score(test_view.y_true, test_view.score >= point["threshold"])
        assert point["sensitivity"] == pytest.approx(expected)
    # Without given thresholds the metric says it fitted them on the data itself.
    own = ThresholdsMetric()(_predictions(seed=2), out_dir=Path("."))
    assert own.values["chosen_on"].startswith("these predictions")


def test_ece_equals_a_hand_computation() -> None:
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 0])
    # Bins (0.5,0.6]: conf .55 acc 0; (0.6,0.7]: .7 acc 1; (0.7,0.8]: .8 acc 0; (0.8,0.9]: .9 acc 1
    expected = (0.55 + 0.3 + 0.8 + 0.1) / 4
    assert expected_calibration_error(probabilities, y) == pytest.approx(expected)


def test_temperature_scaling_lowers_ece_of_an_over_confident_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, size=n)
    right = rng.random(n) < 0.75  # 75% accurate ...
    predicted = np.where(right, y, 1 - y)
    confidence = rng.uniform(0.97, 0.999, size=n)  # ... but ~99% sure of itself
    probabilities = np.where(predicted[:, None] == np.arange(2), confidence[:, None], 0.0)
    probabilities = np.where(
        predicted[:, None] != np.arange(2), 1 - confidence[:, None], probabilities
    )
    before = expected_calibration_error(probabilities, y)
    temperature = fit_temperature(probabilities, y)
    calibrated = apply_temperature(probabilities, temperature)
    after = expected_calibration_error(calibrated, y)
    assert temperature > 1.5
    assert before > 0.2
    assert after < 0.05
    assert (calibrated.argmax(1) == probabilities.argmax(1)).all()
    p = Predictions(
        class_names=("benign", "malignant"),
        y_true=y.astype(np.int64),
        probabilities=calibrated,
        raw_probabilities=probabilities,
        temperature=temperature,
    )
    section = CalibrationMetric()(p, out_dir=tmp_path)
    assert section.values["ece"] == pytest.approx(after)
    assert section.values["ece_before_temperature"] == pytest.approx(before, abs=1e-6)
    assert (tmp_path / "reliability.png").stat().st_size > 1000


def _three_patients(**extra: Any) -> Predictions:
    """Six images of three patients.

    Patient a (benign): images 0.2, 0.6 -> score 0.4, benign, 1 of 2 images right.
    Patient b (malignant): 0.7, 0.9, 0.4 -> score 0.6667, malignant, 2 of 3 right.
    Patient c (malignant): 0.3 -> score 0.3, benign (wrong), 0 of 1 right.
    """
    score = np.array([0.2, 0.6, 0.7, 0.9, 0.4, 0.3])
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=np.array([0, 0, 1, 1, 1, 1]),
        probabilities=np.stack([1 - score, score], axis=1),
        patient_ids=("a", "a", "b", "b", "b", "c"),
        **extra,
    )


def test_patient_metric_by_hand(tmp_path: Path) -> None:
    p = _three_patients(magnifications=(40, 40, 40, 200, 200, 200))
    section = patient_metric(p, out_dir=tmp_path)
    v = section.values
    assert section.level == "patient"
    assert v["n_patients"] == 3
    assert v["accuracy"] == pytest.approx(2 / 3)
    assert v["sensitivity"] == pytest.approx(1 / 2)
    assert v["specificity"] == pytest.approx(1.0)
    assert v["auc"] == pytest.approx(roc_auc_score([0, 1, 1], [0.4, 2.2 / 3, 0.3]))
    assert v["patient_recognition_rate"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert [row["predicted"] for row in v["patients"]] == ["benign", "malignant", "benign"]
    assert [row["magnifications"] for row in v["patients"]] == ["40X", "40X, 200X", "200X"]

    mags = magnification_metric(p, out_dir=tmp_path).values["breakdown"]
    assert [m["magnification"] for m in mags] == ["40X", "200X"]
    assert mags[0]["n_images"] == 3
    assert mags[0]["accuracy"] == pytest.approx(2 / 3)  # 0.2 ok, 0.6 wrong, 0.7 ok
    assert mags[1]["patient_recognition_rate"] == pytest.approx((1 / 2 + 0) / 2)


def test_patient_metric_applies_the_validation_thresholds_to_patient_scores(
    tmp_path: Path,
) -> None:
    # Patient scores: a (benign) 0.4, b (malignant) 0.6667, c (malignant) 0.3.
    p = _three_patients(thresholds={"youden": 0.35, "sensitivity_at_specificity_0.95": 0.7})
    section = patient_metric(p, out_dir=tmp_path)
    low, high = section.values["operating_points"]
    # At 0.35: a and b called malignant -> sensitivity 1/2, specificity 0, accuracy 1/3.
    assert low == {
        "name": "youden",
        "threshold": 0.35,
        "sensitivity": pytest.approx(0.5),
        "specificity": pytest.approx(0.0),
        "accuracy": pytest.approx(1 / 3),
        # From the patient resamples: b or c drawn twice gives 0 or 1; the one benign is wrong.
        "intervals": {
            "sensitivity": {"estimate": 0.5, "low": 0.0, "high": 1.0},
            "specificity": {"estimate": 0.0, "low": 0.0, "high": 0.0},
        },
    }
    # At 0.7: nobody called malignant -> sensitivity 0, specificity 1, accuracy 1/3.
    assert (high["sensitivity"], high["specificity"]) == (pytest.approx(0.0), pytest.approx(1.0))
    assert "applied unchanged to the patient score" in section.text
    without = patient_metric(_three_patients(), out_dir=tmp_path)
    assert "operating_points" not in without.values


def test_patient_metric_without_patient_ids(tmp_path: Path) -> None:
    section = patient_metric(_predictions(), out_dir=tmp_path)
    assert section.values == {"available": False}


def test_metric_plugins_are_registered(host: object) -> None:
    names = host.metrics.names()  # type: ignore[attr-defined]
    for name in (
        "roc",
        "bootstrap",
        "thresholds",
        "calibration",
        "patient",
        "magnification",
        "subtype",
    ):
        assert name in names
        assert host.metrics.info(name).plugin == "builtin_metrics"  # type: ignore[attr-defined]
