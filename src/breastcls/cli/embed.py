"""``breastcls embed``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import parse_options, reports_errors, say


@reports_errors
def embed_command(
    backbone: Annotated[
        str,
        typer.Option(metavar="<id>", help="A frozen extractor: onnx or keras."),
    ],
    data: Annotated[
        Path,
        typer.Option(metavar="<dir>", help="The images (a folder of class folders, a manifest)."),
    ],
    backbone_option: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<name=value>",
            help="An option of the extractor, repeatable: file, input_size, mean, std, "
            "embedding (pooled or class_token), output, mpp.",
        ),
    ] = None,
    tta: Annotated[
        str,
        typer.Option(metavar="<id>", help="Also embed this test-time augmentation's copies."),
    ] = "none",
    batch_size: Annotated[int, typer.Option(min=1, help="Images per extractor call.")] = 32,
) -> None:
    """Embed a dataset's images with a frozen extractor into the embedding cache (resumable)."""
    from breastcls.embeddings.embed import embed

    summary = embed(
        data,
        backbone,
        backbone_options=parse_options(backbone_option or [], flag="--backbone-option"),
        tta=tta,
        batch_size=batch_size,
    )
    say(summary.describe())
