"""The lab's own regions: QuPath GeoJSON annotations (with holes, include and exclude classes)
and a user tissue mask restrict the tiles a slide job classifies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _slide_tiles import planned_cells, planned_tiles
from breastcls.errors import DataError
from breastcls.slides.regions import RegionOptions, is_exclusion, read_roi
from breastcls.testing.slides import write_mosaic_slide

CELL = 224
COLUMNS, ROWS = 6, 4
SLIDE_MPP = 0.5
IMAGE_SIZE = 32
MODEL_MPP = CELL * SLIDE_MPP / IMAGE_SIZE  # one tile is one cell


@pytest.fixture(scope="module")
def full_slide(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    """Every cell tissue (real images)."""
    images = sorted((breakhis_dev / "malignant").glob("*-200-*.png"))[: COLUMNS * ROWS]
    cells = {(i % COLUMNS, i // COLUMNS): image for i, image in enumerate(images)}
    path = tmp_path_factory.mktemp("regions") / "full.tif"
    return write_mosaic_slide(path, cells, columns=COLUMNS, rows=ROWS, cell=CELL)


def cells_within(slide_path: Path, options: RegionOptions) -> set[tuple[int, int]]:
    plan, _ = planned_tiles(
        slide_path, options, slide_mpp=SLIDE_MPP, model_mpp=MODEL_MPP, image_size=IMAGE_SIZE
    )
    return planned_cells(plan)


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def feature(geometry: dict[str, object], name: str | None = None) -> dict[str, object]:
    properties: dict[str, object] = {"objectType": "annotation"}
    if name is not None:
        properties["classification"] = {"name": name, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def test_an_roi_with_a_hole_and_an_exclusion_restricts_the_tiles(
    full_slide: Path, tmp_path: Path
) -> None:
    c = CELL
    # Cells of columns 0-3, rows 0-3, less a hole over (1..2, 1..2); then column 3 excluded
    # ("Ignore*"), and a MultiPolygon adding cell (5, 0). A point annotation is skipped.
    roi = {
        "type": "FeatureCollection",
        "features": [
            feature(
                {
                    "type": "Polygon",
                    "coordinates": [square(0, 0, 4 * c, 4 * c), square(c, c, 3 * c, 3 * c)],
                },
                "Tumor",
            ),
            feature(
                {"type": "Polygon", "coordinates": [square(3 * c, 0, 4 * c, 4 * c)]}, "Ignore*"
            ),
            feature({"type": "MultiPolygon", "coordinates": [[square(5 * c, 0, 6 * c, c)]]}),
            feature({"type": "Point", "coordinates": [10, 10]}),
        ],
    }
    path = tmp_path / "roi.geojson"
    path.write_text(json.dumps(roi))
    everything = cells_within(full_slide, RegionOptions())
    assert len(everything) == COLUMNS * ROWS
    within = cells_within(full_slide, RegionOptions(roi=path))
    hole = {(1, 1), (2, 1), (1, 2), (2, 2)}
    expected = {(col, row) for col in range(3) for row in range(4)} - hole | {(5, 0)}
    assert within == expected


def test_a_qupath_list_of_features_and_an_exclusion_only_roi(
    full_slide: Path, tmp_path: Path
) -> None:
    """QuPath exports a bare list of features; with only exclusions the rest of the slide is
    kept."""
    c = CELL
    path = tmp_path / "exclude.geojson"
    exclude = feature({"type": "Polygon", "coordinates": [square(0, 0, 2 * c, 4 * c)]}, "Exclude")
    path.write_text(json.dumps([exclude]))
    within = cells_within(full_slide, RegionOptions(roi=path))
    assert within == {(col, row) for col in range(2, COLUMNS) for row in range(ROWS)}


def test_a_tissue_mask_replaces_the_detector(full_slide: Path, tmp_path: Path) -> None:
    from PIL import Image

    mask = np.zeros((ROWS * 10, COLUMNS * 10), dtype=np.uint8)  # 1/22.4 of the slide
    mask[:20, :30] = 255  # the top-left quarter: cells (0..2, 0..1)
    path = tmp_path / "mask.png"
    Image.fromarray(mask).save(path)
    within = cells_within(full_slide, RegionOptions(tissue_mask=path))
    assert within == {(col, row) for col in range(3) for row in range(2)}
    wrong = tmp_path / "square.png"
    Image.fromarray(np.full((50, 50), 255, dtype=np.uint8)).save(wrong)
    with pytest.raises(DataError, match="proportions"):
        cells_within(full_slide, RegionOptions(tissue_mask=wrong))
    with pytest.raises(DataError, match="not a readable image"):
        cells_within(full_slide, RegionOptions(tissue_mask=tmp_path / "missing.png"))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not a readable JSON file"),
        ('{"type": "Topology"}', "not GeoJSON features"),
        (json.dumps([feature({"type": "Circle", "coordinates": [1, 2]})]), "'Circle'"),
        (json.dumps([feature({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]})]), "ring"),
        (json.dumps([feature({"type": "Polygon", "coordinates": [[[0, 0], [1, "a"], [2, 2]]]})]),
         "ring"),
        (json.dumps([feature({"type": "Point", "coordinates": [1, 2]})]), "no Polygon"),
    ],
)  # fmt: skip
def test_a_bad_roi_gets_one_clear_line(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(DataError, match=says) as caught:
        read_roi(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message


def test_exclusion_classes_follow_qupath_names() -> None:
    assert all(map(is_exclusion, ["Exclude", "Ignore*", "ignore", " EXCLUDED "]))
    assert not any(map(is_exclusion, ["Tumor", "Region*", None, "Stroma"]))
