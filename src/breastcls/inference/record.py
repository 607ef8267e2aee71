"""The model record: everything a trained model needs to predict exactly as its run did.

One file, ``model_record.json``, lies beside the model: the class names and the positive side,
the input size and value range, the preprocessing, the scale the model was trained at, the stain
normaliser, the calibration of each test-time augmentation (with the set and the number of images
and patients it was fitted on) and the versions that trained it. Training writes it once, at its
end; only an explicit step (:func:`breastcls.calibrate`) changes it; every export format copies it
verbatim. Reading a model never writes.

Folders written before the record existed (a run folder's ``config.json``, ``class_names.json``,
``temperature*.json`` and ``thresholds*.json``; an export's ``export.json``), and bare ``.keras``
files, are read through one upgrade function, :func:`upgrade_record`, in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from breastcls._version import __version__
from breastcls.data.scale import TrainingScale
from breastcls.embeddings.extractor import ExtractorRecord
from breastcls.errors import BreastclsError, ConfigError, ModelLoadError
from breastcls.inference.calibration import Calibration
from breastcls.inference.decision import PositiveGroup, positive_group
from breastcls.inference.domain import DomainReference
from breastcls.io import atomic_write_json
from breastcls.runs.folder import RunFolder

__all__ = [
    "RECORD_VERSION",
    "ModelRecord",
    "RecordOrigin",
    "folder_calibration",
    "read_record",
    "training_record",
    "upgrade_record",
    "write_record",
]

RECORD_VERSION = 1
"""The version of ``model_record.json`` this breastcls writes; it reads this one and older."""

RecordOrigin = Literal["training", "upgraded", "model file"]
"""Where a record comes from: written by training (and changed only by ``calibrate``), upgraded
in memory from a folder written before records, or derived from a bare model file alone."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRecord:
    """What a trained model needs to predict as its run did (``model_record.json``).

    Attributes:
        class_names: Class names, in the order of the model's outputs.
        class_names_known: ``False`` when the names are placeholders (``class_0``...) of a bare
            model file with nothing beside it.
        image_size: The side images are resized to.
        value_range: The pixel values the model takes: 0-255 RGB (floats or integers).
        preprocessing: The preprocessing inside the model (``backbone``: the backbone's own;
            ``none``), or ``unknown`` for a bare model file.
        backbone: The backbone id, when known.
        scale: The scale the model was trained at (microns per input pixel), when recorded.
        stain_normalisation: The stain normaliser inside the model and what it was fitted to
            (``stain_normalisation.json``'s record), or ``None`` when there is none.
        calibrations: The calibration fitted for each test-time augmentation, by TTA id.
        domain: The training distribution and thresholds of the domain-shift score
            (:mod:`breastcls.inference.domain`), or ``None`` for a model trained before it.
        extractor: The frozen feature extractor (a foundation model) whose embeddings the
            model's probe takes: its file, the file's SHA-256, the input size, mean and
            standard deviation, the output taken and the microns per pixel it expects; ``None``
            for a network trained end to end.
        versions: The breastcls, Keras and TensorFlow versions that trained the model.
        origin: Where the record comes from (:data:`RecordOrigin`).
        created: When training wrote it (ISO 8601), when known.
    """

    class_names: tuple[str, ...]
    class_names_known: bool = True
    image_size: int
    value_range: Literal["0-255"] = "0-255"
    preprocessing: str = "unknown"
    backbone: str | None = None
    scale: TrainingScale | None = None
    stain_normalisation: Mapping[str, Any] | None = None
    calibrations: Mapping[str, Calibration] = field(default_factory=dict)
    domain: DomainReference | None = None
    extractor: ExtractorRecord | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    origin: RecordOrigin = "training"
    created: str | None = None

    def __post_init__(self) -> None:
        names = self.class_names
        if len(names) < 2 or len(set(names)) != len(names) or not all(n.strip() for n in names):
            raise ConfigError(
                f"A model record needs two or more distinct class names, not {list(names)}."
            )
        if not 1 <= self.image_size <= 100_000:
            raise ConfigError(f"A model record's image_size {self.image_size} is not a size.")

    @property
    def positive(self) -> PositiveGroup:
        """The positive side of the clinical view (malignant, or the malignant subtypes)."""
        return positive_group(self.class_names)

    @property
    def calibrated_ttas(self) -> tuple[str, ...]:
        """The test-time augmentations the record holds a calibration for."""
        return tuple(self.calibrations)

    def with_calibration(self, calibration: Calibration) -> ModelRecord:
        """The record with ``calibration`` kept for its TTA (replacing an earlier one)."""
        return replace(self, calibrations={**self.calibrations, calibration.tta: calibration})

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``model_record.json``."""
        positive = self.positive
        return {
            "version": RECORD_VERSION,
            "class_names": list(self.class_names),
            "class_names_known": self.class_names_known,
            "positive": {
                "name": positive.name,
                "classes": [self.class_names[i] for i in positive.indices],
                "score": positive.describe(self.class_names),
            },
            "input": {
                "image_size": self.image_size,
                "shape": [None, self.image_size, self.image_size, 3],
                "value_range": self.value_range,
                "channels": "RGB",
            },
            "preprocessing": self.preprocessing,
            "backbone": self.backbone,
            "scale": self.scale.to_dict() if self.scale is not None else None,
            "stain_normalisation": (
                dict(self.stain_normalisation) if self.stain_normalisation else None
            ),
            "calibrations": {tta: c.to_dict() for tta, c in self.calibrations.items()},
            "domain": self.domain.to_dict() if self.domain is not None else None,
            "extractor": self.extractor.to_dict() if self.extractor is not None else None,
            "versions": dict(self.versions),
            "origin": self.origin,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, raw: Any, *, where: Path) -> ModelRecord:
        """Read :meth:`to_dict`'s form back.

        Raises:
            ModelLoadError: It is not a record this version reads (named, with what to do).
        """
        fix = f"{where} is not a model record this breastcls ({__version__}) reads"
        if not isinstance(raw, dict):
            raise ModelLoadError(f"{fix}: it is not a JSON object. Restore it, or retrain.")
        version = raw.get("version")
        if not isinstance(version, int) or version > RECORD_VERSION:
            raise ModelLoadError(
                f"{fix}: its version is {version!r} (this one reads 1 to {RECORD_VERSION}). "
                "Upgrade breastcls, or restore the record."
            )
        try:
            entry = raw["input"]
            scale = raw.get("scale")
            return cls(
                class_names=tuple(str(name) for name in raw["class_names"]),
                class_names_known=bool(raw.get("class_names_known", True)),
                image_size=int(entry["image_size"]),
                value_range=_value_range(entry.get("value_range", "0-255")),
                preprocessing=str(raw.get("preprocessing", "unknown")),
                backbone=None if raw.get("backbone") is None else str(raw["backbone"]),
                scale=TrainingScale.from_entry(scale) if scale else None,
                stain_normalisation=raw.get("stain_normalisation") or None,
                calibrations={
                    str(tta): Calibration.from_dict(recorded, tta=str(tta))
                    for tta, recorded in dict(raw.get("calibrations") or {}).items()
                },
                domain=DomainReference.from_dict(raw["domain"]) if raw.get("domain") else None,
                extractor=(
                    ExtractorRecord.from_dict(raw["extractor"]) if raw.get("extractor") else None
                ),
                versions={str(k): str(v) for k, v in dict(raw.get("versions") or {}).items()},
                origin="training",
                created=None if raw.get("created") is None else str(raw["created"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, BreastclsError) as error:
            raise ModelLoadError(
                f"{fix} ({type(error).__name__}: {error}). Restore it, or retrain."
            ) from error


def _value_range(value: Any) -> Literal["0-255"]:
    if value != "0-255":
        raise ValueError(f"value_range {value!r} is not '0-255'")
    return "0-255"


def read_record(folder: Path) -> ModelRecord | None:
    """The ``model_record.json`` in ``folder``, or ``None`` when it has none.

    Raises:
        ModelLoadError: The record is unreadable or malformed.
    """
    run = RunFolder(folder)
    if not run.model_record.is_file():
        return None
    try:
        raw = run.read_record(run.model_record)
    except ConfigError as error:
        raise ModelLoadError(str(error)) from error
    return ModelRecord.from_dict(raw, where=run.model_record)


def folder_calibration(folder: Path, tta: str = "none") -> Calibration:
    """The calibration of ``tta`` that a model's folder records, read without the model (for
    rebuilding a report): its model record's, else the files of a folder written before
    records; an empty one when there is none.

    Raises:
        ModelLoadError: The record or a calibration file is malformed.
    """
    record = read_record(folder)
    found = record.calibrations if record is not None else _legacy_calibrations(RunFolder(folder))
    return found.get(tta) or Calibration(tta=tta)


def write_record(folder: Path, record: ModelRecord) -> None:
    """Write ``record`` as ``folder``'s ``model_record.json`` (atomically)."""
    atomic_write_json(RunFolder(folder).model_record, record.to_dict())


def training_record(record: ModelRecord) -> ModelRecord:
    """``record`` as training writes it: stamped with the time and the versions of breastcls,
    Keras and TensorFlow in this process."""
    import keras
    import tensorflow as tf

    return replace(
        record,
        origin="training",
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        versions={
            "breastcls": __version__,
            "keras": keras.__version__,
            "tensorflow": tf.__version__,
        },
    )


def upgrade_record(
    folder: Path,
    *,
    n_outputs: int,
    image_size: int,
    class_names: tuple[str, ...] | None = None,
    origin: RecordOrigin = "upgraded",
) -> ModelRecord:
    """Build the record of a model from what its folder holds, written before records existed.

    A run folder gives the class names (``class_names.json``), the configuration and training
    scale (``config.json``), the stain normaliser (``stain_normalisation.json``) and the
    calibrations (``temperature[-<tta>].json``, ``thresholds[-<tta>].json``); an export folder
    its ``export.json``'s scale; a bare model file only its size and number of outputs (class
    names ``class_0``... unless ``class_names`` are given). Nothing is written.

    Raises:
        ModelLoadError: A file beside the model is malformed, or the class names do not match
            the model's number of outputs.
        ConfigError: ``class_names.json`` or ``config.json`` is unreadable.
    """
    run = RunFolder(folder)
    stored = run.read_class_names() if run.class_names.is_file() else None
    names = stored or class_names or tuple(f"class_{i}" for i in range(n_outputs))
    if len(names) != n_outputs:
        raise ModelLoadError(
            f"The model in {folder} has {n_outputs} outputs but {len(names)} class names "
            f"({list(names)}): put the right class_names.json beside the model."
        )
    config = run.read_config_record() if run.config.is_file() else None
    exported = run.read_export_record() if run.export_record.is_file() else None
    scale = TrainingScale.from_entry(
        config.scale if config is not None else exported.scale if exported else None
    )
    stain = run.read_record(run.stain_normalisation) if run.stain_normalisation.is_file() else None
    model = config.run_config.model if config is not None else None
    return ModelRecord(
        class_names=tuple(names),
        class_names_known=stored is not None or class_names is not None,
        image_size=image_size,
        preprocessing=model.preprocessing if model is not None else "unknown",
        backbone=model.backbone if model is not None else None,
        scale=scale,
        stain_normalisation=stain if isinstance(stain, dict) else None,
        calibrations=_legacy_calibrations(run),
        origin=origin,
    )


def _legacy_calibrations(run: RunFolder) -> dict[str, Calibration]:
    """The calibrations a folder kept in ``temperature*.json`` / ``thresholds*.json``."""
    from breastcls.io import read_json_file

    found: dict[str, Calibration] = {}
    for tta in run.legacy_calibrated_ttas():
        temperature_file, thresholds_file = run.legacy_calibration(tta)
        try:
            saved = read_json_file(temperature_file) if temperature_file.is_file() else {}
            chosen = read_json_file(thresholds_file) if thresholds_file.is_file() else {}
            temperature = saved.get("temperature")
            if temperature is not None and not float(temperature) > 0:
                raise ValueError(f"temperature {temperature} is not positive")
            found[tta] = Calibration.from_dict(
                {
                    "fitted_on": "selection",
                    "temperature": temperature,
                    "thresholds": chosen.get("thresholds", {}),
                    "positive_class": chosen.get("positive_class"),
                    "rule": chosen.get("rule"),
                    "n_images": saved.get("n_images", 0),
                    "notes": saved.get("notes", ()),
                },
                tta=tta,
            )
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise ModelLoadError(
                f"The calibration files in {run.path} ({temperature_file.name}, "
                f"{thresholds_file.name}) are malformed ({type(error).__name__}: {error}): "
                "delete them, or retrain."
            ) from error
    return found
