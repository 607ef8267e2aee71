"""Helpers for tests that run ``breastcls`` in a subprocess and inspect run folders."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CLI = [sys.executable, "-c", "from breastcls.cli.app import main; main()"]


def tiny_train_options(epochs: int, *, seed: int = 5) -> list[str]:
    """Options of a small deterministic smallcnn run that trains in seconds on a CPU.

    The selection fraction of 0.34 gives ``small_breakhis`` (five benign slides, but three
    accessions) a selection set with patients of both classes.
    """
    return [
        "--backbone", "smallcnn", "--weights", "none", "--image-size", "48",
        "--batch-size", "4", "--learning-rate", "3e-3", "--epochs", str(epochs),
        "--seed", str(seed), "--deterministic", "--selection-fraction", "0.34",
    ]  # fmt: skip


def _default_sigint() -> None:
    # A test run started in the background of a non-interactive shell inherits an ignored
    # SIGINT, and Python keeps ignoring it; the CLI under test must see Ctrl-C as a user would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``breastcls ARGS`` with its output going to ``log``."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [*CLI, *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_default_sigint,
        )


def run_cli(args: list[str], log: Path, *, timeout: float = 120) -> int:
    """Run ``breastcls ARGS`` to completion and return its exit code."""
    process = start_cli(args, log)
    return process.wait(timeout=timeout)


def completed_epochs(run_dir: Path) -> int:
    """Epochs committed in ``train_state.json`` (0 before the first)."""
    path = run_dir / "train_state.json"
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text(encoding="utf-8"))["completed_epochs"])


def wait_for_epochs(
    process: subprocess.Popen[bytes], run_dir: Path, epochs: int, *, timeout: float = 90
) -> None:
    """Poll until ``epochs`` are committed; fail if the process ends or time runs out."""
    deadline = time.monotonic() + timeout
    while completed_epochs(run_dir) < epochs:
        if process.poll() is not None:
            raise AssertionError(f"training ended (exit {process.returncode}) before {epochs=}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no epoch {epochs} within {timeout} s")
        time.sleep(0.02)


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """Rows of ``history.csv`` as floats."""
    with open(run_dir / "history.csv", encoding="utf-8", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
