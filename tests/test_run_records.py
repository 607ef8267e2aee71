"""The typed records of a run folder (:mod:`breastcls.records`): each is read through
:class:`~breastcls.runs.RunFolder`, checked field by field (a malformed one is refused with the
file and the field named), reads the layouts earlier versions wrote, and gives back the same
JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from breastcls.cli.app import app
from breastcls.errors import ConfigError
from breastcls.evaluation.metrics import metrics_document, write_predictions
from breastcls.evaluation.reporting import headline_figures
from breastcls.interfaces import DataRole, MetricSection, Predictions
from breastcls.records import EpochRecord, EvaluatedOn, ExportRecord, MetricsRecord
from breastcls.runs import RunFolder


def _predictions() -> Predictions:
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=np.array([0, 0, 1, 1], dtype=np.int64),
        probabilities=np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]]),
        paths=("a.png", "b.png", "c.png", "d.png"),
        patient_ids=("p1", "p1", "p2", "p3"),
        role=DataRole.TEST,
    )


def _write(folder: Path, name: str, document: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document, indent=2) + "\n")
    return folder / name


def test_metrics_json_reads_back_typed_and_unchanged(tmp_path: Path) -> None:
    section = MetricSection(name="classification", title="c", values={"accuracy": 0.75})
    written = metrics_document([section], _predictions()).to_json()
    text = json.dumps(written, indent=2)
    _write(tmp_path, "metrics.json", written)
    record = RunFolder(tmp_path).read_metrics()
    assert record.evaluated_on == EvaluatedOn(
        role=DataRole.TEST, set="test set", leak=None, images=4, patients=3
    )
    assert record.section("classification") == {"accuracy": 0.75}
    assert record["classification"]["accuracy"] == 0.75  # also a mapping of the document
    assert record.section("agreement") == {}
    assert json.dumps(record.to_json(), indent=2) == text  # the same bytes written again
    assert dict(record) == written
    assert (
        headline_figures(record)["role"] == "test" and headline_figures(record)["accuracy"] == 0.75
    )


def test_a_folder_without_metrics_reads_as_an_empty_record(tmp_path: Path) -> None:
    record = RunFolder(tmp_path).read_metrics()
    assert record.evaluated_on is None and len(record) == 0 and record.to_json() == {}


def test_metrics_written_before_leaks_and_patients_were_counted_still_read(tmp_path: Path) -> None:
    old = {"evaluated_on": {"role": "selection", "set": "selection set"}, "classification": {}}
    _write(tmp_path, "metrics.json", old)
    record = RunFolder(tmp_path).read_metrics()
    assert record.evaluated_on is not None
    assert (record.evaluated_on.role, record.evaluated_on.leak) == (DataRole.SELECTION, None)
    assert record.evaluated_on.images is None and record.evaluated_on.patients is None


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ([1, 2], "it is not a JSON object"),
        (
            {"evaluated_on": {"set": "test set"}, "classification": 0.9},
            "'classification' is 0.9, not dict",
        ),
        ({"evaluated_on": {"role": "test", "set": 3}}, "'set' is 3, not str"),
        (
            {"evaluated_on": {"role": "test", "set": "t", "images": True}},
            "'images' is True, not int",
        ),
        ({"evaluated_on": {"role": "tested", "set": "t"}}, "'role' is 'tested', not one of train"),
    ],
)
def test_a_malformed_metrics_record_names_the_file_and_the_field(
    tmp_path: Path, document: Any, named: str
) -> None:
    path = _write(tmp_path, "metrics.json", document)
    with pytest.raises(ConfigError) as error:
        RunFolder(tmp_path).read_metrics()
    assert str(path) in str(error.value) and named in str(error.value)
    assert "evaluate again" in str(error.value)


def test_breastcls_report_refuses_a_malformed_metrics_record_in_one_line(tmp_path: Path) -> None:
    write_predictions(_predictions(), tmp_path / "predictions.csv")
    _write(tmp_path, "metrics.json", {"evaluated_on": {"role": "test", "set": ["x"]}})
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1
    assert "metrics.json is not a metrics record's evaluated_on ('set' is ['x'], not str)" in (
        result.output
    )


CONFIG_0_1 = {
    # breastcls 0.1: a validation fraction (the selection set, no test set) and the Keras
    # trainer's options as fields of their own.
    "data": {"path": "data", "image_size": 64, "validation_fraction": 0.25},
    "model": {"backbone": "smallcnn", "head": "seed"},
    "train": {"epochs": 3, "lr_patience": 2},
    "out_dir": "runs",
    "name": "old",
}


def test_a_config_json_of_breastcls_0_1_reads_as_a_typed_record(tmp_path: Path) -> None:
    _write(tmp_path, "config.json", CONFIG_0_1)
    record = RunFolder(tmp_path).read_config_record()
    assert record.run_config.data.selection_fraction == 0.25
    assert record.run_config.data.test_fraction == 0.0
    assert record.run_config.train.trainer_options["lr_patience"] == 2
    assert record.run_config.model.backbone == "smallcnn"
    assert (record.split, record.dtype_policy, record.scale, record.distribution) == (
        {},
        None,
        None,
        None,
    )
    assert record.to_json() == CONFIG_0_1


def test_a_current_config_json_keeps_what_training_decided(tmp_path: Path) -> None:
    scale = {"model_mpp": 0.98, "field_width_um": 62.7, "image_size": 64, "source": "s"}
    document = {
        **CONFIG_0_1,
        "split": {"method": "patient", "leaky": False},
        "dtype_policy": "mixed_bfloat16",
        "scale": scale,
        "class_weights_used": {"benign": 1.5, "malignant": 0.75},
    }
    _write(tmp_path, "config.json", document)
    record = RunFolder(tmp_path).read_config_record()
    assert record.split == {"method": "patient", "leaky": False}
    assert record.dtype_policy == "mixed_bfloat16"
    assert record.scale == scale
    assert record.class_weights_used == {"benign": 1.5, "malignant": 0.75}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"split": 3}, "'split' is 3, not dict or null"),
        ({"dtype_policy": 16}, "'dtype_policy' is 16, not str or null"),
        ({"data": None}, "'data' is None, not dict"),
        ({"data": {"path": "d", "image_size": 5}}, "image_size=5 is out of range"),
        ({"model": {"backbone": "smallcnn", "colour": "red"}}, "colour"),
    ],
)
def test_a_malformed_config_record_names_the_file_and_the_field(
    tmp_path: Path, change: dict[str, Any], named: str
) -> None:
    path = _write(tmp_path, "config.json", {**CONFIG_0_1, **change})
    with pytest.raises(ConfigError) as error:
        RunFolder(tmp_path).read_config_record()
    assert str(path) in str(error.value) and named in str(error.value)
    assert "start a new run" in str(error.value)


def test_export_json_reads_back_typed_and_unchanged(tmp_path: Path) -> None:
    written = ExportRecord(
        format="onnx",
        model="model.onnx",
        source="/runs/r/best.keras",
        record="model_record.json",
        max_difference=2e-7,
        tolerance=1e-4,
        computes_in="float32",
        max_difference_to_run_model=3e-7,
    )
    _write(tmp_path, "export.json", written.to_json())
    record = RunFolder(tmp_path).read_export_record()
    assert record == written
    # An export made before model records kept the model's scale in export.json.
    _write(
        tmp_path,
        "export.json",
        {"format": "keras", "model": "model.keras", "scale": {"image_size": 64, "model_mpp": 1.0}},
    )
    old = RunFolder(tmp_path).read_export_record()
    assert old.scale == {"image_size": 64, "model_mpp": 1.0} and old.record is None
    _write(tmp_path, "export.json", {"format": "keras", "model": "m", "tolerance": "small"})
    with pytest.raises(
        ConfigError, match=r"export\.json is not an export record \('tolerance' is 'small'"
    ):
        RunFolder(tmp_path).read_export_record()


def test_an_epoch_record_is_typed_and_a_mapping_of_its_values() -> None:
    logs = {"loss": np.float32(0.5), "val_accuracy": np.float64(0.75), "learning_rate": 1e-3}
    record = EpochRecord.from_logs(2, logs)
    assert record.epoch == 2
    assert (record.loss, record.val_accuracy, record.learning_rate) == (0.5, 0.75, 1e-3)
    assert record.accuracy is None and record.val_loss is None
    assert dict(record) == {"loss": 0.5, "val_accuracy": 0.75, "learning_rate": 1e-3}
    assert all(type(value) is float for value in record.values())


def test_records_are_frozen() -> None:
    record = MetricsRecord(evaluated_on=None)
    with pytest.raises(AttributeError):
        record.evaluated_on = EvaluatedOn(role=None, set="x")  # type: ignore[misc]


def test_status_json_reads_typed_and_a_malformed_one_names_its_field(tmp_path: Path) -> None:
    assert RunFolder(tmp_path).read_status().status == "unknown"  # no status.json yet
    written = {
        "status": "finished", "updated": "2026-12-07T10:00:00+00:00", "pid": 12, "host": "h",
        "headline": {"role": "test", "set": "test set", "accuracy": 0.8, "auc": None},
    }  # fmt: skip
    _write(tmp_path, "status.json", written)
    record = RunFolder(tmp_path).read_status()
    assert (record.status, record.pid, record.host, record.reason) == ("finished", 12, "h", None)
    assert record.headline["accuracy"] == 0.8 and record.document == written
    _write(tmp_path, "status.json", {**written, "pid": "12"})
    with pytest.raises(ConfigError, match=r"status\.json is not a status record \('pid' is '12'"):
        RunFolder(tmp_path).read_status()
    _write(tmp_path, "status.json", {**written, "headline": {"accuracy": "high"}})
    with pytest.raises(ConfigError, match=r"\(its headline\) \('accuracy' is 'high', not int or"):
        RunFolder(tmp_path).read_status()
