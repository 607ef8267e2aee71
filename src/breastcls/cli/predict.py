"""``breastcls predict``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from breastcls.cli.common import reports_errors, say

if TYPE_CHECKING:
    from breastcls.inference.predict import PredictResult


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
    _say_answers(result)
    say(f"{result.n_images} images -> {result.path}")
    kept = result.prediction.in_distribution
    if kept is not None:
        line, applies = flagged_line(int((~kept).sum()), len(kept))
        say(line if applies else f"WARNING: these predictions do not apply to this data: {line}")
    if result.skipped:
        say(f"{len(result.skipped)} unreadable image(s) skipped, listed in {result.skipped_path}")


ANSWERED_IMAGES = 10
"""Up to this many images, each one's answer is printed (more: only the CSV has them)."""


def _say_answers(result: PredictResult) -> None:
    """One line per image for a few images: its class, that class's probability and, when it
    is unlike the training images, so."""
    if result.n_images > ANSWERED_IMAGES:
        return
    prediction = result.prediction
    for index, source in enumerate(result.sources):
        top = float(prediction.probabilities[index].max())
        line = f"{source}: {prediction.predicted[index]} (p={top:.2f})"
        if prediction.in_distribution is not None and not prediction.in_distribution[index]:
            line += ", unlike the training images"
        say(line)
