"""``breastcls report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors, say


@reports_errors
def report_command(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="Run folder, or an evaluation folder inside one (with predictions.csv).",
        ),
    ],
) -> None:
    """(Re)build report.html (and metrics.json, figures) from a folder's saved predictions."""
    import breastcls

    say(f"report: {breastcls.build_report(folder)}")
