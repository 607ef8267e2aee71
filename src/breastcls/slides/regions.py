"""Where on a slide tiles are classified: the tissue, and the lab's own regions.

The tissue comes from a tissue detector (a plugin kind, ``--tissue-detector``), or from the
lab's own mask (``--tissue-mask FILE.png``: white is tissue, any size with the slide's
proportions, scaled to the slide). Regions of interest (``--roi FILE.geojson``) then restrict it:
QuPath annotations exported as GeoJSON, in level-0 pixel coordinates, each a ``Polygon`` or
``MultiPolygon`` (holes included). An annotation whose class
(``properties.classification.name``) is ``Exclude`` or ``Ignore*`` (:func:`is_exclusion`) is
left out; any other annotation is included. Without any included annotation, the whole slide
is, less the excluded ones. Points and lines bound no area and are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import DataError
from breastcls.io import read_regular_text
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.slides.tissue import DEFAULT_TISSUE_DETECTOR, Thumbnail

__all__ = [
    "EXCLUDED_CLASSES",
    "Polygon",
    "RegionOptions",
    "is_exclusion",
    "rasterise",
    "read_roi",
    "read_tissue_mask",
    "region_mask",
    "regions_record",
]

BoolArray = npt.NDArray[np.bool_]
EXCLUDED_CLASSES = ("exclude", "excluded", "ignore")
"""Annotation classes (lower case, without QuPath's trailing ``*``) that exclude their area."""
_AREA_TYPES = ("Polygon", "MultiPolygon")
_OTHER_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString")
_SHIFT = 8  # fractional bits of the vertices given to OpenCV


@dataclass(frozen=True, slots=True, kw_only=True)
class RegionOptions:
    """How a slide's tissue and regions are found.

    Attributes:
        tissue_detector: The tissue detector's id (unused with ``tissue_mask``).
        roi: A GeoJSON file of QuPath annotations restricting the tiles, or ``None``.
        tissue_mask: A PNG mask (white: tissue) used instead of the detector, or ``None``.
    """

    tissue_detector: str = DEFAULT_TISSUE_DETECTOR
    roi: Path | None = None
    tissue_mask: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Polygon:
    """One polygon of an annotation, in level-0 pixel coordinates.

    Attributes:
        exterior: ``(n, 2)`` ``(x, y)`` vertices of its outer ring.
        holes: Its inner rings (left out of its area).
        include: Whether its area is included (``False``: excluded).
    """

    exterior: npt.NDArray[np.float64]
    holes: tuple[npt.NDArray[np.float64], ...]
    include: bool


def is_exclusion(name: str | None) -> bool:
    """Whether an annotation class excludes its area (``Exclude``, ``Ignore*``, any case)."""
    return name is not None and name.strip().rstrip("*").strip().lower() in EXCLUDED_CLASSES


def regions_record(options: RegionOptions) -> dict[str, str | None]:
    """The options as a slide job records them (a changed one makes a new job)."""
    return {
        "tissue_detector": None if options.tissue_mask is not None else options.tissue_detector,
        "roi": str(options.roi) if options.roi is not None else None,
        "tissue_mask": str(options.tissue_mask) if options.tissue_mask is not None else None,
    }


def region_mask(
    thumbnail: Thumbnail,
    *,
    microns_per_pixel: float | None,
    options: RegionOptions,
    host: PluginHost | None = None,
) -> BoolArray:
    """The mask, at the thumbnail's scale, of where tiles may be classified: the tissue (the
    detector's, or ``options.tissue_mask``) within ``options.roi``.

    Args:
        thumbnail: The slide's thumbnail.
        microns_per_pixel: The width of a thumbnail pixel in microns, when known.
        options: The detector and the lab's regions.
        host: Where the tissue detectors are registered (default: the installed plugins).

    Raises:
        DataError: The ROI or the mask file is unreadable or not what it should be.
        UnknownComponentError: No tissue detector has that id.
    """
    shape = thumbnail.pixels.shape[:2]
    if options.tissue_mask is not None:
        tissue = read_tissue_mask(options.tissue_mask, shape)
    else:
        detector = ensure_host(host).tissue_detectors.get(options.tissue_detector)
        tissue = np.asarray(
            detector.detect(thumbnail.pixels, microns_per_pixel=microns_per_pixel), dtype=bool
        )
    if options.roi is None:
        return tissue
    return tissue & rasterise(read_roi(options.roi), shape, thumbnail.downsample)


def read_tissue_mask(path: Path, shape: tuple[int, int]) -> BoolArray:
    """Read a mask image (white, or any value above 127: tissue) and scale it to ``shape``.

    Raises:
        DataError: The file is not a readable image, or its proportions are not the slide's.
    """
    import cv2
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except Image.DecompressionBombError as error:
        raise DataError(
            f"--tissue-mask {path} is too large to decode ({error}): export the mask at a lower "
            "scale (any scale with the slide's proportions will do)."
        ) from error
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(
            f"--tissue-mask {path} is not a readable image ({error}): pass a PNG whose white "
            "pixels are tissue."
        ) from error
    height, width = grey.shape
    if abs(width / height - shape[1] / shape[0]) > 0.02 * shape[1] / shape[0]:
        raise DataError(
            f"--tissue-mask {path} is {width}x{height} pixels, not in the slide's proportions "
            f"({shape[1]}x{shape[0]} at the thumbnail's scale): export the mask of the whole "
            "slide, at any scale."
        )
    scaled = cv2.resize(grey, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return np.asarray(scaled > 127)


def read_roi(path: Path) -> list[Polygon]:
    """Read the polygons of a GeoJSON file of annotations (a ``FeatureCollection``, a list of
    features as QuPath exports them, or one feature).

    Raises:
        DataError: The file is not JSON, not GeoJSON features, has a malformed polygon, or no
            polygon at all; the message names the file and the feature.
    """
    try:
        document = json.loads(read_regular_text(Path(path)))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(
            f"--roi {path} is not a readable JSON file ({error}): export the annotations from "
            "QuPath as GeoJSON."
        ) from error
    polygons = [
        polygon
        for index, feature in enumerate(_features(document, path))
        for polygon in _feature_polygons(feature, path, index)
    ]
    if not polygons:
        raise DataError(
            f"--roi {path} holds no Polygon or MultiPolygon annotation: draw the regions as "
            "areas (not points or lines) and export them as GeoJSON."
        )
    return polygons


def _features(document: Any, path: Path) -> list[Any]:
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features")
    elif isinstance(document, dict) and document.get("type") == "Feature":
        features = [document]
    else:
        features = document
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise DataError(
            f"--roi {path} is not GeoJSON features (a FeatureCollection, or a list of "
            "Feature objects): export the annotations from QuPath as GeoJSON."
        )
    return features


def _feature_polygons(feature: dict[str, Any], path: Path, index: int) -> Iterator[Polygon]:
    geometry = feature.get("geometry")
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    if kind in _OTHER_TYPES:
        return
    where = f"--roi {path}, feature {index}"
    if kind not in _AREA_TYPES or not isinstance(geometry, dict):
        raise DataError(
            f"{where} has geometry type {kind!r}: only Polygon and MultiPolygon bound an area."
        )
    include = not is_exclusion(_class_name(feature.get("properties")))
    rings_of = [geometry.get("coordinates")] if kind == "Polygon" else geometry.get("coordinates")
    if not isinstance(rings_of, list):
        raise DataError(f"{where}: its coordinates are not a list of rings.")
    for rings in rings_of:
        arrays = _rings(rings, where)
        yield Polygon(exterior=arrays[0], holes=tuple(arrays[1:]), include=include)


def _class_name(properties: Any) -> str | None:
    if not isinstance(properties, dict):
        return None
    classification = properties.get("classification")
    if isinstance(classification, dict):
        name = classification.get("name")
        return name if isinstance(name, str) else None
    return classification if isinstance(classification, str) else None


def _rings(rings: Any, where: str) -> list[npt.NDArray[np.float64]]:
    """Each ring of a polygon as an ``(n, 2)`` array of finite numbers, outer ring first."""
    problem = f"{where}: a polygon must be a list of rings of at least 3 [x, y] points"
    if not isinstance(rings, list) or not rings:
        raise DataError(f"{problem}.")
    arrays = []
    for ring in rings:
        try:
            array = np.asarray(ring, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise DataError(f"{problem} ({error}).") from error
        if array.ndim != 2 or array.shape[0] < 3 or array.shape[1] < 2:
            raise DataError(f"{problem}; one ring has shape {array.shape}.")
        if not np.isfinite(array).all():
            raise DataError(f"{problem}; one ring holds a value that is not a finite number.")
        arrays.append(array[:, :2])
    return arrays


def rasterise(polygons: Sequence[Polygon], shape: tuple[int, int], downsample: float) -> BoolArray:
    """The included area of ``polygons`` (level-0 coordinates) at the scale of a ``shape`` mask
    whose pixels are ``downsample`` level-0 pixels wide: the union of the included polygons
    (the whole mask when none is) less the union of the excluded ones."""
    included = [p for p in polygons if p.include]
    area = _union(included, shape, downsample) if included else np.ones(shape, dtype=bool)
    excluded = [p for p in polygons if not p.include]
    return area & ~_union(excluded, shape, downsample) if excluded else area


def _union(polygons: Sequence[Polygon], shape: tuple[int, int], downsample: float) -> BoolArray:
    import cv2

    union = np.zeros(shape, dtype=bool)
    for polygon in polygons:
        # Each polygon on its own canvas, so that one's hole never cuts another's area.
        canvas = np.zeros(shape, dtype=np.uint8)
        cv2.fillPoly(canvas, [_pixels(polygon.exterior, downsample)], 1, shift=_SHIFT)
        if polygon.holes:
            holes = [_pixels(hole, downsample) for hole in polygon.holes]
            cv2.fillPoly(canvas, holes, 0, shift=_SHIFT)
        union |= canvas > 0
    return union


def _pixels(ring: npt.NDArray[np.float64], downsample: float) -> npt.NDArray[np.int32]:
    """A ring's vertices in mask pixels (pixel ``i`` spans ``[i, i+1)`` mask units, so a
    vertex at level-0 ``x`` lies at ``x / downsample - 0.5`` in pixel-centre coordinates);
    fractional bits keep sub-pixel precision."""
    scaled = (ring / downsample - 0.5) * float(1 << _SHIFT)
    return np.round(scaled).astype(np.int32).reshape(-1, 1, 2)
