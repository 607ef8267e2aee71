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


def read_tiles(slide: Slide, plan: TilePlan, first: int, stop: int) -> UInt8Array:
    """Tiles ``first`` to ``stop - 1`` of ``plan``, resampled, as one ``(n, size, size, 3)``
    array, the same pixels as :func:`tile_pixels` gives one at a time.

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
    (:func:`read_tiles`), at most ``depth`` batches ahead.

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
                pending.append(pool.submit(read_tiles, slide, plan, first, stop))
            if not pending:
                return
            yield pending.popleft().result()
    except Exception as error:
        failures.append(error)
    finally:
        for future in pending:
            future.cancel()


def tile_batches(
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


def raise_read_failure(slide: Slide, error: BaseException) -> None:
    if isinstance(error, BreastclsError):
        raise error
    raise DataError(
        f"{slide.path}: a tile could not be read ({type(error).__name__}: {error})."
    ) from error
