"""Synthetic whole-slide images made of real images, for tests and benchmarks.

No slide can be downloaded where breastcls is tested, so tests and benchmarks write one: a
pyramidal tiled TIFF of white glass with real histology images (e.g. BreakHis) as tissue, in the
cells of a grid, with a resolution tag as scanners write it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["write_mosaic_slide"]


def _cell_pixels(path: Path, cell: int) -> npt.NDArray[np.uint8]:
    from PIL import Image

    with Image.open(path) as image:
        resized = image.convert("RGB").resize((cell, cell), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)


def write_mosaic_slide(
    path: Path,
    cells: Mapping[tuple[int, int], Path],
    *,
    columns: int,
    rows: int,
    cell: int = 224,
    mpp: float | None = 0.5,
    downsamples: Sequence[int] = (2, 4),
    compression: str = "zlib",
) -> Path:
    """Write a slide of ``columns`` x ``rows`` cells of ``cell`` pixels: white glass, and in
    each ``(column, row)`` of ``cells`` that image, resized to the cell.

    Args:
        path: The TIFF file to write (256-pixel tiles).
        cells: The image of each cell that holds tissue.
        columns: Cells across.
        rows: Cells down.
        cell: The side of a cell in level-0 pixels.
        mpp: Microns per level-0 pixel, written as the resolution tag; ``None`` writes none.
        downsamples: The pyramid's lower levels, as downsampling factors of level 0.
        compression: The tiles' compression: ``"zlib"`` (lossless) or ``"jpeg"`` (quality 90,
            as scanners write; needs ``imagecodecs``).

    Returns:
        ``path``.
    """
    if compression not in ("zlib", "jpeg"):
        raise ValueError(f"compression={compression!r}: use 'zlib' or 'jpeg'.")
    import tifffile

    slide = np.full((rows * cell, columns * cell, 3), 255, dtype=np.uint8)
    pixels: dict[Path, npt.NDArray[np.uint8]] = {}  # an image repeated is decoded once
    for (column, row), image in cells.items():
        if image not in pixels:
            pixels[image] = _cell_pixels(image, cell)
        slide[row * cell : (row + 1) * cell, column * cell : (column + 1) * cell] = pixels[image]
    # Scanners store JPEG tiles as YCbCr (OpenSlide reads them the same way as the tiff reader).
    encoding: dict[str, Any] = (
        {"compression": "jpeg", "compressionargs": {"level": 90}, "photometric": "ycbcr"}
        if compression == "jpeg"
        else {"compression": "zlib", "photometric": "rgb"}
    )
    per_cm = 1e4 / mpp if mpp is not None else None
    with tifffile.TiffWriter(path, bigtiff=slide.nbytes > 2**31) as writer:
        writer.write(
            slide, tile=(256, 256), **encoding,
            resolution=(per_cm, per_cm) if per_cm is not None else None,
            resolutionunit="CENTIMETER" if per_cm is not None else None,
        )  # fmt: skip
        for factor in downsamples:
            writer.write(
                np.ascontiguousarray(slide[::factor, ::factor]), tile=(256, 256),
                subfiletype=1, **encoding,
            )  # fmt: skip
    return path
