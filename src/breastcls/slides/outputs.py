"""What a slide job writes and reads back: the tile table, the heat map, the GeoJSON and the
summary. The file names come from :class:`~breastcls.runs.folder.SlideFolder`."""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import DataError
from breastcls.htmlpage import render_section, render_value, write_page
from breastcls.inference.domain import DOMAIN_COLUMNS, DomainScores, domain_cells, flagged_line
from breastcls.interfaces import MetricSection
from breastcls.io import SafeCsvWriter, atomic_path, atomic_write_text, read_regular_text

__all__ = [
    "THRESHOLD_NOTE",
    "TileTable",
    "decision_figures",
    "flagged_map",
    "heat_map",
    "parse_tiles_csv",
    "read_tiles_csv",
    "tile_rows",
    "tiles_header",
    "write_geojson",
    "write_mask_png",
    "write_rgb_png",
    "write_slide_report",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

THRESHOLD_NOTE = (
    "The threshold was chosen on the selection set's images (single fields of view), not on "
    "slides: the fraction of tiles at or above it describes this slide's tiles; no slide-level "
    "cut-off has been validated."
)
"""Said beside every fraction of tiles called positive (summary, report, GeoJSON)."""

_POSITION = ("tile", "column", "row", "x", "y", "size", "level", "tissue_fraction")


@dataclass(frozen=True, slots=True, kw_only=True)
class TileTable:
    """The classified tiles of a slide (the content of ``tiles.csv``), in grid order.

    Attributes:
        class_names: The model's classes, in the order of the probability columns.
        positive: The positive side scored (``malignant``, or the positive class).
        tile: Each tile's index in the row-major grid (glass tiles included).
        column: Grid column.
        row: Grid row.
        x: Left edge in level-0 pixels.
        y: Top edge in level-0 pixels.
        size: Side in level-0 pixels (the same for every tile).
        level: The pyramid level the tiles were read from.
        tissue: Fraction of each tile that is tissue.
        probabilities: ``(n, n_classes)`` calibrated probabilities.
        score: Each tile's probability of the positive side.
        domain_score: Each tile's domain-shift score (above 1: unlike the training images;
            :mod:`breastcls.inference.domain`), ``NaN`` where none was computed (a model
            without a domain reference, or ONNX Runtime).
    """

    class_names: tuple[str, ...]
    positive: str
    tile: IntArray
    column: IntArray
    row: IntArray
    x: IntArray
    y: IntArray
    size: int
    level: int
    tissue: FloatArray
    probabilities: FloatArray
    score: FloatArray
    domain_score: FloatArray | None = None

    def __len__(self) -> int:
        return len(self.tile)

    @property
    def flagged(self) -> npt.NDArray[np.bool_]:
        """Whether each tile is unlike the training images (no tile without scores)."""
        if self.domain_score is None:
            return np.zeros(len(self), dtype=bool)
        with np.errstate(invalid="ignore"):
            return np.asarray(self.domain_score > 1.0)

    @property
    def scored(self) -> bool:
        """Whether the tiles carry domain-shift scores."""
        return self.domain_score is not None and bool(np.isfinite(self.domain_score).any())


def tiles_header(class_names: Sequence[str]) -> str:
    """The header line of ``tiles.csv``."""
    buffer = io.StringIO()
    SafeCsvWriter(buffer).writerow(
        [*_POSITION, *(f"p_{name}" for name in class_names), "score", *DOMAIN_COLUMNS]
    )
    return buffer.getvalue()


def tile_rows(
    *,
    tile: IntArray,
    column: IntArray,
    row: IntArray,
    x: IntArray,
    y: IntArray,
    size: int,
    level: int,
    tissue: FloatArray,
    probabilities: FloatArray,
    score: FloatArray,
    domain: DomainScores | None = None,
) -> str:
    """Rows of ``tiles.csv``; floats at full precision (``repr``: read back exactly); the
    domain-shift columns empty when ``domain`` is ``None``."""
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    for i in range(len(tile)):
        writer.writerow(
            [
                int(tile[i]), int(column[i]), int(row[i]), int(x[i]), int(y[i]), size, level,
                repr(float(tissue[i])),
                *(repr(float(p)) for p in probabilities[i]),
                repr(float(score[i])),
                *(
                    domain_cells(domain.score, domain.in_distribution, domain.reason, i)
                    if domain is not None
                    else ("", "", "")
                ),
            ]
        )  # fmt: skip
    return buffer.getvalue()


def read_tiles_csv(path: Path, class_names: Sequence[str], positive: str) -> TileTable:
    """Read ``tiles.csv`` (or the committed part of ``tiles.partial.csv``) back.

    Raises:
        DataError: The file is not a tile table of these classes.
    """
    try:
        text = read_regular_text(Path(path))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path} is not a readable tile table ({error}).") from error
    return parse_tiles_csv(text, class_names, positive, source=str(path))


def parse_tiles_csv(
    text: str, class_names: Sequence[str], positive: str, *, source: str
) -> TileTable:
    """Parse the text of ``tiles.csv`` (``source`` names it in errors).

    Raises:
        DataError: The text is not a tile table of these classes.
    """
    path = source
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise DataError(f"{path} is not a readable tile table ({error}).") from error
    expected = next(csv.reader([tiles_header(class_names)]))
    if not rows or rows[0] != expected:
        raise DataError(
            f"{path} does not have the columns {', '.join(expected)}: remove the slide folder "
            "and predict the slide again."
        )
    body = rows[1:]
    width = len(expected) - len(DOMAIN_COLUMNS)
    try:
        numbers = np.array([[float(v) for v in r[:width]] for r in body], dtype=np.float64)
        domain = np.array(
            [float(r[width]) if r[width:] and r[width] else np.nan for r in body],
            dtype=np.float64,
        )
    except ValueError as error:
        raise DataError(f"{path} holds a value that is not a number ({error}).") from error
    numbers = numbers.reshape(len(body), width)
    n_classes = len(class_names)
    as_int = numbers[:, :7].astype(np.int64)
    return TileTable(
        class_names=tuple(class_names),
        positive=positive,
        tile=as_int[:, 0],
        column=as_int[:, 1],
        row=as_int[:, 2],
        x=as_int[:, 3],
        y=as_int[:, 4],
        size=int(as_int[0, 5]) if len(body) else 0,
        level=int(as_int[0, 6]) if len(body) else 0,
        tissue=numbers[:, 7].copy(),
        probabilities=numbers[:, 8 : 8 + n_classes].copy(),
        score=numbers[:, 8 + n_classes].copy(),
        domain_score=domain,
    )


def heat_map(table: TileTable, shape: tuple[int, int], downsample: float) -> FloatArray:
    """The positive score at the scale of a ``shape`` thumbnail (``downsample`` level-0 pixels
    per pixel): each pixel averages the tiles over it that are like the training images;
    ``NaN`` where no such tile lies (:func:`flagged_map` shows where flagged tiles lie)."""
    kept = (~table.flagged).astype(np.float64)
    (total, count), window = _tile_sums(table, np.stack([table.score * kept, kept]), shape,
                                        downsample)  # fmt: skip
    heat = np.full(shape, np.nan)
    covered = count > 0
    heat[window] = np.where(covered, np.divide(total, count, out=total, where=covered), np.nan)
    return heat


def flagged_map(
    table: TileTable, shape: tuple[int, int], downsample: float
) -> npt.NDArray[np.bool_]:
    """Where, at the scale of a ``shape`` thumbnail, tiles unlike the training images lie and no
    other tile does (the heat map leaves them out)."""
    found = np.zeros(shape, dtype=bool)
    if not table.flagged.any():
        return found
    values = np.stack([table.flagged, ~table.flagged]).astype(np.float64)
    (flagged, kept), window = _tile_sums(table, values, shape, downsample)
    found[window] = (flagged > 0) & (kept == 0)
    return found


def _tile_sums(
    table: TileTable, values: FloatArray, shape: tuple[int, int], downsample: float
) -> tuple[FloatArray, tuple[slice, slice]]:
    """The sums of the rows of ``values`` (one column per tile) over the tiles that cover each
    thumbnail pixel, ``(rows, h, w)``, in the window of the thumbnail that the tiles cover
    (returned with it): one pass over the tiles for all the rows, and no memory for the rest
    of the thumbnail (at 2048 px, each full map is 32 MB, whose first writes cost more CPU
    time than the sums)."""
    h, w = shape
    x0 = np.clip(np.floor(table.x / downsample), 0, w - 1).astype(np.int64)
    y0 = np.clip(np.floor(table.y / downsample), 0, h - 1).astype(np.int64)
    x1 = np.clip(np.ceil((table.x + table.size) / downsample), x0 + 1, w).astype(np.int64)
    y1 = np.clip(np.ceil((table.y + table.size) / downsample), y0 + 1, h).astype(np.int64)
    top, left = (int(v.min()) if len(v) else 0 for v in (y0, x0))
    bottom, right = (int(v.max()) if len(v) else 0 for v in (y1, x1))
    total = np.zeros((len(values), bottom - top, right - left), dtype=np.float64)
    for i, (x, y, x_end, y_end) in enumerate(zip(x0 - left, y0 - top, x1 - left, y1 - top,
                                                 strict=True)):  # fmt: skip
        total[:, y:y_end, x:x_end] += values[:, i, None, None]
    return total, (slice(top, bottom), slice(left, right))


def write_rgb_png(path: Path, pixels: npt.NDArray[np.uint8]) -> None:
    """Write an RGB array as a PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as temporary:
        Image.fromarray(pixels, mode="RGB").save(temporary, format="PNG")


def write_mask_png(path: Path, mask: npt.NDArray[np.bool_]) -> None:
    """Write a mask as a black and white PNG (white: tissue), atomically."""
    from PIL import Image

    with atomic_path(path) as temporary:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(
            temporary, format="PNG"
        )


def write_geojson(
    path: Path,
    table: TileTable,
    *,
    threshold: float,
    negative: str,
    threshold_name: str = "default",
) -> None:
    """Write one GeoJSON ``Feature`` per tile: its square in level-0 pixel coordinates (as QuPath
    reads GeoJSON), its class at ``threshold``, its probabilities and tissue fraction as
    measurements. The collection's ``properties`` record the threshold (its name and value)
    and :data:`THRESHOLD_NOTE`."""
    features: list[dict[str, Any]] = []
    colours = {table.positive: [200, 0, 0], negative: [0, 120, 200]}
    for i in range(len(table)):
        x, y, s = int(table.x[i]), int(table.y[i]), table.size
        called = table.positive if table.score[i] >= threshold else negative
        measurements: dict[str, float] = {
            f"p_{name}": float(table.probabilities[i, k])
            for k, name in enumerate(table.class_names)
        }
        measurements["score"] = float(table.score[i])
        measurements["tissue_fraction"] = float(table.tissue[i])
        if table.domain_score is not None and math.isfinite(table.domain_score[i]):
            measurements["domain_score"] = float(table.domain_score[i])
        features.append(
            {
                "type": "Feature",
                "id": f"tile-{int(table.tile[i])}",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]],
                },
                "properties": {
                    "objectType": "detection",
                    "name": f"tile {int(table.tile[i])}",
                    "classification": {"name": called, "color": colours[called]},
                    "isLocked": True,
                    "measurements": measurements,
                },
            }
        )
    properties = {
        "threshold": threshold,
        "threshold_name": threshold_name,
        "positive": table.positive,
        "negative": negative,
        "note": THRESHOLD_NOTE,
    }
    collection = {"type": "FeatureCollection", "properties": properties, "features": features}
    atomic_write_text(path, json.dumps(collection, allow_nan=False))


def summary_figures(
    table: TileTable, thresholds: Mapping[str, float], *, top_k: int
) -> dict[str, Any]:
    """The slide-level figures of a tile table: the fraction of tiles called positive at each
    threshold, the mean of the ``top_k`` highest scores, the mean and the largest score, all
    over the tiles like the training images; and how many tiles are not (``domain``)."""
    flagged = table.flagged
    score = table.score[~flagged]
    k = min(top_k, len(score))
    top = np.sort(score)[::-1][:k]
    domain = (
        {
            "n_tiles": len(table),
            "n_flagged": int(flagged.sum()),
            "flagged_fraction": float(flagged.mean()) if len(table) else 0.0,
            "note": "the figures of this summary leave the flagged tiles out",
        }
        if table.scored
        else None
    )
    return {
        "domain": domain,
        "fraction_positive": {
            name: float(np.mean(score >= t)) if len(score) else 0.0
            for name, t in thresholds.items()
        },
        "top_k": k,
        "top_k_mean_score": float(top.mean()) if k else None,
        "mean_score": float(score.mean()) if len(score) else None,
        "max_score": float(score.max()) if len(score) else None,
    }


def decision_figures(table: TileTable, name: str, threshold: float) -> dict[str, Any]:
    """The slide's call at the run's decision threshold (``name``, ``threshold``): the
    fraction of tiles like the training images at or above it, and :data:`THRESHOLD_NOTE`."""
    score = table.score[~table.flagged]
    return {
        "name": name,
        "value": threshold,
        "fraction_positive": float(np.mean(score >= threshold)) if len(score) else 0.0,
        "note": THRESHOLD_NOTE,
    }


def write_slide_report(path: Path, summary: Mapping[str, Any], *, figures: Sequence[Path]) -> Path:
    """Write a slide's summary as a self-contained HTML page (the evaluation report's layout):
    the headline figures, the heat map and tissue mask (``figures``), then every summary value.
    Return ``path``."""
    fractions = summary.get("fraction_positive") or {}
    decision = summary.get("threshold") or {}
    called = (
        {
            f"fraction called {summary.get('positive')} at the run's {decision['name']} "
            f"threshold ({decision['value']:.3f})": decision["fraction_positive"]
        }
        if decision
        else {}
    )
    headline = {
        "tissue tiles classified": (summary.get("tiles") or {}).get("classified"),
        "fraction of the tissue under a classified tile": summary.get(
            "tissue_classified_fraction"
        ),
        **called,
        **{
            f"fraction called {summary.get('positive')} ({name} threshold)": value
            for name, value in fractions.items()
        },
        f"mean of the top-{summary.get('top_k')} scores": summary.get("top_k_mean_score"),
        "largest score": summary.get("max_score"),
        "model scale (µm/px)": summary.get("model_mpp"),
        "slide resolution (µm/px)": summary.get("slide_mpp"),
    }
    domain = summary.get("domain")
    warning = ""
    if domain:
        headline["tiles unlike the training images (left out)"] = domain["flagged_fraction"]
        line, applies = flagged_line(domain["n_flagged"], domain["n_tiles"], unit="tiles")
        if not applies:
            warning = (
                '<p class="warning" id="domain-warning">These figures do not apply to this '
                f"slide: {html.escape(line)}.</p>"
            )
    section = MetricSection(
        name="slide", title="Heat map and tissue", values=dict(summary), figures=tuple(figures)
    )
    caveat = (
        f'<p class="note" id="threshold-note">{html.escape(str(decision["note"]))}</p>'
        if decision
        else ""
    )
    body = [
        f'<section class="card" id="summary"><h2>Summary</h2>{warning}'
        f"{render_value(headline)}{caveat}</section>",
        render_section(section),
    ]
    return write_page(path, title=f"Slide {Path(str(summary.get('slide'))).name}", body=body)
