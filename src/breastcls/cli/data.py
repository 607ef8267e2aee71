"""``breastcls data check``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors, say
from breastcls.cli.defaults import DATA
from breastcls.cli.helptext import FittedHelpCommand, FittedHelpGroup
from breastcls.config import Magnification

EXIT_DATA_ERRORS = 1

data_app = typer.Typer(
    name="data",
    help="Inspect datasets before training.",
    cls=FittedHelpGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@data_app.command("check", cls=FittedHelpCommand)
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
    ] = DATA.group_by,
    magnification: Annotated[
        Magnification | None,
        typer.Option(help="Check only images at this magnification (default: all)."),
    ] = DATA.magnification,
    split_seed: Annotated[int, typer.Option(help="Seed of the split checked.")] = DATA.split_seed,
    test_fraction: Annotated[
        float, typer.Option(help="Share of patients held out as the test set (0: none).")
    ] = DATA.test_fraction,
    selection_fraction: Annotated[
        float, typer.Option(help="Share of the rest held out as the selection set.")
    ] = DATA.selection_fraction,
    model: Annotated[
        Path | None,
        typer.Option(
            metavar="<run>",
            help="Also score every image with this model's domain-shift score (exit 1 when "
            "over 20% are unlike its training images).",
        ),
    ] = None,
) -> None:
    """Count, decode and hash every image; report bad files, duplicates and patient leaks.

    Exit code 0: no error (warnings allowed); 1: errors found, or with --model over 20% of the
    images unlike the model's training images; 2: the dataset cannot be read.
    """
    import breastcls
    from breastcls.cli.data_report import format_report
    from breastcls.inference.predict import check_domain

    config = breastcls.DataConfig(
        path=path,
        group_by=group_by,
        magnification=magnification,
        split_seed=split_seed,
        test_fraction=test_fraction,
        selection_fraction=selection_fraction,
    )
    report = breastcls.check_data(path, config=config)
    domain = (
        check_domain(model, [p for p in report.image_info], verbose=0 if as_json else 1)
        if model is not None
        else None
    )
    if as_json:
        found = report.to_dict() | ({"domain": domain.to_dict()} if domain else {})
        say(json.dumps(found, indent=2))
    else:
        say(format_report(report, width=shutil.get_terminal_size().columns))
        if domain is not None:
            verdict = "" if domain.applies else "WARNING: the model does not apply to this data: "
            say(f"domain shift ({model}): {verdict}{domain.line}. {domain.reference}")
    if not report.ok or (domain is not None and not domain.applies):
        raise typer.Exit(EXIT_DATA_ERRORS)
