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


def _run(
    folder: Path,
    status: dict[str, object] | None,
    val_accuracy: list[float],
    backbone: str | None = None,
) -> None:
    folder.mkdir(parents=True)
    config = {} if backbone is None else {"data": {"path": "x"}, "model": {"backbone": backbone}}
    (folder / "config.json").write_text(json.dumps(config))
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
        backbone="mobilenetv3small",
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
    _run(tmp_path / "h-crossval" / "fold-1", None, [0.5, 0.7], backbone="smallcnn")
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
    # The backbone from config.json (a cross-validation's from its first fold); none unreadable.
    assert listed["a-finished"].backbone == "mobilenetv3small"
    assert crossval.backbone == "smallcnn"
    assert listed["b-failed"].backbone is None
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


WIDE = {"COLUMNS": "100"}  # one line per run (80 columns wrap a long time under its date)


def _rows(output: str) -> dict[str, list[str]]:
    """The table's rows by run name, split into cells (the two header lines left out)."""
    lines = output.splitlines()
    assert lines[0].split() == ["test", "test"]
    assert lines[1].split() == [
        "run", "backbone", "status", "epochs", "acc", "AUC", "looks", "updated", "(UTC)"
    ]  # fmt: skip
    return {line.split()[0]: line.split() for line in lines[2:] if line and line[0] != " "}


def test_runs_command_prints_a_table_and_the_reasons(runs: Path) -> None:
    result = CliRunner().invoke(app, ["runs", str(runs)], env=WIDE)
    assert result.exit_code == 0, result.output
    rows, lines = _rows(result.output), result.output.splitlines()
    assert rows["a-finished"] == [
        "a-finished", "mobilenetv3small", "finished", "3", "0.875", "0.938", "-", "2026-11-26",
        "10:00",
    ]  # fmt: skip
    # Selection-set figures carry a * (and a footnote); a missing figure is a dash.
    assert rows["c-killed"][:6] == ["c-killed", "-", "killed", "2", "0.700*", "-"]
    assert rows["d-live"] == ["d-live", "-", "running", "0", "-", "-", "-", "-"]
    assert "b-failed: Training stopped: the loss became nan" in lines
    assert rows["h-crossval"][:7] == ["h-crossval", "smallcnn", "finished", "5", "in", "2", "0.750"]
    assert rows["i-no-test-set"][:6] == ["i-no-test-set", "-", "finished", "2", "0.812*", "0.875*"]
    assert rows["j-old"][:6] == ["j-old", "-", "finished", "2", "0.650*", "-"]
    assert lines[-1] == (
        "* selection-set figure, not the test set's (optimistic: that set chose the model)"
    )


def test_runs_command_has_no_footnote_without_selection_figures(runs: Path) -> None:
    result = CliRunner().invoke(app, ["runs", str(runs / "a-finished")], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "*" not in result.output and "selection" not in result.output
    assert _rows(result.output)["a-finished"][4:6] == ["0.875", "0.938"]


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
    result = CliRunner().invoke(app, ["runs", str(finished)], env=WIDE)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert _rows(result.output)["a-finished"][2:7] == ["finished", "3", "0.875", "0.938", "2"]
    footnote = " ".join(line.strip() for line in lines[3:])  # wrapped to the terminal's width
    assert footnote.startswith("looks: evaluations of the test set so far")
