"""The heat map as a slide viewers open: a pyramidal TIFF with the slide's level-0 geometry.

Level 0 has the slide's width and height and its resolution tags (pixels per centimetre), so
QuPath, ASAP or OpenSlide lay it over the slide pixel for pixel; its content is the heat map at
the tile grid's resolution (one value per grid step, each averaging the tiles over it), blown up
to the slide's pixels tile by tile (memory stays bounded for any slide). Colours:
:data:`COLOUR_MAP` for the positive score, :data:`UNCLASSIFIED` for tissue no tile classified
and white for glass.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.io import atomic_path
from breastcls.slides.outputs import TileTable, heat_map

__all__ = [
    "COLOUR_MAP",
    "OVERLAY_TILE",
    "UNCLASSIFIED",
    "colour_heat",
    "overlay_grid",
    "write_heatmap_png",
    "write_overlay_tiff",
]

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]
COLOUR_MAP = "viridis"
"""The heat map's colours: purple-blue through green to yellow, far from H&E's pinks and
purples, readable by colour-blind viewers, and with no grey (:data:`UNCLASSIFIED` is)."""
UNCLASSIFIED = (150, 150, 150)
"""The colour of tissue that no classified tile covers (too little tissue, or left out)."""
OVERLAY_TILE = 512
"""The TIFF's tile side (pixels)."""


def colour_heat(heat: FloatArray, tissue: npt.NDArray[np.bool_]) -> UInt8Array:
    """RGB colours of a heat map (0-1, ``NaN``: no tile): :data:`COLOUR_MAP` where scored,
    :data:`UNCLASSIFIED` on the rest of ``tissue``, white elsewhere."""
    from matplotlib import colormaps

    table = (colormaps[COLOUR_MAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round()
    scored = np.isfinite(heat)
    index = np.clip(np.nan_to_num(heat) * 255.0, 0, 255).round().astype(np.intp)
    out = np.full((*heat.shape, 3), 255, dtype=np.uint8)
    out[tissue & ~scored] = UNCLASSIFIED
    out[scored] = table[index[scored]].astype(np.uint8)
    return out


def write_heatmap_png(
    path: Path,
    thumbnail: UInt8Array,
    heat: FloatArray,
    *,
    tissue: npt.NDArray[np.bool_],
    title: str,
    label: str,
    microns_per_pixel: float | None,
    flagged: npt.NDArray[np.bool_] | None = None,
) -> None:
    """Draw the thumbnail and, beside it, ``heat`` (0-1, ``NaN``: no tile) in
    :data:`COLOUR_MAP` with a colour bar (``label``), the tissue no tile classified in
    :data:`UNCLASSIFIED` and the ``flagged`` pixels (tiles unlike the training images) hatched
    red, under ``title``, with a scale bar when ``microns_per_pixel`` (of the thumbnail) is
    known; atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    h, w = heat.shape
    width = 12.0
    figure, (left, right) = plt.subplots(
        1, 2, figsize=(width, max(3.0, width / 2 * h / w + 1.2)), dpi=120
    )
    try:
        left.imshow(thumbnail)
        left.set_title("slide", fontsize=9)
        right.imshow(colour_heat(heat, tissue), interpolation="nearest")
        grey = (UNCLASSIFIED[0] / 255, UNCLASSIFIED[1] / 255, UNCLASSIFIED[2] / 255)
        handles = [Patch(color=grey, label="tissue, not classified")]
        if flagged is not None and flagged.any():
            right.contourf(
                flagged.astype(float), levels=[0.5, 1.5], colors=["none"], hatches=["///"]
            )
            handles.append(
                Patch(facecolor="none", hatch="///", label="unlike the training images (left out)")
            )
        right.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.9)
        right.set_title(label, fontsize=9)
        for axes in (left, right):
            axes.set_axis_off()
            if microns_per_pixel is not None:
                _scale_bar(axes, microns_per_pixel, w, h)
        scale = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=COLOUR_MAP)
        figure.colorbar(scale, ax=right, fraction=0.046, pad=0.02, shrink=0.8).set_label(label)
        figure.suptitle(title, fontsize=10)
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)


def _scale_bar(axes: Any, microns_per_pixel: float, width: int, height: int) -> None:
    """A black scale bar of a round length (1, 2 or 5 x 10^k µm) near a fifth of the image
    width, below the image (never over the tissue)."""
    from matplotlib.patches import Rectangle

    target = width * microns_per_pixel / 5
    power = 10 ** math.floor(math.log10(target))
    microns = max((m * power for m in (1, 2, 5) if m * power <= target), default=power)
    text = f"{microns / 1000:g} mm" if microns >= 1000 else f"{microns:g} µm"
    thick = max(1.0, height / 80)
    axes.set_ylim(height * 1.1, -0.5)  # room below the image (y grows downwards)
    axes.add_patch(Rectangle((0, height * 1.06), microns / microns_per_pixel, thick, color="k"))
    axes.text(microns / microns_per_pixel + width * 0.02, height * 1.06 + thick, text, fontsize=7)


def overlay_grid(
    table: TileTable,
    mask: npt.NDArray[np.bool_],
    mask_downsample: float,
    *,
    slide_size: tuple[int, int],
    step: float,
) -> UInt8Array:
    """The coloured heat map (:func:`colour_heat`) at one pixel per ``step`` level-0 pixels:
    each pixel averages the tiles over it that are like the training images; the tissue mask
    (``mask``, ``mask_downsample`` level-0 pixels per pixel) is resampled to it."""
    import cv2

    shape = (math.ceil(slide_size[1] / step), math.ceil(slide_size[0] / step))
    heat = heat_map(table, shape, step)
    coverage = cv2.resize(
        mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA
    )
    return colour_heat(heat, np.asarray(coverage >= 0.5))


def write_overlay_tiff(
    path: Path,
    grid: UInt8Array,
    *,
    slide_size: tuple[int, int],
    grid_step: float,
    mpp: float,
) -> Path:
    """Write ``grid`` (RGB, one pixel per ``grid_step`` level-0 pixels) as a pyramidal tiled
    TIFF of ``slide_size`` (width, height) level-0 pixels at ``mpp`` µm/px, atomically, with
    levels 4, 16... times smaller down to about one tile. Return ``path``."""
    import tifffile

    width, height = slide_size
    per_cm = 1e4 / mpp
    factors = [1]
    while max(width, height) / factors[-1] > OVERLAY_TILE * 2:
        factors.append(factors[-1] * 4)
    with atomic_path(path) as temporary, tifffile.TiffWriter(temporary, bigtiff=True) as writer:
        for factor in factors:
            shape = (math.ceil(height / factor), math.ceil(width / factor), 3)
            writer.write(
                _tiles(grid, shape, grid_step / factor), shape=shape, dtype=np.uint8,
                tile=(OVERLAY_TILE, OVERLAY_TILE), photometric="rgb", compression="zlib",
                resolution=(per_cm / factor, per_cm / factor), resolutionunit="CENTIMETER",
                subfiletype=1 if factor > 1 else 0,
            )  # fmt: skip
    return path


def _tiles(grid: UInt8Array, shape: tuple[int, int, int], step: float) -> Iterator[bytes]:
    """The zlib-encoded tiles of a ``shape`` image whose pixel ``(y, x)`` is
    ``grid[y // step, x // step]``, row by row, each :data:`OVERLAY_TILE` square (white beyond
    the image). A tile of one colour (glass, mostly) is neither drawn nor encoded again: it is
    told from the grid cells under it, and encoded once per colour."""
    rows, columns = grid.shape[:2]
    side = OVERLAY_TILE
    uniform: dict[bytes, bytes] = {}
    for top in range(0, shape[0], side):
        y = np.arange(top, top + side)
        grid_y = np.minimum((y / step).astype(np.intp), rows - 1)
        band = grid[grid_y[0] : grid_y[-1] + 1]
        for left in range(0, shape[1], side):
            x = np.arange(left, left + side)
            grid_x = np.minimum((x / step).astype(np.intp), columns - 1)
            cells = band[:, grid_x[0] : grid_x[-1] + 1]
            colour = cells[0, 0]
            inside = top + side <= shape[0] and left + side <= shape[1]
            if (cells == colour).all() and (inside or (colour == 255).all()):
                key = colour.tobytes()
                if key not in uniform:
                    plain = np.empty((side, side, 3), dtype=np.uint8)
                    plain[:] = colour
                    uniform[key] = _encoded(plain)
                yield uniform[key]
                continue
            tile = band[grid_y - grid_y[0]][:, grid_x]
            tile[y >= shape[0]] = 255
            tile[:, x >= shape[1]] = 255
            yield _encoded(tile)


def _encoded(tile: UInt8Array) -> bytes:
    """A tile as the TIFF's zlib (Adobe deflate) compression stores it; level 1 is fast, and
    the few colours of a heat map compress well at any level."""
    import imagecodecs

    return bytes(imagecodecs.zlib_encode(tile.tobytes(), level=1))
