"""The tests' own waits: on progress, not on a fixed wall-clock time (tests/_runs.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from _runs import TIMEOUT_SCALE_VARIABLE, wait_on_progress


def _start(script: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, "-u", "-c", script], stdout=handle)


def test_a_process_that_keeps_progressing_outlives_the_quiet_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_SCALE_VARIABLE, "0.01")  # 3 s without progress
    log = tmp_path / "log"
    began = time.monotonic()
    process = _start("import time\nfor i in range(8): print(i); time.sleep(0.5)", log)
    wait_on_progress(process, [log], what="the end")
    assert process.returncode == 0
    assert time.monotonic() - began > 4  # longer than the quiet limit, in steps shorter
    assert log.read_text().split() == [str(i) for i in range(8)]


def test_a_stalled_process_is_killed_and_the_failure_says_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TIMEOUT_SCALE_VARIABLE, "0.01")
    log = tmp_path / "log"
    process = _start("import time\nprint('epoch 1/3 done')\ntime.sleep(600)", log)
    with pytest.raises(AssertionError) as caught:
        wait_on_progress(process, [log], what="epoch 2")
    message = str(caught.value)
    assert message.startswith("timeout: no progress for 3 s while waiting for epoch 2")
    assert TIMEOUT_SCALE_VARIABLE in message
    assert message.endswith("last seen: log: epoch 1/3 done")
    assert process.returncode is not None


def test_a_bad_scale_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(TIMEOUT_SCALE_VARIABLE, "fast")
    process = _start("pass", tmp_path / "log")
    with pytest.raises(ValueError, match="use a positive number"):
        wait_on_progress(process, [], what="the end")
    process.wait()
