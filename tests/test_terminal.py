"""The terminal: no TensorFlow log lines, progress only on stderr, tables that fit 80 columns,
one error style; and a test suite that skips (or, in CI, fails) without the real images."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from _runs import CLI, run_signals, run_watched, tiny_train_options
from breastcls.cli.app import app
from breastcls.cli.progress import TerminalProgress, describe_training
from breastcls.progress import TrainingSummary, active_reporter, reporting

REPO = Path(__file__).resolve().parents[1]
CONTROL = re.compile(r"[\x1b\x08\r]")
TF_LOG_LINES = ("cpu_feature_guard", "oneDNN", "absl", "I0000", "W0000", "tensorflow/core")


def _quiet_env(**extra: str) -> dict[str, str]:
    """The environment of a user who set nothing: no TF_CPP_MIN_LOG_LEVEL, no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "COLUMNS")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One tiny training run through the CLI, stdout and stderr piped (not terminals)."""
    from breastcls.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("terminal")
    data = make_demo_dataset(root / "data", per_class=12, size=48)
    args = ["train", "--data", str(data), *tiny_train_options(1), "--out", str(root / "runs")]
    run_dir = root / "runs" / "tiny"
    result = run_watched(
        [*CLI, *args, "--name", "tiny"], env=_quiet_env(), watched=run_signals(run_dir)
    )
    assert result.returncode == 0, result.stderr
    return root / "runs" / "tiny", result


@pytest.mark.slow
def test_train_shows_summaries_and_no_tensorflow_log_line(
    trained: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    run_dir, result = trained
    for marker in TF_LOG_LINES:
        assert marker not in result.stderr + result.stdout, marker
    assert not CONTROL.search(result.stdout + result.stderr)
    # Progress and summaries on stderr, one plain line per epoch; results on stdout. The demo
    # images' names carry no magnification, so the run records no scale and says so once.
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING: ")]
    assert [w.split("(")[0] for w in warnings] == ["WARNING: this run records no training scale "]
    err = [line for line in result.stderr.splitlines() if line not in warnings]
    # The seconds TensorFlow takes to load are announced before anything else.
    assert err[0] == "loading TensorFlow…"
    assert err[1].startswith("training smallcnn + seed head on CPU: ")
    assert "parameters" in err[1]
    assert re.match(r"data: train \d+ images, selection \d+ images, test \d+ images$", err[2])
    assert err[3].startswith("epoch 1") and err[3].endswith(f"; run folder: {run_dir}")
    assert re.match(r"epoch 1/1: loss [\d.]+, accuracy [\d.]+; selection set: ", err[4])
    # What follows the last epoch is said, not a silence of several seconds.
    assert err[5].startswith("training done: scoring the held-out sets")
    out = result.stdout.splitlines()
    assert out[0] == f"run folder: {run_dir}"
    # The kept epoch and why, from train_state.json's monitor and its best value.
    state = json.loads((run_dir / "train_state.json").read_text())
    assert state["best_epoch"] == 1
    assert out[1] == f"kept epoch 1 of 1: best selection accuracy {state['best_value']:.4f}"
    assert not any(line.startswith("epoch") for line in out)
    report = (run_dir / "report.html").read_text()
    assert f"Model: kept epoch 1 of 1: best selection accuracy {state['best_value']:.4f}." in report
    assert result.stdout.splitlines()[-1] == f"report: {run_dir / 'report.html'}"


@pytest.mark.slow
def test_predict_into_a_file_has_no_control_characters(
    trained: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    run_dir, _ = trained
    images = sorted(run_dir.parent.parent.glob("data/*/*.png"))[:5]
    # run_watched sends the output to files: no terminal, as when a user redirects it.
    result = run_watched(
        [*CLI, "predict", str(run_dir), *map(str, images), "--out", str(tmp_path / "p.csv")],
        env=_quiet_env(),
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    lines = text.splitlines()
    # A few images: each one's answer, then where the CSV went.
    with open(tmp_path / "p.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for line, image, row in zip(lines, images, rows, strict=False):
        assert line.startswith(f"{image}: {row['predicted']} (p=0.") or line.startswith(
            f"{image}: {row['predicted']} (p=1.00)"
        ), line
    assert lines[5] == f"5 images -> {tmp_path / 'p.csv'}"
    assert not CONTROL.search(text) and not CONTROL.search(result.stderr)
    assert not any(marker in result.stderr for marker in TF_LOG_LINES), result.stderr


@pytest.mark.slow
def test_runs_fits_80_columns(trained: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    run_dir, _ = trained
    result = CliRunner().invoke(app, ["runs", str(run_dir.parent)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["test", "test"]
    assert lines[1].split()[:3] == ["run", "backbone", "status"]
    assert lines[2].split()[:4] == ["tiny", "smallcnn", "finished", "1"]
    assert max(map(len, lines)) <= 80


def test_plugins_fits_80_columns() -> None:
    result = CliRunner().invoke(app, ["plugins"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= 80
    assert not CONTROL.search(result.output)
    assert any(line.split()[:4] == ["backbone", "densenet201", "builtin_backbones", "breastcls"]
               for line in lines)  # fmt: skip


@pytest.mark.parametrize(
    "args", [["predict"], ["train", "--epochs", "many"], ["--no-such-option"], ["data", "check"]]
)
def test_usage_errors_are_one_line(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "--help" in result.output


def test_library_errors_are_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def training_started(self, summary: TrainingSummary) -> None:
        self.calls.append(("training", summary))

    def task_started(self, description: str, *, total: int | None, unit: str) -> None:
        self.calls.append(("start", (description, total, unit)))

    def task_advanced(self, completed: int, *, detail: str = "") -> None:
        self.calls.append(("advance", completed))

    def task_finished(self, summary: str = "") -> None:
        self.calls.append(("finish", summary))


def test_nothing_is_reported_outside_a_reporting_block() -> None:
    recorder = _Recorder()
    assert active_reporter() is None
    with reporting(recorder):
        assert active_reporter() is recorder
    assert active_reporter() is None


def test_inference_reports_to_the_active_reporter(capsys: pytest.CaptureFixture[str]) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    from breastcls.inference import InferenceModel, ModelRecord
    from breastcls.inference.runtime import TensorFlowRuntime

    keras_model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                                    keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    model = InferenceModel(
        record=ModelRecord(class_names=("benign", "malignant"), image_size=4),
        source=Path("model.keras"),
        runtime=TensorFlowRuntime(keras_model=keras_model),
        keras_model=keras_model,
    )
    batches = tf.data.Dataset.from_tensor_slices(np.zeros((5, 4, 4, 3), "float32")).batch(2)
    recorder = _Recorder()
    with reporting(recorder):
        scores = model.scores(batches, total=5, verbose=1)
    assert scores.raw.shape == scores.calibrated.shape == (5, 2)
    assert recorder.calls == [
        ("start", ("predicting", 5, "images")),
        ("advance", 2), ("advance", 4), ("advance", 5),
        ("finish", ""),
    ]  # fmt: skip
    model.scores(batches, total=5, verbose=1)  # no reporter: silent
    assert capsys.readouterr().out == ""


def test_terminal_progress_off_a_terminal_writes_plain_summaries() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(Console(file=stream, width=80))
    assert not progress.live
    progress.task_started("epoch 1/2", total=3, unit="batches")
    progress.task_advanced(2, detail="loss 0.5")
    progress.task_finished("epoch 1/2: loss 0.5000")
    progress.task_started("predicting", total=3, unit="images")
    progress.task_finished()
    assert stream.getvalue() == "epoch 1/2: loss 0.5000\n"


def test_terminal_progress_on_a_terminal_draws_a_bar_with_an_eta() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(Console(file=stream, width=100, force_terminal=True))
    assert progress.live
    progress.task_started("epoch 1/2", total=3, unit="batches")
    progress.task_advanced(2, detail="loss 0.5")
    progress.task_finished("epoch 1/2: loss 0.5000")
    assert "ETA" in stream.getvalue() and "epoch 1/2: loss 0.5000" in stream.getvalue()


def test_start_summary_names_roles_patients_and_device(tmp_path: Path) -> None:
    summary = TrainingSummary(
        run_dir=tmp_path, backbone="densenet201", head="seed",
        images={"train": 161, "selection": 43, "test": 65},
        patients={"train": 20, "selection": 5, "test": 9},
        parameters=18_321_984, trainable=18_092_928, device="CPU",
        epochs=20, first_epoch=1, steps=11,
    )  # fmt: skip
    assert describe_training(summary) == [
        "training densenet201 + seed head on CPU: 18,321,984 parameters (18,092,928 trainable)",
        "data: train 161 images (20 patients), selection 43 images (5 patients), "
        "test 65 images (9 patients)",
        f"epochs 1-20, 11 batches each; run folder: {tmp_path}",
    ]


# --- item 7: the suite without the real images ---------------------------------------------------


def _pytest_without_images(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "CI"}
    return run_watched(
        [sys.executable, "-m", "pytest", "tests/test_data_splits.py", "-q", "-ra",
         "-p", "no:cacheprovider"],
        cwd=REPO, env={**base, "BREASTCLS_SHARED_DATA": "/nonexistent", **env},
    )  # fmt: skip


def test_without_the_images_real_data_tests_skip_with_one_line() -> None:
    result = _pytest_without_images()
    assert result.returncode == 0, result.stdout
    assert " passed" in result.stdout and " skipped" in result.stdout
    assert "failed" not in result.stdout and "error" not in result.stdout
    skips = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 1
    assert "/nonexistent" in skips[0] and "BREASTCLS_SHARED_DATA=" in skips[0]


def test_without_the_images_ci_fails() -> None:
    result = _pytest_without_images(CI="true")
    assert result.returncode == 1, result.stdout
    assert "CI needs them" in result.stdout


def test_the_kept_epoch_is_said_with_its_monitor_and_direction() -> None:
    from breastcls.runs.checkpoint import TrainState, kept_epoch_line

    def state(monitor: str, value: float | None) -> TrainState:
        return TrainState(
            completed_epochs=10, checkpoint="c", monitor=monitor, best_value=value, best_epoch=2
        )

    assert kept_epoch_line(state("val_accuracy", 0.93)) == (
        "kept epoch 2 of 10: best selection accuracy 0.9300"
    )
    assert kept_epoch_line(state("val_loss", 0.2125)) == (
        "kept epoch 2 of 10: lowest selection loss 0.2125"
    )
    assert kept_epoch_line(state("val_loss", None)) is None
    assert kept_epoch_line(None) is None
