"""``breastcls data check``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors

EXIT_DATA_ERRORS = 1

data_app = typer.Typer(
    name="data",
    help="Inspect datasets before training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@data_app.command("check")
@reports_errors
def check_command(
    path: Annotated[
        Path,
        typer.Argument(help="A folder of class folders, or a CSV manifest.", show_default=False),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    group_by: Annotated[
        str | None,
        typer.Option(help="Group by this column instead of patient_id (e.g. a biopsy column)."),
    ] = None,
    magnification: Annotated[
        int | None,
        typer.Option(help="Check only images at this magnification (40, 100, 200, 400)."),
    ] = None,
    split_seed: Annotated[int, typer.Option(help="Seed of the split checked.")] = 11,
    test_fraction: Annotated[
        float, typer.Option(help="Share of patients held out as the test set (0: none).")
    ] = 0.2,
    selection_fraction: Annotated[
        float, typer.Option(help="Share of the rest held out as the selection set.")
    ] = 0.2,
) -> None:
    """Count, decode and hash every image; report bad files, duplicates and patient leaks.

    Exit code 0: no error (warnings allowed); 1: errors found; 2: the dataset cannot be read.
    """
    import breastcls
    from breastcls.data.check import format_report

    config = breastcls.DataConfig(
        path=path,
        group_by=group_by,
        magnification=magnification,
        split_seed=split_seed,
        test_fraction=test_fraction,
        selection_fraction=selection_fraction,
    )
    report = breastcls.check_data(path, config=config)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(format_report(report))
    if not report.ok:
        raise typer.Exit(EXIT_DATA_ERRORS)
