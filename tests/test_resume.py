"""Kill a real training process and resume it: the result matches an uninterrupted run."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from _runs import (
    read_history,
    run_cli,
    start_cli,
    tiny_train_options,
    wait_for_epochs,
    wait_for_exit,
)

EPOCHS = 8
# Resuming restores weights, optimizer, schedule counters, seed generators and the shuffle
# order, and `--deterministic` makes the ops reproducible, so the histories agree to float32
# round-off; this is the tolerance the documentation states.
TOLERANCE = 1e-6

pytestmark = pytest.mark.slow


def test_sigkill_mid_training_then_resume_matches_uninterrupted_run(
    small_breakhis: Path, tmp_path: Path
) -> None:
    out = tmp_path / "runs"
    common = ["train", "--data", str(small_breakhis), "--out", str(out)]
    reference = start_cli([*common, "--name", "whole", *tiny_train_options(EPOCHS)], tmp_path / "w")
    killed = start_cli([*common, "--name", "killed", *tiny_train_options(EPOCHS)], tmp_path / "k")
    run_dir = out / "killed"
    wait_for_epochs(killed, run_dir, 2, log=tmp_path / "k")
    killed.send_signal(signal.SIGKILL)
    killed.wait()  # SIGKILL cannot be caught: the process ends
    reference_code = wait_for_exit(reference, tmp_path / "w", out / "whole")
    assert reference_code == 0, (tmp_path / "w").read_text()

    state = json.loads((run_dir / "train_state.json").read_text(encoding="utf-8"))
    interrupted_at = state["completed_epochs"]
    assert 2 <= interrupted_at < EPOCHS
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    assert not (run_dir / "metrics.json").exists()

    log = tmp_path / "resume.log"
    assert run_cli(["train", "--resume", str(run_dir)], log) == 0, log.read_text()

    resumed = read_history(run_dir)
    whole = read_history(out / "whole")
    assert [int(row["epoch"]) for row in resumed] == list(range(1, EPOCHS + 1))
    assert resumed[0].keys() == whole[0].keys()
    for got, expected in zip(resumed, whole, strict=True):
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=TOLERANCE), (got["epoch"], key)
    # ReduceLROnPlateau's counters came back: the learning rate falls at the same epochs.
    rates = [row["learning_rate"] for row in resumed]
    assert rates == pytest.approx([row["learning_rate"] for row in whole], rel=1e-6)
    assert rates[-1] < rates[0]

    status = json.loads((run_dir / "status.json").read_text(encoding="utf-8"))
    assert status["status"] == "finished"
    assert status["resumed_at_epoch"] == interrupted_at
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    reference_metrics = json.loads((out / "whole" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["classification"]["accuracy"] == pytest.approx(
        reference_metrics["classification"]["accuracy"], abs=TOLERANCE
    )
    columns = {"delimiter": ",", "skiprows": 1, "usecols": (6, 7)}  # p_ columns, after group
    np.testing.assert_allclose(
        np.loadtxt(run_dir / "predictions.csv", **columns),
        np.loadtxt(out / "whole" / "predictions.csv", **columns),
        atol=1e-5,
    )
