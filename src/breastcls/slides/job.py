"""Predicting whole slides: tiles streamed through a model, resumable, into a slide folder.

:func:`predict_slide` opens a slide with a registered :class:`~breastcls.slides.SlideReader`,
finds the tissue on a thumbnail, lays the model-scale grid over it, and feeds the tissue tiles
to the model in batches through ``tf.data`` while worker threads read the next tiles: only a
few batches of tiles are in memory at any time, never the slide. Probabilities are calibrated
with the run's calibration and scored on the positive side, as ``breastcls predict`` does.

With ``out``, the tile rows are appended to ``tiles.partial.csv`` in chunks of whole batches,
each one committed in ``progress.json``; a job that is killed continues from its last committed
chunk, with the same batches, and writes the same ``tiles.csv`` as one that was never stopped.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import io
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from breastcls.data.pipeline import without_autotuning
from breastcls.errors import BreastclsError, ConfigError, DataError, OutputError
from breastcls.inference.calibration import Calibration
from breastcls.inference.decision import PositiveGroup
from breastcls.inference.domain import DomainScores
from breastcls.inference.model import InferenceModel, Scores
from breastcls.inference.runtime import check_runtime
from breastcls.io import (
    SafeCsvWriter,
    atomic_write_json,
    atomic_write_text,
    csv_records,
    read_regular_text,
)
from breastcls.limits import check_inference_batch
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.progress import active_reporter
from breastcls.runs.folder import SlideFolder
from breastcls.runs.lock import LOCK_NAME, lock_folder
from breastcls.slides.outputs import (
    TileTable,
    decision_figures,
    flagged_map,
    heat_map,
    parse_tiles_csv,
    read_tiles_csv,
    summary_figures,
    tile_rows,
    tiles_header,
    write_geojson,
    write_mask_png,
    write_rgb_png,
    write_slide_report,
)
from breastcls.slides.overlay import overlay_grid, write_heatmap_png, write_overlay_tiff
from breastcls.slides.readers import Slide
from breastcls.slides.regions import RegionOptions, region_mask, regions_record
from breastcls.slides.tiling import TilePlan, plan_tiles
from breastcls.slides.tissue import Thumbnail, read_thumbnail, tissue_covered

__all__ = [
    "SlideOutcome",
    "SlideResult",
    "model_scale",
    "open_slide",
    "parse_shard",
    "predict_slide",
    "predict_slides",
    "shard_of",
    "slide_files",
    "summarize_slide_folders",
]

FloatArray = npt.NDArray[np.float64]
UInt8Array = npt.NDArray[np.uint8]
T = TypeVar("T")

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


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideOutcome:
    """One slide of :func:`predict_slides`: its folder, and its result or its error.

    Attributes:
        slide: The slide file.
        folder: Its slide folder.
        summary: The slide's ``summary.json`` content, or ``None`` when it failed.
        error: Why it failed, in one line, or ``None``.
    """

    slide: Path
    folder: Path
    summary: dict[str, Any] | None
    error: str | None


def open_slide(path: Path, *, reader: str | None = None, host: PluginHost | None = None) -> Slide:
    """Open a slide with the reader named ``reader``, or the first registered reader (by id)
    that accepts the file.

    Raises:
        DataError: The file is missing, no reader accepts it, or it is damaged.
        UnknownComponentError: ``reader`` is not a registered slide reader.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Slide {path} does not exist or is not a file.")
    readers = ensure_host(host).slide_readers
    if reader is not None:
        return readers.get(reader).open(path)
    for info in readers:
        if info.component.accepts(path):
            return info.component.open(path)
    raise DataError(
        f"{path}: no slide reader accepts this format (readers: {', '.join(readers.names())}). "
        "Convert it to a tiled TIFF, or install a slide-reader plugin (e.g. one using OpenSlide)."
    )


def _resolution(slide: Slide, mpp: float | None) -> tuple[float, str]:
    if mpp is not None:
        return float(mpp), "--mpp"
    if slide.mpp is None:
        power = slide.objective_power
        stated = f" (only its objective power, {power:g}x)" if power else ""
        raise DataError(
            f"{slide.path} records no resolution (microns per pixel){stated}: pass --mpp with "
            "the scanner's value (e.g. 0.25 for a 40x scan, 0.5 for 20x)."
        )
    return float(slide.mpp), "metadata"


def model_scale(model: InferenceModel, model_mpp: float | None) -> tuple[float, str]:
    """The microns per pixel of the model's input, and where they come from: ``model_mpp``
    when given, else the training scale its record holds (:mod:`breastcls.data.scale`).

    Raises:
        ConfigError: ``model_mpp`` is not positive, or is ``None`` and the model's folder
            records no training scale.
    """
    if model_mpp is not None:
        if not 0.0 < model_mpp < 1_000.0:
            raise ConfigError(
                f"--model-mpp {model_mpp} is not a resolution: pass the microns per pixel of the "
                "model's input (e.g. 1.6)."
            )
        return float(model_mpp), "--model-mpp"
    scale = model.record.scale
    if scale is not None and scale.model_mpp is not None:
        return scale.model_mpp, f"run ({scale.source})"
    if scale is not None and scale.note:
        why = scale.note
    elif model.record.origin == "model file" or not model.folder.config.is_file():
        why = "its record holds no training scale (a bare model file, or an export of one)"
    else:
        why = "the run was trained before breastcls recorded the training scale"
    raise ConfigError(
        f"{model.source}: the model's scale is unknown ({why}). Pass --model-mpp: the width in "
        f"microns of a training image's field divided by the input size ({model.image_size})."
    )


def _tile_pixels(slide: Slide, plan: TilePlan, index: int) -> UInt8Array:
    """Read tile ``index`` of ``plan`` and resample it to the model's input size."""
    downsample = slide.levels[plan.level].downsample
    x = round(int(plan.x[index]) / downsample)
    y = round(int(plan.y[index]) / downsample)
    return _resampled(slide.read_region(plan.level, x, y, plan.read_size, plan.read_size), plan)


def _resampled(region: UInt8Array, plan: TilePlan) -> UInt8Array:
    if plan.read_size == plan.image_size:
        return region
    import cv2

    interpolation = cv2.INTER_AREA if plan.read_size > plan.image_size else cv2.INTER_LINEAR
    resized = cv2.resize(region, (plan.image_size, plan.image_size), interpolation=interpolation)
    return np.asarray(resized, dtype=np.uint8)


# The widest region read at once for neighbouring tiles of a row, in the level's pixels.
_RUN_PIXELS = 4096


def _read_tiles(slide: Slide, plan: TilePlan, first: int, stop: int) -> UInt8Array:
    """Tiles ``first`` to ``stop - 1`` of ``plan``, resampled, as one ``(n, size, size, 3)``
    array, the same pixels as :func:`_tile_pixels` gives one at a time.

    Neighbouring tiles of a grid row are read as one region and cut out of it: one call into
    the reader instead of one per tile, and each of the slide's own tiles (a TIFF's, which a
    model tile rarely matches) decoded once for the run rather than once per model tile that
    touches it. Only where a level's downsample is a whole number: a region read then starts
    on the same level pixels as the tiles' own reads would (a reader may interpolate a
    region placed between a level's pixels, as OpenSlide does).
    """
    downsample = slide.levels[plan.level].downsample
    side = plan.read_size
    size = plan.image_size
    out = np.empty((stop - first, size, size, 3), dtype=np.uint8)
    xs = [round(int(v) / downsample) for v in plan.x[first:stop]]
    ys = [round(int(v) / downsample) for v in plan.y[first:stop]]
    together = float(downsample).is_integer()
    i = 0
    while i < len(xs):
        j = i + 1
        while (
            together
            and j < len(xs)
            and ys[j] == ys[i]
            and 0 < xs[j] - xs[j - 1] <= side
            and xs[j] + side - xs[i] <= max(_RUN_PIXELS, side)
        ):
            j += 1
        region = slide.read_region(plan.level, xs[i], ys[i], xs[j - 1] + side - xs[i], side)
        for k in range(i, j):
            left = xs[k] - xs[i]
            out[k] = _resampled(region[:, left : left + side], plan)
        i = j
    return out


def _read_ahead(
    slide: Slide,
    plan: TilePlan,
    start: int,
    batch_size: int,
    pool: ThreadPoolExecutor,
    depth: int,
    failures: list[BaseException],
) -> Iterator[UInt8Array]:
    """Yield the batches of tiles from ``start`` on, in order, each read by ``pool`` as a whole
    (:func:`_read_tiles`), at most ``depth`` batches ahead.

    A batch that cannot be read ends the stream and is kept in ``failures`` (``tf.data`` would
    turn the error into one of its own and lose its message).
    """
    pending: collections.deque[Future[UInt8Array]] = collections.deque()
    firsts = iter(range(start, len(plan), batch_size))
    try:
        while True:
            while len(pending) < depth:
                first = next(firsts, None)
                if first is None:
                    break
                stop = min(first + batch_size, len(plan))
                pending.append(pool.submit(_read_tiles, slide, plan, first, stop))
            if not pending:
                return
            yield pending.popleft().result()
    except Exception as error:
        failures.append(error)
    finally:
        for future in pending:
            future.cancel()


def _batches(
    slide: Slide,
    plan: TilePlan,
    start: int,
    batch_size: int,
    pool: ThreadPoolExecutor,
    workers: int,
    failures: list[BaseException],
) -> Any:
    """The ``tf.data`` dataset of the tiles from ``start`` on, in batches of ``batch_size``
    (counted from ``start``, as a resumed job's are), as 0-255 float32.

    The worker threads read whole batches: ``tf.data`` then moves one array per batch, not one
    per tile, through its Python generator.
    """
    import tensorflow as tf

    size = plan.image_size
    dataset = tf.data.Dataset.from_generator(
        lambda: _read_ahead(slide, plan, start, batch_size, pool, workers + 1, failures),
        output_signature=tf.TensorSpec((None, size, size, 3), tf.uint8),
    )
    return without_autotuning(dataset.map(lambda images: tf.cast(images, tf.float32)).prefetch(1))


def _job_record(
    *,
    slide: Slide,
    model: InferenceModel,
    plan: TilePlan,
    mpp_source: str,
    model_mpp_source: str,
    options: dict[str, Any],
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
        **options,
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


class _Sink:
    """Where committed tile rows go: a slide folder's ``tiles.partial.csv``, or memory."""

    def __init__(self, folder: SlideFolder | None, header: str) -> None:
        self.folder = folder
        self.header = header
        self.memory: list[str] = []
        self.committed = 0

    def resume(self) -> int:
        """Prepare the partial file; return the tiles committed before."""
        if self.folder is None:
            return 0
        folder = self.folder
        progress: dict[str, Any] = {}
        if folder.progress.is_file() and folder.partial_tiles.is_file():
            with contextlib.suppress(OSError, ValueError):
                progress = json_object(folder.progress)
        tiles, size = progress.get("tiles"), progress.get("bytes")
        if isinstance(tiles, int) and isinstance(size, int) and tiles > 0:
            with open(folder.partial_tiles, "r+b") as handle:
                handle.truncate(size)  # a chunk cut short by a crash is dropped
            self.committed = tiles
            return tiles
        with open(folder.partial_tiles, "wb") as handle:
            handle.write(self.header.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        self._commit(0)
        return 0

    def append(self, rows: str, tiles: int) -> None:
        if self.folder is None:
            self.memory.append(rows)
            self.committed += tiles
            return
        with open(self.folder.partial_tiles, "ab") as handle:
            handle.write(rows.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        self.committed += tiles
        self._commit(self.committed)

    def _commit(self, tiles: int) -> None:
        assert self.folder is not None
        size = self.folder.partial_tiles.stat().st_size
        atomic_write_json(self.folder.progress, {"tiles": tiles, "bytes": size})

    def finish(self, class_names: Sequence[str], positive: str) -> TileTable:
        if self.folder is None:
            text = self.header + "".join(self.memory)
            return parse_tiles_csv(text, class_names, positive, source="tiles")
        folder = self.folder
        if folder.partial_tiles.is_file():
            os.replace(folder.partial_tiles, folder.tiles)
        folder.progress.unlink(missing_ok=True)
        return read_tiles_csv(folder.tiles, class_names, positive)


def json_object(path: Path) -> dict[str, Any]:
    """A small JSON object breastcls wrote in a slide folder (``{}`` when it is not one)."""
    import json

    value = json.loads(read_regular_text(path))
    return value if isinstance(value, dict) else {}


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
                recorded = json_object(folder.job)
            except (OSError, ValueError):
                recorded = {}
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
            atomic_write_json(folder.job, job)
    except BaseException:
        lock.release()
        raise
    return lock


def predict_slide(
    model: InferenceModel | Path,
    path: Path,
    *,
    model_mpp: float | None = None,
    mpp: float | None = None,
    out: Path | None = None,
    overlap: float = 0.0,
    min_tissue: float = 0.5,
    tta: str = "none",
    batch_size: int = 32,
    chunk_batches: int = 8,
    workers: int = 2,
    top_k: int = 10,
    reader: str | None = None,
    thumbnail_side: int = 2048,
    runtime: str | None = None,
    regions: RegionOptions | None = None,
    host: PluginHost | None = None,
    verbose: int = 0,
    on_chunk: Callable[[int, int], None] | None = None,
) -> SlideResult:
    """Classify the tissue tiles of a whole-slide image and map the scores over the slide.

    Args:
        model: An :class:`~breastcls.InferenceModel`, a run folder or a ``.keras`` file.
        path: The slide.
        model_mpp: Microns per pixel of the model's input: the width in microns of the field
            a training image shows, divided by the model's input size; ``None``: the scale the
            run recorded at training (:func:`model_scale`).
        mpp: Microns per level-0 pixel of the slide, when its metadata has none (or is wrong).
        out: The slide folder to write (created, or resumed when it holds this job); ``None``
            writes nothing.
        overlap: Fraction of a tile's side shared with its neighbour (0 to below 1).
        min_tissue: The least tissue fraction of a tile that is classified.
        tta: Test-time augmentation id, with the calibration fitted for it.
        batch_size: Tiles per model call.
        chunk_batches: Batches per committed chunk of ``tiles.csv``.
        workers: Threads reading and resampling tiles ahead of the model.
        top_k: How many of the highest tile scores the summary averages.
        reader: A slide reader id; ``None``: the first that accepts the file.
        thumbnail_side: The longer side of the thumbnail the tissue is found on.
        runtime: Where the model runs: ``tensorflow``, ``onnx`` or ``auto``
            (:func:`~breastcls.inference.runtime.choose_runtime`); ``None``: the runtime of
            ``model`` as loaded (TensorFlow for a path; an :class:`~breastcls.InferenceModel`
            keeps the one chosen for it, to share it across slides).
        regions: The tissue detector and the lab's regions of interest or tissue mask
            (``breastcls.slides.regions``); ``None``: the default detector, the whole slide.
        host: The plugin host (default: every installed plugin).
        verbose: 1 reports progress to the active :mod:`breastcls.progress` reporter.
        on_chunk: Called after each committed chunk with ``(tiles done, tissue tiles)``.

    Returns:
        The tile table, the heat map and the summary (also written to ``out``).

    Raises:
        DataError: The slide cannot be read, has no resolution and no ``mpp`` is given, or
            has no tissue.
        ConfigError: An option is out of range, ``model_mpp`` is ``None`` and the run
            records no training scale, or ``runtime`` is unknown or ``onnx`` without ONNX
            Runtime installed.
        OutputError: ``out`` holds another job, another process holds it, or it cannot be
            written; or ``runtime="onnx"`` cannot convert the model or write its cache.
    """
    if batch_size < 1 or chunk_batches < 1 or workers < 1 or top_k < 1:
        raise ConfigError(
            f"batch_size={batch_size}, chunk_batches={chunk_batches}, workers={workers} and "
            f"top_k={top_k} must all be at least 1."
        )
    host = ensure_host(host)
    host.tta.info(tta)
    inference = model if isinstance(model, InferenceModel) else InferenceModel.load(Path(model))
    scale = model_scale(inference, model_mpp)
    inference.calibration(tta)  # a TTA without calibration stops before the slide is read
    if runtime is not None:
        inference = inference.with_runtime(runtime, batch_size=batch_size, verbose=verbose)
    slide = open_slide(path, reader=reader, host=host)
    try:
        return _predict_open_slide(
            inference, slide, scale=scale, mpp=mpp, out=out, overlap=overlap,
            min_tissue=min_tissue, tta=tta, batch_size=batch_size, chunk_batches=chunk_batches,
            workers=workers, top_k=top_k, thumbnail_side=thumbnail_side, host=host,
            verbose=verbose, on_chunk=on_chunk, regions=regions or RegionOptions(),
        )  # fmt: skip
    finally:
        slide.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class _TissueTiles:
    """Where a slide's tissue is, and the tiles of it that are classified."""

    thumbnail: Thumbnail
    mask: npt.NDArray[np.bool_]
    plan: TilePlan
    mpp_source: str


def _tissue_tiles(
    slide: Slide,
    image_size: int,
    *,
    slide_mpp: float | None,
    model_mpp: float,
    overlap: float,
    min_tissue: float,
    thumbnail_side: int,
    regions: RegionOptions,
    host: PluginHost,
) -> _TissueTiles:
    """The slide's thumbnail, its tissue mask and the tissue tiles at the model's scale.

    Raises:
        DataError: The slide has no resolution, no tissue, or no tile with enough tissue.
    """
    resolution, mpp_source = _resolution(slide, slide_mpp)
    thumbnail = read_thumbnail(slide, max_side=thumbnail_side)
    mask = region_mask(
        thumbnail, microns_per_pixel=resolution * thumbnail.downsample, options=regions,
        host=host,
    )  # fmt: skip
    if not mask.any():
        within = f" within --roi {regions.roi}" if regions.roi is not None else ""
        raise DataError(
            f"{slide.path}: no tissue found{within} (the slide looks like empty glass): check "
            "the file, its staining, or --tissue-detector."
        )
    plan = plan_tiles(
        slide, slide_mpp=resolution, model_mpp=model_mpp, image_size=image_size,
        mask=mask, mask_downsample=thumbnail.downsample, overlap=overlap, min_tissue=min_tissue,
    )  # fmt: skip
    if len(plan) == 0:
        raise DataError(
            f"{slide.path}: no tile is at least {min_tissue:.0%} tissue ({plan.grid_tiles} tiles "
            "on the grid): lower --min-tissue, or check --model-mpp."
        )
    return _TissueTiles(thumbnail=thumbnail, mask=mask, plan=plan, mpp_source=mpp_source)


def _predict_open_slide(
    model: InferenceModel,
    slide: Slide,
    *,
    scale: tuple[float, str],
    mpp: float | None,
    out: Path | None,
    overlap: float,
    min_tissue: float,
    tta: str,
    batch_size: int,
    chunk_batches: int,
    workers: int,
    top_k: int,
    thumbnail_side: int,
    host: PluginHost,
    verbose: int,
    on_chunk: Callable[[int, int], None] | None,
    regions: RegionOptions,
) -> SlideResult:
    tissue = _tissue_tiles(
        slide, model.image_size, slide_mpp=mpp, model_mpp=scale[0], overlap=overlap,
        min_tissue=min_tissue, thumbnail_side=thumbnail_side, regions=regions, host=host,
    )  # fmt: skip
    thumbnail, mask, plan = tissue.thumbnail, tissue.mask, tissue.plan
    calibration = model.calibration(tta)
    thresholds = calibration.operating_thresholds
    options: dict[str, Any] = {
        "overlap": overlap, "min_tissue": min_tissue, "tta": tta, "batch_size": batch_size,
        "chunk_batches": chunk_batches, "thumbnail_side": thumbnail_side,
    } | regions_record(regions)  # fmt: skip
    job = _job_record(
        slide=slide, model=model, plan=plan, mpp_source=tissue.mpp_source,
        model_mpp_source=scale[1], options=options,
        calibration={"temperature": calibration.temperature, "thresholds": thresholds},
    )  # fmt: skip
    folder = SlideFolder(out) if out is not None else None
    lock = _take_folder(folder, job) if folder is not None else None
    try:
        if folder is not None:
            write_rgb_png(folder.thumbnail, thumbnail.pixels)
            write_mask_png(folder.tissue_mask, mask)
        table = _classify(
            model, slide, plan, folder=folder, tta=tta, batch_size=batch_size,
            chunk_batches=chunk_batches, workers=workers, host=host, verbose=verbose,
            on_chunk=on_chunk,
        )  # fmt: skip
        heat = heat_map(table, mask.shape, thumbnail.downsample)
        flagged = flagged_map(table, mask.shape, thumbnail.downsample)
        summary = _summary(job, table, calibration, tissue, top_k=top_k, runtime=model.runtime.name)
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
    *,
    folder: SlideFolder | None,
    tta: str,
    batch_size: int,
    chunk_batches: int,
    workers: int,
    host: PluginHost,
    verbose: int,
    on_chunk: Callable[[int, int], None] | None,
) -> TileTable:
    positive = model.positive
    sink = _Sink(folder, tiles_header(model.class_names))
    if folder is not None and folder.tiles.is_file():
        return read_tiles_csv(folder.tiles, model.class_names, positive.name)
    start = sink.resume()
    total = len(plan)
    reporter = active_reporter() if verbose else None
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
        rows = _tile_rows(plan, sink.committed, probabilities, positive, domain)
        sink.append(rows, len(probabilities))
        if reporter is not None:
            reporter.task_advanced(sink.committed)
        if on_chunk is not None:
            on_chunk(sink.committed, total)

    if start < total:
        _stream_chunks(
            model, slide, plan, start, commit, tta=tta, batch_size=batch_size,
            chunk=batch_size * chunk_batches, workers=workers, host=host,
        )  # fmt: skip
    if reporter is not None:
        reporter.task_finished(f"{slide.path.name}: {total} tissue tiles classified")
    if sink.committed != total:
        raise DataError(f"{slide.path}: {sink.committed} of {total} tiles were classified.")
    return sink.finish(model.class_names, positive.name)


def _tile_rows(
    plan: TilePlan,
    first: int,
    probabilities: FloatArray,
    positive: PositiveGroup,
    domain: DomainScores | None,
) -> str:
    """The ``tiles.csv`` rows of the plan's tiles from ``first`` on, with their probabilities
    and domain-shift scores."""
    index = np.arange(first, first + len(probabilities))
    return tile_rows(
        tile=plan.row[index] * plan.columns + plan.column[index],
        column=plan.column[index],
        row=plan.row[index],
        x=plan.x[index],
        y=plan.y[index],
        size=plan.tile_size,
        level=plan.level,
        tissue=plan.tissue[index],
        probabilities=probabilities,
        score=positive.score(probabilities),
        domain=domain,
    )


def _stream_chunks(
    model: InferenceModel,
    slide: Slide,
    plan: TilePlan,
    start: int,
    commit: Callable[[list[Scores]], None],
    *,
    tta: str,
    batch_size: int,
    chunk: int,
    workers: int,
    host: PluginHost,
) -> None:
    """Classify the plan's tiles from ``start`` on, read ahead by ``workers`` threads, and hand
    their scores to ``commit`` about ``chunk`` tiles at a time.

    Raises:
        DataError: A tile could not be read (nothing after the last whole chunk is committed).
    """
    failures: list[BaseException] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="breastcls-tiles")
    try:
        batches = _batches(slide, plan, start, batch_size, pool, workers, failures)
        pending: list[Scores] = []
        pending_count = 0
        for scores in model.iter_scores(batches, tta=tta, host=host):
            pending.append(scores)
            pending_count += len(scores.calibrated)
            if pending_count >= chunk and not failures:
                commit(pending)
                pending, pending_count = [], 0
        if failures:
            _raise_read_failure(slide, failures[0])
        if pending:
            commit(pending)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _raise_read_failure(slide: Slide, error: BaseException) -> None:
    if isinstance(error, BreastclsError):
        raise error
    raise DataError(
        f"{slide.path}: a tile could not be read ({type(error).__name__}: {error})."
    ) from error


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
    atomic_write_json(folder.summary, summary)


# Many slides.

_SUMMARY_COLUMNS = (
    "slide", "folder", "status", "message", "tissue_tiles", "top_k", "top_k_mean_score",
    "mean_score", "max_score", "domain_flagged_fraction",
)  # fmt: skip


def slide_files(inputs: Sequence[Path], *, host: PluginHost | None = None) -> list[Path]:
    """The slides among ``inputs``: files as given, and in folders (not recursively) every file
    a registered slide reader accepts; each once, sorted by path (the order the shards of
    ``--shard`` split, whatever order a shell expanded the arguments in)."""
    readers = list(ensure_host(host).slide_readers)
    found: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            for child in item.iterdir():
                if child.is_file() and any(r.component.accepts(child) for r in readers):
                    found.append(child)
        else:
            found.append(item)
    return sorted(dict.fromkeys(found), key=str)


def parse_shard(text: str) -> tuple[int, int]:
    """Read ``--shard K/N``: shard ``K`` (counted from 1) of ``N``.

    Raises:
        ConfigError: ``text`` is not ``K/N`` with ``1 <= K <= N``.
    """
    index, _, count = text.partition("/")
    if not (index.strip().isdigit() and count.strip().isdigit()):
        raise ConfigError(
            f"--shard {text!r} is not K/N: pass the job's shard and the number of shards, "
            "e.g. --shard 3/8 (K counts from 1)."
        )
    k, n = int(index), int(count)
    if not 1 <= k <= n:
        raise ConfigError(
            f"--shard {text!r}: K must lie between 1 and N={n} (K counts from 1; a 0-based "
            "index such as Kubernetes' JOB_COMPLETION_INDEX needs + 1)."
        )
    return k, n


def shard_of(items: Sequence[T], shard: tuple[int, int]) -> list[T]:
    """Shard ``K`` of ``N`` of ``items``: items ``K``, ``K + N``, ``K + 2N``... (from 1). The
    ``N`` shards partition ``items``; dealing them out in turn keeps neighbours (often slides of
    one case, of similar size) in different jobs."""
    k, n = shard
    return list(items[k - 1 :: n])


def _folder_names(slides: Sequence[Path]) -> list[str]:
    names: list[str] = []
    used: set[str] = set()
    for slide in slides:
        stem = slide.stem or "slide"
        name, n = stem, 1
        while name in used:
            n += 1
            name = f"{stem}-{n}"
        used.add(name)
        names.append(name)
    return names


def predict_slides(
    model: InferenceModel | Path,
    inputs: Sequence[Path],
    *,
    out_dir: Path,
    model_mpp: float | None = None,
    mpp: float | None = None,
    overlap: float = 0.0,
    min_tissue: float = 0.5,
    tta: str = "none",
    batch_size: int = 32,
    workers: int = 2,
    top_k: int = 10,
    reader: str | None = None,
    shard: tuple[int, int] | None = None,
    runtime: str = "tensorflow",
    regions: RegionOptions | None = None,
    host: PluginHost | None = None,
    verbose: int = 0,
) -> list[SlideOutcome]:
    """Predict many slides, one slide folder each under ``out_dir`` (named after the file),
    and write ``out_dir/summary.csv``. A slide that fails is recorded with its error and the
    others go on; a slide folder already complete is kept, one interrupted is resumed.

    With ``shard=(K, N)`` only shard ``K`` of ``N`` of the sorted slide list is predicted
    (:func:`shard_of`), into the same folders an unsharded call would write, and the summary
    goes to ``out_dir/summary-shard-K-of-N.csv``: the jobs of an array job share ``out_dir``
    without overwriting each other, and :func:`summarize_slide_folders` merges them.

    Raises:
        ModelLoadError: The model cannot be loaded.
        ConfigError: ``model_mpp`` is ``None`` and the run records no training scale, or
            ``shard`` is not ``(K, N)`` with ``1 <= K <= N``.
        UnknownComponentError: ``regions`` names an unknown tissue detector.
        OutputError: ``out_dir`` cannot be written.
    """
    if shard is not None:
        parse_shard(f"{shard[0]}/{shard[1]}")
    host = ensure_host(host)
    _check_options(host, tta=tta, reader=reader, runtime=runtime)  # before the model loads
    if regions is not None:
        host.tissue_detectors.info(regions.tissue_detector)
    inference = model if isinstance(model, InferenceModel) else InferenceModel.load(Path(model))
    check_inference_batch(batch_size, inference.image_size, what="slide predict")
    model_scale(inference, model_mpp)  # once, before any slide, rather than once per slide
    inference.calibration(tta)
    # Once too: `auto` may measure, and an ONNX Runtime session serves every slide.
    inference = inference.with_runtime(runtime, batch_size=batch_size, verbose=verbose)
    slides = slide_files(inputs, host=host)
    # Folder names are given over the whole list, so that every shard names a slide alike.
    jobs = list(zip(slides, _folder_names(slides), strict=True))
    if shard is not None:
        jobs = shard_of(jobs, shard)
    outcomes: list[SlideOutcome] = []
    for slide, name in jobs:
        folder = Path(out_dir) / name
        try:
            result = predict_slide(
                inference, slide, model_mpp=model_mpp, mpp=mpp, out=folder, overlap=overlap,
                min_tissue=min_tissue, tta=tta, batch_size=batch_size, workers=workers,
                top_k=top_k, reader=reader, host=host, verbose=verbose, regions=regions,
            )  # fmt: skip
            outcomes.append(
                SlideOutcome(slide=slide, folder=folder, summary=result.summary, error=None)
            )
        except BreastclsError as error:
            message = " ".join(str(error).splitlines())
            outcomes.append(SlideOutcome(slide=slide, folder=folder, summary=None, error=message))
    target = (
        SlideFolder.collection_summary(out_dir)
        if shard is None
        else SlideFolder.shard_summary(out_dir, *shard)
    )
    _write_collection_summary(target, outcomes)
    return outcomes


def _check_options(host: PluginHost, *, tta: str, reader: str | None, runtime: str) -> None:
    """Refuse an unknown TTA, slide reader or runtime (named, with the allowed values)."""
    host.tta.info(tta)
    if reader is not None:
        host.slide_readers.info(reader)
    check_runtime(runtime)


def summarize_slide_folders(out_dir: Path) -> list[SlideOutcome]:
    """Gather the slide folders under ``out_dir`` (written by one or many jobs) into
    ``out_dir/summary.csv``: complete ones with their figures, others as incomplete, and the
    slides that the summaries already there list as failed before they had a folder.

    Raises:
        OutputError: ``out_dir`` is not a folder.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise OutputError(f"{out_dir} is not a folder of slide folders.")
    outcomes: list[SlideOutcome] = []
    for child in sorted(p for p in out_dir.iterdir() if p.is_dir()):
        folder = SlideFolder(child)
        if not folder.job.is_file():
            continue
        try:
            job = json_object(folder.job)
            summary = json_object(folder.summary) if folder.summary.is_file() else None
        except (OSError, ValueError) as error:
            outcomes.append(
                SlideOutcome(slide=child, folder=child, summary=None, error=f"unreadable: {error}")
            )
            continue
        slide = Path(str(job.get("slide", child.name)))
        problem = None if summary is not None else "incomplete: run `breastcls slide predict` again"
        outcomes.append(SlideOutcome(slide=slide, folder=child, summary=summary, error=problem))
    outcomes.extend(_failures_without_folder(out_dir, {o.folder.name for o in outcomes}))
    outcomes.sort(key=lambda o: o.folder.name)
    _write_collection_summary(SlideFolder.collection_summary(out_dir), outcomes)
    return outcomes


def _failures_without_folder(out_dir: Path, folders: set[str]) -> list[SlideOutcome]:
    """The slides that earlier summaries (a whole job's, each shard's) list as failed before
    their folder was made (unreadable, no resolution, no tissue): no folder records them."""
    found: dict[str, SlideOutcome] = {}
    for table in [SlideFolder.collection_summary(out_dir), *SlideFolder.shard_summaries(out_dir)]:
        try:
            with open(table, newline="", encoding="utf-8") as handle:
                rows = csv_records(handle)
        except (OSError, UnicodeDecodeError, csv.Error):
            continue  # absent or damaged: the folders still say everything else
        for row in rows:
            name = row.get("folder") or ""
            if row.get("status") == "error" and name and name not in folders:
                found[name] = SlideOutcome(
                    slide=Path(row.get("slide") or name), folder=out_dir / name, summary=None,
                    error=row.get("message") or "failed",
                )  # fmt: skip
    return list(found.values())


def _write_collection_summary(path: Path, outcomes: Sequence[SlideOutcome]) -> None:
    threshold_names = list(
        dict.fromkeys(
            name for o in outcomes if o.summary for name in o.summary.get("fraction_positive", {})
        )
    )
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    writer.writerow([*_SUMMARY_COLUMNS, *(f"fraction_positive_{n}" for n in threshold_names)])
    for o in outcomes:
        s = o.summary or {}
        fractions = s.get("fraction_positive", {})
        writer.writerow(
            [
                o.slide, o.folder.name, "ok" if o.error is None else "error", o.error or "",
                s.get("tiles", {}).get("classified", ""), s.get("top_k", ""),
                _number(s.get("top_k_mean_score")), _number(s.get("mean_score")),
                _number(s.get("max_score")),
                _number((s.get("domain") or {}).get("flagged_fraction")),
                *(_number(fractions.get(n)) for n in threshold_names),
            ]
        )  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, buffer.getvalue())
    except OSError as error:
        raise OutputError(f"Cannot write {path}: {error}.") from error


def _number(value: Any) -> str:
    return "" if value is None else repr(float(value))
