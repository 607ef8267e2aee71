"""``breastcls export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors, say
from breastcls.conversion import ExportFormat


@reports_errors
def export_command(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run folder whose best.keras is exported.")
    ],
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="keras, savedmodel (TensorFlow Serving), onnx (needs the onnx extra) or tflite.",
        ),
    ] = "keras",
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: RUN/export/FORMAT).")
    ] = None,
) -> None:
    """Export a trained model (augmentation removed) with its model card and class names."""
    from breastcls.export import export_model

    result = export_model(run, format=format, out_dir=out)
    say(f"exported: {result.model}")
    say(f"max probability difference vs the run's model: {result.max_difference:.2e}")
