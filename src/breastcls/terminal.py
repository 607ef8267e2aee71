"""The progress printer of the CLI and of the Python API: rich progress bars on stderr when it
is a terminal, plain lines otherwise; never anything on stdout.

``breastcls train`` and :func:`breastcls.train` print the same start summary and epoch lines
through :class:`TerminalProgress`; :func:`printing_progress` installs it (or, when quiet, a
reporter that prints nothing) for a library call made outside any
:func:`~breastcls.progress.reporting` block.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
    summary when it ends; elsewhere (a pipe, a file, CI logs) only the summaries are written.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or stderr_console()
        self.live = self.console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.run_dir: Path | None = None

    def training_started(self, summary: TrainingSummary) -> None:
        self.run_dir = summary.run_dir
        for line in describe_training(summary):
            self._line(line)

    def task_started(self, description: str, *, total: int | None, unit: str) -> None:
        self._stop()
        if not self.live:
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

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=not self.live)


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
