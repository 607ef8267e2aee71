"""``breastcls train`` end to end, and every bad input of the core slice."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastcls.cli.app import app

RUN_FILES = {
    "config.json",
    "class_names.json",
    "environment.json",
    "status.json",
    "split.csv",
    "samples.png",
    "history.csv",
    "loss.png",
    "accuracy.png",
    "best.keras",
    "metrics.json",
    "predictions.csv",
    "confusion_matrix.png",
    "confusion_matrix_normalised.png",
    "model_record.json",
    "report.html",
    "selection",
}
SELECTION_FILES = {"metrics.json", "predictions.csv", "confusion_matrix.png"}

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.slow
def test_train_a_light_backbone_on_the_real_images(breakhis_dev: Path, tmp_path: Path) -> None:
    code, output = invoke(
        "train", "--data", str(breakhis_dev), "--backbone", "mobilenetv3small",
        "--epochs", "2", "--image-size", "128", "--weights", "none",
        "--out", str(tmp_path), "--name", "real",
    )  # fmt: skip
    assert code == 0, output
    run = tmp_path / "real"
    assert {path.name for path in run.iterdir()} >= RUN_FILES
    assert json.loads((run / "class_names.json").read_text()) == ["benign", "malignant"]
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    environment = json.loads((run / "environment.json").read_text())
    assert environment["keras_backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    # train() selects the BFC allocator unless TensorFlow was already running in this process.
    assert environment["settings"].get("TF_CPU_ALLOCATOR_USE_BFC") == os.environ.get(
        "TF_CPU_ALLOCATOR_USE_BFC"
    )
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["backbone"] == "mobilenetv3small" and config["split"]["leaky"] is False
    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])
    with open(run / "split.csv") as handle:
        split_rows = list(csv.DictReader(handle))
    assert len(split_rows) == 269
    groups = {
        role: {r["group"] for r in split_rows if r["role"] == role}
        for role in ("train", "selection", "test")
    }
    assert all(groups.values())
    assert not groups["train"] & groups["selection"] and not groups["train"] & groups["test"]
    assert not groups["selection"] & groups["test"]
    # The run folder's metrics are the test set's, scored once by the final model.
    metrics = json.loads((run / "metrics.json").read_text())
    n_test = config["split"]["test_images"]
    assert n_test == sum(r["role"] == "test" for r in split_rows)
    assert next(iter(metrics)) == "evaluated_on"
    assert metrics["evaluated_on"] == {
        "role": "test",
        "set": "test set (look 1 of this test set)",  # training's look, in test_looks.jsonl
        "leak": None,
        "images": n_test,
        # Patients as the split groups them (accessions): two slides of one biopsy count once.
        "patients": len({r["group"] for r in split_rows if r["role"] == "test"}),
    }
    assert metrics["classification"]["n_images"] == n_test
    assert sum(map(sum, metrics["confusion_matrix"]["matrix"])) == n_test
    supports = [c["support"] for c in metrics["classification"]["per_class"].values()]
    assert sum(supports) == n_test
    with open(run / "predictions.csv") as handle:
        predicted = {r["path"] for r in csv.DictReader(handle)}
    assert predicted == {r["path"] for r in split_rows if r["role"] == "test"}
    # The selection set chose the best epoch: its own metrics match that epoch's val_accuracy.
    assert {path.name for path in (run / "selection").iterdir()} >= SELECTION_FILES
    selection = json.loads((run / "selection" / "metrics.json").read_text())
    assert selection["evaluated_on"]["role"] == "selection"
    assert selection["classification"]["n_images"] == config["split"]["selection_images"]
    best = max(float(row["val_accuracy"]) for row in rows)
    assert selection["classification"]["accuracy"] == pytest.approx(best, abs=1e-6)
    # Temperature and thresholds are fitted on the selection set, never on the test set.
    calibration = json.loads((run / "model_record.json").read_text())["calibrations"]["none"]
    assert calibration["fitted_on"] == "selection"
    assert calibration["n_images"] == config["split"]["selection_images"]
    headline = json.loads((run / "status.json").read_text())["headline"]
    assert (headline["role"], headline["accuracy"]) == (
        "test",
        metrics["classification"]["accuracy"],
    )
    assert f"run folder: {run}" in output
    accuracy = metrics["classification"]["accuracy"]
    assert f"test set (look 1 of this test set): accuracy {accuracy:.4f}" in output
    assert "selection set (optimistic" in output
    assert f"report: {run / 'report.html'}" in output


def test_environment_records_the_settings_that_change_speed_or_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from breastcls.runs.folder import environment

    monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_autotune_level=1")
    monkeypatch.setenv("TF_DETERMINISTIC_OPS", "1")
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    settings = environment()["settings"]
    assert settings["XLA_FLAGS"] == "--xla_gpu_autotune_level=1"
    assert settings["TF_DETERMINISTIC_OPS"] == "1"
    assert "TF_XLA_FLAGS" not in settings


def test_the_demo_run_learns_the_synthetic_classes(tmp_path: Path) -> None:
    code, output = invoke("train", "--demo", "--out", str(tmp_path))
    assert code == 0, output
    (run,) = [p for p in tmp_path.iterdir() if p.name != "demo-data"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluated_on"]["role"] == "test"
    assert metrics["classification"]["accuracy"] >= 0.9
    assert len(list((tmp_path / "demo-data" / "benign").glob("*.png"))) == 60


def test_the_demo_honours_the_training_options_it_does_not_need(tmp_path: Path) -> None:
    code, output = invoke(
        "train", "--demo", "--epochs", "2", "--name", "x", "--image-size", "32",
        "--batch-size", "32", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, output
    run = tmp_path / "x"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["data"]["image_size"] == 32
    assert config["train"]["batch_size"] == 32
    # What the demo chooses itself stays where no option says otherwise.
    assert config["model"]["backbone"] == "smallcnn" and config["model"]["weights"] is None
    assert config["train"]["learning_rate"] == 1e-3
    with open(run / "history.csv", encoding="utf-8", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]


def test_the_demo_refuses_data_of_its_own(tmp_path: Path) -> None:
    code, output = invoke("train", "--demo", "--data", str(tmp_path), "--out", str(tmp_path))
    _assert_one_line_error(code, output, "--demo", "--data")
    assert list(tmp_path.iterdir()) == []


def _assert_one_line_error(code: int, output: str, *fragments: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    for fragment in fragments:
        assert fragment in output


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    # small_breakhis's five benign slides are three accessions: a selection fraction of 0.34
    # gives the selection set patients of both classes, so only the error under test stops it.
    return [
        "train", "--data", str(data), "--backbone", "smallcnn", "--weights", "none",
        "--image-size", "32", "--epochs", "1", "--selection-fraction", "0.34",
        "--out", str(out), *extra,
    ]  # fmt: skip


def test_a_split_with_a_role_lacking_a_class_is_refused(
    small_breakhis: Path, tmp_path: Path
) -> None:
    args = _train_args(small_breakhis, tmp_path / "runs")
    args[args.index("--selection-fraction") + 1] = "0.2"
    code, output = invoke(*args)
    _assert_one_line_error(
        code, output, "The selection set has no image of class(es) ['malignant']"
    )
    assert not (tmp_path / "runs").exists()


def test_missing_data_folder(tmp_path: Path) -> None:
    code, output = invoke(*_train_args(tmp_path / "nowhere", tmp_path / "runs"))
    _assert_one_line_error(code, output, "nowhere", "does not exist")
    assert not (tmp_path / "runs").exists()


def test_empty_class_folder(small_breakhis: Path, tmp_path: Path) -> None:
    (small_breakhis / "normal").mkdir()
    code, output = invoke(*_train_args(small_breakhis, tmp_path / "runs"))
    _assert_one_line_error(code, output, "normal", "holds no images")
    assert not (tmp_path / "runs").exists()


def test_only_one_class(small_breakhis: Path, tmp_path: Path) -> None:
    shutil.rmtree(small_breakhis / "benign")
    code, output = invoke(*_train_args(small_breakhis, tmp_path / "runs"))
    _assert_one_line_error(code, output, "needs at least two")


def test_unknown_backbone_suggests_close_ids(small_breakhis: Path, tmp_path: Path) -> None:
    args = _train_args(small_breakhis, tmp_path / "runs")
    args[args.index("smallcnn")] = "densenet210"
    code, output = invoke(*args)
    _assert_one_line_error(code, output, "Unknown backbone 'densenet210'", "'densenet201'")
    assert not (tmp_path / "runs").exists()


def test_unknown_head(small_breakhis: Path, tmp_path: Path) -> None:
    code, output = invoke(*_train_args(small_breakhis, tmp_path / "runs", "--head", "mlp3"))
    _assert_one_line_error(code, output, "Unknown head 'mlp3'", "seed")


def test_missing_weights_file(small_breakhis: Path, tmp_path: Path) -> None:
    args = _train_args(small_breakhis, tmp_path / "runs")
    args[args.index("none")] = str(tmp_path / "w.h5")
    code, output = invoke(*args)
    _assert_one_line_error(code, output, "w.h5' does not exist")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("split", [(), ("--folds", "2")])
def test_imagenet_weights_for_a_backbone_without_them(
    small_breakhis: Path, tmp_path: Path, split: tuple[str, ...]
) -> None:
    # smallcnn declares it has no ImageNet weights, and "imagenet" is the default.
    args = _train_args(small_breakhis, tmp_path / "runs", *split)
    del args[args.index("--weights") : args.index("--weights") + 2]
    code, output = invoke(*args)
    _assert_one_line_error(
        code, output, "Backbone 'smallcnn' has no ImageNet weights: pass --weights none"
    )
    assert "Offline?" not in output
    assert not (tmp_path / "runs").exists()


def test_more_devices_than_the_machine_has(small_breakhis: Path, tmp_path: Path) -> None:
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU") or len(tf.config.list_logical_devices("CPU")) > 1:
        pytest.skip("this process sees GPUs or a split CPU")
    code, output = invoke(*_train_args(small_breakhis, tmp_path / "runs", "--devices", "2"))
    _assert_one_line_error(
        code,
        output,
        "devices=2 but this machine has 1 CPU device(s): pass at most 1.",
        "tf.config.set_logical_device_configuration",
    )
    assert not (tmp_path / "runs").exists()


def test_unwritable_output_folder(small_breakhis: Path, tmp_path: Path) -> None:
    # Tests run as root, where permissions do not stop writes: a folder below a plain file
    # can never be created.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, output = invoke(*_train_args(small_breakhis, blocker / "runs"))
    _assert_one_line_error(code, output, "Cannot write to output folder")


def test_data_or_demo_is_required() -> None:
    code, output = invoke("train")
    _assert_one_line_error(code, output, "--data", "--demo")


def test_version_and_plugins_listing() -> None:
    import breastcls

    code, output = invoke("--version")
    assert code == 0 and output.strip() == f"breastcls {breastcls.__version__}"
    code, output = invoke("plugins")
    assert code == 0
    row = next(line for line in output.splitlines() if " densenet201 " in f" {line} ")
    assert row.split()[:3] == ["backbone", "densenet201", "builtin_backbones"]
    assert f"breastcls {breastcls.__version__}" in row
