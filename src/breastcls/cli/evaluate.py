"""``breastcls evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors, say, say_domain


@reports_errors
def evaluate_command(
    model: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run folder (its best.keras) or a .keras file.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Labelled images (folder or manifest); default: the run's test set. Images "
            "(identical, or near copies: re-saved, resized, slightly cropped) or patients that "
            "trained or selected the model are refused (see --allow-overlap). Each look at a "
            "test set is counted in the run's test_looks.jsonl."
        ),
    ] = None,
    tta: Annotated[
        str,
        typer.Option(
            metavar="<id>", help="Test-time augmentation: none, flips (4 copies) or d8 (8)."
        ),
    ] = "none",
    out: Annotated[
        Path | None,
        typer.Option(help="Evaluation folder (default: <run>/evaluations/<data>-<tta>)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per model call.")] = 32,
    gradcam: Annotated[bool, typer.Option(help="Write Grad-CAM overlays.")] = True,
    allow_overlap: Annotated[
        bool,
        typer.Option(
            help="Score --data even where its images (by content) or patients trained or "
            "selected the model; the report is labelled overlapping (optimistic)."
        ),
    ] = False,
    skip_bad_images: Annotated[
        bool,
        typer.Option(
            help="Evaluate without unreadable images (listed in skipped.csv) instead of stopping."
        ),
    ] = False,
    stain_shift: Annotated[
        str,
        typer.Option(
            metavar="<none|hed>",
            help="Robustness section: hed re-scores the set under HED stain shifts of strength "
            "0.05, 0.1 and 0.2 (3 more passes over the set); none leaves it out.",
        ),
    ] = "hed",
    stain_reference: Annotated[
        Path | None,
        typer.Option(
            metavar="<path>",
            help="An image or folder in a second stain: the report adds a curve of the set "
            "moved 25, 50, 75 and 100% of the way to it (4 more passes over the set).",
        ),
    ] = None,
    stain_transfer: Annotated[
        str,
        typer.Option(
            metavar="<macenko|reinhard>",
            help="The stain normaliser that moves images to --stain-reference.",
        ),
    ] = "macenko",
) -> None:
    """Evaluate a model: metrics.json, predictions.csv, plots and a self-contained report.html."""
    import breastcls
    from breastcls.evaluation.robustness import check_stain_shift
    from breastcls.training.train import summarise

    result = breastcls.evaluate(
        model,
        data=data,
        tta=tta,
        out_dir=out,
        batch_size=batch_size,
        gradcam=gradcam,
        allow_overlap=allow_overlap,
        skip_bad_images=skip_bad_images,
        stain_shift=check_stain_shift(stain_shift),
        stain_reference=stain_reference,
        stain_transfer=stain_transfer,
    )
    say(f"evaluation folder: {result.out_dir}")
    if result.skipped:
        say(f"{len(result.skipped)} unreadable image(s) skipped, listed in skipped.csv")
    evaluated_on = result.metrics["evaluated_on"]["set"]
    say_domain(result.metrics, first=True)
    say(f"{result.n_images} images, {evaluated_on}: {summarise(result.metrics)}")
    say_domain(result.metrics, first=False)
    curve = result.metrics.get("robustness", {}).get("curve", [])
    if len(curve) > 1:
        strongest = curve[-1]
        figures = ", ".join(
            f"{name} {strongest[name]['estimate']:.3f} "
            f"({strongest[f'{name}_change']['estimate']:+.3f})"
            for name in ("accuracy", "auc")
            if strongest[name]["estimate"] is not None
        )
        say(f"under HED stain shift {strongest['strength']:g}: {figures}")
    reference = result.metrics.get("stain_reference", {}).get("curve", [])
    if reference:
        moved = reference[-1]
        figures = ", ".join(
            f"{name} {moved[name]['estimate']:.3f} ({moved[f'{name}_change']['estimate']:+.3f})"
            for name in ("accuracy", "auc")
            if moved[name]["estimate"] is not None
        )
        say(f"moved {moved['strength']:.0%} of the way to {stain_reference}'s stain: {figures}")
    say(f"report: {result.report}")
