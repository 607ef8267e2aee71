"""Writing a slide's tile rows as they are classified: ``tiles.partial.csv`` grows by whole
chunks, each one committed in ``progress.json``, and becomes ``tiles.csv`` (the format of
:mod:`breastcls.slides.outputs`) at the end.

A job that is killed continues from its last committed chunk, with the same batches, and writes
the same ``tiles.csv`` as one that was never stopped.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.inference.decision import PositiveGroup
from breastcls.inference.domain import DomainScores
from breastcls.io import atomic_write_json, read_regular_text
from breastcls.runs.folder import SlideFolder
from breastcls.slides.outputs import TileTable, parse_tiles_csv, read_tiles_csv, tile_rows
from breastcls.slides.tiling import TilePlan

__all__ = ["TileWriter", "json_object", "plan_tile_rows"]

FloatArray = npt.NDArray[np.float64]


class TileWriter:
    """Where committed tile rows go: a slide folder's ``tiles.partial.csv``, or memory."""

    def __init__(self, folder: SlideFolder | None, header: str) -> None:
        self.folder = folder
        self.header = header
        self.memory: list[str] = []
        self.committed = 0

    def resume(self) -> int:
        """Prepare the partial file; return the tiles committed before."""
        if self.folder is None:
            return 0
        folder = self.folder
        progress: dict[str, Any] = {}
        if folder.progress.is_file() and folder.partial_tiles.is_file():
            with contextlib.suppress(OSError, ValueError):
                progress = json_object(folder.progress)
        tiles, size = progress.get("tiles"), progress.get("bytes")
        if isinstance(tiles, int) and isinstance(size, int) and tiles > 0:
            with open(folder.partial_tiles, "r+b") as handle:
                handle.truncate(size)  # a chunk cut short by a crash is dropped
            self.committed = tiles
            return tiles
        with open(folder.partial_tiles, "wb") as handle:
            handle.write(self.header.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        self._commit(0)
        return 0

    def append(self, rows: str, tiles: int) -> None:
        if self.folder is None:
            self.memory.append(rows)
            self.committed += tiles
            return
        with open(self.folder.partial_tiles, "ab") as handle:
            handle.write(rows.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        self.committed += tiles
        self._commit(self.committed)

    def _commit(self, tiles: int) -> None:
        assert self.folder is not None
        size = self.folder.partial_tiles.stat().st_size
        atomic_write_json(self.folder.progress, {"tiles": tiles, "bytes": size})

    def finish(self, class_names: Sequence[str], positive: str) -> TileTable:
        if self.folder is None:
            text = self.header + "".join(self.memory)
            return parse_tiles_csv(text, class_names, positive, source="tiles")
        folder = self.folder
        if folder.partial_tiles.is_file():
            os.replace(folder.partial_tiles, folder.tiles)
        folder.progress.unlink(missing_ok=True)
        return read_tiles_csv(folder.tiles, class_names, positive)


def json_object(path: Path) -> dict[str, Any]:
    """A small JSON object breastcls wrote in a slide folder (``{}`` when it is not one)."""
    import json

    value = json.loads(read_regular_text(path))
    return value if isinstance(value, dict) else {}


def plan_tile_rows(
    plan: TilePlan,
    first: int,
    probabilities: FloatArray,
    positive: PositiveGroup,
    domain: DomainScores | None,
) -> str:
    """The ``tiles.csv`` rows of the plan's tiles from ``first`` on, with their probabilities
    and domain-shift scores."""
    index = np.arange(first, first + len(probabilities))
    return tile_rows(
        tile=plan.row[index] * plan.columns + plan.column[index],
        column=plan.column[index],
        row=plan.row[index],
        x=plan.x[index],
        y=plan.y[index],
        size=plan.tile_size,
        level=plan.level,
        tissue=plan.tissue[index],
        probabilities=probabilities,
        score=positive.score(probabilities),
        domain=domain,
    )
