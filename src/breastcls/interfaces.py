"""The contracts every component fulfils, built-in or third-party.

They are :class:`typing.Protocol` classes: a plugin needs to subclass nothing, it only has to
provide the attributes and methods below. Keras objects are typed as ``Any`` here because the core
never imports TensorFlow; each docstring says what the object must be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from breastcls.config import DataConfig, TrainConfig

__all__ = [
    "GLASS",
    "TTA",
    "Augmentation",
    "Backbone",
    "BackboneFactory",
    "BackbonePreprocessing",
    "DataRole",
    "Dataset",
    "DatasetFormat",
    "Head",
    "KerasBackbone",
    "Metric",
    "MetricSection",
    "Predictions",
    "Sample",
    "SkippedFile",
    "Slide",
    "SlideLevel",
    "SlideReader",
    "StainNormaliser",
    "TissueDetector",
    "Trainer",
]

BackbonePreprocessing = Literal["none", "tf", "torch", "caffe"]
"""How a backbone expects its input pixels, applied inside the model by breastcls.

``none``: raw 0-255 RGB (the network rescales itself, e.g. MobileNetV3, EfficientNet);
``tf``: scaled to [-1, 1]; ``torch``: scaled to [0, 1] then ImageNet mean/std (DenseNet);
``caffe``: RGB to BGR then ImageNet mean subtracted (ResNet50, VGG).
"""


class DataRole(StrEnum):
    """The part a set of images plays in a run; every figure says which one it comes from.

    ``train`` fits the weights; ``selection`` picks the checkpoint, drives the learning-rate
    schedule and fits the temperature and thresholds; ``test`` is touched once, after training,
    by the final model, and is the only set whose figures estimate performance on new patients.
    """

    TRAIN = "train"
    SELECTION = "selection"
    TEST = "test"

    @property
    def label(self) -> str:
        """How reports name the set: ``training set``, ``selection set`` or ``test set``."""
        return "training set" if self is DataRole.TRAIN else f"{self.value} set"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    """One labelled image of a dataset.

    Attributes:
        path: The image file.
        label: Class name.
        patient_id: Patient (or slide) id when known; splits keep a patient on one side.
        magnification: Microscope magnification (40, 100, 200, 400) when known.
        subtype: Tumour subtype when known (BreakHis: A, F, PT, TA, DC, LC, MC, PC).
        split: ``train``, ``validation`` or ``test`` when the dataset fixes it (folders or a
            manifest column), else ``None``; :mod:`breastcls.data.split` maps it to a role.
        extra: Any other columns of a manifest, kept as strings.
    """

    path: Path
    label: str
    patient_id: str | None = None
    magnification: int | None = None
    subtype: str | None = None
    split: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SkippedFile:
    """A file a dataset left out, and why (recorded, never silent)."""

    path: Path
    reason: str


@runtime_checkable
class Dataset(Protocol):
    """A labelled image collection: what every dataset format produces."""

    @property
    def root(self) -> Path:
        """The folder or manifest the dataset was read from."""
        ...

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in label order (index 0 first)."""
        ...

    @property
    def samples(self) -> tuple[Sample, ...]:
        """Every usable image."""
        ...

    @property
    def skipped(self) -> tuple[SkippedFile, ...]:
        """Files that were found but deliberately left out (stray files, hidden files...)."""
        ...


class DatasetFormat(Protocol):
    """Reads one on-disk layout (a folder tree, a CSV manifest...) into a :class:`Dataset`."""

    def accepts(self, path: Path) -> bool:
        """Return whether ``path`` looks like this format (used to pick a format automatically)."""
        ...

    def load(self, path: Path, *, config: DataConfig) -> Dataset:
        """Read ``path``.

        Raises:
            DataError: The layout is wrong (missing folder, empty class, unknown label...).
        """
        ...


class BackboneFactory(Protocol):
    """A keyword-only function that builds a feature extractor."""

    def __call__(self, *, input_shape: tuple[int, int, int], weights: str | None) -> Any:
        """Return a ``keras.Model`` mapping preprocessed images to a 4-D feature map.

        Args:
            input_shape: ``(height, width, 3)``.
            weights: ``"imagenet"``, ``None`` for random initialisation, or a local file path.
        """
        ...


@runtime_checkable
class Backbone(Protocol):
    """A feature extractor and the input preprocessing it expects."""

    @property
    def preprocessing(self) -> BackbonePreprocessing:
        """How input pixels must be scaled; breastcls applies it inside the model."""
        ...

    def build(self, *, input_shape: tuple[int, int, int], weights: str | None) -> Any:
        """Return a ``keras.Model`` from images to a 4-D ``(batch, h, w, channels)`` feature map."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class KerasBackbone:
    """The usual :class:`Backbone`: a factory function plus its preprocessing mode.

    ``imagenet_weights=False`` says the factory has no ImageNet weights (a backbone trained from
    scratch): ``weights="imagenet"``, the default, is then refused up front with an error saying
    to pass ``none`` or a weights file, before any run folder is created.

    Example:
        ``KerasBackbone(factory=build_resnet50, preprocessing="caffe")``
    """

    factory: BackboneFactory
    preprocessing: BackbonePreprocessing = "none"
    imagenet_weights: bool = True

    def build(self, *, input_shape: tuple[int, int, int], weights: str | None) -> Any:
        """Call the factory."""
        return self.factory(input_shape=input_shape, weights=weights)


class Head(Protocol):
    """Turns a backbone's feature map into class probabilities."""

    def __call__(self, features: Any, *, n_classes: int) -> Any:
        """Apply Keras layers to the symbolic ``features`` tensor.

        Returns:
            A symbolic ``(batch, n_classes)`` tensor of probabilities (softmax, float32).
        """
        ...


class Augmentation(Protocol):
    """Makes the random image transforms used while training."""

    def __call__(self, *, seed: int | None) -> Any:
        """Return a Keras layer that transforms a batch of 0-255 images when ``training=True``
        and passes it through unchanged otherwise."""
        ...


class Trainer(Protocol):
    """Fits a compiled-or-not Keras model on ``tf.data`` datasets.

    Resuming: breastcls checkpoints the model (optimizer included) after every epoch, together
    with ``state``, a JSON-ready dictionary the trainer owns. A trainer keeps in ``state``
    whatever else it needs to continue after a crash (its learning-rate schedule's counters, a
    phase number...) and reads it back at the start of :meth:`fit`; its own Keras callbacks go
    *before* ``callbacks`` so ``state`` is current when breastcls saves it.
    """

    def fit(
        self,
        model: Any,
        train: Any,
        selection: Any,
        *,
        config: TrainConfig,
        run_dir: Path,
        callbacks: Sequence[Any],
        class_weight: Mapping[int, float] | None,
        initial_epoch: int,
        state: dict[str, Any],
    ) -> dict[str, list[float]]:
        """Compile (unless compiled) and fit ``model``; return the history of these epochs.

        Args:
            model: The ``keras.Model``: uncompiled for a new run, compiled with its optimizer
                state restored when resuming (keep that optimizer).
            train: Batched ``tf.data.Dataset`` of ``(images, one_hot_labels)``.
            selection: The same, for the selection set (Keras' ``validation_data``): it
                drives the checkpoint and the learning-rate schedule, never the weights.
            config: Training settings.
            run_dir: The run folder.
            callbacks: Keras callbacks supplied by breastcls (checkpoints, history, hooks...);
                pass them to ``model.fit`` after the trainer's own.
            class_weight: Per-class loss weights, or ``None``.
            initial_epoch: Epoch to start from (non-zero when resuming).
            state: The trainer's resumable state: empty for a new run, as the trainer left it
                at the last checkpoint when resuming. Values must be JSON-ready.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Predictions:
    """A model's probabilities on labelled images: the input of every metric.

    Attributes:
        class_names: Class names in label order.
        y_true: ``(n,)`` integer labels.
        probabilities: ``(n, n_classes)`` probabilities; rows sum to 1.
        paths: Image files, in row order.
        patient_ids: Patient id per row (``None`` entries when unknown).
        magnifications: Magnification per row (``None`` entries when unknown).
        thresholds: Operating thresholds on the positive score chosen earlier on the
            selection set (``{"youden": 0.42, ...}``), applied unchanged; empty when none were
            chosen, and metrics then choose them on these predictions.
        temperature: The temperature already applied to ``probabilities`` (temperature
            scaling), or ``None`` when they are the model's raw outputs.
        raw_probabilities: The model's outputs before calibration, when ``probabilities`` are
            calibrated (``None``: they are the raw outputs, or were not kept).
        domain_score: Each image's domain-shift score (above 1: unlike the training images),
            when the model has a domain reference.
        in_distribution: Whether each image is like the training images, likewise.
        domain_reason: What flagged each image (empty when not flagged), likewise.
        role: The set the images come from (``None`` when unknown, e.g. outside data):
            reports name it beside every figure.
        groups: The group per row that patient-level figures aggregate, resample and count
            by: the split's group key (``None`` entries when unknown). Empty: the accession
            number of each patient id (BreakHis ``14-29960AB`` and ``14-29960CD`` are one
            biopsy).
    """

    class_names: tuple[str, ...]
    y_true: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float64]
    paths: tuple[str, ...] = ()
    patient_ids: tuple[str | None, ...] = ()
    magnifications: tuple[int | None, ...] = ()
    thresholds: Mapping[str, float] = field(default_factory=dict)
    temperature: float | None = None
    raw_probabilities: npt.NDArray[np.float64] | None = None
    domain_score: npt.NDArray[np.float64] | None = None
    in_distribution: npt.NDArray[np.bool_] | None = None
    domain_reason: tuple[str, ...] | None = None
    role: DataRole | None = None
    groups: tuple[str | None, ...] = ()

    @property
    def y_pred(self) -> npt.NDArray[np.int64]:
        """Predicted labels (arg-max of the probabilities)."""
        return self.probabilities.argmax(axis=1)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricSection:
    """What a metric contributes to ``metrics.json`` and the report.

    Attributes:
        name: Key of the section in ``metrics.json``.
        title: Heading in the report.
        values: JSON-ready numbers.
        figures: PNG files written into the output folder.
        text: Optional preformatted text (e.g. a classification report).
        level: ``image`` or ``patient``: the part of the report the section goes in.
    """

    name: str
    title: str
    values: Mapping[str, Any]
    figures: tuple[Path, ...] = ()
    text: str | None = None
    level: Literal["image", "patient"] = "image"


@runtime_checkable
class TTA(Protocol):
    """Makes the transformed copies of a batch whose predictions test-time augmentation averages.

    breastcls stacks the copies into one batch, runs the model once on it and averages the
    probabilities over the copies, so TTA with ``size`` copies costs about ``size`` plain
    predictions and runs no per-image Python code.
    """

    @property
    def size(self) -> int:
        """The number of copies (1 means no augmentation)."""
        ...

    def __call__(self, images: Any) -> Any:
        """Return the ``(size, batch, height, width, channels)`` tensor of transformed copies of a
        ``(batch, height, width, channels)`` image tensor (TensorFlow ops; runs in-graph)."""
        ...


class Metric(Protocol):
    """Computes numbers (and optionally plots) from :class:`Predictions`."""

    def __call__(self, predictions: Predictions, *, out_dir: Path) -> MetricSection:
        """Return the section; write any figure as a PNG inside ``out_dir``."""
        ...


GLASS = 255
"""The value a slide region is padded with where it leaves the slide: white, like empty glass."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SlideLevel:
    """One level of a slide's pyramid.

    Attributes:
        width: Width in pixels of this level.
        height: Height in pixels of this level.
        downsample: Level-0 pixels per pixel of this level (1.0 for level 0).
    """

    width: int
    height: int
    downsample: float


@runtime_checkable
class Slide(Protocol):
    """An open slide: its pyramid, its resolution, and regions read on demand.

    Attributes:
        path: The slide file.
        levels: The pyramid, level 0 (full resolution) first, downsample increasing.
        mpp: Microns per level-0 pixel from the slide's metadata, or ``None`` when it has none.
        objective_power: The scanner's objective magnification, when the metadata says.
    """

    path: Path
    levels: tuple[SlideLevel, ...]
    mpp: float | None
    objective_power: float | None

    def read_region(
        self, level: int, x: int, y: int, width: int, height: int
    ) -> npt.NDArray[np.uint8]:
        """Return the ``(height, width, 3)`` RGB pixels of a rectangle of ``level``, given in
        that level's pixel coordinates; what lies outside the level is :data:`GLASS`.

        Must be safe to call from several threads at once.

        Raises:
            DataError: The slide's data cannot be read or decoded.
        """
        ...

    def close(self) -> None:
        """Release the file."""
        ...


class SlideReader(Protocol):
    """A slide format (a plugin kind: ``breastcls_register_slide_readers``)."""

    def accepts(self, path: Path) -> bool:
        """Whether this reader can open ``path`` (by its content, not only its name)."""
        ...

    def open(self, path: Path) -> Slide:
        """Open ``path``.

        Raises:
            DataError: The file is damaged or not of this format.
        """
        ...


class TissueDetector(Protocol):
    """Tells tissue from glass, pen marks and debris on a slide's thumbnail (a plugin kind:
    ``breastcls_register_tissue_detectors``); ``breastcls slide predict`` classifies only the
    tiles that are mostly tissue."""

    def detect(
        self, thumbnail: npt.NDArray[np.uint8], *, microns_per_pixel: float | None
    ) -> npt.NDArray[np.bool_]:
        """Return the tissue mask of an RGB thumbnail (``True``: tissue).

        Args:
            thumbnail: ``(h, w, 3)`` uint8 RGB, the whole slide at a low resolution.
            microns_per_pixel: The width of a thumbnail pixel in microns, when the slide's
                resolution is known (for size rules, e.g. the smallest piece of tissue kept).

        Returns:
            A ``(h, w)`` boolean mask; it must not raise on a blank (all-glass) thumbnail,
            whose mask is all ``False``.
        """
        ...


@runtime_checkable
class StainNormaliser(Protocol):
    """Fits a reference stain and builds the in-model layer that maps images to it (a plugin
    kind: ``breastcls_register_stain_normalisers``)."""

    def fit(self, pixels: npt.NDArray[np.uint8]) -> dict[str, Any]:
        """Return the reference's parameters, JSON-ready (stored in the run folder).

        Args:
            pixels: ``(n, 3)`` uint8 RGB pixels sampled from the reference images, background
                included (leave it out with :func:`~breastcls.stain.optics.tissue_pixels`).

        Raises:
            DataError: The pixels cannot define a stain (too little tissue); the message says
                why, and breastcls adds which files were the reference.
        """
        ...

    def layer(self, parameters: Mapping[str, Any]) -> Any:
        """Return a Keras layer that normalises a batch of 0-255 RGB images to the reference,
        in training and inference alike, or ``None`` when the normaliser changes nothing.

        The layer must survive a ``.keras`` save and a safe-mode load
        (``keras.saving.register_keras_serializable``), map an image to 0-255 values and never
        return NaN, whatever the image (blank, white, tissue-poor).
        """
        ...
