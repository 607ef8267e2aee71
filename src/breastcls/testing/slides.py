"""Synthetic whole-slide images made of real images, for tests and benchmarks.

No slide can be downloaded where breastcls is tested, so tests and benchmarks write one: a
pyramidal tiled TIFF of white glass with real histology images (e.g. BreakHis) as tissue, in the
cells of a grid, with a resolution tag as scanners write it.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "draw_dust",
    "draw_pen_stroke",
    "lightened",
    "mosaic_pixels",
    "write_mosaic_slide",
    "write_slide_pixels",
]

UInt8Array = npt.NDArray[np.uint8]
PEN_COLOURS: dict[str, tuple[int, int, int]] = {
    "blue": (35, 60, 150),
    "green": (40, 125, 70),
    "black": (35, 35, 40),
}
"""Marker ink as a scanner sees it (RGB), for :func:`draw_pen_stroke`."""


def _cell_pixels(path: Path, cell: int) -> UInt8Array:
    from PIL import Image

    with Image.open(path) as image:
        resized = image.convert("RGB").resize((cell, cell), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)


def mosaic_pixels(
    cells: Mapping[tuple[int, int], Path | UInt8Array],
    *,
    columns: int,
    rows: int,
    cell: int = 224,
) -> UInt8Array:
    """The level-0 pixels of a slide of ``columns`` x ``rows`` cells of ``cell`` pixels: white
    glass, and in each ``(column, row)`` of ``cells`` that image (a file, resized to the cell,
    or a ``(cell, cell, 3)`` array)."""
    slide = np.full((rows * cell, columns * cell, 3), 255, dtype=np.uint8)
    decoded: dict[Path, UInt8Array] = {}  # an image repeated is decoded once
    for (column, row), image in cells.items():
        if isinstance(image, np.ndarray):
            pixels = image
        else:
            if image not in decoded:
                decoded[image] = _cell_pixels(image, cell)
            pixels = decoded[image]
        slide[row * cell : (row + 1) * cell, column * cell : (column + 1) * cell] = pixels
    return slide


def lightened(pixels: UInt8Array, strength: float) -> UInt8Array:
    """``pixels`` blended towards white by ``strength`` (0: unchanged, 1: white): pale tissue,
    as thin or weakly stained sections look."""
    out = 255.0 - (255.0 - pixels.astype(np.float64)) * (1.0 - strength)
    return np.asarray(np.clip(np.round(out), 0, 255), dtype=np.uint8)


def draw_pen_stroke(
    slide: UInt8Array,
    points: Sequence[tuple[int, int]],
    *,
    width: int,
    colour: str = "blue",
) -> UInt8Array:
    """Draw a marker stroke through ``points`` (level-0 ``(x, y)``), ``width`` pixels wide, in
    one of :data:`PEN_COLOURS`, in place; return ``slide``."""
    import cv2

    ink = PEN_COLOURS[colour]
    for start, end in itertools.pairwise(points):
        cv2.line(slide, start, end, ink, thickness=width, lineType=cv2.LINE_AA)
    return slide


def draw_dust(
    slide: UInt8Array,
    centres: Sequence[tuple[int, int]],
    *,
    radius: int,
    colour: tuple[int, int, int] = (70, 60, 55),
) -> UInt8Array:
    """Draw specks of debris (filled discs of ``radius`` pixels, dark brown-grey by default)
    at ``centres`` (level-0 ``(x, y)``), in place; return ``slide``."""
    import cv2

    for centre in centres:
        cv2.circle(slide, centre, radius, colour, thickness=-1, lineType=cv2.LINE_AA)
    return slide


def write_mosaic_slide(
    path: Path,
    cells: Mapping[tuple[int, int], Path | UInt8Array],
    *,
    columns: int,
    rows: int,
    cell: int = 224,
    mpp: float | None = 0.5,
    downsamples: Sequence[int] = (2, 4),
    compression: str = "zlib",
) -> Path:
    """Write a slide of ``columns`` x ``rows`` cells of ``cell`` pixels (:func:`mosaic_pixels`)
    with :func:`write_slide_pixels`; return ``path``."""
    pixels = mosaic_pixels(cells, columns=columns, rows=rows, cell=cell)
    return write_slide_pixels(
        path, pixels, mpp=mpp, downsamples=downsamples, compression=compression
    )


def write_slide_pixels(
    path: Path,
    slide: UInt8Array,
    *,
    mpp: float | None = 0.5,
    downsamples: Sequence[int] = (2, 4),
    compression: str = "zlib",
) -> Path:
    """Write level-0 RGB pixels as a pyramidal tiled TIFF, with a resolution tag as scanners
    write it.

    Args:
        path: The TIFF file to write (256-pixel tiles).
        slide: ``(h, w, 3)`` RGB level-0 pixels.
        mpp: Microns per level-0 pixel, written as the resolution tag; ``None`` writes none.
        downsamples: The pyramid's lower levels, as downsampling factors of level 0.
        compression: The tiles' compression: ``"zlib"`` (lossless) or ``"jpeg"`` (quality 90,
            YCbCr with 2x2 chroma subsampling, as scanners write; needs ``imagecodecs``).

    Returns:
        ``path``.
    """
    if compression not in ("zlib", "jpeg"):
        raise ValueError(f"compression={compression!r}: use 'zlib' or 'jpeg'.")
    import tifffile

    # The pixels are RGB; tifffile stores JPEG tiles of RGB data as YCbCr with 2x2 chroma
    # subsampling, as scanners do. (``photometric="ycbcr"`` would declare the data already
    # YCbCr, and white glass would read back magenta.)
    encoding: dict[str, Any] = (
        {
            "compression": "jpeg",
            "compressionargs": {"level": 90},
            "photometric": "rgb",
            "subsampling": (2, 2),
        }
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
