"""Issue 25 #7 and the Low items: operating points with intervals, the Youden midpoint, subtype
magnification rows that match their intervals, and a stain reference outside the held-out sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from breastcls.config import ModelConfig
from breastcls.data.images import inspect_image
from breastcls.errors import ConfigError
from breastcls.evaluation.clinical import BootstrapOptions
from breastcls.evaluation.image_metrics import BootstrapMetric, ThresholdsMetric
from breastcls.evaluation.metrics import metrics_document
from breastcls.evaluation.patient_metrics import MagnificationMetric, PatientMetric
from breastcls.evaluation.report import summary_card
from breastcls.inference.decision import choose_thresholds
from breastcls.interfaces import DataRole, Predictions, Sample
from breastcls.stain.fit import fit_run_stain


def test_the_youden_cut_of_a_separated_set_is_the_midpoint_between_the_classes() -> None:
    truth = np.array([False, False, False, True, True])
    score = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    # Every cut in (0.3, 0.7] separates them; the lowest malignant score (0.7) sits on the edge.
    assert choose_thresholds(truth, score)["youden"] == pytest.approx(0.5)
    # Not separated: the best cut calls 0.5 and above positive (J = 1 - 1/3); the next score
    # below is 0.4, so the cut is their midpoint.
    mixed = np.array([0.1, 0.4, 0.6, 0.5, 0.9])
    assert choose_thresholds(truth, mixed)["youden"] == pytest.approx(0.45)


def _binary(n_per_class: int, seed: int = 0) -> Predictions:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    score = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.3, y.size), 0.01, 0.99)
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=y.astype(np.int64),
        probabilities=np.stack([1 - score, score], axis=1),
        patient_ids=tuple(f"p{i // 2:02d}" for i in range(y.size)),
        thresholds={"default": 0.5, "youden": 0.45},
    )


def test_operating_points_have_intervals_from_the_bootstrap_resamples(tmp_path: Path) -> None:
    p = _binary(20)
    thresholds = ThresholdsMetric(bootstrap=BootstrapOptions(n_resamples=300, seed=4))(
        p, out_dir=tmp_path
    )
    default = thresholds.values["operating_points"][0]
    assert default["name"] == "default"
    bootstrap = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=300, seed=4))(
        p, out_dir=tmp_path
    )
    # The same draws as the bootstrap section: at 0.5, the same intervals.
    for name in ("sensitivity", "specificity"):
        assert default["intervals"][name] == bootstrap.values["intervals"][name]
        assert (
            default["intervals"][name]["low"] < default[name] <= default["intervals"][name]["high"]
        )
    youden = thresholds.values["operating_points"][1]
    assert youden["intervals"]["sensitivity"]["estimate"] == youden["sensitivity"]
    assert thresholds.values["interval_method"]["resampled"] == "patients"
    patient = PatientMetric(bootstrap=BootstrapOptions(n_resamples=300, seed=4))(
        p, out_dir=tmp_path
    ).values
    point = patient["operating_points"][1]
    assert point["intervals"]["specificity"]["estimate"] == point["specificity"]
    assert point["intervals"]["specificity"]["low"] <= point["specificity"]
    # The card's Youden row carries them.
    card = summary_card(metrics_document([thresholds], p), None)
    low = youden["intervals"]["sensitivity"]["low"]
    assert f"{youden['sensitivity']:.3f} [{low:.3f}," in card


def test_subtype_magnification_rows_do_not_mix_binary_accuracy_with_its_interval(
    tmp_path: Path,
) -> None:
    names = ("A", "DC", "F", "LC")  # A, F benign; DC, LC malignant
    y = np.repeat(np.arange(4), 6)
    probabilities = np.full((y.size, 4), 0.1)
    # Each image's top class is the other subtype of its side: the benign/malignant call is
    # always right, the subtype always wrong.
    swap = np.array([2, 3, 0, 1])
    probabilities[np.arange(y.size), swap[y]] = 0.7
    p = Predictions(
        class_names=names,
        y_true=y.astype(np.int64),
        probabilities=probabilities,
        patient_ids=tuple(f"x{i // 2}" for i in range(y.size)),
        magnifications=(40,) * y.size,
    )
    row = MagnificationMetric(bootstrap=BootstrapOptions(n_resamples=50))(
        p, out_dir=tmp_path
    ).values["breakdown"][0]
    assert row["accuracy"] == 0.0 and row["intervals"]["accuracy"]["estimate"] == 0.0
    assert row["binary_accuracy"] == 1.0
    assert row["intervals"]["binary_accuracy"]["estimate"] == 1.0


def test_a_stain_reference_that_is_a_test_image_is_refused(
    small_breakhis: Path, tmp_path: Path
) -> None:
    images = sorted(small_breakhis.rglob("*.png"))
    test = Sample(path=images[0], label="benign")
    config = ModelConfig(stain_normalisation="macenko", stain_reference=str(images[0]))
    with pytest.raises(ConfigError, match=r"is an image of the test set"):
        fit_run_stain(config, [], held_out=[(DataRole.TEST, test)])
    # A copy under another name is caught by its pixels.
    copy = tmp_path / "reference.png"
    shutil.copy(images[0], copy)
    renamed = ModelConfig(stain_normalisation="macenko", stain_reference=str(copy))
    info = {images[0]: inspect_image(images[0])}
    with pytest.raises(ConfigError, match=r"is an image of the selection set"):
        fit_run_stain(renamed, [], held_out=[(DataRole.SELECTION, test)], image_info=info)
    # Another image is fine.
    other = ModelConfig(stain_normalisation="macenko", stain_reference=str(images[-1]))
    fitted = fit_run_stain(other, [], held_out=[(DataRole.TEST, test)], image_info=info)
    assert fitted is not None and fitted.images == 1
