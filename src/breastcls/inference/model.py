"""A trained model with everything it needs to predict exactly as its run did.

:class:`InferenceModel` holds the Keras model (loaded in safe mode), the class names, the input
size and the calibration fitted on the run's selection set (temperature and thresholds, per
test-time augmentation). ``evaluate``, ``predict``, ``report``, ``export`` and Grad-CAM all go
through it, so a probability means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.data.images import ImageInfo
from breastcls.errors import ConfigError, DataError, ModelLoadError
from breastcls.inference.calibration import (
    Calibration,
    fit_calibration,
    has_calibration,
    read_calibration,
    write_calibration,
)
from breastcls.inference.decision import PositiveGroup, apply_temperature, positive_group
from breastcls.interfaces import DataRole, Predictions, Sample
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.folder import RunFolder, read_split_csv

__all__ = ["InferenceModel", "Prediction"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """Calibrated predictions of a batch of images, in input order.

    Attributes:
        class_names: Class names, in the order of the probability columns.
        probabilities: ``(n, n_classes)`` probabilities, temperature-scaled when the run
            fitted a temperature.
        predicted: The top class of each image.
        score: Each image's score of the positive side (P(malignant); for subtype models the
            sum of the malignant subtypes' probabilities).
        decisions: For each operating threshold chosen on the selection set, the side each image
            is called at it (``malignant`` / ``benign``, or the positive class / ``not <class>``).
        calibration: The calibration applied.
    """

    class_names: tuple[str, ...]
    probabilities: FloatArray
    predicted: tuple[str, ...]
    score: FloatArray
    decisions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)


def _image_size(keras_model: Any) -> int:
    shape = keras_model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[1] == shape[2]):
        raise ModelLoadError(
            f"Model {keras_model.name!r} takes inputs of shape {shape}: breastcls models take "
            "square (size, size, 3) images."
        )
    return int(shape[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceModel:
    """A model and what it needs to predict as its run did.

    Attributes:
        keras_model: The Keras model (0-255 RGB in, softmax out; preprocessing inside).
        class_names: Class names in label order.
        image_size: The side images are resized to.
        source: The ``.keras`` file.
    """

    keras_model: Any
    class_names: tuple[str, ...]
    image_size: int
    source: Path

    @classmethod
    def load(cls, path: Path, *, class_names: Sequence[str] | None = None) -> InferenceModel:
        """Load a run folder's ``best.keras`` (or any ``.keras`` file) in safe mode, with the
        class names beside it (``class_0``... when there are none and none are given).

        The records beside the model (``class_names.json``, ``config.json``, the calibration)
        are read and checked first, before the model is loaded and before anything is written.

        Raises:
            ModelLoadError: The model is missing, unsafe, damaged, over a size limit or not
                square-input, its number of outputs differs from its class names, or a
                calibration file is malformed.
            ConfigError: ``class_names.json`` or ``config.json`` beside it is unreadable or
                malformed.
        """
        from breastcls.model import load_model, model_class_names, model_file

        source = model_file(path)
        stored_names = model_class_names(source)
        folder = RunFolder(source.parent)
        if folder.config.is_file():
            folder.read_config_record()
        read_calibration(folder.path)
        keras_model = load_model(source)
        n_outputs = int(keras_model.output_shape[-1])
        names = stored_names or class_names or [f"class_{i}" for i in range(n_outputs)]
        if len(names) != n_outputs:
            raise ModelLoadError(
                f"The model {source} has {n_outputs} outputs but {len(names)} class names "
                f"({list(names)}): put the right class_names.json beside the model."
            )
        return cls(
            keras_model=keras_model,
            class_names=tuple(names),
            image_size=_image_size(keras_model),
            source=source,
        )

    @property
    def folder(self) -> RunFolder:
        """The model's folder (a run folder, an export folder, or wherever the file lies)."""
        return RunFolder(self.source.parent)

    @property
    def positive(self) -> PositiveGroup:
        """The positive side of the clinical view (malignant, or the malignant subtypes)."""
        return positive_group(self.class_names)

    def raw_probabilities(
        self,
        samples: Sequence[Sample],
        *,
        tta: str = "none",
        batch_size: int = 32,
        host: PluginHost | None = None,
        verbose: int = 0,
        image_info: Mapping[Path, ImageInfo] | None = None,
    ) -> FloatArray:
        """The model's uncalibrated probabilities of image files, streamed in batches.

        ``image_info`` (from :func:`~breastcls.data.images.scan_samples`) spares decoding every
        image once more to check it, when the caller has done so.

        Raises:
            DataError: An image is unreadable, or its label is not one of the model's classes.
        """
        from breastcls.data.images import describe_unreadable, scan_samples
        from breastcls.data.pipeline import make_dataset

        info = image_info
        if info is None:
            info, bad = scan_samples(samples)
            if bad:
                raise DataError(f"{describe_unreadable(bad)} Fix or remove them, then run again.")
        for sample in samples:
            if sample.label not in self.class_names:
                raise DataError(
                    f"{sample.path} has class {sample.label!r}, which the model does not know "
                    f"(its classes: {list(self.class_names)})."
                )
        dataset = make_dataset(
            samples,
            self.class_names,
            image_size=self.image_size,
            batch_size=batch_size,
            image_info=info,
        )
        return self._run(dataset.map(lambda images, _: images), tta, host, len(samples), verbose)

    def _run(
        self, batches: Any, tta: str, host: PluginHost | None, total: int, verbose: int
    ) -> FloatArray:
        from breastcls.inference.batches import predict_probabilities

        component = ensure_host(host).tta.get(tta)
        return predict_probabilities(
            self.keras_model, batches, tta=component, total=total, verbose=verbose
        )

    def calibration(
        self, tta: str = "none", *, batch_size: int = 32, host: PluginHost | None = None
    ) -> Calibration:
        """The calibration that fits predictions made with ``tta``.

        A run folder keeps the calibration of its plain predictions; the first time another TTA
        is asked for, one is fitted on the run's selection set predicted with that TTA and kept
        beside the first (``temperature-<tta>.json``): a temperature fitted on plain predictions
        does not fit averaged ones.

        Raises:
            ConfigError: The folder has a calibration of plain predictions but no selection set
                to fit one for ``tta`` on (a bare model file).
        """
        folder = self.folder
        if has_calibration(folder.path, tta) or not has_calibration(folder.path):
            return read_calibration(folder.path, tta)
        if not folder.split.is_file():
            raise ConfigError(
                f"The calibration beside {self.source} was fitted on predictions without TTA, "
                f"and there is no split.csv to refit it for --tta {tta} on the selection set: "
                "use --tta none, or evaluate the run folder itself."
            )
        selection = [
            s for s, _ in read_split_csv(folder.path) if s.split == DataRole.SELECTION.value
        ]
        probabilities = self.raw_probabilities(selection, tta=tta, batch_size=batch_size, host=host)
        calibration = fit_calibration(
            self.labelled(selection, probabilities, role=DataRole.SELECTION), tta=tta
        )
        write_calibration(folder.path, calibration)
        return calibration

    def labelled(
        self, samples: Sequence[Sample], probabilities: FloatArray, *, role: DataRole | None
    ) -> Predictions:
        """``probabilities`` of labelled ``samples`` as :class:`Predictions` of ``role``."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return Predictions(
            class_names=self.class_names,
            y_true=np.array([index[s.label] for s in samples], dtype=np.int64),
            probabilities=probabilities,
            paths=tuple(str(s.path) for s in samples),
            patient_ids=tuple(s.patient_id for s in samples),
            magnifications=tuple(s.magnification for s in samples),
            role=role,
        )

    def predict(
        self,
        images: Sequence[Any] | npt.NDArray[Any],
        *,
        tta: str = "none",
        batch_size: int = 32,
        host: PluginHost | None = None,
        verbose: int = 0,
        image_info: Mapping[Path, ImageInfo] | None = None,
    ) -> Prediction:
        """Predict images given as files, ``(h, w, 3)`` arrays of 0-255 RGB values (or one
        ``(n, h, w, 3)`` array), or PIL images, with the calibration of ``tta``.

        Files are decoded as training decoded them (EXIF orientation, 16-bit, CMYK...); arrays
        and PIL images are taken as RGB. Every image is resized to the model's input size the
        way the training pipeline resizes (bilinear, no antialiasing). ``image_info`` (from
        :func:`~breastcls.data.images.scan_samples`) spares checking files once more.

        Raises:
            DataError: An image is unreadable or not an RGB image.
        """
        calibration = self.calibration(tta, batch_size=batch_size, host=host)
        raw = self._raw(images, tta, batch_size, host, verbose, image_info)
        probabilities = (
            apply_temperature(raw, calibration.temperature)
            if calibration.temperature is not None
            else raw
        )
        positive = self.positive
        score = positive.score(probabilities)
        return Prediction(
            class_names=self.class_names,
            probabilities=probabilities,
            predicted=tuple(self.class_names[i] for i in probabilities.argmax(axis=1)),
            score=score,
            decisions={
                name: tuple(positive.name if s >= threshold else positive.negative for s in score)
                for name, threshold in calibration.thresholds.items()
            },
            calibration=calibration,
        )

    def _raw(
        self,
        images: Sequence[Any] | npt.NDArray[Any],
        tta: str,
        batch_size: int,
        host: PluginHost | None,
        verbose: int,
        image_info: Mapping[Path, ImageInfo] | None = None,
    ) -> FloatArray:
        if isinstance(images, np.ndarray) and images.ndim == 4:
            arrays: list[npt.NDArray[Any]] = list(images)
        elif all(isinstance(image, (str, Path)) for image in images):
            samples = [Sample(path=Path(p), label=self.class_names[0]) for p in images]
            return self.raw_probabilities(
                samples,
                tta=tta,
                batch_size=batch_size,
                host=host,
                verbose=verbose,
                image_info=image_info,
            )
        else:
            arrays = [_as_rgb(image, index) for index, image in enumerate(images)]
        if not arrays:
            return np.zeros((0, len(self.class_names)), dtype=np.float64)
        return self._run(self._array_batches(arrays, batch_size), tta, host, len(arrays), verbose)

    def _array_batches(self, arrays: Sequence[npt.NDArray[Any]], batch_size: int) -> Any:
        import tensorflow as tf

        from breastcls.data.pipeline import resize_image, without_autotuning

        resized = np.stack(
            [resize_image(tf.constant(a, tf.float32), self.image_size).numpy() for a in arrays]
        )
        return without_autotuning(tf.data.Dataset.from_tensor_slices(resized).batch(batch_size))


def _as_rgb(image: Any, index: int) -> npt.NDArray[Any]:
    """An in-memory image as an ``(h, w, 3)`` array of 0-255 values."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise DataError(
            f"Image {index} has shape {array.shape}: pass (height, width, 3) RGB arrays of 0-255 "
            "values, PIL images or image files."
        )
    return array
