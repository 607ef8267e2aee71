"""A slide's thumbnail and its tissue mask, computed on a low-resolution level.

Two tissue detectors are built in (a plugin kind, :class:`~breastcls.interfaces.TissueDetector`):

- ``optical-density`` (:class:`OpticalDensityDetector`, the default): each pixel's optical
  density relative to the slide's glass, in its darkest channel. Pixels above Otsu's threshold
  (computed without marker ink) seed the tissue, which then grows over every connected pixel
  at least :data:`PALE_OD` denser than glass (hysteresis): pale tissue joined to stained tissue
  is kept, glass noise is not. Marker ink (blue, green, black: :func:`marker_pixels`) is taken
  out first, and pieces smaller than ``min_area_um2`` (dust, debris) are dropped.
- ``saturation`` (:class:`SaturationDetector`, breastcls 0.2's mask): Otsu's threshold on the
  saturation, kept within [:data:`MIN_SATURATION`, :data:`MAX_SATURATION`]. Pale tissue below
  the ceiling is lost and saturated pen ink is kept; it stays for comparison and for slides
  analysed with it before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from breastcls.slides.readers import Slide

__all__ = [
    "DEFAULT_TISSUE_DETECTOR",
    "MAX_SATURATION",
    "MIN_SATURATION",
    "OpticalDensityDetector",
    "SaturationDetector",
    "Thumbnail",
    "detect_tissue",
    "glass_optical_density",
    "marker_pixels",
    "read_thumbnail",
    "tissue_covered",
    "tissue_fractions",
]

UInt8Array = npt.NDArray[np.uint8]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_TISSUE_DETECTOR = "optical-density"
"""The tissue detector ``breastcls slide predict`` uses unless ``--tissue-detector`` says."""

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
) -> BoolArray:
    """Return the ``saturation`` detector's tissue mask of an RGB thumbnail (``True``: tissue).

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
    mask = _smoothed(saturation >= threshold)
    return _without_small_pieces(mask, min_area)


def marker_pixels(thumbnail: UInt8Array) -> BoolArray:
    """Where marker ink lies: saturated, darkish blue to green pixels (hue 60-235°: green
    exceeds red, which haematoxylin and eosin never do by much when dark), or near-black ones
    (black ink, dirt). A few pixels around each are included (the ink's blurred rim)."""
    import cv2

    hsv = cv2.cvtColor(thumbnail, cv2.COLOR_RGB2HSV)
    # OpenCV's 8-bit hue is in units of 2°: 60-235° is 30-117 (compared as uint8, no copy).
    hue, saturation, value = hsv[:, :, 0], hsv[:, :, 1], hsv[:, :, 2]
    coloured = (hue >= 30) & (hue <= 117) & (saturation >= 50) & (value <= 190)
    ink = (coloured | (value <= 60)).astype(np.uint8)
    rim = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return np.asarray(cv2.dilate(ink, rim) > 0)


def glass_optical_density(thumbnail: UInt8Array, *, blur: float = 0.0) -> FloatArray:
    """Each pixel's optical density relative to the slide's glass (the 99th percentile of each
    channel, so tinted or grey glass is 0), in its darkest channel, blurred by a Gaussian of
    ``blur`` pixels (none at 0)."""
    return _blurred(_optical_density(thumbnail), blur)


def _blurred(density: npt.NDArray[np.float32], blur: float) -> FloatArray:
    """``density`` blurred by a Gaussian of ``blur`` pixels (none at 0), as float64."""
    import cv2

    if blur <= 0:
        return np.asarray(density, dtype=np.float64)
    return np.asarray(cv2.GaussianBlur(density, (0, 0), blur), dtype=np.float64)


def _optical_density(thumbnail: UInt8Array) -> npt.NDArray[np.float32]:
    """:func:`glass_optical_density` before blurring, in float32.

    A pixel's density in a channel depends on its value alone, so each channel's 256 densities
    are computed once and looked up (the same float32 operations as on every pixel: the same
    values, at a tenth of the CPU time of a 2048-px thumbnail's 12 million logarithms).
    """
    import cv2

    levels = np.maximum(np.arange(256, dtype=np.float32), 1.0)
    table = np.log10(_glass(thumbnail) / levels[:, None]).clip(min=0.0)
    density = cv2.LUT(thumbnail, np.ascontiguousarray(table.reshape(1, 256, 3)))
    return np.maximum(np.maximum(density[..., 0], density[..., 1]), density[..., 2])


def _glass(thumbnail: UInt8Array) -> npt.NDArray[np.float32]:
    """The 99th percentile of each channel (at least 1), as ``np.percentile`` gives it on the
    float32 pixels. Found on each channel's histogram where the sorted values around it are
    equal (then every interpolation gives that value), else by ``np.percentile`` (sorting 4
    million pixels per channel cost 0.1 CPU-s)."""
    flat = thumbnail.reshape(-1, 3)
    n = len(flat)
    near = int(np.floor(0.99 * (n - 1)))
    glass = np.empty(3, dtype=np.float32)
    for channel in range(3):
        ends = np.cumsum(np.bincount(flat[:, channel], minlength=256))
        # The values at sorted positions near - 1 and near + 2 (a margin around the index
        # numpy computes in floating point): the smallest v with ends[v] > position.
        low, high = np.searchsorted(ends, [max(near - 1, 0) + 1, min(near + 2, n - 1) + 1])
        if low == high:
            glass[channel] = low
        else:
            glass[channel] = np.percentile(flat[:, channel].astype(np.float32), 99)
    return np.maximum(glass, np.float32(1.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class OpticalDensityDetector:
    """The ``optical-density`` tissue detector (see the module's description).

    Attributes:
        pale_od: The least optical density over glass that tissue grows into.
        min_seed_od: The least threshold for seeds, whatever Otsu's threshold says.
        min_area_um2: The smallest piece of tissue kept, in µm² (2,500: a 50 µm square).
        min_area_pixels: The same in thumbnail pixels, for slides without a resolution.
    """

    pale_od: float = 0.02
    min_seed_od: float = 0.05
    min_area_um2: float = 2_500.0
    min_area_pixels: int = 64

    def detect(self, thumbnail: UInt8Array, *, microns_per_pixel: float | None) -> BoolArray:
        """Return the tissue mask of an RGB thumbnail (``True``: tissue)."""
        import cv2

        # Seeds on a blurred density (noise never seeds), growth on the sharp one (the mask
        # stops at the tissue's edge instead of the blur's).
        sharp = _optical_density(thumbnail)
        density = _blurred(sharp, 2.0)
        clean = ~marker_pixels(thumbnail)
        if not clean.any():
            return np.zeros(density.shape, dtype=bool)
        scaled = np.clip(density[clean] * 255.0, 0, 255).astype(np.uint8).reshape(-1, 1)
        otsu, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        seeds = (density >= max(float(otsu) / 255.0, self.min_seed_od)) & clean
        candidates = (_blurred(sharp, 0.0) >= self.pale_od) & clean
        count, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
        seeded = np.zeros(count, dtype=bool)
        seeded[np.unique(labels[seeds])] = True
        seeded[0] = False  # label 0 is what is not a candidate
        min_area = (
            self.min_area_um2 / microns_per_pixel**2
            if microns_per_pixel is not None
            else self.min_area_pixels
        )
        return _without_small_pieces(_smoothed(seeded[labels]), max(1, round(min_area)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SaturationDetector:
    """The ``saturation`` tissue detector: :func:`detect_tissue` (breastcls 0.2's mask)."""

    def detect(self, thumbnail: UInt8Array, *, microns_per_pixel: float | None) -> BoolArray:
        """Return the tissue mask of an RGB thumbnail (``True``: tissue); the resolution is
        not used."""
        return detect_tissue(thumbnail)


def _smoothed(raw: BoolArray) -> BoolArray:
    """A morphological closing then opening, with a disc of about 1/400 of the shorter side."""
    import cv2

    side = max(3, 2 * round(min(raw.shape[:2]) / 400) + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    closed = cv2.morphologyEx(raw.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    return np.asarray(cv2.morphologyEx(closed, cv2.MORPH_OPEN, kernel) > 0)


def _without_small_pieces(mask: BoolArray, min_area: int) -> BoolArray:
    """``mask`` without its connected pieces of fewer than ``min_area`` pixels."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return np.asarray(keep[labels], dtype=bool)


def tissue_fractions(
    mask: BoolArray,
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


def tissue_covered(
    mask: BoolArray, downsample: float, boxes: npt.NDArray[np.float64]
) -> float | None:
    """The fraction of the tissue in ``mask`` that lies under at least one level-0 box
    ``(x, y, width, height)`` (the tissue classified, when the boxes are the classified tiles);
    ``None`` for an empty mask."""
    if not mask.any():
        return None
    h, w = mask.shape
    covered = np.zeros(mask.shape, dtype=bool)
    for x, y, bw, bh in boxes:
        # The mask pixels whose centre lies in the box.
        x0, x1 = (max(0, min(w, round(v / downsample))) for v in (x, x + bw))
        y0, y1 = (max(0, min(h, round(v / downsample))) for v in (y, y + bh))
        covered[y0:y1, x0:x1] = True
    return float((mask & covered).sum() / mask.sum())
