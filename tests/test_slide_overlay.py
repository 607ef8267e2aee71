"""The heat map overlay: a pyramidal TIFF of the slide's size whose pixels are the tile grid's
colours, and the colours themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from breastcls.slides.overlay import UNCLASSIFIED, colour_heat, write_overlay_tiff


def test_the_overlay_blows_the_grid_up_to_the_slide_exactly(tmp_path: Path) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    grid = np.full((9, 13, 3), 255, dtype=np.uint8)
    grid[2:6, 3:9] = rng.integers(0, 255, size=(4, 6, 3), dtype=np.uint8)  # tissue
    grid[7, 1] = (10, 20, 30)
    size, step = (1350, 950), 100.0  # the grid stops short of the right and bottom edges
    path = write_overlay_tiff(tmp_path / "o.tif", grid, slide_size=size, grid_step=step, mpp=0.25)
    with tifffile.TiffFile(path) as tiff:
        level0 = tiff.pages[0].asarray()
        shapes = [page.shape for page in tiff.pages]
        unit = tiff.pages[0].tags["ResolutionUnit"].value
        x_resolution = tiff.pages[0].tags["XResolution"].value
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    expected = grid[np.minimum((y / step).astype(int), 8), np.minimum((x / step).astype(int), 12)]
    assert level0.shape == (950, 1350, 3)
    np.testing.assert_array_equal(level0, expected)
    assert shapes[1] == (238, 338, 3)  # a 4x smaller level
    assert unit == 3 and x_resolution[0] / x_resolution[1] == pytest.approx(1e4 / 0.25)


def test_the_overlay_opens_with_openslide_at_the_slide_s_size(tmp_path: Path) -> None:
    openslide = pytest.importorskip("openslide")
    grid = np.full((4, 6, 3), 255, dtype=np.uint8)
    grid[1:3, 1:4] = (68, 1, 84)
    path = write_overlay_tiff(
        tmp_path / "o.tif", grid, slide_size=(1500, 1000), grid_step=250.0, mpp=0.5
    )
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.dimensions == (1500, 1000)
        assert slide.level_count >= 2
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        pixel = np.asarray(slide.read_region((300, 300), 0, (1, 1)))[0, 0, :3]
    assert tuple(pixel) == (68, 1, 84)


def test_scores_unclassified_tissue_and_glass_get_distinct_colours() -> None:
    heat = np.array([[0.0, 1.0, np.nan, np.nan]])
    tissue = np.array([[True, True, True, False]])
    colours = colour_heat(heat, tissue)
    assert tuple(colours[0, 2]) == UNCLASSIFIED
    assert tuple(colours[0, 3]) == (255, 255, 255)
    low, high = colours[0, 0].astype(int), colours[0, 1].astype(int)
    assert low[2] > low[1] and high[1] > high[2]  # viridis: dark blue-purple to yellow
    # No score's colour is the grey of unclassified tissue.
    every = colour_heat(np.linspace(0, 1, 256)[None, :], np.ones((1, 256), dtype=bool))[0]
    assert np.abs(every.astype(int) - np.array(UNCLASSIFIED)).sum(axis=1).min() > 60
