"""Slide readers: the plugin kind that opens whole-slide images, and the built-in ones.

A :class:`~breastcls.interfaces.SlideReader` (the contract lives in the core
:mod:`breastcls.interfaces`, re-exported here) recognises the files it can open and opens one
as a :class:`~breastcls.interfaces.Slide`: a pyramid of levels from which rectangular regions
are read on demand, so that no caller ever holds a whole slide in memory. Readers register
through the ``breastcls_register_slide_readers`` hook, the built-in ones included:

* ``tiff`` (:class:`TiffSlideReader`): tiled or stripped TIFF files, pyramidal or flat, read
  with ``tifffile`` one tile (or strip) at a time. Generic pyramidal TIFFs, Aperio SVS and
  Hamamatsu NDPI files are TIFF files; their JPEG-compressed tiles need ``imagecodecs``.
* ``image`` (:class:`ImageSlideReader`): large flat PNG and JPEG images. These formats have no
  tiles, so the image is decoded once, whole, when the slide is opened.

* ``openslide`` (:class:`OpenSlideReader`): the vendor formats OpenSlide reads (Aperio SVS,
  Hamamatsu NDPI, 3DHistech MRXS, Leica SCN, Philips TIFF...), through ``openslide-python``
  and the ``openslide-bin`` library wheels (``breastcls[slides]``). A generic tiled TIFF goes
  to ``tiff``, which reads it with the same pixels at a third of the CPU time.

Importing this module imports neither TensorFlow nor ``tifffile`` nor OpenSlide.
"""

from __future__ import annotations

import importlib.util
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError, DataError
from breastcls.interfaces import GLASS, Slide, SlideLevel, SlideReader

__all__ = [
    "GLASS",
    "ImageSlideReader",
    "OpenSlideReader",
    "Slide",
    "SlideLevel",
    "SlideReader",
    "TiffSlideReader",
]

UInt8Array = npt.NDArray[np.uint8]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Decoded tiles kept per slide: overlapping model tiles read the same TIFF tiles again, and a
# row of model tiles reads again the row of TIFF tiles it shares with the row above. The cache
# holds two rows of the widest level's tiles and two more, at least _TILE_CACHE tiles, and at
# most _CACHE_BYTES of decoded pixels beyond those (:func:`_cache_rows`).
_TILE_CACHE = 64
_CACHE_BYTES = 64 << 20


def _magic(path: Path, size: int = 8) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def _as_rgb(array: npt.NDArray[Any], what: str) -> UInt8Array:
    """An image array as ``(h, w, 3)`` 8-bit RGB (grey replicated, alpha dropped)."""
    if array.dtype != np.uint8:
        if array.dtype == np.uint16:
            array = (array >> 8).astype(np.uint8)
        else:
            raise DataError(f"{what} has {array.dtype} samples: breastcls reads 8-bit slides.")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise DataError(f"{what} has pixels of shape {array.shape[2:]}: not grey or RGB.")
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def _check_region(slide: Slide, level: int, width: int, height: int) -> None:
    if not 0 <= level < len(slide.levels):
        raise DataError(
            f"{slide.path} has levels 0-{len(slide.levels) - 1}: there is no level {level}."
        )
    if width <= 0 or height <= 0:
        raise DataError(f"A region of {width}x{height} pixels is empty.")


def _clipped(
    size: tuple[int, int], x: int, y: int, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """The part of a region inside a ``(width, height)`` level: ``(x0, y0, x1, y1)``."""
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, size[0]), min(y + height, size[1])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


# TIFF resolution units: 2 = inch, 3 = centimetre (1 = none).
_MICRONS_PER_UNIT = {2: 25_400.0, 3: 10_000.0}
_APERIO_MPP = re.compile(r"\bMPP\s*=\s*([0-9.]+)")
_APERIO_MAG = re.compile(r"\bAppMag\s*=\s*([0-9.]+)")


def _tiff_mpp(page: Any) -> float | None:
    """Microns per pixel of a TIFF page: Aperio's ``MPP =`` in the description, else the
    ``XResolution`` tag when its unit is an inch or a centimetre."""
    description = str(getattr(page, "description", "") or "")
    match = _APERIO_MPP.search(description)
    if match:
        try:
            value = float(match.group(1))
        except ValueError:
            value = 0.0
        if value > 0 and math.isfinite(value):
            return value
    tags = page.tags
    unit_tag, x_tag = tags.get("ResolutionUnit"), tags.get("XResolution")
    if unit_tag is None or x_tag is None:
        return None
    microns = _MICRONS_PER_UNIT.get(int(unit_tag.value))
    numerator, denominator = x_tag.value
    if microns is None or not numerator or not denominator:
        return None
    pixels_per_unit = numerator / denominator
    mpp = microns / pixels_per_unit
    return mpp if math.isfinite(mpp) and mpp > 0 else None


def _tiff_power(page: Any) -> float | None:
    match = _APERIO_MAG.search(str(getattr(page, "description", "") or ""))
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


def _cache_rows(pages: list[Any]) -> int:
    """How many decoded tiles make two rows of the widest level and two, in tiles; and at most
    :data:`_CACHE_BYTES` of them."""
    wanted = _TILE_CACHE
    for page in pages:
        chunk_h, chunk_w = int(page.chunks[0]), int(page.chunks[1])
        columns = int(page.chunked[1]) if len(page.chunked) > 1 else 1
        fit = _CACHE_BYTES // max(1, chunk_h * chunk_w * 3)
        wanted = max(wanted, min(2 * columns + 2, fit))
    return wanted


def _truncated(path: Path, size: int, end: int, what: str) -> DataError:
    return DataError(
        f"{path} is truncated: the file ends at byte {size:,} but {what} run to byte {end:,} "
        "(an interrupted copy or download): copy the slide again."
    )


# Compressions whose codecs tifffile takes from imagecodecs (zlib, LZW, packbits are built in).
_IMAGECODECS = ("JPEG", "JPEG2000", "APERIO", "JPEGXL", "WEBP", "ZSTD", "LERC")


def _undecodable(path: Path, page: Any, level: int, index: int, error: Exception) -> DataError:
    compression = str(getattr(page.compression, "name", page.compression))
    where = f"{path}: cannot decode tile {index} of level {level} (compression {compression}"
    needs_codecs = any(name in compression.upper() for name in _IMAGECODECS)
    if needs_codecs and importlib.util.find_spec("imagecodecs") is None:
        return DataError(
            f"{where}; {type(error).__name__}: {error}): {compression} tiles need "
            "`pip install imagecodecs`."
        )
    return DataError(
        f"{where}): the tile's data is damaged ({type(error).__name__}: {error}); the file may "
        "be corrupt or was changed while it was read: copy the slide again, or check it with the "
        "scanner's software."
    )


class _TiffSlide:
    """A TIFF file open for reading regions, one tile (or strip) at a time."""

    def __init__(self, path: Path) -> None:
        import tifffile

        self.path = path
        try:
            self._tiff = tifffile.TiffFile(path)
            pages = self._pyramid(self._tiff)
        except DataError:
            raise
        except Exception as error:
            raise DataError(
                f"{path} is not a readable TIFF ({type(error).__name__}: {error}): check the "
                "file is complete, or convert it."
            ) from error
        self._pages = pages
        base = pages[0]
        width = int(base.imagewidth)
        self.levels = tuple(
            SlideLevel(
                width=int(p.imagewidth),
                height=int(p.imagelength),
                downsample=width / int(p.imagewidth),
            )
            for p in pages
        )
        self.mpp = _tiff_mpp(base)
        self.objective_power = _tiff_power(base)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], UInt8Array] = OrderedDict()
        self._cache_size = _cache_rows(pages)

    def _pyramid(self, tiff: Any) -> list[Any]:
        """The pages of the main image's pyramid, largest first."""
        if not tiff.series:
            raise DataError(f"{self.path} holds no image.")
        levels = [level.pages[0] for level in tiff.series[0].levels]
        pages = [p for p in levels if p is not None and hasattr(p, "imagewidth")]
        if not pages:
            raise DataError(f"{self.path} holds no image.")
        pages.sort(key=lambda p: -int(p.imagewidth))
        for page in pages:
            if int(page.planarconfig) != 1 and int(page.samplesperpixel) > 1:
                raise DataError(
                    f"{self.path} stores its colour planes separately (planar configuration "
                    f"{int(page.planarconfig)}): convert it to a tiled TIFF with interleaved RGB."
                )
            if len(page.shape) not in (2, 3):
                raise DataError(f"{self.path} holds a {len(page.shape)}-D image, not a slide.")
        size = int(tiff.filehandle.size)
        for level, page in enumerate(pages):
            pieces = zip(page.dataoffsets, page.databytecounts, strict=True)
            ends = [int(offset) + int(count) for offset, count in pieces if count]
            if ends and max(ends) > size:
                raise _truncated(self.path, size, max(ends), f"level {level}'s tiles")
        return pages

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> UInt8Array:
        _check_region(self, level, width, height)
        page = self._pages[level]
        out = np.full((height, width, 3), GLASS, dtype=np.uint8)
        inside = _clipped((self.levels[level].width, self.levels[level].height), x, y, width,
                          height)  # fmt: skip
        if inside is None:
            return out
        x0, y0, x1, y1 = inside
        chunk_h, chunk_w = int(page.chunks[0]), int(page.chunks[1])
        columns = int(page.chunked[1]) if len(page.chunked) > 1 else 1
        for row in range(y0 // chunk_h, (y1 - 1) // chunk_h + 1):
            for column in range(x0 // chunk_w, (x1 - 1) // chunk_w + 1):
                tile = self._segment(level, row * columns + column, chunk_h, chunk_w)
                top, left = row * chunk_h, column * chunk_w
                sy0, sy1 = max(y0, top), min(y1, top + chunk_h)
                sx0, sx1 = max(x0, left), min(x1, left + chunk_w)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - top : sy1 - top, sx0 - left : sx1 - left
                ]
        return out

    def _segment(self, level: int, index: int, chunk_h: int, chunk_w: int) -> UInt8Array:
        key = (level, index)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            page = self._pages[level]
            offset, count = page.dataoffsets[index], page.databytecounts[index]
            handle = self._tiff.filehandle
            handle.seek(offset)
            data = handle.read(count)
        if len(data) < count:
            raise _truncated(self.path, offset + len(data), offset + count, f"tile {index}")
        try:
            decoded, _, _ = page.decode(data if count else None, index, jpegtables=page.jpegtables)
        except Exception as error:
            raise _undecodable(self.path, page, level, index, error) from error
        if decoded is None:  # a tile the writer left out: empty glass
            tile = np.full((chunk_h, chunk_w, 3), GLASS, dtype=np.uint8)
        else:
            array = np.asarray(decoded)
            tile = _as_rgb(array.reshape(array.shape[-3:]), f"{self.path} level {level}")
        with self._lock:
            self._cache[key] = tile
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return tile

    def close(self) -> None:
        self._tiff.close()


class _ImageSlide:
    """A flat PNG or JPEG image, decoded whole when opened (these formats have no tiles)."""

    def __init__(self, path: Path) -> None:
        from PIL import Image

        self.path = path
        try:
            # A slide is larger than Pillow's decompression-bomb limit by nature; the caller
            # chose to open it as a slide.
            with Image.open(path) as image:
                image.draft("RGB", image.size)
                size = image.size
                if size[0] * size[1] > 2**31:
                    raise DataError(
                        f"{path} is {size[0]}x{size[1]} pixels: too large to decode whole; "
                        "convert it to a tiled pyramidal TIFF."
                    )
                self._pixels = _as_rgb(np.asarray(image.convert("RGB")), str(path))
                dpi = image.info.get("dpi")
        except DataError:
            raise
        except Exception as error:
            raise DataError(
                f"{path} is not a readable image ({type(error).__name__}: {error})."
            ) from error
        height, width = self._pixels.shape[:2]
        self.levels: tuple[SlideLevel, ...] = (
            SlideLevel(width=width, height=height, downsample=1.0),
        )
        self.mpp = _dpi_mpp(dpi)
        self.objective_power: float | None = None

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> UInt8Array:
        _check_region(self, level, width, height)
        out = np.full((height, width, 3), GLASS, dtype=np.uint8)
        inside = _clipped((self.levels[0].width, self.levels[0].height), x, y, width, height)
        if inside is not None:
            x0, y0, x1, y1 = inside
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._pixels[y0:y1, x0:x1]
        return out

    def close(self) -> None:
        self._pixels = np.zeros((0, 0, 3), dtype=np.uint8)


def _dpi_mpp(dpi: Any) -> float | None:
    """Microns per pixel from a PNG/JPEG ``dpi`` (only when it is plausible for a microscope:
    screen and print defaults such as 72 or 300 dpi say nothing about the specimen)."""
    try:
        value = float(dpi[0])
    except (TypeError, ValueError, IndexError):
        return None
    if value < 5_000:  # coarser than 5 µm per pixel: a default, not a scanner's resolution
        return None
    return 25_400.0 / value


def _positive(text: str | None) -> float | None:
    """A positive finite number from a metadata string, else ``None``."""
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


class _OpenSlide:
    """A slide open with OpenSlide, which reads each format's tiles itself."""

    def __init__(self, path: Path, openslide: Any) -> None:
        self.path = path
        try:
            self._slide = openslide.OpenSlide(str(path))
            dimensions = self._slide.level_dimensions
            downsamples = self._slide.level_downsamples
            properties = self._slide.properties
        except openslide.OpenSlideError as error:
            raise DataError(
                f"{path} cannot be read by OpenSlide ({error}): check the file is complete "
                "(an MRXS slide needs its data folder beside it), or convert it."
            ) from error
        self.levels = tuple(
            SlideLevel(width=int(w), height=int(h), downsample=float(d))
            for (w, h), d in zip(dimensions, downsamples, strict=True)
        )
        self.mpp = _positive(properties.get(openslide.PROPERTY_NAME_MPP_X))
        self.objective_power = _positive(properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
        self._error = openslide.OpenSlideError
        self._direct = _direct_reader(openslide, self._slide)

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> UInt8Array:
        _check_region(self, level, width, height)
        # OpenSlide places a region of any level by its level-0 top-left corner.
        downsample = self.levels[level].downsample
        origin = (round(x * downsample), round(y * downsample))
        try:
            if self._direct is not None:
                opaque = self._direct(origin, level, width, height)
                if opaque is not None:
                    return opaque
            rgba = np.asarray(self._slide.read_region(origin, level, (width, height)))
        except self._error as error:
            raise DataError(
                f"{self.path}: OpenSlide cannot read a region of level {level} ({error}); the "
                "file is damaged."
            ) from error
        # Outside the scanned area OpenSlide returns transparent pixels: composite them on
        # white glass, as the other readers pad. Inside it (nearly every tile) the pixels are
        # opaque and the 16-bit composite, over a quarter of a tile's reading time, is skipped.
        if rgba[:, :, 3].min() == 255:
            return np.ascontiguousarray(rgba[:, :, :3])
        alpha = rgba[:, :, 3:4].astype(np.uint16)
        rgb = (rgba[:, :, :3].astype(np.uint16) * alpha + GLASS * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)

    def close(self) -> None:
        self._slide.close()


_DirectRead = Callable[[tuple[int, int], int, int, int], "UInt8Array | None"]


def _direct_reader(openslide: Any, slide: Any) -> _DirectRead | None:
    """A faster way to read an opaque region with OpenSlide, or ``None`` where there is none.

    ``OpenSlide.read_region`` returns a Pillow image: OpenSlide's premultiplied ARGB pixels
    converted to RGBA, then copied again into an array, about a fifth of a 224-pixel tile's
    reading time. This reads the ARGB words into an array and, when every pixel is opaque
    (premultiplied and straight colour are then the same), takes the RGB bytes out in one
    OpenCV call. It returns ``None`` for a region with transparent pixels, which the caller
    reads again the documented way. It uses ``openslide.lowlevel`` (openslide-python 1.2 and
    later) and little-endian words; elsewhere only the documented way is used.
    """
    import ctypes
    import sys

    lowlevel = getattr(openslide, "lowlevel", None)
    read = getattr(lowlevel, "_read_region", None)
    handle = getattr(slide, "_osr", None)
    if read is None or handle is None or sys.byteorder != "little":
        return None
    import cv2

    pointer = ctypes.POINTER(ctypes.c_uint32)

    def read_opaque(
        origin: tuple[int, int], level: int, width: int, height: int
    ) -> UInt8Array | None:
        words = np.empty((height, width), dtype=np.uint32)
        read(handle, words.ctypes.data_as(pointer), origin[0], origin[1], level, width, height)
        bgra = words.view(np.uint8).reshape(height, width, 4)  # B, G, R, A in memory
        if bgra[:, :, 3].min() != 255:
            return None
        return np.asarray(cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGB), dtype=np.uint8)

    return read_opaque


def _import_openslide() -> Any:
    """The ``openslide`` module, or ``None`` when it (or its library) is not installed."""
    try:
        import openslide
    except (ImportError, OSError):  # OSError: the Python package without its C library
        return None
    return openslide


@dataclass(frozen=True, slots=True)
class OpenSlideReader:
    """The vendor formats OpenSlide reads (``openslide``): SVS, NDPI, MRXS, SCN, Philips TIFF
    and more; OpenSlide decodes each format's tiles itself (no ``imagecodecs`` needed).

    A generic tiled TIFF is left to the ``tiff`` reader, which reads it with the same pixels
    (tested, zlib and JPEG tiles) at about a third of OpenSlide's CPU time per tile; ``--reader
    openslide`` (``reader="openslide"``) still opens one with OpenSlide.
    """

    def accepts(self, path: Path) -> bool:
        """Whether OpenSlide is installed and recognises ``path`` as a vendor format."""
        openslide = _import_openslide()
        if openslide is None:
            return False
        try:
            vendor = openslide.OpenSlide.detect_format(str(path))
        except (openslide.OpenSlideError, OSError):
            return False
        return vendor is not None and vendor != "generic-tiff"

    def open(self, path: Path) -> Slide:
        """Open a slide with OpenSlide.

        Raises:
            ConfigError: OpenSlide is not installed.
            DataError: The file is damaged or not of a format OpenSlide reads.
        """
        openslide = _import_openslide()
        if openslide is None:
            raise ConfigError(
                f"{path}: the openslide slide reader needs OpenSlide, which is not installed: "
                "pip install 'breastcls[slides]' (openslide-python and openslide-bin), or choose "
                "another --reader."
            )
        return _OpenSlide(Path(path), openslide)


@dataclass(frozen=True, slots=True)
class TiffSlideReader:
    """Tiled or stripped TIFF files, pyramidal or flat (``tiff``): regions are decoded one
    tile at a time, from the level asked for."""

    def accepts(self, path: Path) -> bool:
        """Whether ``path`` starts like a TIFF or BigTIFF file."""
        return _magic(path, 4) in _TIFF_MAGIC

    def open(self, path: Path) -> Slide:
        """Open a TIFF slide.

        Raises:
            DataError: The file is damaged, not a TIFF, or not an 8-bit grey or RGB image.
        """
        return _TiffSlide(Path(path))


@dataclass(frozen=True, slots=True)
class ImageSlideReader:
    """Large flat PNG and JPEG images (``image``), decoded whole when opened."""

    def accepts(self, path: Path) -> bool:
        """Whether ``path`` starts like a PNG or JPEG file."""
        head = _magic(path)
        return head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC)

    def open(self, path: Path) -> Slide:
        """Open a PNG or JPEG image as a one-level slide.

        Raises:
            DataError: The file is damaged or not an image.
        """
        from PIL import Image

        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return _ImageSlide(Path(path))
        finally:
            Image.MAX_IMAGE_PIXELS = limit
