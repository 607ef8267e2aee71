"""Tissue detection on synthetic slides of real images: JPEG slides read back with white glass,
the optical-density detector keeps pale tissue and leaves pen ink and dust out, the detectors
are a plugin kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _slide_tiles import planned_cells, planned_tiles
from breastcls.plugins import PluginHost
from breastcls.slides.job import open_slide
from breastcls.slides.regions import RegionOptions
from breastcls.slides.tissue import tissue_covered
from breastcls.testing.slides import (
    draw_dust,
    draw_pen_stroke,
    lightened,
    mosaic_pixels,
    write_mosaic_slide,
    write_slide_pixels,
)

CELL = 224  # level-0 pixels of a cell; one tile is one cell
SLIDE_MPP = 0.5
IMAGE_SIZE = 32
MODEL_MPP = CELL * SLIDE_MPP / IMAGE_SIZE
COLUMNS, ROWS = 10, 6
PALE = {(c, r) for c in (1, 2, 3) for r in (1, 2)}  # benign fields blended 60% towards white
BENIGN = {(c, 3) for c in (1, 2, 3)}
MALIGNANT = {(c, r) for c in (5, 6, 7) for r in (1, 2, 3)}
TISSUE = PALE | BENIGN | MALIGNANT
# A blue stroke along the bottom row, a green one down the last column (65 µm wide: a fine
# marker), a black blot of ink and dust specks (8 µm) over the bottom-left cells.
PEN = {(c, 5) for c in range(5, 10)} | {(9, r) for r in range(4)} | {(8, 0)}
DUST = {(c, 5) for c in range(4)}


def _images(root: Path, label: str) -> list[Path]:
    return sorted(p for p in (root / label).glob("*.png") if "-200-" in p.name)


def marked_slide_pixels(breakhis: Path) -> np.ndarray:
    """The synthetic slide's level-0 pixels: pale and plain benign fields, malignant fields,
    pen strokes and dust on the glass."""
    from PIL import Image

    benign, malignant = _images(breakhis, "benign"), _images(breakhis, "malignant")

    def pixels(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB").resize((CELL, CELL)), dtype=np.uint8)

    cells: dict[tuple[int, int], Path | np.ndarray] = {
        cell: lightened(pixels(image), 0.6)
        for cell, image in zip(sorted(PALE), benign[:6], strict=True)
    }
    cells.update(zip(sorted(BENIGN), benign[10:13], strict=True))
    cells.update(zip(sorted(MALIGNANT), malignant[:9], strict=True))
    slide = mosaic_pixels(cells, columns=COLUMNS, rows=ROWS, cell=CELL)
    bottom = 5 * CELL + CELL // 2
    draw_pen_stroke(slide, [(5 * CELL, bottom), (COLUMNS * CELL, bottom - 10)], width=130)
    right = 9 * CELL + CELL // 2
    draw_pen_stroke(slide, [(right, 0), (right - 10, 4 * CELL)], width=130, colour="green")
    draw_dust(slide, [(8 * CELL + 60, 70)], radius=35, colour=(25, 25, 25))
    rng = np.random.default_rng(0)
    xs, ys = rng.integers(10, 4 * CELL - 10, 40), rng.integers(5 * CELL + 10, 6 * CELL - 10, 40)
    draw_dust(slide, [(int(x), int(y)) for x, y in zip(xs, ys, strict=True)], radius=8)
    return slide


@pytest.fixture(scope="module")
def marked_slide(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    path = tmp_path_factory.mktemp("marked") / "marked.tif"
    return write_slide_pixels(path, marked_slide_pixels(breakhis_dev), compression="jpeg")


def tiles_of(slide_path: Path, detector: str) -> tuple[set[tuple[int, int]], float | None]:
    """The cells a slide job would classify with ``detector``, and the fraction of the
    detected tissue they cover."""
    plan, covered = planned_tiles(
        slide_path, RegionOptions(tissue_detector=detector), slide_mpp=SLIDE_MPP,
        model_mpp=MODEL_MPP, image_size=IMAGE_SIZE,
    )  # fmt: skip
    return planned_cells(plan), covered


def test_glass_reads_white_on_a_jpeg_slide_through_every_reader(
    tmp_path: Path, breakhis_dev: Path
) -> None:
    image = _images(breakhis_dev, "benign")[0]
    cells = {(1, 1): image}
    zlib = write_mosaic_slide(tmp_path / "z.tif", cells, columns=3, rows=2, cell=CELL)
    jpeg = write_mosaic_slide(
        tmp_path / "j.tif", cells, columns=3, rows=2, cell=CELL, compression="jpeg"
    )
    readers = ["tiff"]
    try:
        import openslide  # noqa: F401

        readers.append("openslide")
    except ImportError:
        pass
    reference = open_slide(zlib, reader="tiff")
    tissue = reference.read_region(0, CELL, CELL, CELL, CELL).astype(np.float64)
    reference.close()
    for reader in readers:
        slide = open_slide(jpeg, reader=reader)
        try:
            for level in range(len(slide.levels)):
                side = CELL // round(slide.levels[level].downsample)
                glass = slide.read_region(level, 0, 0, side, side)  # cell (0, 0): glass
                assert glass.min() >= 250, (reader, level, glass.reshape(-1, 3).min(axis=0))
            read = slide.read_region(0, CELL, CELL, CELL, CELL).astype(np.float64)
            assert np.abs(read - tissue).mean() < 6.0, reader  # JPEG at quality 90
        finally:
            slide.close()


def test_pale_tissue_is_kept_and_pen_and_dust_left_out(marked_slide: Path) -> None:
    cells, covered = tiles_of(marked_slide, "optical-density")
    assert len(cells & TISSUE) >= 0.95 * len(TISSUE)
    assert cells >= PALE
    assert not cells & (PEN | DUST)
    assert cells <= TISSUE
    assert covered is not None and covered > 0.95


def test_the_saturation_detector_loses_pale_tissue_and_keeps_pen(marked_slide: Path) -> None:
    """The measurement docs/slides.md quotes: breastcls 0.2's mask on the same slide."""
    cells, _ = tiles_of(marked_slide, "saturation")
    assert not cells & PALE
    assert cells & PEN


def test_the_builtin_tissue_detectors_register_and_pass_their_check() -> None:
    from breastcls.testing import check_component

    host = PluginHost()
    assert [info.name for info in host.tissue_detectors] == ["optical-density", "saturation"]
    for info in host.tissue_detectors:
        assert info.plugin == "builtin_tissue_detectors"
        check_component(info)


def test_an_unknown_tissue_detector_is_named_with_the_known_ones() -> None:
    from breastcls.errors import BreastclsError

    with pytest.raises(BreastclsError, match="optical-density"):
        PluginHost().tissue_detectors.get("otsu")


def test_tissue_covered_counts_each_tissue_pixel_once() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[:, :4] = True  # 40 tissue pixels; a mask pixel is 2 level-0 pixels wide
    boxes = np.array([[0.0, 0.0, 4.0, 20.0], [0.0, 0.0, 2.0, 20.0], [0.0, 0.0, 20.0, 20.0]])
    assert tissue_covered(mask, 2.0, boxes[:1]) == pytest.approx(0.5)
    assert tissue_covered(mask, 2.0, boxes[:2]) == pytest.approx(0.5)
    assert tissue_covered(mask, 2.0, boxes) == pytest.approx(1.0)
    assert tissue_covered(np.zeros((4, 4), dtype=bool), 1.0, boxes) is None
