"""Reading a slide: opening it with a registered reader, and its model-scale tiles, batch by
batch, read ahead by worker threads while the model classifies the previous batches.

Only a few batches of tiles are in memory at any time, never the slide.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.data.pipeline import without_autotuning
from breastcls.errors import BreastclsError, DataError
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.slides.readers import Slide
from breastcls.slides.tiling import TilePlan

__all__ = ["open_slide", "raise_read_failure", "read_tiles", "tile_batches", "tile_pixels"]

UInt8Array = npt.NDArray[np.uint8]


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


def tile_pixels(slide: Slide, plan: TilePlan, index: int) -> UInt8Array:
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
    array, the same pixels as :func:`tile_pixels` gives one at a time.

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

    size = plan.image_size
    batches = tf.data.Dataset.from_generator(
        lambda: _read_ahead(slide, plan, start, batch_size, pool, depth, failures, False),
        output_signature=tf.TensorSpec((None, size, size, 3), tf.uint8),
    )
    return without_autotuning(batches.map(lambda images: tf.cast(images, tf.float32)).prefetch(1))


def raise_read_failure(slide: Slide, error: BaseException) -> None:
    if isinstance(error, BreastclsError):
        raise error
    raise DataError(
        f"{slide.path}: a tile could not be read ({type(error).__name__}: {error})."
    ) from error
