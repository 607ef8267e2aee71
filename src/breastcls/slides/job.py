"""Predicting a whole slide: tiles streamed through a model, resumable, into a slide folder.

:func:`predict_slide` opens a slide with a registered :class:`~breastcls.slides.SlideReader`
(:mod:`breastcls.slides.reading`), finds the tissue on a thumbnail, lays the model-scale grid
over it (:mod:`breastcls.slides.scale`, :mod:`breastcls.slides.tiling`), and feeds the tissue
tiles to the model in batches through ``tf.data`` while worker threads read the next tiles.
Probabilities are calibrated with the run's calibration and scored on the positive side, as
``breastcls predict`` does.

With ``out``, the tile rows are committed chunk by chunk (:mod:`breastcls.slides.tilewriter`):
a job that is killed continues from its last committed chunk and writes the same ``tiles.csv``
as one that was never stopped. Many slides: :mod:`breastcls.slides.collection`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError, DataError, OutputError
from breastcls.inference.calibration import Calibration
from breastcls.inference.domain import DomainScores
from breastcls.inference.model import InferenceModel, Scores
from breastcls.io import atomic_write_json
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.progress import active_reporter
from breastcls.records import SlideJobRecord, SlideSummaryRecord
from breastcls.runs.folder import SlideFolder
from breastcls.runs.lock import LOCK_NAME, lock_folder
from breastcls.slides.embeddings import TileEmbeddings
from breastcls.slides.options import SlideJob, SlideJobOptions
from breastcls.slides.outputs import (
    TileTable,
    decision_figures,
    flagged_map,
    heat_map,
    read_tiles_csv,
    summary_figures,
    tiles_header,
    write_geojson,
    write_mask_png,
    write_rgb_png,
    write_slide_report,
)
from breastcls.slides.overlay import overlay_grid, write_heatmap_png, write_overlay_tiff
from breastcls.slides.readers import Slide
from breastcls.slides.reading import open_slide, raise_read_failure, tile_batches
from breastcls.slides.regions import RegionOptions, region_mask, regions_record
from breastcls.slides.scale import SlideResolution, model_scale, slide_resolution
from breastcls.slides.tilewriter import TileWriter, plan_tile_rows
from breastcls.slides.tiling import TilePlan, plan_tiles
from breastcls.slides.tissue import Thumbnail, read_thumbnail, tissue_covered

__all__ = ["SlideResult", "model_scale", "open_slide", "predict_slide"]

FloatArray = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]

#: The version of the slide folder's records; a folder of another version is not resumed.
FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideResult:
    """What :func:`predict_slide` returns.

    Attributes:
        slide: The slide file.
        folder: The slide folder written, or ``None``.
        tiles: The tile table.
        heatmap: The positive score at the thumbnail's scale, ``NaN`` where no tile lies.
        thumbnail: The slide, ``(h, w, 3)`` RGB, at the tissue mask's scale.
        tissue_mask: Where tissue was found, at the thumbnail's scale.
        summary: The slide-level figures (the content of ``summary.json``).
    """

    slide: Path
    folder: Path | None
    tiles: TileTable
    heatmap: FloatArray
    thumbnail: UInt8Array
    tissue_mask: npt.NDArray[np.bool_]
    summary: dict[str, Any]


def _job_record(
    *,
    slide: Slide,
    model: InferenceModel,
    plan: TilePlan,
    mpp_source: str,
    model_mpp_source: str,
    options: SlideJobOptions,
    regions: RegionOptions,
    calibration: dict[str, Any],
) -> dict[str, Any]:
    digest = hashlib.sha1(np.stack([plan.x, plan.y]).tobytes()).hexdigest()
    return {
        "format": FORMAT,
        "slide": str(slide.path),
        "slide_size": [slide.levels[0].width, slide.levels[0].height],
        "slide_bytes": slide.path.stat().st_size,
        "levels": [[lv.width, lv.height] for lv in slide.levels],
        "objective_power": slide.objective_power,
        "slide_mpp": plan.slide_mpp,
        "mpp_source": mpp_source,
        "model": str(model.source),
        "class_names": list(model.class_names),
        "positive": model.positive.name,
        "negative": model.positive.negative,
        "image_size": plan.image_size,
        "model_mpp": plan.model_mpp,
        "model_mpp_source": model_mpp_source,
        **options.record(),
        **regions_record(regions),
        "calibration": calibration,
        "grid": {
            "level": plan.level,
            "read_size": plan.read_size,
            "tile_size": plan.tile_size,
            "stride": plan.stride,
            "columns": plan.columns,
            "rows": plan.rows,
            "tissue_tiles": len(plan),
            "positions_sha1": digest,
        },
    }


def _take_folder(folder: SlideFolder, job: dict[str, Any]) -> Any:
    """Create or reopen a slide folder for ``job`` and hold it; return the lock."""
    try:
        folder.path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(
            f"Cannot create the slide folder {str(folder.path)!r}: {error.strerror or error}. "
            "Choose another --out."
        ) from error
    lock = lock_folder(
        folder.path,
        purpose="slide",
        hint="wait for that process to finish, or choose another --out.",
    )
    try:
        if folder.job.is_file():
            try:
                recorded = folder.read_job().to_json()
            except ConfigError:
                recorded = {}  # damaged: it records no job, so it cannot be this one
            if recorded != job:
                changed = sorted(k for k in {*recorded, *job} if recorded.get(k) != job.get(k))
                raise OutputError(
                    f"{folder.path} holds the job of another slide, model or options (differing: "
                    f"{', '.join(changed) or 'all'}): choose another --out, or remove the folder."
                )
        elif any(p.name != LOCK_NAME for p in folder.path.iterdir()):
            raise OutputError(
                f"{folder.path} exists and is not a slide folder: choose another --out."
            )
        else:
            record = SlideJobRecord.from_json(job, source=folder.job)
            atomic_write_json(folder.job, record.to_json())
    except BaseException:
        lock.release()
        raise
    return lock


def predict_slide(
    model: InferenceModel | Path,
    path: Path | SlideJob,
    *,
    out: Path | None = None,
    options: SlideJobOptions | None = None,
    host: PluginHost | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    **settings: Any,
) -> SlideResult:
    """Classify the tissue tiles of a whole-slide image and map the scores over the slide.

    Args:
        model: An :class:`~breastcls.InferenceModel`, a run folder or a ``.keras`` file.
        path: The slide, or a :class:`~breastcls.slides.options.SlideJob` (a manifest row: the
            slide with its own resolution, regions or case id).
        out: The slide folder to write (created, or resumed when it holds this job); ``None``
            writes nothing.
        options: The job's options (:class:`~breastcls.slides.options.SlideJobOptions`);
            ``None``: the defaults.
        host: The plugin host (default: every installed plugin).
        on_chunk: Called after each committed chunk with ``(tiles done, tissue tiles)``.
        **settings: Options to change, by the names of
            :class:`~breastcls.slides.options.SlideJobOptions` (``model_mpp``, ``mpp``,
            ``batch_size``, ``runtime``...).

    Returns:
        The tile table, the heat map and the summary (also written to ``out``).

    Raises:
        DataError: The slide cannot be read, has no resolution and no ``mpp`` is given, or
            has no tissue.
        ConfigError: An option is unknown or out of range, ``model_mpp`` is ``None`` and the
            run records no training scale, or ``runtime`` is unknown or ``onnx`` without ONNX
            Runtime installed.
        OutputError: ``out`` holds another job, another process holds it, or it cannot be
            written; or ``runtime="onnx"`` cannot convert the model or write its cache.
    """
    options = (options or SlideJobOptions()).replace(**settings)
    item = path if isinstance(path, SlideJob) else SlideJob(path=path)
    host = ensure_host(host)
    host.tta.info(options.tta)
    inference = model if isinstance(model, InferenceModel) else InferenceModel.load(Path(model))
    scale = model_scale(inference, options.model_mpp)
    inference.calibration(options.tta)  # a TTA without calibration stops before the slide is read
    inference = inference.without_embedding_cache()  # tiles are seen once: not worth storing
    if options.runtime is not None:
        inference = inference.with_runtime(
            options.runtime, batch_size=options.batch_size, verbose=options.verbose
        )
    slide = open_slide(item.path, reader=options.reader, host=host)
    try:
        return _predict_open_slide(
            inference, slide, item, options, scale=scale, out=out, host=host, on_chunk=on_chunk
        )
    finally:
        slide.close()


def slide_regions(item: SlideJob, options: SlideJobOptions) -> RegionOptions:
    """A slide's tissue detector and regions: its manifest row's ROI and tissue mask, else the
    job's."""
    return RegionOptions(
        tissue_detector=options.tissue_detector,
        roi=item.roi if item.roi is not None else options.roi,
        tissue_mask=item.tissue_mask if item.tissue_mask is not None else options.tissue_mask,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _TissueTiles:
    """Where a slide's tissue is, and the tiles of it that are classified."""

    thumbnail: Thumbnail
    mask: npt.NDArray[np.bool_]
    plan: TilePlan
    resolution: SlideResolution


def _tissue_tiles(
    slide: Slide,
    item: SlideJob,
    options: SlideJobOptions,
    *,
    image_size: int,
    model_mpp: float,
    host: PluginHost,
) -> _TissueTiles:
    """The slide's thumbnail, its tissue mask and the tissue tiles at the model's scale.

    Raises:
        DataError: The slide has no resolution, no tissue, or no tile with enough tissue.
    """
    given_by = "manifest" if item.mpp is not None else "--mpp"
    mpp = item.mpp if item.mpp is not None else options.mpp
    resolution = slide_resolution(slide, mpp, force=options.force_mpp, given_by=given_by)
    thumbnail = read_thumbnail(slide, max_side=options.thumbnail_side)
    regions = slide_regions(item, options)
    mask = region_mask(
        thumbnail, microns_per_pixel=resolution.mpp * thumbnail.downsample, options=regions,
        host=host,
    )  # fmt: skip
    if not mask.any():
        within = f" within --roi {regions.roi}" if regions.roi is not None else ""
        raise DataError(
            f"{slide.path}: no tissue found{within} (the slide looks like empty glass): check "
            "the file, its staining, or --tissue-detector."
        )
    plan = plan_tiles(
        slide, slide_mpp=resolution.mpp, model_mpp=model_mpp, image_size=image_size,
        mask=mask, mask_downsample=thumbnail.downsample, overlap=options.overlap,
        min_tissue=options.min_tissue,
    )  # fmt: skip
    if len(plan) == 0:
        raise DataError(
            f"{slide.path}: no tile is at least {options.min_tissue:.0%} tissue "
            f"({plan.grid_tiles} tiles on the grid): lower --min-tissue, or check --model-mpp."
        )
    return _TissueTiles(thumbnail=thumbnail, mask=mask, plan=plan, resolution=resolution)


def _predict_open_slide(
    model: InferenceModel,
    slide: Slide,
    item: SlideJob,
    options: SlideJobOptions,
    *,
    scale: tuple[float, str],
    out: Path | None,
    host: PluginHost,
    on_chunk: Callable[[int, int], None] | None,
) -> SlideResult:
    tissue = _tissue_tiles(
        slide, item, options, image_size=model.image_size, model_mpp=scale[0], host=host
    )
    thumbnail, mask, plan = tissue.thumbnail, tissue.mask, tissue.plan
    calibration = model.calibration(options.tta)
    thresholds = calibration.operating_thresholds
    job = _job_record(
        slide=slide, model=model, plan=plan, mpp_source=tissue.resolution.source,
        model_mpp_source=scale[1], options=options, regions=slide_regions(item, options),
        calibration={"temperature": calibration.temperature, "thresholds": thresholds},
    )  # fmt: skip
    folder = SlideFolder(out) if out is not None else None
    lock = _take_folder(folder, job) if folder is not None else None
    try:
        if folder is not None:
            write_rgb_png(folder.thumbnail, thumbnail.pixels)
            write_mask_png(folder.tissue_mask, mask)
        embeddings = TileEmbeddings.of(model, folder)
        table = _classify(
            model, slide, plan, options, folder=folder, host=host, on_chunk=on_chunk,
            embeddings=embeddings,
        )  # fmt: skip
        heat = heat_map(table, mask.shape, thumbnail.downsample)
        flagged = flagged_map(table, mask.shape, thumbnail.downsample)
        summary = {
            **_summary(job, table, calibration, tissue, top_k=options.top_k,
                       runtime=model.runtime.name),
            "slide_metadata_mpp": tissue.resolution.own,
            **({"embeddings": embeddings.record(len(table))} if embeddings is not None else {}),
            **({"case_id": item.case_id} if item.case_id else {}),
        }  # fmt: skip
        if folder is not None:
            _write_outputs(folder, table, tissue, (heat, flagged), summary)
    finally:
        if lock is not None:
            lock.release()
    return SlideResult(
        slide=slide.path, folder=folder.path if folder is not None else None, tiles=table,
        heatmap=heat, thumbnail=thumbnail.pixels, tissue_mask=mask, summary=summary,
    )  # fmt: skip


def _classify(
    model: InferenceModel,
    slide: Slide,
    plan: TilePlan,
    options: SlideJobOptions,
    *,
    folder: SlideFolder | None,
    host: PluginHost,
    on_chunk: Callable[[int, int], None] | None,
    embeddings: TileEmbeddings | None = None,
) -> TileTable:
    positive = model.positive
    if folder is not None and folder.tiles.is_file():
        if embeddings is not None:
            embeddings.clean()
        return read_tiles_csv(folder.tiles, model.class_names, positive.name)
    writer, start = _resumed_writer(folder, tiles_header(model.class_names), embeddings)
    total = len(plan)
    reporter = active_reporter() if options.verbose else None
    if reporter is not None:
        reporter.task_started(f"tiles of {slide.path.name}", total=total, unit="tiles")
        reporter.task_advanced(start)

    def commit(chunk: list[Scores]) -> None:
        probabilities = np.concatenate([scores.calibrated for scores in chunk], axis=0)
        domains = [scores.domain for scores in chunk]
        domain = (
            DomainScores.join([d for d in domains if d is not None])
            if all(d is not None for d in domains)
            else None
        )
        rows = plan_tile_rows(plan, writer.committed, probabilities, positive, domain)
        if embeddings is not None:  # kept before the rows are committed: never behind them
            embeddings.keep(writer.committed, [scores.features for scores in chunk])
        writer.append(rows, len(probabilities))
        if reporter is not None:
            reporter.task_advanced(writer.committed)
        if on_chunk is not None:
            on_chunk(writer.committed, total)

    if start < total:
        _stream_chunks(
            model, slide, plan, start, commit, options, host=host,
            features=embeddings is not None,
        )  # fmt: skip
    if reporter is not None:
        reporter.task_finished(f"{slide.path.name}: {total} tissue tiles classified")
    if writer.committed != total:
        raise DataError(f"{slide.path}: {writer.committed} of {total} tiles were classified.")
    if embeddings is not None:
        embeddings.finish(plan, total)
    table = writer.finish(model.class_names, positive.name)
    if embeddings is not None:
        embeddings.clean()
    return table


def _resumed_writer(
    folder: SlideFolder | None, header: str, embeddings: TileEmbeddings | None
) -> tuple[TileWriter, int]:
    """The tile writer, resumed, and the tiles it has committed; a folder whose committed tiles
    have no embeddings kept (begun by a breastcls that kept none) starts again from its first
    tile."""
    writer = TileWriter(folder, header)
    start = writer.resume()
    if folder is not None and embeddings is not None and not embeddings.covered(start):
        folder.progress.unlink()
        writer = TileWriter(folder, header)
        start = writer.resume()
    return writer, start


def _stream_chunks(
    model: InferenceModel,
    slide: Slide,
    plan: TilePlan,
    start: int,
    commit: Callable[[list[Scores]], None],
    options: SlideJobOptions,
    *,
    host: PluginHost,
    features: bool = False,
) -> None:
    """Classify the plan's tiles from ``start`` on, read ahead by the options' worker threads,
    and hand their scores to ``commit`` a chunk (``chunk_batches`` batches) at a time.

    Raises:
        DataError: A tile could not be read (nothing after the last whole chunk is committed).
    """
    failures: list[BaseException] = []
    workers, batch_size = options.workers, options.batch_size
    chunk = batch_size * options.chunk_batches
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="breastcls-tiles")
    try:
        batches = tile_batches(
            slide, plan, start, batch_size, pool, workers, failures,
            dataset=model.runtime.name == "tensorflow",
        )  # fmt: skip
        pending: list[Scores] = []
        pending_count = 0
        for scores in model.iter_scores(batches, tta=options.tta, host=host, features=features):
            pending.append(scores)
            pending_count += len(scores.calibrated)
            if pending_count >= chunk and not failures:
                commit(pending)
                pending, pending_count = [], 0
        if failures:
            raise_read_failure(slide, failures[0])
        if pending:
            commit(pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _summary(
    job: dict[str, Any],
    table: TileTable,
    calibration: Calibration,
    tissue: _TissueTiles,
    *,
    top_k: int,
    runtime: str,
) -> dict[str, Any]:
    thresholds, mask, plan = calibration.operating_thresholds, tissue.mask, tissue.plan
    side = np.full_like(table.x, table.size)
    boxes = np.stack([table.x, table.y, side, side], axis=1).astype(np.float64)
    return {
        "slide": job["slide"],
        "model": job["model"],
        "positive": job["positive"],
        "negative": job["negative"],
        "class_names": job["class_names"],
        "slide_size": job["slide_size"],
        "slide_mpp": job["slide_mpp"],
        "mpp_source": job["mpp_source"],
        "model_mpp": job["model_mpp"],
        "model_mpp_source": job["model_mpp_source"],
        "image_size": job["image_size"],
        "level": plan.level,
        "tile_size": plan.tile_size,
        "overlap": job["overlap"],
        "min_tissue": job["min_tissue"],
        "tta": job["tta"],
        "temperature": job["calibration"]["temperature"],
        "thresholds": thresholds,
        "runtime": runtime,
        "tiles": {"grid": plan.grid_tiles, "tissue": len(plan), "classified": len(table)},
        "tissue_area_fraction": float(mask.mean()),
        "tissue_detector": job["tissue_detector"],
        "roi": job["roi"],
        "tissue_mask": job["tissue_mask"],
        "tissue_classified_fraction": tissue_covered(mask, tissue.thumbnail.downsample, boxes),
        "threshold": decision_figures(table, *calibration.decision_threshold),
        **summary_figures(table, thresholds, top_k=top_k),
    }


def _write_outputs(
    folder: SlideFolder,
    table: TileTable,
    tissue: _TissueTiles,
    maps: tuple[FloatArray, npt.NDArray[np.bool_]],
    summary: dict[str, Any],
) -> None:
    heat, flagged = maps
    slide_size = (int(summary["slide_size"][0]), int(summary["slide_size"][1]))
    decision, mpp = summary["threshold"], float(summary["slide_mpp"])
    write_heatmap_png(
        folder.heatmap, tissue.thumbnail.pixels, heat, tissue=tissue.mask, flagged=flagged,
        title=f"{Path(str(summary['slide'])).name} · model {Path(str(summary['model'])).name} · "
        f"{table.positive} at the {decision['name']} threshold {decision['value']:.3f} "
        "(chosen on images, not slides)",
        label=f"P({table.positive})", microns_per_pixel=mpp * tissue.thumbnail.downsample,
    )  # fmt: skip
    grid = overlay_grid(
        table, tissue.mask, tissue.thumbnail.downsample, slide_size=slide_size,
        step=tissue.plan.stride,
    )  # fmt: skip
    write_overlay_tiff(
        folder.overlay, grid, slide_size=slide_size, grid_step=tissue.plan.stride, mpp=mpp
    )
    write_geojson(
        folder.geojson, table, threshold=decision["value"], negative=str(summary["negative"]),
        threshold_name=decision["name"],
    )  # fmt: skip
    write_slide_report(folder.report, summary, figures=(folder.heatmap, folder.tissue_mask))
    record = SlideSummaryRecord.from_json(summary, source=folder.summary)
    atomic_write_json(folder.summary, record.to_json())
