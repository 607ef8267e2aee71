"""``breastcls predict``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors, say


@reports_errors
def predict_command(
    model: Annotated[
        Path,
        typer.Argument(
            metavar="RUN",
            help="Run folder (its best.keras), export folder (keras or onnx) or model file.",
        ),
    ],
    inputs: Annotated[
        list[Path], typer.Argument(metavar="IMAGES", help="Image files and/or folders.")
    ],
    out: Annotated[Path, typer.Option(help="The CSV file to write.")] = Path("predictions.csv"),
    tta: Annotated[
        str,
        typer.Option(
            metavar="<id>", help="Test-time augmentation: none, flips (4 copies) or d8 (8)."
        ),
    ] = "none",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 32,
    skip_bad_images: Annotated[
        bool,
        typer.Option(
            help="Predict without unreadable images (listed in a .skipped.csv file beside --out) "
            "instead of stopping."
        ),
    ] = False,
) -> None:
    """Predict the class of images: one CSV row per image with its probabilities."""
    import breastcls
    from breastcls.inference.domain import flagged_line

    result = breastcls.predict(
        model,
        inputs,
        out=out,
        tta=tta,
        batch_size=batch_size,
        verbose=1,
        skip_bad_images=skip_bad_images,
    )
    say(f"{result.n_images} images -> {result.path}")
    kept = result.prediction.in_distribution
    if kept is not None:
        line, applies = flagged_line(int((~kept).sum()), len(kept))
        say(line if applies else f"WARNING: these predictions do not apply to this data: {line}")
    if result.skipped:
        say(f"{len(result.skipped)} unreadable image(s) skipped, listed in {result.skipped_path}")
