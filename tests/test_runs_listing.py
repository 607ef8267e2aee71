"""``breastcls runs`` / ``list_runs``: status and headline metric of every run folder."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastcls import ConfigError
from breastcls.cli.app import app
from breastcls.runs import RunSummary, list_runs


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _run(folder: Path, status: dict[str, object] | None, val_accuracy: list[float]) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if status is not None:
        (folder / "status.json").write_text(json.dumps(status))
    rows = [f"{i},0.5,{v}" for i, v in enumerate(val_accuracy, start=1)]
    (folder / "history.csv").write_text("\n".join(["epoch,loss,val_accuracy", *rows]) + "\n")


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    here = platform.node()
    _run(
        tmp_path / "a-finished",
        {"status": "finished", "updated": "2026-11-26T10:00:00+00:00", "pid": 1, "host": here,
         "headline": {"role": "test", "set": "test set", "accuracy": 0.875, "auc": 0.9375,
                      "auc_low": 0.8, "auc_high": 1.0}},
        [0.5, 0.8, 0.75],
    )  # fmt: skip
    _run(
        tmp_path / "b-failed",
        {"status": "failed", "reason": "Training stopped: the loss became nan", "pid": 1,
         "host": here},
        [0.625],
    )  # fmt: skip
    _run(tmp_path / "c-killed", {"status": "running", "pid": _dead_pid(), "host": here}, [0.5, 0.7])
    _run(tmp_path / "d-live", {"status": "running", "pid": os.getpid(), "host": here}, [])
    _run(tmp_path / "e-elsewhere", {"status": "running", "pid": 1, "host": "other-machine"}, [0.6])
    _run(tmp_path / "f-no-status", None, [])
    (tmp_path / "g-broken").mkdir()
    (tmp_path / "g-broken" / "status.json").write_text('{"status": "runn')
    (tmp_path / "not-a-run").mkdir()
    _run(
        tmp_path / "h-crossval",
        {"status": "finished",
         "headline": {"role": "test", "set": "pooled test sets", "accuracy": 0.75, "auc": 0.8125,
                      "auc_low": 0.6, "auc_high": 0.95, "accuracy_mean": 0.7,
                      "accuracy_std": 0.05}},
        [],
    )  # fmt: skip
    (tmp_path / "h-crossval" / "cross_validation.json").write_text('{"folds": 2}')
    _run(tmp_path / "h-crossval" / "fold-1", None, [0.5, 0.7])
    _run(tmp_path / "h-crossval" / "fold-2", None, [0.6, 0.8, 0.9])
    # A run without a test set reports its selection-set figures (optimistic).
    _run(
        tmp_path / "i-no-test-set",
        {"status": "finished",
         "headline": {"role": "selection", "set": "selection set", "accuracy": 0.8125,
                      "auc": 0.875, "auc_low": 0.7, "auc_high": 1.0}},
        [0.7, 0.8125],
    )  # fmt: skip
    # A run finished by breastcls 0.1: its headline was a validation accuracy, not a test figure.
    _run(
        tmp_path / "j-old",
        {"status": "finished", "headline": {"val_accuracy": 0.95}},
        [0.6, 0.65],
    )
    return tmp_path


def _figures(summary: RunSummary) -> tuple[float | None, float | None, str | None]:
    return summary.accuracy, summary.auc, summary.figures_from


def test_list_runs_reports_status_epochs_and_headline_figures(runs: Path) -> None:
    listed = {summary.run_dir.name: summary for summary in list_runs(runs)}
    assert list(listed) == [
        "a-finished", "b-failed", "c-killed", "d-live", "e-elsewhere", "f-no-status", "g-broken",
        "h-crossval", "i-no-test-set", "j-old",
    ]  # fmt: skip
    assert listed["a-finished"].folds is None
    crossval = listed["h-crossval"]
    # A cross-validation's headline is its pooled out-of-fold test figures.
    assert (crossval.epochs, crossval.folds) == (5, 2)
    assert _figures(crossval) == (0.75, 0.8125, "test")
    assert listed["a-finished"].status == "finished"
    assert _figures(listed["a-finished"]) == (0.875, 0.9375, "test")
    assert listed["a-finished"].epochs == 3
    assert listed["b-failed"].reason == "Training stopped: the loss became nan"
    # Unfinished runs: the best epoch's val_accuracy so far, a selection-set figure, no AUC.
    assert _figures(listed["b-failed"]) == (0.625, None, "selection")
    assert listed["c-killed"].status == "killed"
    assert _figures(listed["c-killed"]) == (0.7, None, "selection")
    assert listed["d-live"].status == "running"
    assert _figures(listed["d-live"]) == (None, None, None)
    assert _figures(listed["i-no-test-set"]) == (0.8125, 0.875, "selection")
    # An old headline (validation accuracy) is not taken for a test figure.
    assert _figures(listed["j-old"]) == (0.65, None, "selection")
    assert listed["e-elsewhere"].status == "running"
    assert listed["f-no-status"].status == "unknown"
    assert listed["g-broken"].status == "unknown"
    (single,) = list_runs(runs / "b-failed")
    assert single.status == "failed"


def test_runs_command_prints_a_table_and_the_reasons(runs: Path) -> None:
    result = CliRunner().invoke(app, ["runs", str(runs)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["run", "status", "epochs", "accuracy", "AUC", "looks", "updated"]
    assert lines[1].split() == [
        "a-finished",
        "finished",
        "3",
        "0.8750",
        "0.9375",
        "-",
        "2026-11-26",
        "10:00",
    ]
    # Selection-set figures carry a * (and a footnote); a missing figure is a dash.
    assert lines[3].split()[:5] == ["c-killed", "killed", "2", "0.7000*", "-"]
    assert lines[4].split() == ["d-live", "running", "0", "-", "-", "-", "-"]
    assert "b-failed: Training stopped: the loss became nan" in lines
    assert lines[8].split()[:8] == [
        "h-crossval", "finished", "5", "in", "2", "folds", "0.7500", "0.8125",
    ]  # fmt: skip
    assert lines[9].split()[:5] == ["i-no-test-set", "finished", "2", "0.8125*", "0.8750*"]
    assert lines[10].split()[:5] == ["j-old", "finished", "2", "0.6500*", "-"]
    assert lines[-1] == (
        "* selection set (optimistic: it chose the model); other figures: test set"
    )


def test_runs_command_has_no_footnote_without_selection_figures(runs: Path) -> None:
    result = CliRunner().invoke(app, ["runs", str(runs / "a-finished")])
    assert result.exit_code == 0, result.output
    assert "*" not in result.output and "selection set" not in result.output
    assert result.output.splitlines()[1].split()[3:5] == ["0.8750", "0.9375"]


def test_runs_command_on_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        list_runs(tmp_path / "nowhere")
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1
    empty = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert empty.exit_code == 0 and empty.output.strip() == f"no runs in {tmp_path}"


def test_runs_shows_how_often_the_test_set_was_looked_at(runs: Path) -> None:
    from breastcls.runs.folder import append_test_look

    finished = runs / "a-finished"
    for tta in ("none", "d8"):
        append_test_look(finished, data="split.csv", tta=tta, options={}, evaluation=finished)
    (summary,) = list_runs(finished)
    assert summary.test_looks == 2
    result = CliRunner().invoke(app, ["runs", str(finished)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split()[:6] == ["a-finished", "finished", "3", "0.8750", "0.9375", "2"]
    footnote = " ".join(line.strip() for line in lines[2:])  # wrapped to the terminal's width
    assert footnote.startswith("looks: evaluations of the test set so far")
