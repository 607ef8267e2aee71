"""Tiling a slide at the model's scale: which level to read, how large a region, and where;
and reading the tiles.

A model sees ``image_size`` x ``image_size`` pixels of ``model_mpp`` microns each, so one tile
covers ``image_size * model_mpp`` microns of tissue: ``image_size * model_mpp / slide_mpp``
level-0 pixels. Tiles are read from the coarsest level that is still at least as fine as the
model's scale (resampled down to ``image_size``), or from level 0, resampled up, when the slide
is coarser than the model; a level within :data:`SCALE_TOLERANCE` (2%) of the model's scale is
read at ``image_size`` as it is, with no resampling. Tiles lie on a grid with a stride of
``1 - overlap`` tile sides, and only those whose tissue fraction reaches ``min_tissue`` are
kept. :func:`read_tiles` reads a batch of them in blocks; :func:`tile_batches` reads batches
ahead in worker threads.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError, DataError
from breastcls.slides.readers import Slide
from breastcls.slides.tissue import tissue_fractions

__all__ = ["SCALE_TOLERANCE", "TilePlan", "plan_tiles", "read_tile", "read_tiles", "tile_batches"]

IntArray = npt.NDArray[np.int64]
UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class TilePlan:
    """The tissue tiles of a slide, in row-major grid order.

    Attributes:
        slide_mpp: Microns per level-0 pixel used.
        model_mpp: Microns per pixel of the model's input.
        image_size: The model's input side.
        level: The pyramid level tiles are read from.
        read_size: The side of a tile in that level's pixels.
        tile_size: The side of a tile in level-0 pixels (rounded).
        stride: The grid step in level-0 pixels (unrounded).
        columns: Grid columns.
        rows: Grid rows.
        column: Each tissue tile's grid column.
        row: Each tissue tile's grid row.
        x: Each tissue tile's left edge, level-0 pixels.
        y: Each tissue tile's top edge, level-0 pixels.
        tissue: Each tissue tile's tissue fraction.
    """

    slide_mpp: float
    model_mpp: float
    image_size: int
    level: int
    read_size: int
    tile_size: int
    stride: float
    columns: int
    rows: int
    column: IntArray
    row: IntArray
    x: IntArray
    y: IntArray
    tissue: FloatArray

    def __len__(self) -> int:
        return len(self.x)

    @property
    def grid_tiles(self) -> int:
        """Tiles of the whole grid, glass included."""
        return self.columns * self.rows


SCALE_TOLERANCE = 0.02
"""How far a pyramid level's scale may be from the model's (relative) to be read as is, with
no resampling: scanners' own resolutions are known to a percent or two."""


def _read_level(slide: Slide, tile0: float, image_size: int) -> tuple[int, int]:
    """The level tiles are read from and the side of a tile in its pixels.

    The coarsest level at least as fine as the model's scale, or within
    :data:`SCALE_TOLERANCE` of it; read at ``image_size`` pixels as is when it is within that
    tolerance (decoding a finer level and resampling it down costs up to four times the
    decoding), else at the tile's size in its pixels, resampled to ``image_size``.
    """
    wanted = tile0 / image_size  # level-0 pixels per model pixel
    near = [
        i for i, lv in enumerate(slide.levels) if lv.downsample <= wanted * (1 + SCALE_TOLERANCE)
    ]
    level = max(near, key=lambda i: slide.levels[i].downsample) if near else 0
    downsample = slide.levels[level].downsample
    if abs(downsample / wanted - 1.0) <= SCALE_TOLERANCE:
        return level, image_size
    return level, max(1, round(tile0 / downsample))


def plan_tiles(
    slide: Slide,
    *,
    slide_mpp: float,
    model_mpp: float,
    image_size: int,
    mask: npt.NDArray[np.bool_],
    mask_downsample: float,
    overlap: float = 0.0,
    min_tissue: float = 0.5,
) -> TilePlan:
    """Lay the model-scale grid over the slide and keep the tiles with tissue.

    Raises:
        ConfigError: ``overlap``, ``min_tissue`` or a resolution is out of range.
        DataError: The slide is smaller than one tile.
    """
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"--overlap {overlap} is not in [0, 1): pass e.g. 0 or 0.5.")
    if not 0.0 < min_tissue <= 1.0:
        raise ConfigError(f"--min-tissue {min_tissue} is not in (0, 1]: pass e.g. 0.5.")
    for name, value in (("--model-mpp", model_mpp), ("--mpp", slide_mpp)):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} {value} is not a positive number of microns per pixel.")
    base = slide.levels[0]
    tile0 = image_size * model_mpp / slide_mpp
    if tile0 > min(base.width, base.height):
        raise DataError(
            f"{slide.path} is {base.width}x{base.height} pixels, smaller than one tile "
            f"({tile0:.0f} pixels at {slide_mpp:g} µm/px for a {image_size}-pixel input at "
            f"{model_mpp:g} µm/px): check --model-mpp and the slide's resolution."
        )
    level, read_size = _read_level(slide, tile0, image_size)
    stride = tile0 * (1.0 - overlap)
    columns = math.floor((base.width - tile0) / stride + 1e-9) + 1
    rows = math.floor((base.height - tile0) / stride + 1e-9) + 1
    grid_row, grid_column = np.divmod(np.arange(rows * columns, dtype=np.int64), columns)
    x = np.round(grid_column * stride).astype(np.int64)
    y = np.round(grid_row * stride).astype(np.int64)
    side = round(tile0)
    boxes = np.stack([x, y, np.full_like(x, side), np.full_like(y, side)], axis=1)
    tissue = tissue_fractions(mask, mask_downsample, boxes.astype(np.float64))
    keep = tissue >= min_tissue - 1e-12
    return TilePlan(
        slide_mpp=slide_mpp,
        model_mpp=model_mpp,
        image_size=image_size,
        level=level,
        read_size=read_size,
        tile_size=side,
        stride=stride,
        columns=columns,
        rows=rows,
        column=grid_column[keep],
        row=grid_row[keep],
        x=x[keep],
        y=y[keep],
        tissue=tissue[keep],
    )


def read_tile(slide: Slide, plan: TilePlan, index: int) -> UInt8Array:
    """Read tile ``index`` of ``plan`` and resample it to the model's input size, on its own
    (:func:`read_tiles` gives the same pixels for many tiles at less cost)."""
    x, y = _level_corners(slide, plan, index, index + 1)
    region = slide.read_region(plan.level, x[0], y[0], plan.read_size, plan.read_size)
    out = np.empty((plan.image_size, plan.image_size, 3), dtype=np.uint8)
    _resample_into(region, plan, out)
    return out


def _level_corners(
    slide: Slide, plan: TilePlan, first: int, stop: int
) -> tuple[list[int], list[int]]:
    """The top-left corners of tiles ``first`` to ``stop - 1`` in the pixels of the plan's
    level."""
    downsample = slide.levels[plan.level].downsample
    xs = [round(int(v) / downsample) for v in plan.x[first:stop]]
    ys = [round(int(v) / downsample) for v in plan.y[first:stop]]
    return xs, ys


def _resample_into(region: UInt8Array, plan: TilePlan, out: UInt8Array) -> None:
    """Write ``region`` (``read_size`` square), resampled to the model's input size, into the
    ``out`` tile (no intermediate array)."""
    if plan.read_size == plan.image_size:
        out[...] = region
        return
    import cv2

    interpolation = cv2.INTER_AREA if plan.read_size > plan.image_size else cv2.INTER_LINEAR
    cv2.resize(region, (plan.image_size, plan.image_size), dst=out, interpolation=interpolation)


# The widest run of a row and the largest block read at once for the tiles of a batch, in
# the level's pixels (12 MiB of decoded RGB), and how much of a block may lie outside the
# tiles it is read for.
_RUN_PIXELS = 4096
_BLOCK_PIXELS = 4096 * 1024
_BLOCK_WASTE = 1.25


def _runs(xs: list[int], ys: list[int], side: int, together: bool) -> list[tuple[int, int]]:
    """Split tiles into runs ``(i, j)`` of neighbours along a grid row (each next tile starts
    inside or just after the one before), which one region read covers."""
    runs, i = [], 0
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
        runs.append((i, j))
        i = j
    return runs


def _blocks(xs: list[int], ys: list[int], side: int, together: bool) -> list[list[int]]:
    """Group tiles into blocks, each read as one region: the runs of a grid row, merged with
    the runs of the next rows while their bounding box stays under :data:`_BLOCK_PIXELS` and
    wastes at most a quarter of its area (overlapping tiles, rows of a compact tissue region)."""
    blocks: list[list[int]] = []
    box: list[int] = []  # x0, y0, x1, y1 of the current block
    covered = 0
    for i, j in _runs(xs, ys, side, together):
        run = [xs[i], ys[i], xs[j - 1] + side, ys[i] + side]
        area = (run[2] - run[0]) * side
        if blocks and together:
            merged = [min(box[0], run[0]), box[1], max(box[2], run[2]), max(box[3], run[3])]
            merged_area = (merged[2] - merged[0]) * (merged[3] - merged[1])
            if (
                run[1] >= box[1]
                and merged_area <= _BLOCK_PIXELS
                and merged_area <= _BLOCK_WASTE * (covered + area)
            ):
                blocks[-1].extend(range(i, j))
                box, covered = merged, covered + area
                continue
        blocks.append(list(range(i, j)))
        box, covered = run, area
    return blocks


def read_tiles(slide: Slide, plan: TilePlan, first: int, stop: int) -> UInt8Array:
    """Tiles ``first`` to ``stop - 1`` of ``plan``, resampled, as one ``(n, size, size, 3)``
    array, the same pixels as :func:`read_tile` gives one at a time.

    Neighbouring tiles are read as one block and cut out of it (:func:`_blocks`): one call into
    the reader instead of one per tile, and each of the slide's own tiles (a TIFF's, which a
    model tile rarely matches) decoded once for the block rather than once per model tile
    that touches it. Each tile is resampled straight into the batch's array. Only where a
    level's downsample is a whole number: a block then starts on the same level pixels as the
    tiles' own reads would (a reader may interpolate a region placed between a level's pixels,
    as OpenSlide does).
    """
    side = plan.read_size
    out = np.empty((stop - first, plan.image_size, plan.image_size, 3), dtype=np.uint8)
    xs, ys = _level_corners(slide, plan, first, stop)
    together = float(slide.levels[plan.level].downsample).is_integer()
    for block in _blocks(xs, ys, side, together):
        x0, y0 = min(xs[k] for k in block), min(ys[k] for k in block)
        width = max(xs[k] for k in block) + side - x0
        height = max(ys[k] for k in block) + side - y0
        region = slide.read_region(plan.level, x0, y0, width, height)
        for k in block:
            left, top = xs[k] - x0, ys[k] - y0
            _resample_into(region[top : top + side, left : left + side], plan, out[k])
    return out


def _read_ahead(
    slide: Slide,
    plan: TilePlan,
    start: int,
    batch_size: int,
    pool: ThreadPoolExecutor,
    depth: int,
    failures: list[BaseException],
    as_float: bool,
) -> Iterator[npt.NDArray[Any]]:
    """Yield the batches of tiles from ``start`` on, in order, each read by ``pool`` as a whole
    (:func:`read_tiles`; with ``as_float``, turned into float32 there too), at most ``depth``
    batches ahead.

    A batch that cannot be read ends the stream and is kept in ``failures`` (``tf.data`` would
    turn the error into one of its own and lose its message).
    """
    pending: collections.deque[Future[npt.NDArray[Any]]] = collections.deque()
    firsts = iter(range(start, len(plan), batch_size))
    read = _read_float_tiles if as_float else read_tiles
    try:
        while True:
            while len(pending) < depth:
                first = next(firsts, None)
                if first is None:
                    break
                stop = min(first + batch_size, len(plan))
                pending.append(pool.submit(read, slide, plan, first, stop))
            if not pending:
                return
            yield pending.popleft().result()
    except Exception as error:
        failures.append(error)
    finally:
        for future in pending:
            future.cancel()


def _read_float_tiles(
    slide: Slide, plan: TilePlan, first: int, stop: int
) -> npt.NDArray[np.float32]:
    return read_tiles(slide, plan, first, stop).astype(np.float32)


def tile_batches(
    slide: Slide,
    plan: TilePlan,
    start: int,
    batch_size: int,
    pool: ThreadPoolExecutor,
    workers: int,
    failures: list[BaseException],
    *,
    dataset: bool = True,
) -> Any:
    """The tiles from ``start`` on, in batches of ``batch_size`` (counted from ``start``, as a
    resumed job's are), as 0-255 float32, read ahead by the ``workers`` threads of ``pool``.

    With ``dataset``, a ``tf.data`` dataset (what TensorFlow's runtime traces its step on): the
    worker threads read whole batches, so ``tf.data`` moves one array per batch, not one per
    tile, through its Python generator. Without it, a plain iterator of arrays (what ONNX
    Runtime takes), turned into float32 by the worker threads: ``tf.data``'s generator, copy
    and cast cost about half as much CPU time again as reading the tiles, which a fast model no
    longer hides.
    """
    depth = workers + 1
    if not dataset:
        return _read_ahead(slide, plan, start, batch_size, pool, depth, failures, True)
    import tensorflow as tf

    from breastcls.data.pipeline import without_autotuning

    size = plan.image_size
    batches = tf.data.Dataset.from_generator(
        lambda: _read_ahead(slide, plan, start, batch_size, pool, depth, failures, False),
        output_signature=tf.TensorSpec((None, size, size, 3), tf.uint8),
    )
    return without_autotuning(batches.map(lambda images: tf.cast(images, tf.float32)).prefetch(1))
