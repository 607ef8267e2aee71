"""Progress on the terminal: rich progress bars on stderr when it is a terminal, plain lines
otherwise; never anything on stdout, which carries the commands' results. The printer itself is
:mod:`breastcls.terminal`'s, which the Python API uses too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from breastcls.progress import reporting
from breastcls.terminal import ROLES, TerminalProgress, describe_training, stderr_console

__all__ = [
    "ROLES",
    "TerminalProgress",
    "describe_training",
    "echo_table",
    "resume_hint",
    "showing_progress",
    "stderr_console",
]


def resume_hint(run_dir: Path | None) -> str:
    """What to say when Ctrl-C stops a command: after training started, the command that
    continues the run (a cross-validation's own folder for one of its folds)."""
    if run_dir is None:
        return "interrupted."
    from breastcls.runs.folder import RunFolder

    if RunFolder(run_dir.parent).is_cross_validation:
        run_dir = run_dir.parent
    return f"interrupted: continue with `breastcls train --resume {run_dir}`."


@contextlib.contextmanager
def showing_progress() -> Iterator[TerminalProgress]:
    """Show the progress of the library calls made inside the block on stderr."""
    reporter = TerminalProgress()
    try:
        with reporting(reporter):
            yield reporter
    finally:
        reporter.close()


def echo_table(table: Any) -> None:
    """Print a rich table on stdout, fitted to the terminal's width (``COLUMNS``, or 80 when
    stdout is not a terminal), without the trailing spaces rich pads lines with."""
    console = Console(highlight=False)
    if console.is_terminal:
        console.print(table)
        return
    with console.capture() as capture:
        console.print(table)
    typer.echo("\n".join(line.rstrip() for line in capture.get().splitlines()))
