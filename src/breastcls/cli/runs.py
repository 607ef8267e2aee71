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
    """List the runs in FOLDER: status, epochs completed, test accuracy and AUC, failure reason.

    Figures marked * come from the selection set (a run without a test set, or one still
    training): that set chose the model, so they are optimistic.
    """
    from breastcls.runs import list_runs

    summaries = list_runs(folder)
    if not summaries:
        typer.echo(f"no runs in {folder}")
        return
    headers = ("run", "status", "epochs", "accuracy", "AUC", "updated")
    rows = [
        (
            summary.run_dir.name,
            summary.status,
            str(summary.epochs) + ("" if summary.folds is None else f" in {summary.folds} folds"),
            _figure(summary.accuracy, summary.figures_from),
            _figure(summary.auc, summary.figures_from),
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
    if any(summary.figures_from == "selection" for summary in summaries):
        typer.echo("* selection set (optimistic: it chose the model); other figures: test set")


def _figure(value: float | None, figures_from: str | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" + ("*" if figures_from == "selection" else "")
