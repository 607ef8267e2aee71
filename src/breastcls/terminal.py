"""The progress printer of the CLI and of the Python API: rich progress bars on stderr when it
is a terminal, plain lines otherwise; never anything on stdout.

``breastcls train`` and :func:`breastcls.train` print the same start summary and epoch lines
through :class:`TerminalProgress`; :func:`printing_progress` installs it (or, when quiet, a
reporter that prints nothing) for a library call made outside any
:func:`~breastcls.progress.reporting` block.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from breastcls.progress import ProgressReporter, TrainingSummary, active_reporter, reporting

__all__ = [
    "ROLES",
    "SilentProgress",
    "TerminalProgress",
    "describe_training",
    "printing_progress",
    "stderr_console",
]

ROLES = ("train", "selection", "test")


def stderr_console() -> Console:
    """The console of progress and messages: stderr, no highlighting, no markup."""
    return Console(stderr=True, highlight=False)


class TerminalProgress:
    """A :class:`~breastcls.progress.ProgressReporter` for the terminal.

    On a terminal each task is a transient progress bar with its ETA, replaced by its one-line
    summary when it ends; elsewhere (a pipe, a file, CI logs) the summaries are written, and,
    with ``every``, a line each time a task has advanced ``every`` more units (its rate and
    ETA), so that a log followed from a batch scheduler shows a long task moving.

    Args:
        console: Where to write (default: stderr).
        every: Units between two plain lines, or ``None``: none.
        clock: Seconds, for the rate (a test gives its own).
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        every: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console or stderr_console()
        self.live = self.console.is_terminal
        self.every = every
        self._clock = clock
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._plain: _PlainTask | None = None
        self.run_dir: Path | None = None

    def training_started(self, summary: TrainingSummary) -> None:
        self.run_dir = summary.run_dir
        for line in describe_training(summary):
            self._line(line)

    def task_started(self, description: str, *, total: int | None, unit: str) -> None:
        self._stop()
        if not self.live:
            self._plain = _PlainTask(description, total, unit, self._clock())
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, detail="")

    def task_advanced(self, completed: int, *, detail: str = "") -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed, detail=detail)
        plain = self._plain
        if plain is None or self.every is None:
            return
        if plain.first is None:
            plain.first = plain.shown = completed  # a resumed task's units done before
            return
        if completed - plain.shown >= self.every:
            plain.shown = completed
            self._line(plain.line(completed, self._clock()))

    def task_finished(self, summary: str = "") -> None:
        self._stop()
        if summary:
            self._line(summary)

    def close(self) -> None:
        """Remove a bar left by a task that did not finish (an error, Ctrl-C)."""
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None
        self._plain = None

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=not self.live)


class _PlainTask:
    """A task followed without a progress bar: where it started, and what was last said."""

    def __init__(self, description: str, total: int | None, unit: str, started: float) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.started = started
        self.first: int | None = None
        self.shown = 0

    def line(self, completed: int, now: float) -> str:
        """``<description>: <done>/<total> <unit>, <rate> <unit>/s, ETA <h:mm:ss>``."""
        done = completed - (self.first or 0)
        rate = done / (now - self.started) if now > self.started else 0.0
        of = f"/{self.total}" if self.total is not None else ""
        text = f"{self.description}: {completed}{of} {self.unit}, {rate:.1f} {self.unit}/s"
        if self.total is not None and rate > 0:
            left = round((self.total - completed) / rate)
            text += f", ETA {left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d}"
        return text


def describe_training(summary: TrainingSummary) -> list[str]:
    """The start summary of a training run, a few lines."""
    lines = [
        f"training {summary.backbone} + {summary.head} head on {summary.device}: "
        f"{summary.parameters:,} parameters ({summary.trainable:,} trainable)"
    ]
    if summary.images:
        parts = []
        for role in [*ROLES, *(r for r in summary.images if r not in ROLES)]:
            if role not in summary.images:
                continue
            part = f"{role} {summary.images[role]} images"
            if summary.patients is not None and role in summary.patients:
                part += f" ({summary.patients[role]} patients)"
            parts.append(part)
        lines.append("data: " + ", ".join(parts))
    epochs = (
        f"epochs {summary.first_epoch}-{summary.epochs}"
        if summary.first_epoch < summary.epochs
        else f"epoch {summary.epochs}"
    )
    if summary.first_epoch > 1:
        epochs = f"resuming: {epochs}"
    batches = f", {summary.steps} batches each" if summary.steps else ""
    lines.append(f"{epochs}{batches}; run folder: {summary.run_dir}")
    lines.extend(f"WARNING: {warning}" for warning in summary.warnings)
    return lines


class SilentProgress:
    """A :class:`~breastcls.progress.ProgressReporter` that prints nothing (``quiet=True``):
    while it is active, Keras prints no progress bar of its own either."""

    def training_started(self, summary: TrainingSummary) -> None:
        """Print nothing."""

    def task_started(self, description: str, *, total: int | None, unit: str) -> None:
        """Print nothing."""

    def task_advanced(self, completed: int, *, detail: str = "") -> None:
        """Print nothing."""

    def task_finished(self, summary: str = "") -> None:
        """Print nothing."""


@contextlib.contextmanager
def printing_progress(*, quiet: bool) -> Iterator[ProgressReporter]:
    """Inside the block, training and inference report on stderr as the CLI does (nothing at
    all when ``quiet``), unless the caller already chose a reporter, which is kept."""
    active = active_reporter()
    if active is not None:
        yield active
        return
    reporter: TerminalProgress | SilentProgress = SilentProgress() if quiet else TerminalProgress()
    try:
        with reporting(reporter):
            yield reporter
    finally:
        if isinstance(reporter, TerminalProgress):
            reporter.close()
