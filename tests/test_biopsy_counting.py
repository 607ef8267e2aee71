"""Issue 25 #2: patient-level figures count, aggregate and resample by the split's group (the
biopsy), and a rate over a handful of patients gets an exact bound beside its bootstrap."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from breastcls.evaluation.clinical import (
    BootstrapOptions,
    exact_interval,
    patient_rows,
    stratified_resampling,
)
from breastcls.evaluation.image_metrics import BootstrapMetric
from breastcls.evaluation.metrics import metrics_document, read_predictions, write_predictions
from breastcls.evaluation.patient_metrics import PatientMetric
from breastcls.evaluation.report import summary_card
from breastcls.interfaces import Predictions
from breastcls.model_card import model_card_text


def _slides(benign: list[str], malignant: list[str], *, per_slide: int = 3) -> Predictions:
    """Perfectly separated binary predictions: ``per_slide`` images of each slide id."""
    ids = [*benign, *malignant]
    labels = np.repeat([0] * len(benign) + [1] * len(malignant), per_slide)
    rng = np.random.default_rng(3)
    score = np.where(
        labels == 1, rng.uniform(0.6, 0.9, labels.size), rng.uniform(0.1, 0.4, labels.size)
    )
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=labels.astype(np.int64),
        probabilities=np.stack([1 - score, score], axis=1),
        paths=tuple(f"{i}.png" for i in range(labels.size)),
        patient_ids=tuple(np.repeat(ids, per_slide).tolist()),
    )


MALIGNANT = ["14-10001", "14-10002", "14-10003", "14-10004", "14-10005"]


def test_exact_bound_of_5_of_5_is_clopper_pearson() -> None:
    low, high = exact_interval(5, 5)
    assert (low, high) == (pytest.approx(0.4782, abs=1e-4), 1.0)
    assert exact_interval(0, 4) == (0.0, pytest.approx(0.6024, abs=1e-4))
    assert exact_interval(3, 6) == (
        pytest.approx(0.1181, abs=1e-4),
        pytest.approx(0.8819, abs=1e-4),
    )


def test_five_malignant_patients_get_a_bound_below_0_6_beside_the_bootstrap() -> None:
    p = _slides(["14-20001", "14-20002", "14-20003", "14-20004", "14-20005"], MALIGNANT)
    patient = PatientMetric(bootstrap=BootstrapOptions(n_resamples=200))(
        p, out_dir=Path(".")
    ).values
    # The bootstrap cannot move: all five are right in every resample.
    assert patient["intervals"]["sensitivity"] == {"estimate": 1.0, "low": 1.0, "high": 1.0}
    exact = patient["exact"]["sensitivity"]
    assert (exact["successes"], exact["trials"]) == (5, 5)
    assert exact["low"] < 0.6 and exact["low"] == pytest.approx(0.4782, abs=1e-4)
    assert any(w.startswith("sensitivity: zero-width interval") for w in patient["warnings"])
    bootstrap = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=200))(p, out_dir=Path("."))
    metrics = metrics_document([bootstrap], p)
    card = summary_card(metrics, None)
    assert (
        "1.000 [1.000, 1.000] (zero width: too few patients to vary, not certainty); "
        "exact per patient [0.478, 1.000] (5 of 5 patients)"
    ) in card


def test_two_slides_of_one_biopsy_count_as_one_patient(tmp_path: Path) -> None:
    # 14-29960AB and 14-29960CD are two slides of one benign biopsy.
    p = _slides(["14-29960AB", "14-29960CD"], MALIGNANT)
    rows = patient_rows(p)
    assert [row.patient_id for row in rows] == [
        "14-10001",
        "14-10002",
        "14-10003",
        "14-10004",
        "14-10005",
        "14-29960",
    ]
    assert rows[-1].slides == ("14-29960AB", "14-29960CD") and rows[-1].n_images == 6
    resampling = stratified_resampling(p, BootstrapOptions(n_resamples=50))
    assert resampling.per_class == (1, 5)
    # Resampled by biopsy, the benign side is one unit: both slides move together.
    benign = resampling.image_weights[:, :6]
    assert np.all(benign == benign[:, :1])
    section = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=50))(p, out_dir=tmp_path)
    assert section.values["warnings"][0] == "benign: 1 biopsy: specificity cannot be estimated"
    assert section.values["resampled_per_class"] == {"malignant": 5, "benign": 1}
    assert "class benign has 1 biopsy: intervals are unreliable" in section.values["warnings"]
    assert metrics_document([section], p)["evaluated_on"]["patients"] == 6
    patient = PatientMetric(bootstrap=BootstrapOptions(n_resamples=50))(p, out_dir=tmp_path).values
    assert patient["n_patients"] == 6
    assert patient["patients"][-1]["slides"] == "14-29960AB, 14-29960CD"
    # predictions.csv names each image's group, and reads back with it.
    write_predictions(p, tmp_path / "predictions.csv")
    with (tmp_path / "predictions.csv").open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["group"] for r in written[:6]] == ["14-29960"] * 6
    assert [r["patient_id"] for r in written[:6]] == ["14-29960AB"] * 3 + ["14-29960CD"] * 3
    assert read_predictions(tmp_path / "predictions.csv").groups[:6] == ("14-29960",) * 6


def test_given_groups_override_the_accession(tmp_path: Path) -> None:
    # A run grouped by another column: its groups decide, not the slide ids' accessions.
    p = _slides(["14-20001", "14-20002"], ["14-10001", "14-10002"], per_slide=2)
    grouped = Predictions(
        class_names=p.class_names,
        y_true=p.y_true,
        probabilities=p.probabilities,
        patient_ids=p.patient_ids,
        groups=("b",) * 4 + ("m1",) * 2 + ("m2",) * 2,
    )
    assert [row.patient_id for row in patient_rows(grouped)] == ["b", "m1", "m2"]
    warnings = BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=20))(
        grouped, out_dir=tmp_path
    ).values["warnings"]
    assert warnings[0] == "benign: 1 patient: specificity cannot be estimated"


def test_the_model_card_counts_patients_and_warns(tmp_path: Path) -> None:
    p = _slides(["14-29960AB", "14-29960CD"], MALIGNANT)
    sections = [BootstrapMetric(bootstrap=BootstrapOptions(n_resamples=50))(p, out_dir=tmp_path)]
    sections.append(PatientMetric(bootstrap=BootstrapOptions(n_resamples=50))(p, out_dir=tmp_path))
    (tmp_path / "metrics.json").write_text(json.dumps(metrics_document(sections, p).to_json()))
    card = model_card_text(tmp_path).replace("\\", "")
    assert "Resampled patients per class: malignant 5, benign 1." in card
    assert "- sensitivity: 5 of 5 patients, [0.4782, 1.0000]" in card
    assert "- **Warning: benign: 1 biopsy: specificity cannot be estimated.**" in card
    assert "| sensitivity (zero width) | 1.0000 | 1.0000 | 1.0000 |" in card
