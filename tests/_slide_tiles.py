"""The tiles a slide job would classify, without a model: tissue, regions and the tile grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastcls.slides.job import open_slide
from breastcls.slides.regions import RegionOptions, region_mask
from breastcls.slides.tiling import TilePlan, plan_tiles
from breastcls.slides.tissue import read_thumbnail, tissue_covered


def planned_tiles(
    slide_path: Path, options: RegionOptions, *, slide_mpp: float, model_mpp: float, image_size: int
) -> tuple[TilePlan, float | None]:
    """The tiles of ``slide_path`` that would be classified with ``options``, and the fraction
    of the tissue found that they cover."""
    slide = open_slide(slide_path, reader="tiff")
    try:
        thumbnail = read_thumbnail(slide)
        mask = region_mask(
            thumbnail, microns_per_pixel=slide_mpp * thumbnail.downsample, options=options
        )
        plan = plan_tiles(
            slide, slide_mpp=slide_mpp, model_mpp=model_mpp, image_size=image_size, mask=mask,
            mask_downsample=thumbnail.downsample,
        )  # fmt: skip
    finally:
        slide.close()
    side = np.full_like(plan.x, plan.tile_size)
    boxes = np.stack([plan.x, plan.y, side, side], axis=1).astype(np.float64)
    return plan, tissue_covered(mask, thumbnail.downsample, boxes)


def planned_cells(plan: TilePlan) -> set[tuple[int, int]]:
    """The ``(column, row)`` of each planned tile."""
    return {(int(c), int(r)) for c, r in zip(plan.column, plan.row, strict=True)}
