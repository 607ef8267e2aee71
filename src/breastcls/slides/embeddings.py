"""A slide's tile embeddings: the frozen extractor's embedding of every tissue tile, for
slide-level models (attention-based multiple-instance learning and the like).

A model whose backbone is a frozen extractor (a foundation model with a probe,
:mod:`breastcls.embeddings`) writes ``embeddings.npz`` beside ``tiles.csv``: ``embeddings``, a
``(tiles, dimension)`` float16 array with one row per row of ``tiles.csv``, in its order, and
``column`` and ``row``, the tile's grid cell as ``tiles.csv`` gives it. A model that is not
such a probe writes none.

Like the tile rows (:mod:`breastcls.slides.tilewriter`), the embeddings are kept chunk by chunk:
each chunk is written whole to ``embeddings.partial/`` before its tile rows are committed, so a
job killed at any point resumes from its last committed chunk and writes the same file as one
that was never stopped. ``embeddings.npz`` is written whole (renamed into place) before
``tiles.csv`` is, and the chunks are removed after.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import OutputError
from breastcls.inference.model import InferenceModel
from breastcls.io import atomic_path
from breastcls.runs.folder import SlideFolder
from breastcls.slides.tiling import TilePlan

__all__ = ["TileEmbeddings"]

_CHUNK = "tiles-{first:09d}.npy"


class TileEmbeddings:
    """The embeddings of a slide's tiles, kept chunk by chunk in a slide folder (see the
    module).

    Attributes:
        folder: The slide folder.
        dimension: The extractor's embedding dimension.
    """

    def __init__(self, folder: SlideFolder, dimension: int) -> None:
        self.folder = folder
        self.dimension = dimension

    @classmethod
    def of(cls, model: InferenceModel, folder: SlideFolder | None) -> TileEmbeddings | None:
        """The tile embeddings ``model`` writes into ``folder``: ``None`` without a folder or
        when the model is not a probe on a frozen extractor."""
        extractor = model.record.extractor
        if folder is None or extractor is None:
            return None
        return cls(folder, extractor.dimension)

    def covered(self, committed: int) -> bool:
        """Whether the chunks kept cover the first ``committed`` tiles (a folder begun by an
        older breastcls, which kept none, does not: its tiles are classified again)."""
        return self._prefix(committed) is not None

    def keep(self, first: int, features: Sequence[npt.NDArray[Any] | None]) -> None:
        """Write the embeddings of the tiles from ``first`` on as one chunk (whole, or not at
        all), from the features of its batches (the embedding, then the image statistics;
        averaged over the copies of a test-time augmentation), as float16.

        Raises:
            OutputError: A batch came without features, or the slide folder cannot be written.
        """
        target = self.folder.partial_embeddings / _CHUNK.format(first=first)
        if any(found is None for found in features):
            raise OutputError(f"{target}: the model's runtime gave no embeddings of the tiles.")
        rows = np.concatenate(
            [found[:, : self.dimension] for found in features if found is not None]
        )
        try:
            with atomic_path(target) as temporary, open(temporary, "wb") as handle:
                np.save(handle, rows.astype(np.float16))
        except OSError as error:
            raise OutputError(f"Cannot write {target}: {error.strerror or error}.") from error

    def finish(self, plan: TilePlan, total: int) -> None:
        """Join the chunks of the ``total`` tiles into ``embeddings.npz`` (whole, or not at
        all), with each tile's ``column`` and ``row`` in the plan's order.

        Raises:
            OutputError: A chunk is missing, or the file cannot be written.
        """
        rows = self._prefix(total)
        if rows is None or len(rows) != total:
            raise OutputError(
                f"{self.folder.partial_embeddings} lacks the embeddings of some of the {total} "
                "tiles: remove the slide folder and run `breastcls slide predict` again."
            )
        try:
            with atomic_path(self.folder.embeddings) as temporary, open(temporary, "wb") as out:
                np.savez(
                    out, embeddings=rows, column=plan.column[:total].astype(np.int32),
                    row=plan.row[:total].astype(np.int32),
                )  # fmt: skip
        except OSError as error:
            raise OutputError(
                f"Cannot write {self.folder.embeddings}: {error.strerror or error}."
            ) from error

    def clean(self) -> None:
        """Remove the chunks (once ``embeddings.npz`` and ``tiles.csv`` are in place)."""
        shutil.rmtree(self.folder.partial_embeddings, ignore_errors=True)

    def record(self, tiles: int) -> dict[str, Any] | None:
        """What the slide's ``summary.json`` says of the file: its name, rows, dimension and
        type; ``None`` when it is not there."""
        if not self.folder.embeddings.is_file():
            return None
        return {
            "file": self.folder.embeddings.name,
            "tiles": tiles,
            "dimension": self.dimension,
            "dtype": "float16",
        }

    def _prefix(self, tiles: int) -> npt.NDArray[np.float16] | None:
        """The rows of the first ``tiles`` tiles from the chunks, or ``None`` where a chunk is
        missing or damaged."""
        parts: list[npt.NDArray[np.float16]] = []
        done = 0
        while done < tiles:
            chunk = self.folder.partial_embeddings / _CHUNK.format(first=done)
            try:
                rows = np.load(chunk, allow_pickle=False)
            except (OSError, ValueError):
                return None
            if rows.ndim != 2 or rows.shape[1] != self.dimension or len(rows) == 0:
                return None
            parts.append(rows)
            done += len(rows)
        joined = np.concatenate(parts) if parts else np.zeros((0, self.dimension), np.float16)
        return joined[:tiles] if done >= tiles else None
