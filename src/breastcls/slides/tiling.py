"""Tiling a slide at the model's scale: which level to read, how large a region, and where.

A model sees ``image_size`` x ``image_size`` pixels of ``model_mpp`` microns each, so one tile
covers ``image_size * model_mpp`` microns of tissue: ``image_size * model_mpp / slide_mpp``
level-0 pixels. Tiles are read from the coarsest level that is still at least as fine as the
model's scale (resampled down to ``image_size``), or from level 0, resampled up, when the slide
is coarser than the model; a level within :data:`SCALE_TOLERANCE` (2%) of the model's scale is
read at ``image_size`` as it is, with no resampling. Tiles lie on a grid with a stride of
``1 - overlap`` tile sides, and only those whose tissue fraction reaches ``min_tissue`` are
kept (:mod:`breastcls.slides.reading` reads them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError, DataError
from breastcls.slides.readers import Slide
from breastcls.slides.tissue import tissue_fractions

__all__ = ["SCALE_TOLERANCE", "TilePlan", "plan_tiles"]

IntArray = npt.NDArray[np.int64]
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
