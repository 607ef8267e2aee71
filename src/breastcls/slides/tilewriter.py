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

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError
from breastcls.inference.decision import PositiveGroup
from breastcls.inference.domain import DomainScores
from breastcls.io import atomic_write_json
from breastcls.records import SlideProgressRecord
from breastcls.runs.folder import SlideFolder
from breastcls.slides.outputs import TileTable, parse_tiles_csv, read_tiles_csv, tile_rows
from breastcls.slides.tiling import TilePlan

__all__ = ["TileWriter", "plan_tile_rows"]

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
        progress = None
        if folder.progress.is_file() and folder.partial_tiles.is_file():
            # A damaged record commits nothing: the slide is predicted again from its first tile.
            with contextlib.suppress(ConfigError):
                progress = folder.read_progress()
        if progress is not None and progress.tiles > 0:
            with open(folder.partial_tiles, "r+b") as handle:
                handle.truncate(progress.bytes)  # a chunk cut short by a crash is dropped
            self.committed = progress.tiles
            return progress.tiles
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
        record = SlideProgressRecord(tiles=tiles, bytes=size)
        atomic_write_json(self.folder.progress, record.to_json())

    def finish(self, class_names: Sequence[str], positive: str) -> TileTable:
        if self.folder is None:
            text = self.header + "".join(self.memory)
            return parse_tiles_csv(text, class_names, positive, source="tiles")
        folder = self.folder
        if folder.partial_tiles.is_file():
            os.replace(folder.partial_tiles, folder.tiles)
        folder.progress.unlink(missing_ok=True)
        return read_tiles_csv(folder.tiles, class_names, positive)


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
