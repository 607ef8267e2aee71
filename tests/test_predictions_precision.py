"""``predictions.csv`` keeps probabilities at full precision: ``breastcls report`` rebuilds the
same AUC and thresholds from it as the evaluation that wrote it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from breastcls.evaluation.metrics import read_predictions, write_predictions
from breastcls.interfaces import Predictions


def _predictions(positive: np.ndarray) -> Predictions:
    n = len(positive)
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=(np.arange(n) % 2).astype(np.int64),
        probabilities=np.stack([1.0 - positive, positive], axis=1),
        paths=tuple(f"images/{i}.png" for i in range(n)),
        patient_ids=tuple(f"14-{1000 + i // 4}" for i in range(n)),
        magnifications=(200,) * n,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_probabilities_read_back_bit_for_bit(tmp_path: Path, dtype: type) -> None:
    rng = np.random.default_rng(0)
    positive = np.concatenate(
        [
            rng.uniform(size=200),
            rng.uniform(size=50) ** 40,  # tiny: many leading zeros after the point
            1.0 - rng.uniform(size=50) * 1e-9,  # confident: differ only far after the point
            [0.0, 1.0, 5e-324, 1e-300, 0.1, 1 / 3, 0.5 + 2**-52],
        ]
    )
    predictions = _predictions(positive)
    predictions = Predictions(
        class_names=predictions.class_names,
        y_true=predictions.y_true,
        probabilities=predictions.probabilities.astype(dtype),
        paths=predictions.paths,
        patient_ids=predictions.patient_ids,
        magnifications=predictions.magnifications,
    )
    path = tmp_path / "predictions.csv"
    write_predictions(predictions, path)
    read = read_predictions(path)

    written = predictions.probabilities.astype(np.float64)  # float32 -> float64 is exact
    assert read.probabilities.dtype == np.float64
    assert read.probabilities.shape == written.shape
    assert np.array_equal(read.probabilities.view(np.uint64), written.view(np.uint64))
    assert np.array_equal(read.y_true, predictions.y_true)
    assert np.array_equal(read.y_pred, predictions.y_pred)
    assert read.paths == predictions.paths and read.patient_ids == predictions.patient_ids
    assert read.magnifications == predictions.magnifications


def test_close_probabilities_keep_their_order_and_the_auc(tmp_path: Path) -> None:
    # Six decimals would write 0.500000 for all four and turn the ranking into ties (AUC 0.5).
    positive = np.array([0.5000001, 0.5000004, 0.5000002, 0.5000003])
    predictions = _predictions(positive)
    path = tmp_path / "predictions.csv"
    write_predictions(predictions, path)
    read = read_predictions(path)
    expected = roc_auc_score(predictions.y_true, predictions.probabilities[:, 1])
    assert expected == 1.0
    assert roc_auc_score(read.y_true, read.probabilities[:, 1]) == expected
    assert sorted(read.probabilities[:, 1]) == sorted(positive)
