"""The two scales a slide job matches: the slide's microns per pixel and the model's.

The slide's comes from its file, or from the user for a slide that records none; the model's from
the run's record of its training data (:mod:`breastcls.data.scale`), or from ``--model-mpp``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.scale import BREAKHIS_MPP, BREAKHIS_WIDTH
from breastcls.errors import BreastclsError, ConfigError, DataError
from breastcls.inference.model import InferenceModel
from breastcls.runs.folder import read_split_csv
from breastcls.slides.readers import Slide

__all__ = ["SlideResolution", "model_scale", "slide_resolution"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideResolution:
    """The microns per level-0 pixel a slide is tiled at.

    Attributes:
        mpp: The microns per pixel used.
        source: Where they come from: ``metadata``, ``--mpp`` (or ``manifest``: the slide's
            row) or ``--force-mpp``.
        own: What the slide's file records, or ``None``.
    """

    mpp: float
    source: str
    own: float | None

    @property
    def overridden(self) -> bool:
        """Whether the slide's own resolution was replaced by a different one."""
        return self.own is not None and abs(self.own - self.mpp) > 1e-9 * self.own


def slide_resolution(
    slide: Slide, mpp: float | None, *, force: bool = False, given_by: str = "--mpp"
) -> SlideResolution:
    """The resolution to tile ``slide`` at: its own, else ``mpp`` (given by ``given_by``); with
    ``force``, ``mpp`` whatever the slide records (a scanner known to write a wrong value).

    Raises:
        DataError: The slide records no resolution and ``mpp`` is ``None``.
    """
    own = float(slide.mpp) if slide.mpp is not None else None
    if force and mpp is not None:
        return SlideResolution(mpp=float(mpp), source="--force-mpp", own=own)
    if own is not None:
        return SlideResolution(mpp=own, source="metadata", own=own)
    if mpp is not None:
        return SlideResolution(mpp=float(mpp), source=given_by, own=None)
    power = slide.objective_power
    stated = f" (only its objective power, {power:g}x)" if power else ""
    raise DataError(
        f"{slide.path} records no resolution (microns per pixel){stated}: pass --mpp with "
        "the scanner's value (e.g. 0.25 for a 40x scan, 0.5 for 20x), or give it in the "
        "manifest's mpp column."
    )


def model_scale(model: InferenceModel, model_mpp: float | None) -> tuple[float, str]:
    """The microns per pixel of the model's input, and where they come from: ``model_mpp``
    when given, else the training scale its record holds (:mod:`breastcls.data.scale`).

    Raises:
        ConfigError: ``model_mpp`` is not positive, or is ``None`` and the model's folder
            records no training scale.
    """
    if model_mpp is not None:
        if not 0.0 < model_mpp < 1_000.0:
            raise ConfigError(
                f"--model-mpp {model_mpp} is not a resolution: pass the microns per pixel of the "
                "model's input (e.g. 1.6)."
            )
        return float(model_mpp), "--model-mpp"
    scale = model.record.scale
    if scale is not None and scale.model_mpp is not None:
        return scale.model_mpp, f"run ({scale.source})"
    if scale is not None and scale.note:
        why = scale.note
    elif model.record.origin == "model file" or not model.folder.config.is_file():
        why = "its record holds no training scale (a bare model file, or an export of one)"
    else:
        why = "the run was trained before breastcls recorded the training scale"
    raise ConfigError(
        f"{model.source}: the model's scale is unknown ({why}). Pass --model-mpp: the width in "
        f"microns of a training image's field divided by the input size ({model.image_size})"
        f"{_suggestion(model)}."
    )


def _suggestion(model: InferenceModel) -> str:
    """The ``--model-mpp`` of the most common BreakHis magnification among the run's training
    images (its ``split.csv``), as the end of a sentence; ``""`` when the run lists none."""
    try:
        rows = read_split_csv(model.folder.path)
    except (BreastclsError, OSError):
        return ""
    counts: Counter[int] = Counter()
    for sample, seen in rows:
        name = parse_breakhis_name(sample.path.name)
        magnification = sample.magnification or (name.magnification if name else None)
        if (
            seen.role.value == "train"
            and magnification is not None
            and magnification in BREAKHIS_MPP
        ):
            counts[magnification] += 1
    if not counts:
        return ""
    magnification, count = counts.most_common(1)[0]
    mpp = BREAKHIS_WIDTH * BREAKHIS_MPP[magnification] / model.image_size
    return (
        f"; e.g. --model-mpp {mpp:.4g}, the scale of {magnification}X, the most common "
        f"magnification of its training images ({count} of {counts.total()} with one), to "
        "predict as a model of that magnification"
    )
