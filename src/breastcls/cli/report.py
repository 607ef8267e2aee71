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
    from breastcls.io import check_writable_dir

    # Before any metric runs: on a read-only run the first figure's write failed inside a
    # metric plugin, and the error blamed the plugin.
    check_writable_dir(
        folder,
        hint="`breastcls report` rewrites report.html, metrics.json and the figures inside the "
        "folder itself: copy the folder somewhere writable, or fix its permissions.",
    )
    say(f"report: {breastcls.build_report(folder)}")
