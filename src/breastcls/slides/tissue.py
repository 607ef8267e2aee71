"""A slide's thumbnail and its tissue mask, computed on a low-resolution level.

Tissue is told from glass by its colour: stained tissue is saturated, glass is white or grey.
The mask is Otsu's threshold on the (slightly blurred) saturation channel of the thumbnail, kept
within [:data:`MIN_SATURATION`, :data:`MAX_SATURATION`], then a morphological closing and
opening, and the removal of specks smaller than ``min_area``. The floor keeps an empty slide's
noise from being called tissue; the ceiling matters when the tissue itself is partly pale (benign
stroma, fat): Otsu's threshold then falls between pale and dark tissue instead of between glass
and tissue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from breastcls.slides.readers import Slide

__all__ = [
    "MAX_SATURATION",
    "MIN_SATURATION",
    "Thumbnail",
    "detect_tissue",
    "read_thumbnail",
    "tissue_fractions",
]

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]

MIN_SATURATION = 8
"""The lowest saturation (0-255) ever called tissue, whatever Otsu's threshold says."""
MAX_SATURATION = 15
"""The highest threshold used: pixels at least this saturated are always tissue."""
# Level pixels read at a time while building a thumbnail from a level without a small one.
_CHUNK = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class Thumbnail:
    """A small RGB picture of the whole slide.

    Attributes:
        pixels: ``(h, w, 3)`` RGB.
        downsample: Level-0 pixels per thumbnail pixel (the same along both axes, up to
            rounding).
    """

    pixels: UInt8Array
    downsample: float


def read_thumbnail(slide: Slide, *, max_side: int = 2048) -> Thumbnail:
    """Read the slide at a scale whose longer side is at most ``max_side`` pixels.

    The smallest level at least that large is read region by region (:data:`_CHUNK` pixels at
    a time) and each region is shrunk on its own, so memory stays bounded for any slide.
    """
    import cv2

    base = slide.levels[0]
    downsample = (
        max(base.width, base.height) / max_side if max(base.width, base.height) > max_side else 1.0
    )
    out_w = max(1, round(base.width / downsample))
    out_h = max(1, round(base.height / downsample))
    usable = [i for i, lv in enumerate(slide.levels) if lv.downsample <= downsample * (1 + 1e-6)]
    index = max(usable, key=lambda i: slide.levels[i].downsample)
    level = slide.levels[index]
    scale_x, scale_y = out_w / level.width, out_h / level.height
    out = np.empty((out_h, out_w, 3), dtype=np.uint8)
    for top in range(0, level.height, _CHUNK):
        for left in range(0, level.width, _CHUNK):
            h, w = min(_CHUNK, level.height - top), min(_CHUNK, level.width - left)
            oy0, oy1 = round(top * scale_y), round((top + h) * scale_y)
            ox0, ox1 = round(left * scale_x), round((left + w) * scale_x)
            if oy1 <= oy0 or ox1 <= ox0:
                continue
            region = slide.read_region(index, left, top, w, h)
            if (ox1 - ox0, oy1 - oy0) != (w, h):
                region = np.asarray(
                    cv2.resize(region, (ox1 - ox0, oy1 - oy0), interpolation=cv2.INTER_AREA),
                    dtype=np.uint8,
                )
            out[oy0:oy1, ox0:ox1] = region
    return Thumbnail(pixels=out, downsample=base.width / out_w)


def detect_tissue(
    thumbnail: UInt8Array,
    *,
    min_saturation: int = MIN_SATURATION,
    max_saturation: int = MAX_SATURATION,
    min_area: int = 16,
) -> npt.NDArray[np.bool_]:
    """Return the tissue mask of an RGB thumbnail (``True``: tissue).

    Args:
        thumbnail: ``(h, w, 3)`` RGB.
        min_saturation: The lowest threshold on saturation (0-255).
        max_saturation: The highest threshold on saturation (0-255).
        min_area: Connected pieces of tissue smaller than this many thumbnail pixels are
            dropped (dust, specks).
    """
    import cv2

    hsv = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)
    saturation = cv2.GaussianBlur(hsv[:, :, 1], (0, 0), 2.0)
    otsu, _ = cv2.threshold(saturation, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    threshold = min(max(float(otsu), float(min_saturation)), float(max_saturation))
    raw = (saturation >= threshold).astype(np.uint8)
    side = max(3, 2 * round(min(thumbnail.shape[:2]) / 400) + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    closed = cv2.morphologyEx(raw, cv2.MORPH_CLOSE, kernel)
    mask = cv2.morphologyEx(closed, cv2.MORPH_OPEN, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return np.asarray(keep[labels], dtype=bool)


def tissue_fractions(
    mask: npt.NDArray[np.bool_],
    downsample: float,
    boxes: npt.NDArray[np.float64],
) -> FloatArray:
    """The fraction of tissue under each level-0 box ``(x, y, width, height)``, measured on
    ``mask`` (whose pixels are ``downsample`` level-0 pixels wide); a box covers at least one
    mask pixel."""
    import cv2

    integral = cv2.integral(mask.astype(np.uint8), sdepth=cv2.CV_64F)
    h, w = mask.shape
    fractions = np.zeros(len(boxes), dtype=np.float64)
    for i, (x, y, bw, bh) in enumerate(boxes):
        x0 = min(max(math.floor(x / downsample), 0), w - 1)
        y0 = min(max(math.floor(y / downsample), 0), h - 1)
        x1 = min(max(math.ceil((x + bw) / downsample), x0 + 1), w)
        y1 = min(max(math.ceil((y + bh) / downsample), y0 + 1), h)
        total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
        fractions[i] = total / ((x1 - x0) * (y1 - y0))
    return fractions
