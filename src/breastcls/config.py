"""Configuration objects: frozen dataclasses that fully describe a run.

A :class:`RunConfig` is written to every run folder as ``config.json`` and can be read back with
:func:`RunConfig.from_dict`, so a run can be repeated or resumed from its folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from breastcls.errors import ConfigError

__all__ = [
    "SPANHOL_REPEATS",
    "ClassWeight",
    "DataConfig",
    "Magnification",
    "ModelConfig",
    "Precision",
    "Preprocessing",
    "RunConfig",
    "SplitBy",
    "SplitProtocol",
    "Task",
    "TrainConfig",
    "Verbosity",
    "choices",
]

SplitBy = Literal["patient", "image"]
SplitProtocol = Literal["spanhol"]
SPANHOL_REPEATS = 5
Precision = Literal["float32", "mixed"]
Preprocessing = Literal["backbone", "none"]
Task = Literal["binary", "subtype"]
Magnification = Literal[40, 100, 200, 400]
ClassWeight = Literal["balanced"]
Verbosity = Literal[0, 1, 2]


def choices(config: type[Any], name: str) -> tuple[Any, ...]:
    """Return the allowed values of a closed-choice field of a configuration class.

    The choices are read from the field's ``Literal`` type, so they are defined once; ``None`` is
    not listed even where the field accepts it.

    Args:
        config: A configuration class such as :class:`TrainConfig`.
        name: One of its fields, e.g. ``"precision"``.

    Raises:
        ConfigError: The field does not exist or is not a closed choice.
    """
    literal = _literal_fields(config).get(name)
    if literal is None:
        raise ConfigError(f"{config.__name__}.{name} is not a field with fixed choices.")
    return literal[0]


_LiteralFields = dict[str, tuple[tuple[Any, ...], bool]]
_LITERAL_FIELDS: dict[type[Any], _LiteralFields] = {}


def _literal_fields(config: type[Any]) -> _LiteralFields:
    """Map each ``Literal`` field of ``config`` to (its choices, whether ``None`` is allowed)."""
    if config not in _LITERAL_FIELDS:
        fields: _LiteralFields = {}
        for name, hint in typing.get_type_hints(config).items():
            union = typing.get_origin(hint) in (typing.Union, types.UnionType)
            members = typing.get_args(hint) if union else (hint,)
            literals = [member for member in members if typing.get_origin(member) is Literal]
            if literals:
                values = tuple(value for literal in literals for value in typing.get_args(literal))
                fields[name] = (values, type(None) in members)
        _LITERAL_FIELDS[config] = fields
    return _LITERAL_FIELDS[config]


def _check_choices(config: object) -> None:
    """Raise a :class:`ConfigError` for the first field whose value is not one of its choices."""
    for name, (allowed, optional) in _literal_fields(type(config)).items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        bool_mismatch = isinstance(value, bool) and not any(isinstance(c, bool) for c in allowed)
        if value in allowed and not bool_mismatch:
            continue
        listed = ", ".join(repr(choice) for choice in allowed) + (" or None" if optional else "")
        close = difflib.get_close_matches(str(value), [str(choice) for choice in allowed], n=1)
        hint = f" Did you mean {close[0]!r}?" if close and isinstance(value, str) else ""
        raise ConfigError(
            f"{type(config).__name__}.{name}={value!r} is not allowed: use one of {listed}.{hint}"
        )


def _check_id(config: object, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{type(config).__name__}.{name}={value!r} must be a registered component id "
            "(`breastcls plugins` lists them)."
        )


_GROUP_COLUMNS = "group by patient_id, subtype, magnification or a manifest column of your own"
# Columns every image has that cannot group images: why not, and what to do.
_NOT_GROUPS = {
    "path": "every image has a path of its own, so each would be a group of one, which is "
    "split_by='image' (with allow_leaky_split where patient ids are known); "
    f"{_GROUP_COLUMNS} (a biopsy or slide number).",
    "label": "grouping by the class would put all the images of a class on one side of the "
    f"split, and none on the other; {_GROUP_COLUMNS}.",
    "split": "a manifest's split column fixes each image's side already, and no group is needed; "
    f"leave group_by out, or {_GROUP_COLUMNS}.",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    """Where the images are and how they are split and resized.

    Attributes:
        path: A folder (``root/<class>/*`` or ``root/{train,validation}/<class>/*``) or a CSV
            manifest.
        image_size: Side of the square the images are resized to.
        test_fraction: Share of the data held out as the test set, touched once by the final
            model, when the data fixes no test set of its own; ``0`` keeps none, and every figure
            then comes from the selection set and is labelled optimistic.
        selection_fraction: Share of the remaining data held out as the selection set (best
            checkpoint, learning-rate schedule, temperature, thresholds): the seed's 20% of
            ``train/`` that monitors training.
        split_seed: Seed of those splits (the seed's ``random_state=11``).
        split_by: ``patient`` keeps every patient (or ``group_by`` group) on one side of the
            split when patient ids are known; ``image`` splits images independently, which on
            grouped data needs ``allow_leaky_split`` and is recorded as leaky.
        group_by: Group images by this column instead of ``patient_id`` (a manifest column such as
            a biopsy number, or ``subtype``/``magnification``); every image needs a value.
            ``path``, ``label`` and ``split`` are refused: they cannot group images.
        allow_leaky_split: Allow an image-level split although patient ids (or groups) are known.
        folds: Stratified group k-fold cross-validation with this many folds (``None``: one
            train/validation split).
        protocol: A named evaluation protocol: ``spanhol`` (5 repeated patient-wise 70/30 splits,
            Spanhol et al. 2016).
        fold: Which fold (or protocol repetition) this run trains, from 1.
        magnification: Keep only images at this magnification (40, 100, 200 or 400).
        image_mpp: Microns per pixel of the images as stored, recorded with the run so that
            ``breastcls slide predict`` tiles slides at the model's scale; ``None``: BreakHis
            file names give it by magnification (:mod:`breastcls.data.scale`).
        task: ``binary`` (benign/malignant) or ``subtype`` (the eight BreakHis subtypes).
        skip_bad_images: Train without unreadable images (listed in the run folder) instead of
            stopping.
        cache: ``None`` (decode every epoch), ``"memory"`` or a folder for decoded images.
    """

    path: Path
    image_size: int = 224
    test_fraction: float = 0.2
    selection_fraction: float = 0.2
    split_seed: int = 11
    split_by: SplitBy = "patient"
    group_by: str | None = None
    allow_leaky_split: bool = False
    folds: int | None = None
    protocol: SplitProtocol | None = None
    fold: int = 1
    magnification: Magnification | None = None
    image_mpp: float | None = None
    task: Task = "binary"
    skip_bad_images: bool = False
    cache: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        _check_choices(self)
        if not 16 <= self.image_size <= 2048:
            raise ConfigError(
                f"image_size={self.image_size} is out of range: use a value from 16 to 2048 "
                "(224 reproduces the seed)."
            )
        if not 0.0 < self.selection_fraction < 1.0:
            raise ConfigError(
                f"selection_fraction={self.selection_fraction} must lie strictly between 0 and 1 "
                "(the seed uses 0.2)."
            )
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(
                f"test_fraction={self.test_fraction} must lie in [0, 1) (0.2 by default; 0 keeps "
                "no test set and labels every figure optimistic)."
            )
        if self.folds is not None and self.folds < 2:
            raise ConfigError(f"folds={self.folds} must be at least 2 (5 is usual).")
        if self.folds is not None and self.protocol is not None:
            raise ConfigError(
                f"folds={self.folds} and protocol={self.protocol!r} both choose the splits: "
                "pass one of them."
            )
        if self.split_seed < 0:
            raise ConfigError(f"split_seed={self.split_seed} must be 0 or more.")
        if self.image_mpp is not None and not 0.0 < self.image_mpp < 1_000.0:
            raise ConfigError(
                f"image_mpp={self.image_mpp} is not a resolution: pass the microns per pixel of "
                "the images as stored (e.g. 0.49 for BreakHis 40X originals), or None."
            )
        if self.group_by is not None and not self.group_by.strip():
            raise ConfigError("group_by='' names no column: pass a column name or None.")
        if self.group_by in _NOT_GROUPS:
            raise ConfigError(f"group_by={self.group_by!r}: {_NOT_GROUPS[self.group_by]}")
        if self.cache is not None and not str(self.cache).strip():
            raise ConfigError("cache='' is neither 'memory' nor a folder: pass one, or None.")
        runs = self.folds or (SPANHOL_REPEATS if self.protocol else 1)
        if not 1 <= self.fold <= runs:
            raise ConfigError(
                f"fold={self.fold} is out of range: this configuration has {runs} fold(s) "
                "(set folds or protocol first)."
            )
        if self.group_by is not None and self.split_by == "image":
            raise ConfigError(
                f"group_by={self.group_by!r} with split_by='image' contradict each other: "
                "group_by needs split_by='patient'."
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    """Which components make the network.

    Attributes:
        backbone: Registered backbone id (``breastcls plugins`` lists them).
        backbone_options: The backbone's own options, by name (a frozen extractor's ``file``,
            ``input_size``, ``mean``, ``std``, ``embedding``, ``output`` and ``mpp``;
            ``breastcls plugins`` lists each backbone's); the backbone validates them.
        head: Registered head id.
        augmentation: Registered augmentation id; ``none`` disables augmentation.
        weights: ``"imagenet"`` (downloaded by Keras when online), ``None`` (random init) or the
            path of a local weights file (air-gapped labs).
        preprocessing: ``backbone`` applies the backbone's own input normalisation inside the
            model; ``none`` feeds raw 0-255 pixels, as the seed blog does.
        stain_normalisation: Registered stain normaliser id (``none``, ``reinhard``,
            ``macenko``...): fitted before training and applied inside the model, first.
        stain_reference: An image or folder the normaliser is fitted to; ``None`` fits it to
            the training set's images (never the selection or test set).
    """

    backbone: str = "densenet201"
    backbone_options: Mapping[str, Any] = field(default_factory=dict)
    head: str = "seed"
    augmentation: str = "default"
    weights: str | None = "imagenet"
    preprocessing: Preprocessing = "backbone"
    stain_normalisation: str = "none"
    stain_reference: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "backbone_options", dict(self.backbone_options))
        if self.weights is not None and self.weights.lower() == "none":
            object.__setattr__(self, "weights", None)
        if self.stain_reference is not None:  # a Path from Python or the command line
            object.__setattr__(self, "stain_reference", str(self.stain_reference))
        _check_choices(self)
        for name in ("backbone", "head", "augmentation", "stain_normalisation"):
            _check_id(self, name)
        if self.stain_reference is not None and not self.stain_reference.strip():
            raise ConfigError(
                "stain_reference='' names no image: pass an image or folder, or None to fit the "
                "normaliser to the training images."
            )
        if self.stain_reference is not None and self.stain_normalisation == "none":
            raise ConfigError(
                f"stain_reference={self.stain_reference!r} needs a stain normaliser: pass "
                "--stain-normalisation reinhard or macenko with it (stain_normalisation=...)."
            )
        if self.weights is not None and not self.weights.strip():
            raise ConfigError(
                "weights='' is not allowed: use 'imagenet', None or the path of a weights file."
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """How the network is trained (defaults are the seed recipe).

    Attributes:
        trainer: Registered trainer id.
        trainer_options: The trainer's own options, by name (the ``keras`` trainer's are
            ``lr_patience``, ``lr_factor`` and ``min_lr``; ``breastcls plugins`` lists each
            trainer's); the trainer validates them.
        epochs: Number of epochs.
        batch_size: Images per step on one device (replica); with several devices a step
            processes ``batch_size x replicas`` images (see :mod:`breastcls.training.distribute`).
        learning_rate: Adam's initial learning rate (not scaled with the number of replicas).
        monitor: Selection-set metric (``val_`` + a logged metric, such as ``val_accuracy`` or
            ``val_loss``) that drives ReduceLROnPlateau and the best-model checkpoint.
        seed: Seed of weight init, shuffling and augmentation.
        class_weight: ``None`` or ``"balanced"`` (inverse class frequency).
        precision: ``float32`` or ``mixed`` (float16 on GPU, bfloat16 on CPU).
        jit: Compile with XLA (a GPU option: it slows CPU training down).
        deterministic: Make TensorFlow ops deterministic (slower).
        verbose: Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.
        tensorboard: Also write TensorBoard logs into ``<run>/tensorboard/``
            (``tensorboard --logdir runs`` shows them).
        devices: Devices to train on: ``None`` (every local GPU, mirrored, when there are
            several), a count (the first N GPUs, or logical CPU devices without GPU) or device
            names such as ``("GPU:0", "GPU:1")``; see :mod:`breastcls.training.distribute`.
    """

    trainer: str = "keras"
    trainer_options: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-4
    monitor: str = "val_accuracy"
    seed: int = 11
    class_weight: ClassWeight | None = None
    precision: Precision = "float32"
    jit: bool = False
    deterministic: bool = False
    verbose: Verbosity = 1
    tensorboard: bool = False
    devices: int | tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.devices, list):  # read back from config.json
            object.__setattr__(self, "devices", tuple(self.devices))
        _check_choices(self)
        _check_id(self, "trainer")
        if isinstance(self.devices, bool) or (isinstance(self.devices, int) and self.devices < 1):
            raise ConfigError(f"devices={self.devices!r} must be a count of at least 1.")
        if isinstance(self.devices, tuple) and (
            not self.devices or not all(isinstance(d, str) and d for d in self.devices)
        ):
            raise ConfigError(
                f"devices={self.devices!r} must name at least one device, e.g. ('GPU:0', 'GPU:1')."
            )
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} must be at least 1.")
        if self.batch_size < 1:
            raise ConfigError(
                f"batch_size={self.batch_size} must be at least 1 (the seed uses 16)."
            )
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate={self.learning_rate} must be positive.")
        object.__setattr__(self, "trainer_options", dict(self.trainer_options))
        if not self.monitor.startswith("val_") or self.monitor == "val_":
            raise ConfigError(
                f"monitor={self.monitor!r} must be a selection-set metric: 'val_' and a logged "
                "metric, such as 'val_accuracy' or 'val_loss'."
            )
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed} must be 0 or more.")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """Everything a run needs: data, model, training and where to write.

    Attributes:
        data: Data settings.
        model: Model settings.
        train: Training settings.
        out_dir: Parent folder of run folders.
        name: Run folder name; a timestamped name is chosen when ``None``.
    """

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    out_dir: Path = Path("runs")
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        if self.name is not None and (
            Path(self.name).name != self.name or self.name in ("", ".", "..")
        ):
            raise ConfigError(
                f"name={self.name!r} must be a plain folder name (no path separators); "
                "pass the parent folder as out_dir."
            )
        if self.name is not None and not self.name.isprintable():
            # A line break or other control character would break the `runs` table and logs.
            raise ConfigError(
                f"name={self.name!r} holds a line break or another control character: use "
                "letters, digits, spaces and punctuation only."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dictionary of every setting (paths as strings)."""

        def convert(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {key: convert(item) for key, item in value.items()}
            return value

        return convert(dataclasses.asdict(self))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """Rebuild a configuration written by :meth:`to_dict`.

        Raises:
            ConfigError: A key is unknown or a value is invalid.
        """
        try:
            return cls(
                data=DataConfig(**_current_data_keys(raw["data"])),
                model=ModelConfig(**raw.get("model", {})),
                train=TrainConfig(**_current_train_keys(raw.get("train", {}))),
                out_dir=Path(raw.get("out_dir", "runs")),
                name=raw.get("name"),
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"Invalid run configuration: {error}.") from error


def _current_data_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Read a ``data`` section written by breastcls 0.1, which kept no test set: its
    ``validation_fraction`` was the selection set, and it held no test set."""
    if "validation_fraction" not in data:
        return data
    current = {key: value for key, value in data.items() if key != "validation_fraction"}
    current.setdefault("selection_fraction", data["validation_fraction"])
    current.setdefault("test_fraction", 0.0)
    return current


_KERAS_TRAINER_OPTIONS = ("lr_patience", "lr_factor", "min_lr")


def _current_train_keys(train: dict[str, Any]) -> dict[str, Any]:
    """Read a ``train`` section written by breastcls 0.1, which kept the Keras trainer's
    options as fields of its own."""
    moved = {key: train[key] for key in _KERAS_TRAINER_OPTIONS if key in train}
    if not moved:
        return train
    current = {key: value for key, value in train.items() if key not in moved}
    current["trainer_options"] = {**moved, **current.get("trainer_options", {})}
    return current
