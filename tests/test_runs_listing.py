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

import breastcls
from breastcls import ConfigError
from breastcls.cli.app import app


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
         "headline": {"val_accuracy": 0.875}},
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
        {"status": "finished", "headline": {"val_accuracy_mean": 0.75}},
        [],
    )
    (tmp_path / "h-crossval" / "cross_validation.json").write_text('{"folds": 2}')
    _run(tmp_path / "h-crossval" / "fold-1", None, [0.5, 0.7])
    _run(tmp_path / "h-crossval" / "fold-2", None, [0.6, 0.8, 0.9])
    return tmp_path


def test_list_runs_reports_status_epochs_and_val_accuracy(runs: Path) -> None:
    listed = {summary.run_dir.name: summary for summary in breastcls.list_runs(runs)}
    assert list(listed) == [
        "a-finished", "b-failed", "c-killed", "d-live", "e-elsewhere", "f-no-status", "g-broken",
        "h-crossval",
    ]  # fmt: skip
    assert listed["a-finished"].folds is None
    crossval = listed["h-crossval"]
    assert (crossval.epochs, crossval.folds, crossval.val_accuracy) == (5, 2, 0.75)
    assert (listed["a-finished"].status, listed["a-finished"].val_accuracy) == ("finished", 0.875)
    assert listed["a-finished"].epochs == 3
    assert listed["b-failed"].reason == "Training stopped: the loss became nan"
    assert listed["b-failed"].val_accuracy == 0.625
    assert (listed["c-killed"].status, listed["c-killed"].val_accuracy) == ("killed", 0.7)
    assert listed["d-live"].status == "running" and listed["d-live"].val_accuracy is None
    assert listed["e-elsewhere"].status == "running"
    assert listed["f-no-status"].status == "unknown"
    assert listed["g-broken"].status == "unknown"
    (single,) = breastcls.list_runs(runs / "b-failed")
    assert single.status == "failed"


def test_runs_command_prints_a_table_and_the_reasons(runs: Path) -> None:
    result = CliRunner().invoke(app, ["runs", str(runs)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["run", "status", "epochs", "val_accuracy", "updated"]
    assert lines[1].split() == [
        "a-finished",
        "finished",
        "3",
        "0.8750",
        "2026-11-26T10:00:00+00:00",
    ]
    assert lines[3].split()[:4] == ["c-killed", "killed", "2", "0.7000"]
    assert "b-failed: Training stopped: the loss became nan" in lines
    assert lines[8].split()[:6] == ["h-crossval", "finished", "5", "in", "2", "folds"]


def test_runs_command_on_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        breastcls.list_runs(tmp_path / "nowhere")
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.splitlines()) == 1
    empty = CliRunner().invoke(app, ["runs", str(tmp_path)])
    assert empty.exit_code == 0 and empty.output.strip() == f"no runs in {tmp_path}"
