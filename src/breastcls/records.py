"""The typed records of a run folder: what ``config.json``, ``metrics.json`` and ``export.json``
hold, and what each epoch of training reports, each checked field by field when it is read;
and the records of a slide folder (``slide.json``, ``progress.json``, ``summary.json``).

Every reader of these files goes through :class:`~breastcls.runs.folder.RunFolder` (a slide
folder's through :class:`~breastcls.runs.folder.SlideFolder`), which builds these records;
plugins' lifecycle hooks receive them (:mod:`breastcls.plugins.hookspecs`), which is why this
module is part of the core: it imports nothing but the configuration, the errors and the
interfaces. The JSON files keep the layout
they always had: a record reads any file an earlier breastcls wrote, and ``to_json`` gives the
same document back.

The field check (:func:`wrong_field`) is the one ``status.json`` is read with too
(:mod:`breastcls.runs.listing`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, SupportsFloat, TypedDict

from breastcls.config import RunConfig
from breastcls.errors import ConfigError
from breastcls.interfaces import DataRole

__all__ = [
    "ConfigRecord",
    "EpochRecord",
    "EvaluatedOn",
    "ExportRecord",
    "FieldTypes",
    "Headline",
    "MetricsRecord",
    "SlideJobRecord",
    "SlideProgressRecord",
    "SlideSummaryRecord",
    "StatusRecord",
    "checked_fields",
    "wrong_field",
]

#: The JSON types each named field of a record may have (``type(None)``: it may be null or
#: missing).
FieldTypes = Mapping[str, tuple[type, ...]]

_NULL = type(None)
_NUMBER = (int, float)


def wrong_field(record: Mapping[str, object], fields: FieldTypes) -> str | None:
    """What is wrong with the first field of ``record`` whose value is not of its allowed types
    (``'images' is 'ten', not int``), or ``None`` when every field is right.

    A missing field counts as null; ``true`` and ``false`` are never numbers.
    """
    for name, allowed in fields.items():
        value = record.get(name)
        if not isinstance(value, allowed) or isinstance(value, bool):
            kinds = " or ".join("null" if t is _NULL else t.__name__ for t in allowed)
            return f"{name!r} is {value!r}, not {kinds}"
    return None


def checked_fields(
    record: object, fields: FieldTypes, *, source: Path, what: str, fix: str
) -> Mapping[str, Any]:
    """``record`` as a JSON object whose ``fields`` have their allowed types.

    Args:
        record: The JSON value read.
        fields: The fields checked (others are kept unchecked).
        source: The file it was read from (named in the error).
        what: What the file should hold (``a metrics record``).
        fix: What to do about a malformed one.

    Raises:
        ConfigError: ``record`` is not a JSON object, or a field has the wrong type (the file,
            the field and its value named).
    """
    if not isinstance(record, dict):
        raise ConfigError(f"{source} is not {what} (it is not a JSON object): {fix}.")
    problem = wrong_field(record, fields)
    if problem is not None:
        raise ConfigError(f"{source} is not {what} ({problem}): {fix}.")
    return record


_EVALUATED_ON_FIELDS: FieldTypes = {
    "role": (str, _NULL),
    "set": (str,),
    "leak": (str, _NULL),
    "images": (int, _NULL),
    "patients": (int, _NULL),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluatedOn:
    """The ``evaluated_on`` section of ``metrics.json``: the set the figures come from.

    Attributes:
        role: The set's role to the model (``test``, ``selection``...); ``None`` for data not
            checked against the model's images.
        set: How the reports name the set (``test set``, ``test set, LEAKY: ...``).
        leak: The ``LEAKY: ...`` words of a set whose patients also trained or selected the
            model, else ``None``.
        images: Number of images (``None`` in records that did not count them).
        patients: Number of patients, as the split groups them (``None`` when unknown).
    """

    role: DataRole | None
    set: str
    leak: str | None = None
    images: int | None = None
    patients: int | None = None

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> EvaluatedOn:
        """Read the section.

        Raises:
            ConfigError: A field is missing or of the wrong type, or the role is unknown.
        """
        fix = "restore it, or evaluate again"
        entry = checked_fields(
            raw, _EVALUATED_ON_FIELDS, source=source, what="a metrics record's evaluated_on",
            fix=fix,
        )  # fmt: skip
        role = entry.get("role")
        if role is not None and role not in {r.value for r in DataRole}:
            allowed = ", ".join(r.value for r in DataRole)
            raise ConfigError(
                f"{source}: evaluated_on's 'role' is {role!r}, not one of {allowed}: {fix}."
            )
        return cls(
            role=DataRole(role) if role is not None else None,
            set=entry["set"],
            leak=entry.get("leak"),
            images=entry.get("images"),
            patients=entry.get("patients"),
        )

    def to_json(self) -> dict[str, object]:
        """The section as ``metrics.json`` holds it."""
        return {
            "role": self.role.value if self.role is not None else None,
            "set": self.set,
            "leak": self.leak,
            "images": self.images,
            "patients": self.patients,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsRecord(Mapping[str, Any]):
    """``metrics.json``: the set the figures come from, then one section per metric.

    The sections are named by the metrics that wrote them (``classification``, ``bootstrap``,
    a plugin's ``agreement``...), so the record is also a read-only mapping of the JSON
    document: ``record["classification"]["accuracy"]``; ``record["evaluated_on"]`` is
    :attr:`evaluated_on` as JSON.

    Attributes:
        evaluated_on: The set the figures come from (``None`` for a folder not evaluated yet).
        sections: Each metric's values under its name, as written.
    """

    evaluated_on: EvaluatedOn | None
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> MetricsRecord:
        """Read a ``metrics.json`` document.

        Raises:
            ConfigError: It is not a JSON object, a section is not an object, or
                ``evaluated_on`` is malformed (the file and the field named).
        """
        fix = "restore it, or evaluate again"
        document = checked_fields(raw, {}, source=source, what="a metrics record", fix=fix)
        every_section: FieldTypes = {name: (dict,) for name in document if name != "evaluated_on"}
        checked_fields(document, every_section, source=source, what="a metrics record", fix=fix)
        sections = {name: document[name] for name in every_section}
        evaluated_on = document.get("evaluated_on")
        return cls(
            evaluated_on=(
                EvaluatedOn.from_json(evaluated_on, source=source)
                if evaluated_on is not None
                else None
            ),
            sections=sections,
        )

    def section(self, name: str) -> Mapping[str, Any]:
        """The values of metric ``name`` (empty when the record has none)."""
        return self.sections.get(name, {})

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` document: ``evaluated_on`` first, then the sections."""
        head = {"evaluated_on": self.evaluated_on.to_json()} if self.evaluated_on else {}
        return head | {name: dict(values) for name, values in self.sections.items()}

    def __getitem__(self, name: str) -> Any:
        if name == "evaluated_on" and self.evaluated_on is not None:
            return self.evaluated_on.to_json()
        return self.sections[name]

    def __iter__(self) -> Iterator[str]:
        if self.evaluated_on is not None:
            yield "evaluated_on"
        yield from self.sections

    def __len__(self) -> int:
        return len(self.sections) + (self.evaluated_on is not None)


class Headline(TypedDict):
    """The figures a run is summarised by (``status.json``'s ``headline``, ``breastcls runs``):
    the set they come from, accuracy and AUC with its 95% interval (``None`` when unknown)."""

    role: str | None
    set: str | None
    leak: str | None
    accuracy: float | None
    auc: float | None
    auc_low: float | None
    auc_high: float | None


_STATUS_FIELDS: FieldTypes = {
    "status": (str,),
    "reason": (str, _NULL),
    "updated": (str, _NULL),
    "pid": (int, _NULL),
    "host": (str, _NULL),
    "resumed_at_epoch": (int, _NULL),
    "headline": (dict, _NULL),
}
_HEADLINE_FIELDS: FieldTypes = {
    "accuracy": (*_NUMBER, _NULL),
    "auc": (*_NUMBER, _NULL),
    "role": (str, _NULL),
    "set": (str, _NULL),
    "leak": (str, _NULL),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusRecord:
    """``status.json``: where a run stands, which process wrote it, and its headline figures.

    Attributes:
        status: ``running``, ``finished``, ``failed`` or ``interrupted``; ``unknown`` for a
            folder without a status.
        reason: Why the run failed or stopped.
        updated: When the status was written (ISO 8601, UTC).
        pid: The process that wrote it.
        host: The machine that process ran on.
        resumed_at_epoch: The epoch a resumed run went on from.
        headline: The figures the run is summarised by (:class:`Headline`; a cross-validation
            adds the folds' mean and standard deviation).
        document: The JSON document as written.
    """

    status: str
    reason: str | None = None
    updated: str | None = None
    pid: int | None = None
    host: str | None = None
    resumed_at_epoch: int | None = None
    headline: Mapping[str, Any] = field(default_factory=dict)
    document: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> StatusRecord:
        """Read a ``status.json`` document.

        Raises:
            ConfigError: It is not a JSON object, or a field (or a headline figure) has the
                wrong type (the file and the field named).
        """
        fix = "restore it or remove the run"
        document = checked_fields(
            raw, _STATUS_FIELDS, source=source, what="a status record", fix=fix
        )
        headline = checked_fields(
            document.get("headline") or {}, _HEADLINE_FIELDS, source=source,
            what="a status record (its headline)", fix=fix,
        )  # fmt: skip
        return cls(
            status=document["status"],
            reason=document.get("reason"),
            updated=document.get("updated"),
            pid=document.get("pid"),
            host=document.get("host"),
            resumed_at_epoch=document.get("resumed_at_epoch"),
            headline=headline,
            document=document,
        )


_CONFIG_FIELDS: FieldTypes = {
    "data": (dict,),
    "model": (dict, _NULL),
    "train": (dict, _NULL),
    "split": (dict, _NULL),
    "distribution": (dict, _NULL),
    "dtype_policy": (str, _NULL),
    "scale": (dict, _NULL),
    "class_weights_used": (dict, _NULL),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigRecord:
    """``config.json`` as a run wrote it: the configuration, and what training decided from it.

    Attributes:
        run_config: The run's configuration (:meth:`~breastcls.config.RunConfig.from_dict`,
            which also reads the layout of breastcls 0.1).
        split: The split's summary: images and patients per set, the leak check.
        distribution: The distribution strategy and its devices (``None`` before it was
            recorded).
        dtype_policy: The Keras dtype policy trained with (``None`` before it was recorded).
        scale: The scale the model was trained at, as written (``model_mpp``,
            ``field_width_um``, ``image_size``...; :meth:`TrainingScale.from_entry
            <breastcls.data.scale.TrainingScale.from_entry>` reads it); ``None`` before it was
            recorded.
        class_weights_used: The class weights of a ``class_weight="balanced"`` run.
        document: The JSON document as written (reports show it whole).
    """

    run_config: RunConfig
    split: Mapping[str, Any] = field(default_factory=dict)
    distribution: Mapping[str, Any] | None = None
    dtype_policy: str | None = None
    scale: Mapping[str, Any] | None = None
    class_weights_used: Mapping[str, float] | None = None
    document: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> ConfigRecord:
        """Read a ``config.json`` document.

        Raises:
            ConfigError: It is not a JSON object, a section has the wrong type, or the
                configuration is invalid (the file and the field named).
        """
        fix = "restore it, or start a new run"
        document = checked_fields(
            raw, _CONFIG_FIELDS, source=source, what="a breastcls configuration", fix=fix
        )
        try:
            run_config = RunConfig.from_dict(
                {
                    k: v
                    for k, v in document.items()
                    if k in ("data", "model", "train", "out_dir", "name")
                }
            )
        except ConfigError as error:
            raise ConfigError(f"{source} is not a valid configuration ({error}): {fix}.") from error
        return cls(
            run_config=run_config,
            split=document.get("split") or {},
            distribution=document.get("distribution"),
            dtype_policy=document.get("dtype_policy"),
            scale=document.get("scale"),
            class_weights_used=document.get("class_weights_used"),
            document=document,
        )

    def to_json(self) -> dict[str, Any]:
        """The ``config.json`` document, as written."""
        return dict(self.document)


_EXPORT_FIELDS: FieldTypes = {
    "format": (str,),
    "model": (str,),
    "source": (str, _NULL),
    "record": (str, _NULL),
    "max_difference": (*_NUMBER, _NULL),
    "tolerance": (*_NUMBER, _NULL),
    "computes_in": (str, _NULL),
    "max_difference_to_run_model": (*_NUMBER, _NULL),
    "extractor": (str, _NULL),
    "holds": (str, _NULL),
    "scale": (dict, _NULL),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportRecord:
    """``export.json`` of an export folder: what was exported, and how closely it reproduces
    the run's model.

    Attributes:
        format: ``keras``, ``savedmodel``, ``onnx`` or ``tflite``.
        model: The exported model's file name in the folder.
        source: The model file it was exported from.
        record: The model record's file name (``None`` for exports made before model records).
        max_difference: The largest difference of a probability between the export and the
            model it was converted from, on the check images.
        tolerance: The largest difference allowed.
        computes_in: The precision the export computes in.
        max_difference_to_run_model: The same difference against the run's own model.
        extractor: A probe's frozen extractor file in the folder, beside the probe
            (``keras``); ``None`` when there is none, or when the model holds the extractor.
        holds: What a probe's export holds and takes, in one sentence; ``None`` for a network
            trained end to end.
        scale: The scale the model was trained at, as exports made before model records kept
            it (``None`` otherwise: the model record holds it), read as :attr:`ConfigRecord.scale`.
    """

    format: str
    model: str
    source: str | None = None
    record: str | None = None
    max_difference: float | None = None
    tolerance: float | None = None
    computes_in: str | None = None
    max_difference_to_run_model: float | None = None
    extractor: str | None = None
    holds: str | None = None
    scale: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> ExportRecord:
        """Read an ``export.json`` document.

        Raises:
            ConfigError: It is not a JSON object or a field has the wrong type (named).
        """
        document = checked_fields(
            raw, _EXPORT_FIELDS, source=source, what="an export record",
            fix="export the run again",
        )  # fmt: skip
        return cls(
            format=document["format"],
            model=document["model"],
            source=document.get("source"),
            record=document.get("record"),
            max_difference=document.get("max_difference"),
            tolerance=document.get("tolerance"),
            computes_in=document.get("computes_in"),
            max_difference_to_run_model=document.get("max_difference_to_run_model"),
            extractor=document.get("extractor"),
            holds=document.get("holds"),
            scale=document.get("scale"),
        )

    def to_json(self) -> dict[str, Any]:
        """The ``export.json`` document (a legacy ``scale`` is not written again)."""
        return {name: getattr(self, name) for name in _EXPORT_FIELDS if name != "scale"}


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochRecord(Mapping[str, float]):
    """What one epoch of training reports (the ``breastcls_epoch_end`` hook, a row of
    ``history.csv``): its number and every value Keras logged, which is also a read-only
    mapping of name to value.

    ``val_`` values are measured on the selection set.

    Attributes:
        epoch: The epoch's zero-based index.
        logged: Every logged value (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``,
            ``learning_rate``, a metric's...).
    """

    epoch: int
    logged: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_logs(cls, epoch: int, logs: Mapping[str, SupportsFloat] | None) -> EpochRecord:
        """The record of Keras' ``logs`` of epoch ``epoch`` (tensors and NumPy numbers made
        floats)."""
        return cls(epoch=epoch, logged={k: float(v) for k, v in (logs or {}).items()})

    @property
    def loss(self) -> float | None:
        """The training loss."""
        return self.logged.get("loss")

    @property
    def accuracy(self) -> float | None:
        """The training accuracy."""
        return self.logged.get("accuracy")

    @property
    def val_loss(self) -> float | None:
        """The selection set's loss."""
        return self.logged.get("val_loss")

    @property
    def val_accuracy(self) -> float | None:
        """The selection set's accuracy."""
        return self.logged.get("val_accuracy")

    @property
    def learning_rate(self) -> float | None:
        """The learning rate at the end of the epoch."""
        return self.logged.get("learning_rate")

    def __getitem__(self, name: str) -> float:
        return self.logged[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.logged)

    def __len__(self) -> int:
        return len(self.logged)


class _DocumentMapping(Mapping[str, Any]):
    """A record that is also a read-only mapping of its JSON document (``document``)."""

    __slots__ = ()
    document: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.document[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.document)

    def __len__(self) -> int:
        return len(self.document)

    def to_json(self) -> dict[str, Any]:
        """The JSON document, as written."""
        return dict(self.document)


_SLIDE_JOB_FIELDS: FieldTypes = {
    "slide": (str, _NULL),
    "model": (str, _NULL),
    "class_names": (list, _NULL),
    "calibration": (dict, _NULL),
    "grid": (dict, _NULL),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideJobRecord(_DocumentMapping):
    """``slide.json`` of a slide folder: the slide, the model, the options and the tile grid,
    written first and compared on resuming; also a read-only mapping of the JSON document.

    Attributes:
        slide: The slide file (``None`` in a record that does not name it).
        document: The JSON document as written (compared whole with a resumed job's).
    """

    slide: str | None = None
    document: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> SlideJobRecord:
        """Read a ``slide.json`` document.

        Raises:
            ConfigError: It is not a JSON object or a field has the wrong type (named).
        """
        document = checked_fields(
            raw, _SLIDE_JOB_FIELDS, source=source, what="a slide job record",
            fix="remove the slide folder and predict the slide again",
        )  # fmt: skip
        return cls(slide=document.get("slide"), document=document)


_SLIDE_PROGRESS_FIELDS: FieldTypes = {"tiles": (int,), "bytes": (int,)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideProgressRecord:
    """``progress.json`` of a slide folder: the tiles and bytes of ``tiles.partial.csv``
    committed so far.

    Attributes:
        tiles: The tiles committed.
        bytes: The length of ``tiles.partial.csv`` they fill (a resumed job cuts it there).
    """

    tiles: int
    bytes: int

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> SlideProgressRecord:
        """Read a ``progress.json`` document.

        Raises:
            ConfigError: It is not a JSON object or a field has the wrong type (named).
        """
        document = checked_fields(
            raw, _SLIDE_PROGRESS_FIELDS, source=source, what="a slide progress record",
            fix="remove it: the slide is then predicted from its first tile",
        )  # fmt: skip
        return cls(tiles=document["tiles"], bytes=document["bytes"])

    def to_json(self) -> dict[str, int]:
        """The ``progress.json`` document."""
        return {"tiles": self.tiles, "bytes": self.bytes}


_SLIDE_SUMMARY_FIELDS: FieldTypes = {
    "slide": (str, _NULL),
    "model": (str, _NULL),
    "positive": (str, _NULL),
    "negative": (str, _NULL),
    "slide_mpp": (*_NUMBER, _NULL),
    "tiles": (dict, _NULL),
    "threshold": (dict, _NULL),
    "fraction_positive": (dict, _NULL),
    "domain": (dict, _NULL),
    "top_k": (int, _NULL),
    "top_k_mean_score": (*_NUMBER, _NULL),
    "mean_score": (*_NUMBER, _NULL),
    "max_score": (*_NUMBER, _NULL),
    "tissue_area_fraction": (*_NUMBER, _NULL),
    "tissue_classified_fraction": (*_NUMBER, _NULL),
    "embeddings": (dict, _NULL),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideSummaryRecord(_DocumentMapping):
    """``summary.json`` of a slide folder: the slide-level figures, written last (it marks the
    folder complete); also a read-only mapping of the JSON document
    (``record["threshold"]["value"]``).

    Every field may be missing: summaries written before a figure existed (the tissue
    fractions, ``domain``...) still read.

    Attributes:
        slide: The slide file.
        positive: The positive class (or group).
        tiles: The tile counts (``grid``, ``tissue``, ``classified``).
        top_k_mean_score: The mean positive score of the top-k tiles.
        tissue_classified_fraction: The share of the tissue the classified tiles cover.
        embeddings: The tile embeddings file of a frozen extractor's model (``file``,
            ``tiles``, ``dimension``, ``dtype``); ``None`` for other models, or when the file
            is not there.
        document: The JSON document as written.
    """

    slide: str | None = None
    positive: str | None = None
    tiles: Mapping[str, Any] = field(default_factory=dict)
    top_k_mean_score: float | None = None
    tissue_classified_fraction: float | None = None
    embeddings: Mapping[str, Any] | None = None
    document: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: object, *, source: Path) -> SlideSummaryRecord:
        """Read a ``summary.json`` document.

        Raises:
            ConfigError: It is not a JSON object or a field has the wrong type (named).
        """
        document = checked_fields(
            raw, _SLIDE_SUMMARY_FIELDS, source=source, what="a slide summary record",
            fix="remove it and run `breastcls slide predict` on the slide again",
        )  # fmt: skip
        return cls(
            slide=document.get("slide"),
            positive=document.get("positive"),
            tiles=document.get("tiles") or {},
            top_k_mean_score=document.get("top_k_mean_score"),
            tissue_classified_fraction=document.get("tissue_classified_fraction"),
            embeddings=document.get("embeddings"),
            document=document,
        )
