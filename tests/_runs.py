"""Helpers for tests that run ``breastcls`` in a subprocess and inspect run folders."""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
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


TIMEOUT_SCALE_VARIABLE = "BREASTCLS_TEST_TIMEOUT_SCALE"
QUIET_LIMIT_S = 300.0
"""How long a waited-on process may show no progress at all before a test gives up (times
``BREASTCLS_TEST_TIMEOUT_SCALE``). Any progress restarts the clock, so a slow machine only makes
a test slower, never failed; only a process that stalls completely ends in a timeout."""
_POLL_S = 0.05


def timeout_scale() -> float:
    """The factor from ``BREASTCLS_TEST_TIMEOUT_SCALE`` (default 1) that scales every test wait."""
    text = os.environ.get(TIMEOUT_SCALE_VARIABLE, "1")
    try:
        scale = float(text)
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise ValueError(f"{TIMEOUT_SCALE_VARIABLE}={text!r}: use a positive number such as 3")
    return scale


def _fingerprint(paths: Sequence[Path]) -> tuple[tuple[int, int] | None, ...]:
    # Size and modification time: a log line, a status or train_state update all change it.
    stats = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            stats.append(None)
        else:
            stats.append((stat.st_size, stat.st_mtime_ns))
    return tuple(stats)


def _last_seen(paths: Sequence[Path]) -> str:
    seen = []
    for path in paths:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            continue
        if lines:
            seen.append(f"{path.name}: {lines[-1][-200:]}")
    return "; ".join(seen) or "nothing written yet"


def wait_on_progress(
    process: subprocess.Popen[bytes] | subprocess.Popen[str],
    watched: Sequence[Path],
    *,
    what: str,
    until: Callable[[], bool] | None = None,
) -> None:
    """Wait until ``until()`` holds (or, without it, until ``process`` ends).

    Progress is any change to a ``watched`` file (its log, ``status.json``,
    ``train_state.json``...). After ``QUIET_LIMIT_S`` times the scale without any, the process is
    killed and the test fails saying it timed out and what was last seen.
    """
    quiet_limit = QUIET_LIMIT_S * timeout_scale()
    last, last_change = _fingerprint(watched), time.monotonic()
    while not (until() if until is not None else process.poll() is not None):
        if until is not None and process.poll() is not None:
            raise AssertionError(
                f"the process ended (exit {process.returncode}) before {what}; last seen: "
                f"{_last_seen(watched)}"
            )
        now = _fingerprint(watched)
        if now != last:
            last, last_change = now, time.monotonic()
        elif time.monotonic() - last_change > quiet_limit:
            process.kill()
            process.wait()
            raise AssertionError(
                f"timeout: no progress for {quiet_limit:.0f} s while waiting for {what} "
                f"(raise {TIMEOUT_SCALE_VARIABLE} on a slow machine); last seen: "
                f"{_last_seen(watched)}"
            )
        time.sleep(_POLL_S)


def run_dir_of(args: Sequence[str]) -> Path | None:
    """The run folder that ``breastcls ARGS`` writes, where the arguments name it."""
    options = dict(itertools.pairwise(args))
    if "--resume" in options:
        return Path(options["--resume"])
    if "--out" in options and "--name" in options:
        return Path(options["--out"]) / options["--name"]
    return None


def run_signals(run_dir: Path | None) -> list[Path]:
    """The files whose changes show a training's progress."""
    if run_dir is None:
        return []
    return [run_dir / name for name in ("status.json", "train_state.json", "history.csv")]


def wait_for_exit(process: subprocess.Popen[bytes], log: Path, run_dir: Path | None = None) -> int:
    """Wait for a ``start_cli`` process to end, on progress signals; return its exit code."""
    wait_on_progress(process, [log, *run_signals(run_dir)], what="the process to end")
    return process.wait()


def run_cli(args: list[str], log: Path) -> int:
    """Run ``breastcls ARGS`` to completion and return its exit code."""
    return wait_for_exit(start_cli(args, log), log, run_dir_of(args))


def run_watched(
    command: Sequence[str],
    *,
    watched: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(command, capture_output=True, text=True)`` without a fixed timeout.

    The output goes through files, whose growth (with the ``watched`` files) is the progress
    that keeps the wait going.
    """
    with tempfile.TemporaryDirectory(prefix="breastcls-test-") as scratch:
        out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            process = subprocess.Popen(
                list(command), stdout=stdout, stderr=stderr, env=env, cwd=cwd
            )
            wait_on_progress(process, [out, err, *watched], what=f"{command[-1]!r} to end")
        return subprocess.CompletedProcess(
            list(command),
            process.wait(),
            out.read_text(encoding="utf-8", errors="replace"),
            err.read_text(encoding="utf-8", errors="replace"),
        )


def completed_epochs(run_dir: Path) -> int:
    """Epochs committed in ``train_state.json`` (0 before the first)."""
    path = run_dir / "train_state.json"
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text(encoding="utf-8"))["completed_epochs"])


def wait_for_epochs(
    process: subprocess.Popen[bytes], run_dir: Path, epochs: int, *, log: Path | None = None
) -> None:
    """Wait until ``epochs`` are committed; fail if the process ends first or stalls."""
    wait_on_progress(
        process,
        [*([log] if log is not None else []), *run_signals(run_dir)],
        what=f"epoch {epochs} in {run_dir}",
        until=lambda: completed_epochs(run_dir) >= epochs,
    )


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """Rows of ``history.csv`` as floats."""
    with open(run_dir / "history.csv", encoding="utf-8", newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
