"""The agreement metric conforms and is right; the tracking hooks write one line per event."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import breastcls_metric_example
import numpy as np
import pytest

from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.interfaces import DataRole, Predictions
from breastcls.plugins import PluginHost
from breastcls.records import ConfigRecord, EpochRecord, EvaluatedOn, MetricsRecord
from breastcls.testing import check_metric

pytest_plugins = ["breastcls.testing.fixtures"]


def _predictions(y_true: list[int], y_pred: list[int]) -> Predictions:
    probabilities = np.full((len(y_pred), 2), 0.2)
    probabilities[np.arange(len(y_pred)), y_pred] = 0.8
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=np.array(y_true, dtype=np.int64),
        probabilities=probabilities,
    )


def test_agreement_conforms_for_two_and_three_classes(tmp_path: Path) -> None:
    for n_classes in (2, 3):
        section = check_metric(
            breastcls_metric_example.agreement_metric, n_classes=n_classes, work_dir=tmp_path
        )
        assert set(section.values) == {"matthews_corrcoef", "cohen_kappa"}


def test_agreement_values(tmp_path: Path) -> None:
    perfect = breastcls_metric_example.agreement_metric(
        _predictions([0, 0, 1, 1], [0, 0, 1, 1]), out_dir=tmp_path
    )
    assert perfect.values == {"matthews_corrcoef": 1.0, "cohen_kappa": 1.0}
    # TP=2, TN=1, FP=1, FN=0: MCC = (2*1 - 1*0) / sqrt(3*2*2*1) = 2/sqrt(12); kappa: po=3/4,
    # pe = (1/4)(2/4) + (3/4)(2/4) = 1/2, so kappa = (3/4 - 1/2) / (1/2) = 1/2.
    mixed = breastcls_metric_example.agreement_metric(
        _predictions([0, 0, 1, 1], [0, 1, 1, 1]), out_dir=tmp_path
    )
    assert mixed.values["matthews_corrcoef"] == pytest.approx(2 / 12**0.5)
    assert mixed.values["cohen_kappa"] == pytest.approx(0.5)


def test_tracking_hooks_write_jsonl(
    tmp_path: Path,
    make_plugin_host: Callable[..., PluginHost],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(breastcls_metric_example.TRACKING_ENV, raising=False)
    host = make_plugin_host(("metric_example", breastcls_metric_example))
    assert "agreement" in host.metrics
    config = RunConfig(
        data=DataConfig(path=tmp_path), model=ModelConfig(backbone="smallcnn"),
        train=TrainConfig(epochs=1),
    )  # fmt: skip
    host.train_start(tmp_path, ConfigRecord(run_config=config))
    host.epoch_end(tmp_path, 0, EpochRecord(epoch=0, logged={"loss": 0.5, "val_accuracy": 0.75}))
    host.train_end(
        tmp_path,
        MetricsRecord(
            evaluated_on=EvaluatedOn(role=DataRole.TEST, set="test set", images=4),
            sections={"classification": {"accuracy": 0.75}},
        ),
    )
    lines = [json.loads(line) for line in (tmp_path / "tracking.jsonl").read_text().splitlines()]
    assert [line["event"] for line in lines] == ["train_start", "epoch_end", "train_end"]
    assert lines[0]["model"]["backbone"] == "smallcnn" and lines[0]["train"]["epochs"] == 1
    assert lines[1]["logs"] == {"loss": 0.5, "val_accuracy": 0.75}
    assert lines[2]["accuracy"] == 0.75 and lines[2]["evaluated_on"] == "test set"
    assert lines[2]["agreement"] is None
