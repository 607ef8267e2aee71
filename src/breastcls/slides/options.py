"""What a slide job is asked to do: the options shared by every slide of a job, and each slide's
own entry (its file, and what a manifest row says about it).

Both are frozen and checked when made, so that a bad option stops a job before any model is
loaded or any slide is read. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastcls.errors import ConfigError

__all__ = ["SlideJob", "SlideJobOptions"]


def _check_resolution(option: str, value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and 0.0 < value < 1_000.0):
        raise ConfigError(
            f"{option} {value} is not a resolution: pass microns per pixel, a positive number "
            "(e.g. 0.25 for a 40x scan, 0.5 for 20x)."
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideJobOptions:
    """The options of a slide job, the same for each of its slides.

    Attributes:
        model_mpp: Microns per pixel of the model's input: the width in microns of the field a
            training image shows, divided by the model's input size; ``None``: the scale the
            run recorded at training (:func:`~breastcls.slides.scale.model_scale`).
        mpp: Microns per level-0 pixel, for slides whose file records none (a slide's own
            resolution is kept unless ``force_mpp``).
        force_mpp: Use ``mpp`` even for slides that record their own resolution.
        overlap: Fraction of a tile's side shared with its neighbour (0 to below 1).
        min_tissue: The least tissue fraction of a tile that is classified.
        tta: Test-time augmentation id, with the calibration fitted for it.
        batch_size: Tiles per model call.
        chunk_batches: Batches per committed chunk of ``tiles.csv``.
        workers: Threads reading and resampling tiles ahead of the model.
        top_k: How many of the highest tile scores the summary averages.
        reader: A slide reader id; ``None``: the first that accepts the file.
        thumbnail_side: The longer side of the thumbnail the tissue is found on.
        tissue_detector: The tissue detector's id (a plugin kind; ``optical-density`` or
            ``saturation`` built in).
        roi: A QuPath GeoJSON of the regions to classify, for slides whose manifest row names
            none (:mod:`breastcls.slides.regions`); ``None``: all the tissue.
        tissue_mask: A mask image used instead of the tissue detector, for slides whose
            manifest row names none; ``None``: the detector.
        runtime: Where the model runs: ``tensorflow``, ``onnx``, ``onnx-int8`` or ``auto``
            (:func:`~breastcls.inference.runtime.choose_runtime`); ``None``: the runtime of the
            model as loaded (TensorFlow for a path; an :class:`~breastcls.InferenceModel` keeps
            the one chosen for it, to share it across slides).
        tile_embeddings: Write each slide's tile embeddings (``embeddings.npz``) too; only for
            a probe on a frozen extractor (:mod:`breastcls.slides.embeddings`).
        verbose: 1 reports progress to the active :mod:`breastcls.progress` reporter.

    Raises:
        ConfigError: A count is below 1, a resolution is not positive, or ``force_mpp`` is set
            without ``mpp``.
    """

    model_mpp: float | None = None
    mpp: float | None = None
    force_mpp: bool = False
    overlap: float = 0.0
    min_tissue: float = 0.5
    tta: str = "none"
    batch_size: int = 32
    chunk_batches: int = 8
    workers: int = 2
    top_k: int = 10
    reader: str | None = None
    thumbnail_side: int = 2048
    tissue_detector: str = "optical-density"
    roi: Path | None = None
    tissue_mask: Path | None = None
    runtime: str | None = None
    tile_embeddings: bool = False
    verbose: int = 0

    def __post_init__(self) -> None:
        counts = {
            "batch_size": self.batch_size, "chunk_batches": self.chunk_batches,
            "workers": self.workers, "top_k": self.top_k, "thumbnail_side": self.thumbnail_side,
        }  # fmt: skip
        low = {name: value for name, value in counts.items() if value < 1}
        if low:
            listed = ", ".join(f"{name}={value}" for name, value in low.items())
            raise ConfigError(f"{listed}: {', '.join(low)} must be at least 1.")
        _check_resolution("--model-mpp", self.model_mpp)
        _check_resolution("--mpp", self.mpp)
        if self.force_mpp and self.mpp is None:
            raise ConfigError(
                "--force-mpp needs --mpp: pass the microns per pixel that replaces the slides' "
                "own resolution."
            )

    def replace(self, **changes: Any) -> SlideJobOptions:
        """These options with ``changes`` (field names of :class:`SlideJobOptions`), checked.

        Raises:
            ConfigError: A name is not an option, or a value is out of range.
        """
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            allowed = ", ".join(f.name for f in dataclasses.fields(self))
            raise ConfigError(f"Unknown slide option(s) {', '.join(unknown)}: use {allowed}.")
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """The options that decide a slide folder's tiles and scores, for its job record
        (a folder is resumed only by a job with the same ones)."""
        return {
            "overlap": self.overlap, "min_tissue": self.min_tissue, "tta": self.tta,
            "batch_size": self.batch_size, "chunk_batches": self.chunk_batches,
            "thumbnail_side": self.thumbnail_side,
        }  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideJob:
    """One slide of a job: its file, and what a manifest row says about it.

    Attributes:
        path: The slide file.
        mpp: This slide's microns per level-0 pixel, in place of the job's ``--mpp`` (a
            fallback for a slide that records none, unless the job forces it).
        roi: A QuPath GeoJSON of the regions to classify, or ``None``: all the tissue.
        tissue_mask: A PNG tissue mask to use instead of the tissue detector, or ``None``.
        case_id: The case (patient) the slide belongs to, carried into the summary, or ``""``.

    Raises:
        ConfigError: ``mpp`` is not a positive resolution.
    """

    path: Path
    mpp: float | None = None
    roi: Path | None = None
    tissue_mask: Path | None = None
    case_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        _check_resolution(f"the mpp of {self.path}", self.mpp)
