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
from breastcls.records import (
    EpochRecord,
    EvaluatedOn,
    ExportRecord,
    MetricsRecord,
    SlideProgressRecord,
    SlideSummaryRecord,
)
from breastcls.runs import RunFolder
from breastcls.runs.folder import SlideFolder


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


SLIDE_SUMMARY = {
    # As ``breastcls slide predict`` writes it (shortened to the fields it checks, and a few more).
    "slide": "/slides/case1.svs",
    "model": "runs/smallcnn",
    "positive": "malignant",
    "negative": "benign",
    "slide_mpp": 0.5,
    "tiles": {"grid": 48, "tissue": 20, "classified": 20},
    "tissue_area_fraction": 0.41,
    "tissue_classified_fraction": 0.875,
    "threshold": {"name": "youden", "value": 0.42, "fraction_positive": 0.25},
    "domain": None,
    "fraction_positive": {"youden": 0.25, "high_sensitivity": 0.4},
    "top_k": 10,
    "top_k_mean_score": 0.61,
    "mean_score": 0.3,
    "max_score": 0.97,
}


def test_slide_folder_records_read_back_typed_and_unchanged(tmp_path: Path) -> None:
    job = {"slide": "/slides/case1.svs", "model": "runs/smallcnn", "grid": {"columns": 8}}
    _write(tmp_path, "slide.json", job)
    _write(tmp_path, "progress.json", {"tiles": 12, "bytes": 4096})
    _write(tmp_path, "summary.json", SLIDE_SUMMARY)
    folder = SlideFolder(tmp_path)

    read_job = folder.read_job()
    assert read_job.slide == "/slides/case1.svs" and read_job["grid"] == {"columns": 8}
    assert read_job.to_json() == job
    assert folder.read_progress() == SlideProgressRecord(tiles=12, bytes=4096)
    assert folder.read_progress().to_json() == {"tiles": 12, "bytes": 4096}
    summary = folder.read_summary()
    assert isinstance(summary, SlideSummaryRecord)
    assert (summary.slide, summary.positive, summary.tiles["classified"]) == (
        "/slides/case1.svs", "malignant", 20,
    )  # fmt: skip
    assert (summary.top_k_mean_score, summary.tissue_classified_fraction) == (0.61, 0.875)
    assert summary["threshold"]["value"] == 0.42 and len(summary) == len(SLIDE_SUMMARY)
    assert summary.to_json() == SLIDE_SUMMARY


def test_an_incomplete_slide_folder_has_no_summary_record(tmp_path: Path) -> None:
    _write(tmp_path, "slide.json", {"slide": "/slides/case1.svs"})
    assert SlideFolder(tmp_path).read_summary() is None


def test_a_slide_summary_written_before_the_tissue_fractions_still_reads(tmp_path: Path) -> None:
    old = {k: v for k, v in SLIDE_SUMMARY.items() if not k.startswith("tissue_")}
    del old["domain"]
    _write(tmp_path, "summary.json", old)
    summary = SlideFolder(tmp_path).read_summary()
    assert summary is not None and summary.tissue_classified_fraction is None
    assert "tissue_area_fraction" not in summary and summary.top_k_mean_score == 0.61
    assert summary.to_json() == old


@pytest.mark.parametrize(
    ("name", "document", "named"),
    [
        ("summary.json", {**SLIDE_SUMMARY, "top_k_mean_score": "high"},
         "is not a slide summary record ('top_k_mean_score' is 'high', not int or float or null)"),
        ("summary.json", {**SLIDE_SUMMARY, "tiles": 20},
         "is not a slide summary record ('tiles' is 20, not dict or null)"),
        ("summary.json", [SLIDE_SUMMARY],
         "is not a slide summary record (it is not a JSON object)"),
        ("progress.json", {"tiles": 12, "bytes": "4096"},
         "is not a slide progress record ('bytes' is '4096', not int)"),
        ("slide.json", {"slide": 7}, "is not a slide job record ('slide' is 7, not str or null)"),
    ],
)  # fmt: skip
def test_a_malformed_slide_record_names_the_file_and_the_field(
    tmp_path: Path, name: str, document: Any, named: str
) -> None:
    path = _write(tmp_path, name, document)
    folder = SlideFolder(tmp_path)
    read = {"summary.json": folder.read_summary, "progress.json": folder.read_progress,
            "slide.json": folder.read_job}[name]  # fmt: skip
    with pytest.raises(ConfigError) as error:
        read()
    assert f"{path} {named}" in str(error.value)


def test_breastcls_slide_summary_names_a_malformed_summary_in_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "case1"
    _write(folder, "slide.json", {"slide": "/slides/case1.svs"})
    _write(folder, "summary.json", {**SLIDE_SUMMARY, "tissue_classified_fraction": [0.8]})
    result = CliRunner().invoke(app, ["slide", "summary", str(tmp_path)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: case1: unreadable: {folder / 'summary.json'} is not a slide summary record "
        "('tissue_classified_fraction' is [0.8], not int or float or null): remove it and run "
        "`breastcls slide predict` on the slide again."
    ]
