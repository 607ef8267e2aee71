"""Image decoding with Pillow: every supported file becomes an 8-bit RGB array, or a DataError.

TensorFlow's own decoders are faster and are used for the common case (8-bit PNG, JPEG, BMP
without an EXIF rotation); :func:`inspect_image` decides which files need this Pillow path
(TIFF, CMYK, 16-bit, EXIF-rotated...).
"""

from __future__ import annotations

import hashlib
import os
import struct
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from breastcls.data.perceptual import difference_hash
from breastcls.errors import DataError
from breastcls.interfaces import Sample, SkippedFile
from breastcls.limits import env_limit

__all__ = [
    "DECODE_LIMIT_VARIABLE",
    "IMAGE_EXTENSIONS",
    "MAX_DECODE_BYTES",
    "MAX_PAGES",
    "ImageInfo",
    "decode_image",
    "expand_image_files",
    "inspect_image",
    "scan_samples",
]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
_TF_NATIVE_FORMATS = frozenset({"PNG", "JPEG", "BMP"})
_TF_NATIVE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P"})
_EXIF_ORIENTATION = 0x0112

MAX_PAGES = 1000
"""The most pages (IFDs) a TIFF may have. Only the first is used, and counting a chain of a
million IFDs would take minutes; the chain is walked on its headers only, up to this cap."""
MAX_DECODE_BYTES = 1 << 30
"""The most memory one image's decoding may take at its peak (1 GiB): the pixels at their bit
depth plus the working copies of the conversion to 8-bit RGB. With ``scan_samples``' four
threads, decoding never needs more than four times this."""
DECODE_LIMIT_VARIABLE = "BREASTCLS_MAX_DECODE_BYTES"
"""The environment variable that raises :data:`MAX_DECODE_BYTES` for trusted large images."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageInfo:
    """What a full decode of one image file found.

    Attributes:
        path: The file.
        format: Pillow's format name (``PNG``, ``JPEG``...).
        mode: Pillow's mode before conversion (``RGB``, ``L``, ``I;16``, ``CMYK``...).
        width: Width in pixels (after EXIF orientation).
        height: Height in pixels (after EXIF orientation).
        tf_native: Whether TensorFlow's decoder gives the same RGB image (fast path).
        frames: Number of frames or pages (a multi-page TIFF has several; the first is used).
        pixel_sha1: SHA-1 of the decoded RGB pixels and their shape: equal for identical
            images saved in different files or formats.
        dhash: Difference hash of a small grayscale thumbnail
            (:func:`~breastcls.data.perceptual.difference_hash`): close for near copies (a JPEG
            re-save, a resized or slightly cropped copy).
    """

    path: Path
    format: str
    mode: str
    width: int
    height: int
    tf_native: bool
    frames: int = 1
    pixel_sha1: str = ""
    dhash: str = ""


def _open(path: Path) -> Image.Image:
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes); remove it or copy it again.")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            _check_pages(image, path)
            _check_decode_bytes(image, path)
            image.load()
    except DataError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataError(
            f"{path}: image is too large to decode safely ({error}); downscale or tile it, or "
            "raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted."
        ) from error
    except FileNotFoundError as error:
        raise DataError(f"{path}: file not found (moved or deleted since listing).") from error
    except UnidentifiedImageError as error:
        raise DataError(f"{path}: not a readable image (unknown or corrupt format).") from error
    except PermissionError as error:
        raise DataError(f"{path}: permission denied; make the file readable.") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise DataError(f"{path}: corrupt or truncated image ({error}).") from error
    return image


def _check_pages(image: Image.Image, path: Path) -> None:
    if image.format == "TIFF" and _tiff_pages(path, limit=MAX_PAGES) > MAX_PAGES:
        raise DataError(
            f"{path}: a TIFF with more than {MAX_PAGES} pages (IFDs); only the first page is "
            "used: save that page as an image of its own."
        )


def _tiff_pages(path: Path, *, limit: int) -> int:
    """The number of IFDs in a TIFF file, counted up to ``limit + 1`` from their headers alone
    (a loop in the chain, or a chain cut short, ends the count)."""
    with open(path, "rb") as handle:
        header = handle.read(16)
        order = "<" if header[:2] == b"II" else ">"
        big = header[2:4] in (b"\x2b\x00", b"\x00\x2b")  # BigTIFF: 64-bit offsets and counts
        count, offset = (
            struct.Struct(order + ("Q" if big else "H")),
            struct.Struct(order + ("Q" if big else "I")),
        )
        entry_bytes = 20 if big else 12
        next_ifd = offset.unpack(header[8:16] if big else header[4:8])[0]
        seen: set[int] = set()
        while next_ifd and next_ifd not in seen and len(seen) <= limit:
            seen.add(next_ifd)
            handle.seek(next_ifd)
            raw = handle.read(count.size)
            if len(raw) < count.size:
                break
            handle.seek(next_ifd + count.size + count.unpack(raw)[0] * entry_bytes)
            raw = handle.read(offset.size)
            next_ifd = offset.unpack(raw)[0] if len(raw) == offset.size else 0
        return len(seen)


def decode_peak_bytes(mode: str, width: int, height: int) -> int:
    """The memory that decoding an image of ``mode`` and size takes at its peak (see
    :func:`_to_rgb`): its pixels at their bit depth, then the conversion's working copies."""
    bands = Image.getmodebands(mode) if mode in Image.MODES else 4
    sample_bytes = 2 if mode.startswith("I;16") else 4 if mode in ("I", "F") else 1
    decoded = 2 * bands * sample_bytes  # and its rotated copy (EXIF orientation)
    working = 3 + 3  # the RGB image and the numpy array made of it
    if mode.startswith("I"):
        working += 8 + 8 + 1  # the float64 array, one float64 temporary, the 8-bit result
    if "A" in mode or mode in ("P", "PA"):
        working += 4 + 4 + 4  # RGBA, the white background, the composite
    return width * height * (decoded + working)


def _check_decode_bytes(image: Image.Image, path: Path) -> None:
    # Before image.load(): the header gives the mode and size, so nothing is decoded yet.
    peak = decode_peak_bytes(image.mode, *image.size)
    limit = env_limit(DECODE_LIMIT_VARIABLE, MAX_DECODE_BYTES)
    if peak > limit:
        raise DataError(
            f"{path}: decoding this {image.size[0]}x{image.size[1]} {image.mode} image would "
            f"take about {peak / 1e6:,.0f} MB, over the {limit / 1e6:,.0f} MB limit per image; "
            f"downscale or tile it, or raise the limit with {DECODE_LIMIT_VARIABLE}=BYTES if "
            "the file is trusted."
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent pixels become white, the colour of an empty glass slide.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def decode_image(path: Path) -> npt.NDArray[np.uint8]:
    """Decode ``path`` to an ``(height, width, 3)`` uint8 RGB array.

    Grayscale, palette, RGBA (composited on white), 16-bit and CMYK images are converted; the
    EXIF orientation is applied; a multi-page TIFF gives its first page.

    Raises:
        DataError: The file is missing, unreadable, corrupt, truncated or too large.
    """
    path = Path(path)
    with _open(path) as image:
        return np.asarray(_to_rgb(image), dtype=np.uint8)


def inspect_image(path: Path) -> ImageInfo:
    """Fully decode ``path`` once and describe it (see :class:`ImageInfo`).

    Raises:
        DataError: As :func:`decode_image`.
    """
    path = Path(path)
    with _open(path) as image:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        rgb = _to_rgb(image)
        transparent = image.mode in ("RGBA", "LA") or "transparency" in image.info
        native = (
            (image.format or "") in _TF_NATIVE_FORMATS
            and image.mode in _TF_NATIVE_MODES
            and orientation == 1
            and not transparent
        )
        pixels = np.asarray(rgb, dtype=np.uint8)
        digest = hashlib.sha1(repr(pixels.shape).encode("ascii"))
        digest.update(np.ascontiguousarray(pixels).data)  # the buffer itself, not a copy
        return ImageInfo(
            path=path,
            format=image.format or "?",
            mode=image.mode,
            width=rgb.width,
            height=rgb.height,
            tf_native=native,
            frames=(
                _tiff_pages(path, limit=MAX_PAGES)
                if image.format == "TIFF"
                else int(getattr(image, "n_frames", 1))
            ),
            pixel_sha1=digest.hexdigest(),
            dhash=difference_hash(rgb),
        )


def scan_samples(
    samples: Sequence[Sample], *, workers: int = 4
) -> tuple[dict[Path, ImageInfo], list[SkippedFile]]:
    """Decode every sample once, before training, so no bad file is found mid-epoch.

    Returns:
        The information of each readable image, by path, and the unreadable files with reasons.
    """

    def check(sample: Sample) -> ImageInfo | SkippedFile:
        try:
            return inspect_image(sample.path)
        except DataError as error:
            return SkippedFile(path=sample.path, reason=str(error).removeprefix(f"{sample.path}: "))

    good: dict[Path, ImageInfo] = {}
    bad: list[SkippedFile] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for outcome in pool.map(check, samples):
            if isinstance(outcome, SkippedFile):
                bad.append(outcome)
            else:
                good[outcome.path] = outcome
    return good, bad


def describe_unreadable(bad: Sequence[SkippedFile], *, shown: int = 5) -> str:
    """One sentence naming unreadable files and why: the first ``shown`` of them, then a count."""
    listing = "; ".join(f"{item.path}: {item.reason.rstrip('.')}" for item in bad[:shown])
    more = f" (and {len(bad) - shown} more)" if len(bad) > shown else ""
    return f"{len(bad)} unreadable image(s): {listing}{more}."


def expand_image_files(inputs: Iterable[Path | str]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders searched recursively (hidden
    entries skipped, sorted).

    Raises:
        DataError: An input does not exist, or no image was found.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for directory, subdirectories, names in os.walk(path):
                subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
                files.extend(
                    Path(directory, name)
                    for name in sorted(names)
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
                )
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"Input {str(path)!r} does not exist: pass image files or folders.")
    if not files:
        raise DataError(
            f"No image ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in "
            f"{', '.join(str(p) for p in inputs)}."
        )
    return files
