"""The conformance checks of slide readers and tissue detectors (used by
:func:`breastcls.testing.check_component`)."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import numpy.typing as npt

from breastcls.errors import BreastclsError
from breastcls.interfaces import GLASS, Slide, SlideReader, TissueDetector
from breastcls.testing.support import ConformanceError

__all__ = ["check_slide_reader", "check_tissue_detector", "write_example_slides"]


def write_example_slides(folder: Path) -> dict[Path, npt.NDArray[np.uint8]]:
    """Write a small pyramidal tiled TIFF (0.5 µm/px), the same pyramid described as an Aperio
    SVS (a vendor format, which OpenSlide claims) and a PNG of the same pixels to ``folder``;
    return each file with its level-0 pixels."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(300, 420, 3), dtype=np.uint8)
    tiff, svs = folder / "example.tif", folder / "example.svs"
    aperio = "Aperio Image Library v12.0.15\n420x300 [0,0 420x300] (128x128) |AppMag = 20"
    tags: dict[Path, tuple[dict[str, Any], dict[str, Any]]] = {  # level 0's, level 1's
        tiff: ({"resolution": (20_000.0, 20_000.0), "resolutionunit": "CENTIMETER"}, {}),
        svs: (
            {"metadata": None, "description": f"{aperio}|MPP = 0.5"},
            {"metadata": None, "description": aperio},
        ),
    }
    for path, (level_0, level_1) in tags.items():
        with tifffile.TiffWriter(path) as writer:
            writer.write(
                pixels, tile=(128, 128), photometric="rgb", compression="zlib", **level_0
            )
            writer.write(
                np.ascontiguousarray(pixels[::2, ::2]),
                tile=(128, 128),
                photometric="rgb",
                compression="zlib",
                subfiletype=1,
                **level_1,
            )
    png = folder / "example.png"
    Image.fromarray(pixels).save(png)
    return {tiff: pixels, svs: pixels, png: pixels}


def check_slide_reader(
    reader: SlideReader, *, data: Path | None = None, name: str = "slide reader"
) -> None:
    """Check a slide reader's contract on ``data`` (default: the examples of
    :func:`write_example_slides` it accepts).

    It must refuse a text file, open what it accepts, list level 0 first with growing
    downsamples, read ``(h, w, 3)`` 8-bit regions (the examples' pixels exactly), pad what lies
    outside with :data:`~breastcls.slides.GLASS`, read the same pixels from several threads,
    and raise a :class:`~breastcls.BreastclsError` on a damaged file.

    Raises:
        ConformanceError: The reader breaks its contract.
    """
    what = f"slide reader {name!r}"

    def fail(problem: str) -> NoReturn:
        raise ConformanceError(f"{what}: {problem}")

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        examples = write_example_slides(folder)
        text = folder / "notes.txt"
        text.write_text("not a slide\n", encoding="utf-8")
        if reader.accepts(text):
            fail("accepts a text file.")
        if data is not None:
            candidates: dict[Path, npt.NDArray[np.uint8] | None] = {Path(data): None}
        else:
            candidates = {p: v for p, v in examples.items() if reader.accepts(p)}
            if not candidates:
                fail("accepts none of the example slides: pass data=<an example slide>.")
        for path, expected in candidates.items():
            if not reader.accepts(path):
                fail(f"does not accept its example {path.name}.")
            slide = reader.open(path)
            try:
                _check_open_slide(slide, path, expected, fail)
            finally:
                slide.close()
            if expected is not None:
                _check_damaged_copy(reader, path, folder, fail)


def _check_open_slide(
    slide: Slide,
    path: Path,
    expected: npt.NDArray[np.uint8] | None,
    fail: Callable[[str], NoReturn],
) -> None:
    """Check the levels, a region's pixels, the padding outside the slide and reads from
    several threads; ``expected`` is the file's level-0 pixels when known."""
    levels = slide.levels
    if not levels or levels[0].downsample != 1.0:
        fail(f"{path.name}: level 0 must come first, with downsample 1.")
    if any(b.downsample < a.downsample for a, b in itertools.pairwise(levels)):
        fail(f"{path.name}: levels must go from fine to coarse.")
    region = slide.read_region(0, 5, 7, 150, 140)
    if region.shape != (140, 150, 3) or region.dtype != np.uint8:
        fail(f"read_region gave {region.shape} {region.dtype}, not (140, 150, 3) uint8.")
    if expected is not None and not np.array_equal(region, expected[7:147, 5:155]):
        fail(f"{path.name}: read_region does not give the file's pixels.")
    # Overhangs the top edge by 5 rows and the right edge by 10 columns: those must be GLASS.
    edge = slide.read_region(0, levels[0].width - 10, -5, 20, 20)
    if (
        edge.shape != (20, 20, 3)
        or not (edge[:5] == GLASS).all()
        or not (edge[:, 10:] == GLASS).all()
    ):
        fail("a region leaving the slide must be padded with GLASS (white).")
    top = len(levels) - 1
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(slide.read_region, top, i % 3, 0, 64, 64) for i in range(12)]
        reads = [future.result() for future in futures]
    if not all(np.array_equal(reads[i], reads[i % 3]) for i in range(12)):
        fail("reading from several threads at once gives different pixels.")


def _check_damaged_copy(
    reader: SlideReader, path: Path, folder: Path, fail: Callable[[str], NoReturn]
) -> None:
    """Opening and reading ``path`` cut to its first 64 bytes must raise a BreastclsError."""
    damaged = folder / f"damaged{path.suffix}"
    damaged.write_bytes(path.read_bytes()[:64])
    try:
        broken = reader.open(damaged)
        try:
            broken.read_region(0, 0, 0, 256, 256)
        finally:
            broken.close()
    except BreastclsError:
        return
    except Exception as error:
        fail(f"a damaged file raised {type(error).__name__}, not a BreastclsError.")
    fail("a damaged file (its first 64 bytes) opened without an error.")


def check_tissue_detector(detector: TissueDetector, *, name: str = "tissue detector") -> None:
    """Check a tissue detector's contract on a synthetic thumbnail: a ``(h, w)`` boolean mask,
    all ``False`` on blank glass (with or without a resolution), and a block of stained tissue
    found (at least 90% of it) while the glass around it is not (at most 5%: the mask
    may be smoothed).

    Raises:
        ConformanceError: The detector breaks its contract.
    """
    what = f"tissue detector {name!r}"
    glass = np.full((200, 300, 3), 245, dtype=np.uint8)
    for microns in (None, 8.0):
        blank = np.asarray(detector.detect(glass, microns_per_pixel=microns))
        if blank.shape != glass.shape[:2] or blank.dtype != np.bool_:
            raise ConformanceError(
                f"{what}: detect gave {blank.shape} {blank.dtype}, not (200, 300) bool."
            )
        if blank.any():
            raise ConformanceError(
                f"{what}: calls {int(blank.sum())} pixels of blank glass tissue."
            )
    rng = np.random.default_rng(0)
    stained = glass.copy()
    # Eosin pink and haematoxylin purple, mixed, as H&E stroma with nuclei looks.
    stains = np.array([[225, 140, 190], [150, 90, 170]], dtype=np.float64)
    mix = rng.random((100, 150, 1))
    stained[50:150, 75:225] = np.round(stains[0] * mix + stains[1] * (1 - mix)).astype(np.uint8)
    found = np.asarray(detector.detect(stained, microns_per_pixel=8.0))
    inside = np.zeros(glass.shape[:2], dtype=bool)
    inside[50:150, 75:225] = True
    if found[inside].mean() < 0.9 or found[~inside].mean() > 0.05:
        raise ConformanceError(
            f"{what}: found {found[inside].mean():.0%} of a stained block and "
            f"{found[~inside].mean():.0%} of the glass around it (allowed: >= 90%, <= 5%)."
        )
