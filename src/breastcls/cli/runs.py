"""``breastcls runs``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors


@reports_errors
def runs_command(
    folder: Annotated[
        Path, typer.Argument(help="Folder of run folders (the --out of `breastcls train`).")
    ] = Path("runs"),
) -> None:
    """List the runs in FOLDER: status, epochs completed, validation accuracy, failure reason."""
    import breastcls

    summaries = breastcls.list_runs(folder)
    if not summaries:
        typer.echo(f"no runs in {folder}")
        return
    headers = ("run", "status", "epochs", "val_accuracy", "updated")
    rows = [
        (
            summary.run_dir.name,
            summary.status,
            str(summary.epochs) + ("" if summary.folds is None else f" in {summary.folds} folds"),
            "-" if summary.val_accuracy is None else f"{summary.val_accuracy:.4f}",
            summary.updated or "-",
        )
        for summary in summaries
    ]
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, *rows]:
        typer.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for summary in summaries:
        if summary.reason and summary.status != "finished":
            typer.echo(f"{summary.run_dir.name}: {summary.reason}")
