"""The ``breastcls`` typer application."""

from __future__ import annotations

from typing import Annotated

import typer

from breastcls._version import __version__
from breastcls.cli.calibrate import calibrate_command
from breastcls.cli.common import OneLineErrorsGroup, announce_tensorflow, quiet_tensorflow, say
from breastcls.cli.data import data_app
from breastcls.cli.embed import embed_command
from breastcls.cli.evaluate import evaluate_command
from breastcls.cli.export import export_command
from breastcls.cli.helptext import FittedHelpCommand
from breastcls.cli.plugins import plugins_command
from breastcls.cli.predict import predict_command
from breastcls.cli.report import report_command
from breastcls.cli.runs import runs_command
from breastcls.cli.slide import slide_app
from breastcls.cli.train import train_command
from breastcls.environment import prepare_tensorflow

app = typer.Typer(
    name="breastcls",
    help="Train, evaluate and serve CNN classifiers for breast histopathology images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrorsGroup,
)
app.command("train", cls=FittedHelpCommand)(train_command)
app.command("plugins", cls=FittedHelpCommand)(plugins_command)
app.command("evaluate", cls=FittedHelpCommand)(evaluate_command)
app.command("calibrate", cls=FittedHelpCommand)(calibrate_command)
app.command("predict", cls=FittedHelpCommand)(predict_command)
app.command("report", cls=FittedHelpCommand)(report_command)
app.command("export", cls=FittedHelpCommand)(export_command)
app.command("runs", cls=FittedHelpCommand)(runs_command)
app.command("embed", cls=FittedHelpCommand)(embed_command)
app.add_typer(data_app, name="data")
app.add_typer(slide_app, name="slide")


def _show_version(value: bool) -> None:
    if value:
        say(f"breastcls {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show TensorFlow's own log lines (hidden by default)."
        ),
    ] = False,
) -> None:
    """breastcls: benign vs malignant (and subtype) classifiers for histopathology images."""
    if not verbose:
        quiet_tensorflow()


def main() -> None:
    """Console-script entry point."""
    # TensorFlow reads its allocator setting when it starts, so it is chosen before any command
    # imports TensorFlow (importing breastcls itself changes nothing in the process).
    prepare_tensorflow()
    announce_tensorflow()
    app()
