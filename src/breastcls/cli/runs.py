"""``breastcls runs``."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors, say


@reports_errors
def runs_command(
    folder: Annotated[
        Path, typer.Argument(help="Folder of run folders (the --out of `breastcls train`).")
    ] = Path("runs"),
) -> None:
    """List the runs in FOLDER: backbone, status, epochs completed, test-set accuracy and AUC,
    how many times the test set was looked at (looks), failure reason (in folder order, never
    ranked by a figure).

    Figures marked * come from the selection set (a run without a test set, or one still
    training): that set chose the model, so they are optimistic. Figures marked ! come from a
    leaky split (patients of that set also trained or selected the model): a line below the
    table says how many. A test figure looked at more than once (the looks column) is no
    longer unbiased.
    """
    from breastcls.runs import list_runs

    summaries = list_runs(folder)
    if not summaries:
        say(f"no runs in {folder}")
        return
    from rich.table import Table

    from breastcls.cli.progress import echo_table

    table = Table(
        box=None, pad_edge=False, show_edge=False, header_style="bold", collapse_padding=True
    )
    # Names and figures are never broken; the epochs and the time fold first at 80 columns.
    for header in ("run", "backbone", "status"):
        table.add_column(header, no_wrap=True)
    table.add_column("epochs", max_width=6)
    for header in ("test\nacc", "test\nAUC", "looks"):
        table.add_column(header, no_wrap=True)
    table.add_column("updated (UTC)", min_width=10)
    for summary in summaries:
        table.add_row(
            summary.run_dir.name,
            summary.backbone or "-",
            summary.status,
            str(summary.epochs) + ("" if summary.folds is None else f" in {summary.folds} folds"),
            _figure(summary.accuracy, summary.figures_from, summary.leak),
            _figure(summary.auc, summary.figures_from, summary.leak),
            str(summary.test_looks) if summary.test_looks else "-",
            _minute(summary.updated),
        )
    echo_table(table)
    for summary in summaries:
        if summary.reason and summary.status != "finished":
            say(
                textwrap.fill(
                    f"{summary.run_dir.name}: {summary.reason}",
                    width=shutil.get_terminal_size().columns,
                    subsequent_indent="  ",
                    break_on_hyphens=False,
                )
            )
    for summary in summaries:
        if summary.leak:
            say(f"! {summary.run_dir.name}: {summary.leak}")
    if any(summary.figures_from == "selection" for summary in summaries):
        say("* selection-set figure, not the test set's (optimistic: that set chose the model)")
    if any(summary.test_looks for summary in summaries):
        say(
            textwrap.fill(
                "looks: evaluations of the test set so far (test_looks.jsonl); a figure looked "
                "at more than once is optimistic",
                width=shutil.get_terminal_size().columns,
                subsequent_indent="  ",
            )
        )


def _minute(updated: str | None) -> str:
    """``2026-11-26T10:00:00+00:00`` (UTC) as ``2026-11-26 10:00``."""
    return "-" if not updated else updated[:16].replace("T", " ")


def _figure(value: float | None, figures_from: str | None, leak: str | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + ("*" if figures_from == "selection" else "") + ("!" if leak else "")
