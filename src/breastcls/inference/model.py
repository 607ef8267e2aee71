"""The one door for a trained model: :class:`InferenceModel`.

:meth:`InferenceModel.load` reads a model file (a run folder's ``best.keras``, an export's
``model.keras`` or ``model.onnx``, or any ``.keras`` file) and its record
(:mod:`breastcls.inference.record`), and nothing else. :meth:`InferenceModel.iter_scores` is the
one path every probability takes, raw and calibrated, through one runtime
(:mod:`breastcls.inference.runtime`): ``evaluate``, ``predict``, the robustness sections,
``calibrate``, slides and export all go through it, so a probability means the same thing
everywhere. Nothing here writes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.data.images import ImageInfo
from breastcls.embeddings.extractor import ExtractorRecord
from breastcls.errors import ConfigError, DataError, ModelLoadError
from breastcls.inference.calibration import Calibration
from breastcls.inference.decision import PositiveGroup
from breastcls.inference.domain import DomainScores
from breastcls.inference.inputs import ImageInputs, image_inputs
from breastcls.inference.quantization import SelectionImages
from breastcls.inference.record import ModelRecord, read_record, upgrade_record
from breastcls.inference.runtime import (
    OnnxRuntime,
    Runtime,
    TensorFlowRuntime,
    check_runtime,
    choose_runtime,
    onnx_session,
)
from breastcls.interfaces import DataRole, Predictions, Sample
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.progress import active_reporter
from breastcls.runs.folder import RunFolder, read_split_csv

__all__ = ["InferenceModel", "Prediction", "Scores"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scores:
    """A model's probabilities of a batch of images, raw and calibrated, in input order.

    Attributes:
        raw: ``(n, n_classes)`` outputs of the model (averaged over TTA copies).
        calibrated: The same with the calibration of the TTA applied (equal to ``raw`` when the
            model has no temperature).
        calibration: The calibration applied.
        features: The embeddings and image statistics, when asked for and the runtime gives
            them.
        domain: The domain-shift scores, when the model's record has a domain reference and
            the runtime gives features (not ONNX Runtime).
    """

    raw: FloatArray
    calibrated: FloatArray
    calibration: Calibration
    features: FloatArray | None = None
    domain: DomainScores | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """Calibrated predictions of a batch of images, in input order.

    Attributes:
        class_names: Class names, in the order of the probability columns.
        probabilities: ``(n, n_classes)`` probabilities, temperature-scaled when the run
            fitted a temperature.
        raw_probabilities: The model's outputs before calibration.
        predicted: The top class of each image.
        score: Each image's score of the positive side (P(malignant); for subtype models the
            sum of the malignant subtypes' probabilities).
        decisions: For each operating threshold, the side each image is called at it
            (``malignant`` / ``benign``, or the positive class / ``not <class>``): the
            thresholds chosen on the selection set, or ``default`` (0.5) without calibration.
        calibration: The calibration applied, with where it was fitted.
        domain_score: How unlike the training images each image is (above 1: flagged;
            :mod:`breastcls.inference.domain`), or ``None`` when the model has no domain
            reference or runs in ONNX Runtime.
        in_distribution: Whether each image is like the training images (``None`` likewise).
        domain_reason: What flagged each image (empty when not flagged; ``None`` likewise).
    """

    class_names: tuple[str, ...]
    probabilities: FloatArray
    raw_probabilities: FloatArray
    predicted: tuple[str, ...]
    score: FloatArray
    decisions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    domain_score: FloatArray | None = None
    in_distribution: npt.NDArray[np.bool_] | None = None
    domain_reason: tuple[str, ...] | None = None

    def describe(self) -> str:
        """Say the answer in one line: for one image its class, that class's probability and
        whether it is like the training images; for more, how many of each class and how
        many were flagged."""
        n = len(self.predicted)
        if n == 1:
            top = float(np.max(self.probabilities[0]))
            line = f"1 image: {self.predicted[0]}, p={top:.2f}"
            if self.in_distribution is not None:
                line += f", in_distribution={bool(self.in_distribution[0])}"
            return line
        counts = Counter(self.predicted).most_common()
        line = f"{n} images: " + ", ".join(f"{count} {name}" for name, count in counts)
        if self.in_distribution is not None:
            line += f"; {int(n - self.in_distribution.sum())} unlike the training images"
        return line

    def __repr__(self) -> str:
        return f"Prediction({self.describe()})"


@dataclass(frozen=True, slots=True, kw_only=True)
class InferenceModel:
    """A trained model and its record: everything it needs to predict as its run did.

    Attributes:
        record: The model record (class names, input, scale, stain, calibrations...).
        source: The model file.
        runtime: Where the model runs (TensorFlow unless chosen otherwise).
        keras_model: The Keras model (0-255 RGB in, softmax out; preprocessing inside);
            ``None`` for an ONNX export, which runs in ONNX Runtime only.
    """

    record: ModelRecord
    source: Path
    runtime: Runtime
    keras_model: Any = None

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        class_names: Sequence[str] | None = None,
        runtime: str = "tensorflow",
        batch_size: int = 32,
        verbose: int = 0,
    ) -> InferenceModel:
        """Load a model and its record: a run folder, an export folder (``keras`` or
        ``onnx``), or a model file. The Keras model is loaded in safe mode.

        Args:
            path: The run folder, export folder or model file.
            class_names: The class names the model must have (its record's are checked against
                them); for a bare model file with no record, its class names.
            runtime: ``tensorflow``, ``onnx`` or ``auto``
                (:func:`~breastcls.inference.runtime.choose_runtime`); an ONNX export always
                runs in ONNX Runtime.
            batch_size: The batch size ``auto`` measures with.
            verbose: 1 reports ``auto``'s choice.

        Raises:
            ModelLoadError: The model is missing, unsafe, damaged, over a size limit or not
                square-input, its record is malformed or does not fit it (outputs, input size),
                or its class names differ from ``class_names``.
            ConfigError: ``class_names.json`` or ``config.json`` of a folder written before
                records is unreadable; an unknown runtime.
        """
        from breastcls.model import load_keras_model, model_file

        source = model_file(Path(path))
        recorded = read_record(source.parent)
        if source.suffix == ".onnx":
            return cls._load_onnx(source, recorded, class_names)
        if recorded is not None and recorded.extractor is not None:
            return cls._load_probe(source, recorded, recorded.extractor, class_names)
        keras_model = load_keras_model(source)
        n_outputs, image_size = _model_shape(keras_model, source)
        record = recorded or upgrade_record(
            source.parent,
            n_outputs=n_outputs,
            image_size=image_size,
            class_names=None if class_names is None else tuple(class_names),
        )
        _check_fits(record, source, n_outputs=n_outputs, image_size=image_size)
        _check_class_names(record, source, class_names)
        check_runtime(runtime)  # before anything is converted
        model = cls(
            record=record,
            source=source,
            runtime=TensorFlowRuntime(keras_model=keras_model),
            keras_model=keras_model,
        )
        if runtime == "tensorflow":
            return model
        return model.with_runtime(runtime, batch_size=batch_size, verbose=verbose)

    @classmethod
    def _load_onnx(
        cls, source: Path, record: ModelRecord | None, class_names: Sequence[str] | None
    ) -> InferenceModel:
        if record is None:
            raise ModelLoadError(
                f"{source} has no model_record.json beside it: breastcls loads the ONNX "
                "models it exported (`breastcls export RUN --format onnx`), with their record."
            )
        _check_class_names(record, source, class_names)
        runtime = OnnxRuntime(session=onnx_session(source), reason="an ONNX export")
        return cls(record=record, source=source, runtime=runtime)

    @classmethod
    def _load_probe(
        cls,
        source: Path,
        record: ModelRecord,
        extractor: ExtractorRecord,
        class_names: Sequence[str] | None,
    ) -> InferenceModel:
        """A probe (``source``) on the frozen extractor its record names, through the cache."""
        from breastcls.embeddings.cache import CachedEmbedder
        from breastcls.embeddings.runtime import ProbeRuntime
        from breastcls.inference.runtime import model_sha256
        from breastcls.model import load_keras_model

        # An export names its extractor file relative to its folder (it moves whole).
        spec = extractor.extractor
        if not spec.path.is_absolute():
            spec = dataclasses.replace(spec, file=str(source.parent / spec.path))
        if not spec.path.is_file():
            raise ModelLoadError(
                f"{source} is a probe on the {spec.kind} extractor {spec.path}, which is not "
                "there: put the extractor file back at that path."
            )
        if model_sha256(spec.path) != extractor.sha256:
            raise ModelLoadError(
                f"The extractor {spec.path} changed since the probe {source} was fitted on it "
                f"(its SHA-256 is not the recorded {extractor.sha256[:12]}...): restore "
                "that file, or train the probe again."
            )
        probe = load_keras_model(source)
        n_outputs = int(probe.output_shape[-1])
        _check_fits(record, source, n_outputs=n_outputs, image_size=record.image_size)
        _check_class_names(record, source, class_names)
        runtime = ProbeRuntime(
            embedder=CachedEmbedder(spec, sha256=extractor.sha256), probe=probe
        )
        return cls(record=record, source=source, runtime=runtime)

    def with_runtime(
        self, runtime: str, *, batch_size: int = 32, verbose: int = 0
    ) -> InferenceModel:
        """The same model running in ``runtime`` (``tensorflow``, ``onnx``, ``onnx-int8`` or
        ``auto``); ``onnx-int8`` is calibrated on the selection images that the model's run
        folder's ``split.csv`` names.

        Raises:
            ConfigError: As :func:`~breastcls.inference.runtime.choose_runtime`, or a
                TensorFlow runtime asked of an ONNX export.
            OutputError: ``onnx`` cannot convert the model, or cannot write its cache.
            DataError: ``onnx-int8``: a selection image is unreadable.
        """
        if self.record.extractor is not None:
            return self  # the extractor's kind decides where a probe model runs
        if self.keras_model is None:
            if runtime == "tensorflow":
                raise ConfigError(
                    f"{self.source} is an ONNX export: it runs in ONNX Runtime only; use "
                    "--runtime onnx or auto, or load the run's Keras model."
                )
            return self
        chosen = choose_runtime(
            self.keras_model,
            runtime,
            source=self.source,
            image_size=self.image_size,
            batch_size=batch_size,
            verbose=verbose,
            selection=self._selection_images(batch_size) if runtime == "onnx-int8" else None,
        )
        return dataclasses.replace(self, runtime=chosen)

    def without_embedding_cache(self) -> InferenceModel:
        """The same model, a probe's extractor embedding every image afresh and storing nothing
        in the embedding cache (for images seen once, as a slide's tiles); a CNN is returned
        as it is."""
        from breastcls.embeddings.runtime import ProbeRuntime

        if isinstance(self.runtime, ProbeRuntime):
            return dataclasses.replace(self, runtime=self.runtime.uncached())
        return self

    def _selection_images(self, batch_size: int) -> SelectionImages | None:
        """The selection images of the model's run folder (``split.csv``), for calibrating an
        int8 copy; ``None`` where the folder names none."""
        folder = self.folder
        if not folder.split.is_file():
            return None
        rows = read_split_csv(folder.path)
        samples = tuple(s for s, _ in rows if s.split == DataRole.SELECTION.value)
        index = {name: i for i, name in enumerate(self.class_names)}
        return SelectionImages(
            samples=samples,
            batches=lambda chosen: self.file_batches(chosen, batch_size=batch_size),
            positive=self.positive.contains([index.get(s.label, -1) for s in samples]),
            score=self.positive.score,
        )

    def with_record(self, record: ModelRecord) -> InferenceModel:
        """The same model with another record (e.g. a new calibration, in memory)."""
        _check_fits(
            record, self.source, n_outputs=len(self.class_names), image_size=self.image_size
        )
        return dataclasses.replace(self, record=record)

    def without_calibration(self) -> InferenceModel:
        """The same model giving its raw outputs, for fitting a calibration on them."""
        return dataclasses.replace(self, record=dataclasses.replace(self.record, calibrations={}))

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in the order of the model's outputs."""
        return self.record.class_names

    @property
    def image_size(self) -> int:
        """The side images are resized to."""
        return self.record.image_size

    @property
    def folder(self) -> RunFolder:
        """The model's folder (a run folder, an export folder, or wherever the file lies)."""
        return RunFolder(self.source.parent)

    @property
    def positive(self) -> PositiveGroup:
        """The positive side of the clinical view (malignant, or the malignant subtypes)."""
        return self.record.positive

    def calibration(self, tta: str = "none") -> Calibration:
        """The calibration the record holds for predictions made with ``tta``.

        A model whose record holds no calibration at all (a bare model file) is used
        uncalibrated, and says so (:attr:`Calibration.fitted_on` is ``None``).

        Raises:
            ConfigError: The record holds calibrations, but none for ``tta``: the message names
                the command that fits one.
        """
        found = self.record.calibrations.get(tta)
        if found is not None:
            return found
        if not self.record.calibrations:
            return Calibration(tta=tta)
        raise ConfigError(
            f"{self.source} has no calibration for TTA {tta!r} (calibrated: "
            f"{', '.join(self.record.calibrated_ttas)}): a temperature and thresholds fitted "
            f"on plain predictions do not fit {tta!r}. Fit them on the run's selection set "
            f"first: `breastcls calibrate {self.folder.path} --tta {tta}` "
            f"(breastcls.calibrate(run, tta={tta!r}))."
        )

    def iter_scores(
        self,
        batches: Any,
        *,
        tta: str = "none",
        host: PluginHost | None = None,
        total: int | None = None,
        verbose: int = 0,
        sides: Sequence[float] | None = None,
        features: bool = False,
    ) -> Iterator[Scores]:
        """Yield the raw and calibrated probabilities of each batch of a ``tf.data`` dataset of
        0-255 image batches (no labels), with test-time augmentation ``tta``, and their
        domain-shift scores when the record has a domain reference.

        Args:
            batches: The batches (:meth:`file_batches`, :meth:`array_batches`, or any batched
                dataset of ``(size, size, 3)`` float32 images).
            tta: Test-time augmentation id; its calibration is applied.
            host: Plugin host resolving ``tta`` (the default host when ``None``).
            total: Number of images, for the progress display.
            verbose: 1 reports progress to the active :mod:`breastcls.progress` reporter.
            sides: Each image's shorter side before resizing, when known (the domain-shift
                score's scale check).
            features: Keep the embeddings and image statistics in each :class:`Scores`.

        Raises:
            ConfigError: No calibration for ``tta`` (see :meth:`calibration`).
            UnknownComponentError: ``tta`` is not registered.
        """
        calibration = self.calibration(tta)
        component = ensure_host(host).tta.get(tta)
        domain = self.record.domain
        reporter = active_reporter() if verbose else None
        if reporter is not None:
            reporter.task_started("predicting", total=total, unit="images")
        seen = 0
        try:
            outputs = self.runtime.iter_outputs(
                batches, tta=component, features=features or domain is not None
            )
            for output in outputs:
                raw, found = output.probabilities, output.features
                scored = None
                if domain is not None and found is not None:
                    batch_sides = None if sides is None else sides[seen : seen + len(raw)]
                    scored = domain.score(found, batch_sides)
                seen += len(raw)
                if reporter is not None:
                    reporter.task_advanced(seen)
                yield Scores(
                    raw=raw,
                    calibrated=calibration.apply(raw),
                    calibration=calibration,
                    features=found if features else None,
                    domain=scored,
                )
        finally:
            if reporter is not None:
                reporter.task_finished()

    def scores(
        self,
        batches: Any,
        *,
        tta: str = "none",
        host: PluginHost | None = None,
        total: int | None = None,
        verbose: int = 0,
        sides: Sequence[float] | None = None,
        features: bool = False,
    ) -> Scores:
        """Every batch of :meth:`iter_scores`, joined."""
        parts = list(
            self.iter_scores(
                batches, tta=tta, host=host, total=total, verbose=verbose, sides=sides,
                features=features,
            )
        )  # fmt: skip
        if not parts:
            empty = np.zeros((0, len(self.class_names)), dtype=np.float64)
            return Scores(raw=empty, calibrated=empty, calibration=self.calibration(tta))
        found = [p.features for p in parts if p.features is not None]
        domains = [p.domain for p in parts]
        return Scores(
            raw=np.concatenate([p.raw for p in parts]),
            calibrated=np.concatenate([p.calibrated for p in parts]),
            calibration=parts[0].calibration,
            features=np.concatenate(found) if len(found) == len(parts) else None,
            domain=(
                DomainScores.join([d for d in domains if d is not None])
                if all(d is not None for d in domains)
                else None
            ),
        )

    def file_batches(
        self,
        samples: Sequence[Sample],
        *,
        batch_size: int = 32,
        image_info: Mapping[Path, ImageInfo] | None = None,
    ) -> Any:
        """Image files, decoded and resized as training did, as a dataset of batches.

        ``image_info`` (from :func:`~breastcls.data.images.scan_samples`) spares decoding every
        image once more to check it, when the caller has done so.

        Raises:
            DataError: An image is unreadable.
        """
        from breastcls.data.pipeline import make_dataset

        info = image_info if image_info is not None else _scanned(samples)
        unlabelled = [dataclasses.replace(s, label=self.class_names[0]) for s in samples]
        dataset = make_dataset(
            unlabelled,
            self.class_names,
            image_size=self.image_size,
            batch_size=batch_size,
            image_info=info,
        )
        return dataset.map(lambda images, _: images)

    def array_batches(self, arrays: Sequence[npt.NDArray[Any]], *, batch_size: int = 32) -> Any:
        """In-memory ``(h, w, 3)`` 0-255 RGB images, resized as training resizes (bilinear, no
        antialiasing), as a dataset of batches."""
        import tensorflow as tf

        from breastcls.data.pipeline import resize_image, without_autotuning

        resized = np.stack(
            [resize_image(tf.constant(a, tf.float32), self.image_size).numpy() for a in arrays]
        )
        return without_autotuning(tf.data.Dataset.from_tensor_slices(resized).batch(batch_size))

    def score_files(
        self,
        samples: Sequence[Sample],
        *,
        tta: str = "none",
        batch_size: int = 32,
        host: PluginHost | None = None,
        verbose: int = 0,
        image_info: Mapping[Path, ImageInfo] | None = None,
        features: bool = False,
    ) -> Scores:
        """:meth:`scores` of image files (:meth:`file_batches`), with their sizes for the
        domain-shift score."""
        info = image_info if image_info is not None else _scanned(samples)
        batches = self.file_batches(samples, batch_size=batch_size, image_info=info)
        sides = [min(info[s.path].width, info[s.path].height) for s in samples]
        return self.scores(
            batches, tta=tta, host=host, total=len(samples), verbose=verbose, sides=sides,
            features=features,
        )  # fmt: skip

    def labelled(
        self, samples: Sequence[Sample], scores: Scores, *, role: DataRole | None
    ) -> Predictions:
        """``scores`` of labelled ``samples`` as :class:`Predictions` of ``role``: calibrated
        probabilities, the raw ones beside them, the thresholds attached.

        Raises:
            DataError: A label is not one of the model's classes.
        """
        index = {name: i for i, name in enumerate(self.class_names)}
        for sample in samples:
            if sample.label not in index:
                raise DataError(
                    f"{sample.path} has class {sample.label!r}, which the model does not know "
                    f"(its classes: {list(self.class_names)})."
                )
        domain = scores.domain
        return Predictions(
            class_names=self.class_names,
            y_true=np.array([index[s.label] for s in samples], dtype=np.int64),
            probabilities=scores.calibrated,
            raw_probabilities=scores.raw,
            domain_score=domain.score if domain is not None else None,
            in_distribution=domain.in_distribution if domain is not None else None,
            domain_reason=domain.reason if domain is not None else None,
            temperature=scores.calibration.temperature,
            thresholds=dict(scores.calibration.thresholds),
            paths=tuple(str(s.path) for s in samples),
            patient_ids=tuple(s.patient_id for s in samples),
            magnifications=tuple(s.magnification for s in samples),
            role=role,
        )

    def predict(
        self,
        images: ImageInputs,
        *,
        tta: str = "none",
        batch_size: int = 32,
        host: PluginHost | None = None,
        verbose: int = 0,
        image_info: Mapping[Path, ImageInfo] | None = None,
    ) -> Prediction:
        """Predict images with the calibration of ``tta``.

        ``images`` may be one image or many: an image file or a list of files, one
        ``(h, w, 3)`` array or PIL image, an ``(n, h, w, 3)`` array, or a list of arrays and PIL
        images (:func:`~breastcls.inference.inputs.image_inputs`). Arrays hold 0-255 RGB
        values, as the record states; floats in [0, 1] are refused with one line saying so.
        Files are decoded as training decoded them (EXIF orientation, 16-bit, CMYK...). Every
        image is resized to the model's input size the way the training pipeline resizes.
        ``image_info`` (from :func:`~breastcls.data.images.scan_samples`) spares checking files
        once more.

        Raises:
            DataError: An image is unreadable, not RGB, or not of 0-255 values.
            ConfigError: No calibration for ``tta``.
        """
        inputs = image_inputs(images)
        if inputs.files:
            samples = [Sample(path=p, label=self.class_names[0]) for p in inputs.files]
            scored = self.score_files(
                samples, tta=tta, batch_size=batch_size, host=host, verbose=verbose,
                image_info=image_info,
            )  # fmt: skip
        else:
            scored = self.scores(
                self.array_batches(inputs.arrays, batch_size=batch_size) if inputs.arrays else [],
                tta=tta, host=host, total=len(inputs), verbose=verbose,
                sides=[min(a.shape[:2]) for a in inputs.arrays],
            )  # fmt: skip
        positive = self.positive
        domain = scored.domain
        score = positive.score(scored.calibrated)
        return Prediction(
            class_names=self.class_names,
            probabilities=scored.calibrated,
            raw_probabilities=scored.raw,
            predicted=tuple(self.class_names[i] for i in scored.calibrated.argmax(axis=1)),
            score=score,
            decisions={
                name: tuple(positive.name if s >= threshold else positive.negative for s in score)
                for name, threshold in scored.calibration.operating_thresholds.items()
            },
            calibration=scored.calibration,
            domain_score=domain.score if domain is not None else None,
            in_distribution=domain.in_distribution if domain is not None else None,
            domain_reason=domain.reason if domain is not None else None,
        )


def _scanned(samples: Sequence[Sample]) -> Mapping[Path, ImageInfo]:
    """Every image decoded once to check it.

    Raises:
        DataError: An image is unreadable.
    """
    from breastcls.data.images import describe_unreadable, scan_samples

    info, bad = scan_samples(samples)
    if bad:
        raise DataError(f"{describe_unreadable(bad)} Fix or remove them, then run again.")
    return info


def _model_shape(keras_model: Any, source: Path) -> tuple[int, int]:
    """The Keras model's number of outputs and input side."""
    shape = keras_model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[1] == shape[2]):
        raise ModelLoadError(
            f"Model {source} takes inputs of shape {shape}: breastcls models take square "
            "(size, size, 3) images."
        )
    return int(keras_model.output_shape[-1]), int(shape[1])


def _check_fits(record: ModelRecord, source: Path, *, n_outputs: int, image_size: int) -> None:
    if len(record.class_names) != n_outputs or record.image_size != image_size:
        raise ModelLoadError(
            f"The model {source} has {n_outputs} outputs and takes {image_size} px images, but "
            f"its record says {len(record.class_names)} classes ({list(record.class_names)}) at "
            f"{record.image_size} px: the record belongs to another model. Restore the model's "
            "own model_record.json."
        )


def _check_class_names(
    record: ModelRecord, source: Path, class_names: Sequence[str] | None
) -> None:
    if class_names is None or list(class_names) == list(record.class_names):
        return
    raise ModelLoadError(
        f"The model {source} was trained on classes {list(record.class_names)} but the data has "
        f"{list(class_names)}: use it on data with the same classes."
    )
