"""``breastcls slide``: whole-slide heat maps from a trained patch classifier."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from breastcls.cli.common import EXIT_BAD_INPUT, reports_errors, say
from breastcls.cli.helptext import FittedHelpCommand, FittedHelpGroup
from breastcls.errors import ConfigError
from breastcls.runs.folder import SlideFolder

slide_app = typer.Typer(
    help="Whole-slide images: tile, classify and map a slide's tissue.",
    cls=FittedHelpGroup,
    no_args_is_help=True,
)


@slide_app.command("predict", cls=FittedHelpCommand)
@reports_errors
def slide_predict_command(
    model: Annotated[
        Path, typer.Argument(metavar="RUN", help="Run folder (its best.keras) or a .keras file.")
    ],
    slides: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="[SLIDES]",
            help="Slide files and/or folders of slides (in folders, scanners' label and macro "
            "images are skipped).",
        ),
    ] = None,
    *,
    out: Annotated[Path, typer.Option(help="Folder of slide folders (one per slide).")],
    manifest: Annotated[
        Path | None,
        typer.Option(
            help="CSV of slides: path (relative to the CSV's folder, or absolute), and "
            "optionally mpp, roi, tissue_mask, case_id.",
        ),
    ] = None,
    model_mpp: Annotated[
        float | None,
        typer.Option(
            help="Microns per pixel of the model's input: the width in microns of a training "
            "image's field divided by the model's input size (default: the run's, recorded at "
            "training).",
        ),
    ] = None,
    mpp: Annotated[
        float | None,
        typer.Option(
            help="Microns per pixel of the slides, for slides whose files lack it (a slide's "
            "own resolution is kept; see --force-mpp).",
        ),
    ] = None,
    force_mpp: Annotated[
        bool,
        typer.Option(
            "--force-mpp",
            help="Use --mpp even for slides that record their own resolution (said for each).",
        ),
    ] = False,
    overlap: Annotated[
        float,
        typer.Option(help="Fraction of a tile's side shared with its neighbour (0 to below 1)."),
    ] = 0.0,
    min_tissue: Annotated[
        float, typer.Option(help="Least tissue fraction of a tile that is classified.")
    ] = 0.5,
    tta: Annotated[
        str,
        typer.Option(
            metavar="<id>", help="Test-time augmentation: none, flips (4 copies) or d8 (8)."
        ),
    ] = "none",
    batch_size: Annotated[int, typer.Option(min=1, help="Tiles per model call.")] = 32,
    workers: Annotated[int, typer.Option(min=1, help="Threads reading tiles ahead.")] = 2,
    top_k: Annotated[
        int, typer.Option(min=1, help="Highest tile scores averaged in the summary.")
    ] = 10,
    reader: Annotated[
        str | None,
        typer.Option(
            metavar="<id>",
            help="Slide reader id (see `breastcls plugins`); default: by file content.",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            metavar="<k/n>",
            help="Predict only shard K (from 1) of N of the sorted slide list, for one job of an "
            "array job; `breastcls slide summary OUT` merges the shards.",
        ),
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(
            help="Where the model runs: tensorflow, onnx (ONNX Runtime; the onnx extra), "
            "onnx-int8 (an int8 copy, calibrated once on the run's selection images; its "
            "agreement with float32 is in the cache record) or auto (the faster of tensorflow "
            "and onnx for this model on this machine, measured once).",
        ),
    ] = "tensorflow",
    tissue_detector: Annotated[
        str,
        typer.Option(
            metavar="<id>",
            help="Tissue detector id (see `breastcls plugins`): optical-density (pale tissue "
            "kept, pen ink and dust left out) or saturation (breastcls 0.2's).",
        ),
    ] = "optical-density",
    roi: Annotated[
        Path | None,
        typer.Option(
            help="QuPath annotations (GeoJSON) to classify within: Polygons and MultiPolygons, "
            "holes included; classes Exclude and Ignore* are left out (a manifest's roi wins).",
        ),
    ] = None,
    tissue_mask: Annotated[
        Path | None,
        typer.Option(
            help="A mask image of the slide (white: tissue; any size, the slide's proportions) "
            "used instead of the tissue detector (a manifest's tissue_mask wins).",
        ),
    ] = None,
    tile_embeddings: Annotated[
        bool,
        typer.Option(
            "--tile-embeddings",
            help="Also write each slide's tile embeddings (embeddings.npz, float16, one row per "
            "tiles.csv row) for slide-level models; a probe run on a frozen extractor only.",
        ),
    ] = False,
    progress_every: Annotated[
        int,
        typer.Option(
            min=1,
            help="When stderr is not a terminal (Slurm, Kubernetes logs), a progress line "
            "every this many tiles: rate, ETA, slide i of N.",
        ),
    ] = 1000,
) -> None:
    """Classify the tissue tiles of slides: a folder per slide and OUT/summary.csv."""
    from breastcls.cli.progress import TerminalProgress
    from breastcls.progress import active_reporter
    from breastcls.slides.collection import parse_shard, predict_slides, read_slide_manifest
    from breastcls.slides.options import SlideJob, SlideJobOptions

    options = SlideJobOptions(
        model_mpp=model_mpp, mpp=mpp, force_mpp=force_mpp, overlap=overlap,
        min_tissue=min_tissue, tta=tta, batch_size=batch_size, workers=workers, top_k=top_k,
        reader=reader, runtime=runtime, verbose=1, tissue_detector=tissue_detector, roi=roi,
        tissue_mask=tissue_mask, tile_embeddings=tile_embeddings,
    )  # fmt: skip
    shard_k_n = parse_shard(shard) if shard is not None else None
    inputs: list[Path | SlideJob] = list(slides or [])
    if manifest is not None:
        inputs.extend(read_slide_manifest(manifest))
    if not inputs:
        raise ConfigError("No slides: pass slide files or folders, or --manifest slides.csv.")
    reporter = active_reporter()
    if isinstance(reporter, TerminalProgress):
        reporter.every = progress_every
    outcomes = predict_slides(model, inputs, out_dir=out, options=options, shard=shard_k_n)
    failed = [o for o in outcomes if o.status == "error"]
    for outcome in outcomes:
        if outcome.status == "skipped":
            say(f"{outcome.slide}: {outcome.error}", err=True)
        elif outcome.summary is not None:
            _warn_forced_mpp(outcome.slide, outcome.summary)
            say(f"{outcome.slide} -> {outcome.folder}: {_headline(outcome.summary)}")
    for outcome in failed:
        say(f"error: {outcome.slide}: {outcome.error}", err=True)
    outcomes = [o for o in outcomes if o.status != "skipped"]
    table = (
        SlideFolder.collection_summary(out)
        if shard_k_n is None
        else SlideFolder.shard_summary(out, *shard_k_n)
    )
    say(f"{len(outcomes) - len(failed)} of {len(outcomes)} slides -> {table}")
    if failed:
        raise typer.Exit(EXIT_BAD_INPUT)


@slide_app.command("summary", cls=FittedHelpCommand)
@reports_errors
def slide_summary_command(
    out: Annotated[
        Path, typer.Argument(metavar="DIR", help="A folder of slide folders (--out of predict).")
    ],
) -> None:
    """Gather the slide folders of DIR (from one job or many) into DIR/summary.csv; exit 2 when
    a slide failed or is incomplete."""
    from breastcls.slides.collection import summarize_slide_folders

    outcomes = [o for o in summarize_slide_folders(out) if o.status != "skipped"]
    for outcome in outcomes:
        name = outcome.folder.name if outcome.folder is not None else str(outcome.slide)
        if outcome.summary is not None:
            say(f"{name}: {_headline(outcome.summary)}")
        else:
            say(f"error: {name}: {outcome.error}", err=True)
    complete = sum(o.summary is not None for o in outcomes)
    say(f"{complete} of {len(outcomes)} slide folders complete -> {out / 'summary.csv'}")
    if complete < len(outcomes):
        raise typer.Exit(EXIT_BAD_INPUT)


def _warn_forced_mpp(slide: Path, summary: Mapping[str, Any]) -> None:
    own = summary.get("slide_metadata_mpp")
    used = summary.get("slide_mpp")
    if summary.get("mpp_source") == "--force-mpp" and own is not None and own != used:
        say(
            f"WARNING: {slide}: --force-mpp {used:g} replaces the slide's own resolution, "
            f"{own:g} µm/px.",
            err=True,
        )


def _headline(summary: Mapping[str, Any]) -> str:
    tiles = summary.get("tiles")
    count = tiles.get("classified") if isinstance(tiles, dict) else "?"
    decision = summary.get("threshold")
    called = ""
    if isinstance(decision, dict):
        called = (
            f", {float(decision['fraction_positive']):.1%} of tiles called "
            f"{summary.get('positive')} at the {decision['name']} threshold "
            f"{float(decision['value']):.3f} (chosen on images, not slides)"
        )
    top = summary.get("top_k_mean_score")
    top_text = f", top-{summary.get('top_k')} mean {float(top):.3f}" if top is not None else ""
    domain = summary.get("domain")
    if not isinstance(domain, dict):
        return f"{count} tissue tiles{called}{top_text}"
    from breastcls.inference.domain import flagged_line

    line, applies = flagged_line(domain["n_flagged"], domain["n_tiles"], unit="tiles")
    if not applies:
        return f"WARNING: these figures do not apply to this slide: {line}; {count} tissue tiles"
    return f"{count} tissue tiles{called}{top_text}; {line}"
