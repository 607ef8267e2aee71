"""Repeated protocols: overlapping test sets pooled as one row per image, Nadeau and Bengio's
corrected interval, intervals within the metric's range, and the folds' calibration named."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t

from breastcls.config import DataConfig
from breastcls.data.loading import load_dataset
from breastcls.data.split import spanhol_splits
from breastcls.evaluation.pooling import fold_calibration_section, pool_fold_predictions
from breastcls.interfaces import DataRole, MetricSection, Predictions, Sample
from breastcls.training.crossval import aggregate_metrics


def _predictions(samples: list[Sample], score: float) -> Predictions:
    """Every image scored ``score`` malignant (so a pooled row's mean is checkable)."""
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=np.array([int(s.label == "malignant") for s in samples], dtype=np.int64),
        probabilities=np.array([[1 - score, score]] * len(samples)),
        paths=tuple(str(s.path) for s in samples),
        patient_ids=tuple(s.patient_id for s in samples),
        magnifications=tuple(s.magnification for s in samples),
        role=DataRole.TEST,
    )


@pytest.mark.real_data
def test_spanhol_repeats_pool_to_one_row_per_distinct_image(breakhis_dev: Path) -> None:
    samples = load_dataset(DataConfig(path=breakhis_dev / "manifest.csv")).samples
    repeats = spanhol_splits(samples, seed=11)
    scores = (0.1, 0.3, 0.5, 0.7, 0.9)
    folds = [_predictions(split.test, score) for split, score in zip(repeats, scores, strict=True)]
    pooled, description = pool_fold_predictions(folds, images=len(samples))
    tested: dict[str, list[float]] = {}
    for split, score in zip(repeats, scores, strict=True):
        for sample in split.test:
            tested.setdefault(str(sample.path), []).append(score)
    assert sum(map(len, tested.values())) > len(tested)  # the test sets overlap
    assert len(pooled.paths) == len(set(pooled.paths)) == len(tested)
    for path, probabilities, label in zip(
        pooled.paths, pooled.probabilities, pooled.y_true, strict=True
    ):
        assert probabilities[1] == pytest.approx(np.mean(tested[path]))
        assert label == int("/malignant/" in path)
    twice = sum(len(v) > 1 for v in tested.values())
    assert "pooled out of fold" not in description and "not out of fold" in description
    assert f"({len(tested)} images)" in description
    assert f"{twice} images tested more than once" in description
    assert f"{len(samples) - len(tested)} of {len(samples)} images never tested" in description


def test_disjoint_folds_stay_out_of_fold() -> None:
    first = [Sample(path=Path(f"/d/benign/{i}.png"), label="benign") for i in range(3)]
    second = [Sample(path=Path(f"/d/malignant/{i}.png"), label="malignant") for i in range(2)]
    pooled, description = pool_fold_predictions(
        [_predictions(first, 0.2), _predictions(second, 0.8)]
    )
    assert description == "test sets of 2 folds, pooled out of fold"
    assert pooled.probabilities[:, 1].tolist() == pytest.approx([0.2, 0.2, 0.2, 0.8, 0.8])


def test_the_corrected_resampled_interval_of_repeated_splits() -> None:
    accuracies = [0.80, 0.70, 0.75, 0.85, 0.65]
    folds = [{"classification": {"accuracy": a}} for a in accuracies]
    plain = aggregate_metrics(folds)["classification.accuracy"]
    corrected = aggregate_metrics(folds, test_train_ratio=30 / 70)["classification.accuracy"]
    s, mean = float(np.std(accuracies, ddof=1)), float(np.mean(accuracies))
    half = float(t.ppf(0.975, 4)) * s * math.sqrt(1 / 5 + 30 / 70)
    assert (corrected["ci_low"], corrected["ci_high"]) == pytest.approx((mean - half, mean + half))
    widening = (corrected["ci_high"] - corrected["ci_low"]) / (plain["ci_high"] - plain["ci_low"])
    assert widening == pytest.approx(math.sqrt((1 / 5 + 30 / 70) / (1 / 5)))  # about 1.77


def test_intervals_stay_within_the_metrics_range() -> None:
    folds = [{"roc": {"auc": a}, "calibration": {"nll": n}} for a, n in ((1.0, 0.1), (0.8, 0.9))]
    summary = aggregate_metrics(folds)
    auc = summary["roc.auc"]
    assert auc["ci_high"] == 1.0 and auc["ci_low"] == 0.0  # unclipped: -0.37 to 2.17
    nll = summary["calibration.nll"]
    assert nll["ci_low"] < 0 and nll["ci_high"] > 1  # not a proportion: left as it is


def test_pooled_calibration_names_the_folds_temperatures() -> None:
    raw = MetricSection(
        name="calibration",
        title="Calibration",
        values={"ece": 0.1, "temperature": None},
        text="Raw model probabilities (no temperature scaling).",
    )
    other = MetricSection(name="roc", title="ROC", values={"auc": 0.9})
    sections = fold_calibration_section(
        [raw, other],
        [{"calibration": {"temperature": 1.25}}, {"calibration": {"temperature": 0.8}}],
    )
    assert sections[1] == other
    calibration = sections[0]
    assert "Raw" not in (calibration.text or "")
    assert "T = 1.250, 0.800" in (calibration.text or "")
    assert calibration.values["fold_temperatures"] == [1.25, 0.8]


@pytest.mark.slow
@pytest.mark.real_data
def test_the_spanhol_protocol_aggregates_honestly(breakhis_dev: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from breastcls.cli.app import app
    from conftest import copy_patients

    data = copy_patients(breakhis_dev, tmp_path / "d", patients=8, images_per_patient=2)
    result = CliRunner().invoke(app, [
        "train", "--data", str(data), "--backbone", "smallcnn", "--weights", "none",
        "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--protocol", "spanhol",
        "--out", str(tmp_path), "--name", "spanhol",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = tmp_path / "spanhol"
    aggregate = json.loads((run / "aggregate.json").read_text())
    tested: set[str] = set()
    ratios = []
    for fold in aggregate["folds"]:
        rows = (run / fold / "split.csv").read_text().splitlines()[1:]
        roles = [row.split(",")[5] for row in rows]
        tested |= {row.split(",")[0] for row in rows if row.split(",")[5] == "test"}
        ratios.append(roles.count("test") / (len(roles) - roles.count("test")))
    pooled = json.loads((run / "pooled" / "metrics.json").read_text())
    assert pooled["classification"]["n_images"] == len(tested)  # one row per distinct image
    assert "pooled out of fold" not in pooled["evaluated_on"]["set"]
    assert aggregate["interval"]["method"].startswith("corrected resampled t")
    assert aggregate["interval"]["test_train_ratio"] == pytest.approx(np.mean(ratios))
    # Each fold's test-set rows per magnification, as the fold's own report has them.
    rows = aggregate["per_magnification"]
    assert list(dict.fromkeys(row["fold"] for row in rows)) == aggregate["folds"]
    for fold in aggregate["folds"]:
        metrics = json.loads((run / fold / "metrics.json").read_text())
        own = metrics["magnification"]["breakdown"]
        mine = [row for row in rows if row["fold"] == fold]
        assert [row["magnification"] for row in mine] == [row["magnification"] for row in own]
        assert [row["accuracy"] for row in mine] == [row["accuracy"] for row in own]
        assert sum(row["n_images"] for row in mine) == metrics["evaluated_on"]["images"]
    assert "test set accuracy over 5 folds: " in result.output


def test_domain_scores_are_pooled_per_image() -> None:
    samples = [Sample(path=Path(f"/d/benign/{i}.png"), label="benign") for i in range(2)]
    first = dataclasses.replace(
        _predictions(samples, 0.2),
        domain_score=np.array([0.5, 2.0]),
        in_distribution=np.array([True, False]),
        domain_reason=("", "blurred"),
        raw_probabilities=np.array([[0.9, 0.1], [0.9, 0.1]]),
    )
    second = dataclasses.replace(
        _predictions(samples[1:], 0.4),
        domain_score=np.array([1.0]),
        in_distribution=np.array([True]),
        domain_reason=("",),
        raw_probabilities=np.array([[0.7, 0.3]]),
    )
    pooled, _ = pool_fold_predictions([first, second])
    assert pooled.domain_score is not None and pooled.in_distribution is not None
    assert pooled.domain_score.tolist() == [0.5, 1.5]
    assert pooled.in_distribution.tolist() == [True, False]
    assert pooled.domain_reason == ("", "blurred")
    assert pooled.raw_probabilities is None
    without = dataclasses.replace(second, domain_score=None)
    assert pool_fold_predictions([first, without])[0].domain_score is None
