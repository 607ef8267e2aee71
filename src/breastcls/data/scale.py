"""The scale a model is trained at: how many microns one pixel of its input covers.

A whole-slide job tiles a slide at the model's scale (:mod:`breastcls.slides.tiling`), so a run
records it in ``config.json`` (its ``scale`` entry), from what the training data says:

* ``--train-mpp`` (:attr:`~breastcls.DataConfig.image_mpp`): microns per pixel of the training
  images as stored, given by whoever knows the microscope;
* otherwise BreakHis file names, whose magnification fixes the microns per pixel of the
  original 700-pixel-wide image (:data:`BREAKHIS_MPP`).

Each training image shows a field ``width x µm/px`` microns wide, which the model sees across
``image_size`` pixels: the model's scale is the field's width over ``image_size``. Images squashed
to a square keep their width's scale (the convention of ``--model-mpp``).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.images import ImageInfo
from breastcls.interfaces import Sample

__all__ = ["BREAKHIS_MPP", "BREAKHIS_WIDTH", "TrainingScale", "training_scale"]

BREAKHIS_WIDTH = 700
"""The width in pixels of an original BreakHis image (700 x 460)."""

# Spanhol et al. 2016 (doi:10.1109/TBME.2015.2496264): a 3.3x relay lens on an Olympus BX-50
# projects the specimen onto a camera of 6.5 µm pixels; magnifications 40/100/200/400X are the
# objectives 4/10/20/40x with a 10x ocular. The paper states no µm/px: this is 6.5 / (3.3 x
# objective), assuming the relay lens is the only optics between objective and camera.
BREAKHIS_MPP: Mapping[int, float] = {
    magnification: 6.5 / (3.3 * magnification / 10) for magnification in (40, 100, 200, 400)
}
"""Microns per pixel of an original (700-pixel-wide) BreakHis image, by magnification:
about 0.49, 0.20, 0.098 and 0.049."""

# Training fields wider than this ratio apart have no one scale (e.g. two magnifications).
_SAME_SCALE = 1.05


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingScale:
    """The scale a run was trained at (the ``scale`` entry of its ``config.json``).

    Attributes:
        model_mpp: Microns per pixel of the model's input, or ``None`` when the training data
            does not say or spans several scales.
        field_width_um: The width in microns of the field a training image shows.
        image_size: The model's input size the field is resized to.
        source: What the scale comes from (``--train-mpp`` or BreakHis magnifications).
        note: Why there is no scale, when there is none.
    """

    model_mpp: float | None
    field_width_um: float | None
    image_size: int
    source: str | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record."""
        return asdict(self)

    @classmethod
    def from_entry(cls, entry: object) -> TrainingScale | None:
        """Read the ``scale`` entry of a ``config.json`` record
        (:attr:`~breastcls.records.ConfigRecord.scale`); ``None`` for a run trained before
        breastcls recorded it (no entry), or an entry that is not one."""
        if not isinstance(entry, Mapping):
            return None
        mpp, width = entry.get("model_mpp"), entry.get("field_width_um")
        size = entry.get("image_size")
        if not (isinstance(size, int) and all(v is None or _positive(v) for v in (mpp, width))):
            return None
        return cls(
            model_mpp=float(mpp) if mpp is not None else None,
            field_width_um=float(width) if width is not None else None,
            image_size=int(size),
            source=str(entry["source"]) if entry.get("source") is not None else None,
            note=str(entry["note"]) if entry.get("note") is not None else None,
        )


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e9


def training_scale(
    samples: Sequence[Sample],
    image_info: Mapping[Path, ImageInfo],
    *,
    image_size: int,
    image_mpp: float | None,
) -> TrainingScale:
    """The scale a model is trained at on ``samples`` (the training set), resized to
    ``image_size``; ``image_mpp`` (microns per pixel of the images as stored) overrides what
    BreakHis names say.

    A BreakHis image narrower than 700 pixels is taken as the whole original field downscaled
    (as the BreakHis copies at 224 or 350 pixels are), not as a crop.
    """
    widths: list[float] = []
    magnifications: set[int] = set()
    for sample in samples:
        info = image_info.get(sample.path)
        name = parse_breakhis_name(sample.path.name)
        if image_mpp is not None and info is not None:
            widths.append(image_mpp * info.width)
        elif image_mpp is None and name is not None and name.magnification in BREAKHIS_MPP:
            widths.append(BREAKHIS_WIDTH * BREAKHIS_MPP[name.magnification])
            magnifications.add(name.magnification)
    unknown = len(samples) - len(widths)
    if image_mpp is not None:
        source = f"--train-mpp {image_mpp:g} µm/px times each image's width"
    else:
        listed = ", ".join(f"{m}X" for m in sorted(magnifications))
        source = f"BreakHis file names ({listed}; {BREAKHIS_WIDTH}-pixel originals)"
    if not widths or unknown:
        note = (
            f"{unknown} of {len(samples)} training images have no known scale (their names are "
            "not BreakHis names): train with --train-mpp to record it"
        )
        return TrainingScale(
            model_mpp=None, field_width_um=None, image_size=image_size, source=None, note=note
        )
    narrow, wide = min(widths), max(widths)
    if wide > narrow * _SAME_SCALE:
        note = (
            f"the training images show fields from {narrow:.0f} to {wide:.0f} µm wide ({source}): "
            "a model trained across scales has no single one; train at one magnification, or "
            "pass --model-mpp"
        )
        return TrainingScale(
            model_mpp=None, field_width_um=None, image_size=image_size, source=source, note=note
        )
    field = statistics.median(widths)
    return TrainingScale(
        model_mpp=field / image_size,
        field_width_um=field,
        image_size=image_size,
        source=source,
        note=None,
    )
