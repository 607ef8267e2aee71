"""Conformance checks: what every component of each kind must do, built-in or third-party.

Every check builds at a small size with ``weights=None``, runs on a CPU in seconds (DenseNet201
and other large backbones: pass ``train=False, serialise=False``), raises
:class:`ConformanceError` naming the problem, and returns what it measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, get_args

import numpy as np
import numpy.typing as npt

from breastcls.config import DataConfig, ModelConfig, TrainConfig
from breastcls.errors import BreastclsError
from breastcls.interfaces import (
    Augmentation,
    Backbone,
    BackbonePreprocessing,
    Dataset,
    DatasetFormat,
    Head,
    Metric,
    MetricSection,
    Predictions,
    Sample,
    SkippedFile,
    Trainer,
)
from breastcls.plugins.host import ENTRY_POINT_GROUP, PluginHost, hookimpl
from breastcls.registry import ComponentInfo, PluginRegistry
from breastcls.testing.support import (
    TOLERANCE,
    ConformanceError,
    fail,
    same_predictions,
    work_folder,
)

__all__ = [
    "BackboneReport",
    "ConformanceError",
    "check_augmentation",
    "check_backbone",
    "check_component",
    "check_dataset_format",
    "check_head",
    "check_metric",
    "check_trainer",
    "check_tta",
    "isolated_host",
    "synthetic_predictions",
]

_UNDER_TEST = "under_test"


@dataclass(frozen=True, slots=True, kw_only=True)
class BackboneReport:
    """What :func:`check_backbone` measured.

    Attributes:
        feature_shape: ``(height, width, channels)`` of the feature map at the checked size.
        params: Parameters of the feature extractor alone.
        loss: Loss of the one training step (``None`` when ``train=False``).
    """

    feature_shape: tuple[int, int, int]
    params: int
    loss: float | None


def _builtin_plugins() -> list[tuple[str, object]]:
    import importlib

    plugins: list[tuple[str, object]] = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.value.startswith("breastcls.builtin."):
            plugins.append((entry_point.name, importlib.import_module(entry_point.value)))
    return sorted(plugins, key=lambda pair: pair[0])


def isolated_host(*plugins: tuple[str, object], builtins: bool = True) -> PluginHost:
    """Return a plugin host that loads no installed third-party plugin.

    Args:
        plugins: ``(name, plugin)`` pairs to register (modules or objects with ``@hookimpl``
            functions), e.g. ``("my_plugin", my_plugin_module)``.
        builtins: Also register breastcls' own plugins (the ``breastcls.builtin`` entry points).

    Returns:
        A host independent of the environment: ``BREASTCLS_DISABLE_PLUGINS`` is ignored.
    """
    registered = [*(_builtin_plugins() if builtins else []), *plugins]
    return PluginHost(plugins=registered, entry_points=False, disabled=())


class _BackboneUnderTest:
    """A one-component plugin: registers the backbone being checked as ``under_test``."""

    def __init__(self, backbone: Backbone) -> None:
        self.backbone = backbone

    @hookimpl
    def breastcls_register_backbones(self, registry: PluginRegistry[Backbone]) -> None:
        registry.add(_UNDER_TEST, self.backbone, summary="the backbone being checked")


def _images(batch: int, size: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 255.0, size=(batch, size, size, 3)).astype(np.float32)


def check_backbone(
    backbone: Backbone,
    *,
    image_size: int = 64,
    train: bool = True,
    serialise: bool = True,
    work_dir: Path | None = None,
    name: str = _UNDER_TEST,
) -> BackboneReport:
    """Check a backbone: preprocessing, 4-D features, one eager training step, save and reload.

    The backbone is built with ``weights=None`` at ``image_size``; breastcls' full model
    (:func:`breastcls.model.build_model` with the ``seed`` head and no augmentation) is trained
    for one step (every loss finite, some backbone weight changed), saved as ``.keras``, reloaded
    with :func:`breastcls.model.load_keras_model` (safe mode) and must predict the same
    probabilities.

    Args:
        backbone: The component, e.g. ``KerasBackbone(factory=..., preprocessing="caffe")``.
        image_size: Input side in pixels (32-64 keeps the check fast).
        train: Run the training step (skip it only for networks too big to train on a CPU).
        serialise: Run the save-and-reload step.
        work_dir: Folder for the saved model (a temporary folder when ``None``).
        name: The id used in messages.

    Raises:
        ConformanceError: The backbone breaks its contract.
    """
    import keras

    what = f"backbone {name!r}"
    allowed = get_args(BackbonePreprocessing)
    preprocessing = getattr(backbone, "preprocessing", None)
    if preprocessing not in allowed:
        fail(what, f"preprocessing is {preprocessing!r}; declare one of {', '.join(allowed)}.")
    shape = (image_size, image_size, 3)
    try:
        features = backbone.build(input_shape=shape, weights=None)
    except Exception as error:
        fail(what, f"build(weights=None) at {shape} failed: {type(error).__name__}: {error}")
    if not isinstance(features, keras.Model):
        fail(what, f"build() returned {type(features).__name__}, not a keras.Model.")
    output_shape = tuple(features.output_shape)
    if len(output_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in output_shape[1:]):
        fail(what, f"output shape {output_shape} is not a 4-D (batch, h, w, channels) map.")
    feature_shape = (int(output_shape[1]), int(output_shape[2]), int(output_shape[3]))
    inputs = _images(2, image_size)
    output = np.asarray(features(inputs, training=False))
    if output.shape != (2, *feature_shape):
        fail(what, f"a forward pass returned {output.shape}, expected {(2, *feature_shape)}.")
    if not np.all(np.isfinite(output)):
        fail(what, "a forward pass on 0-255 pixels returned NaN or infinite values.")
    loss: float | None = None
    if train or serialise:
        host = isolated_host(("backbone_under_test", _BackboneUnderTest(backbone)))
        model = _full_model(host, image_size=image_size)
        if train:
            loss = _train_one_step(what, model, image_size)
        if serialise:
            with work_folder(work_dir) as folder:
                same_predictions(what, model, folder / f"{name}.keras", inputs)
    return BackboneReport(
        feature_shape=feature_shape, params=int(features.count_params()), loss=loss
    )


def _full_model(host: PluginHost, *, image_size: int, backbone: str = _UNDER_TEST) -> Any:
    from breastcls.model import build_model

    config = ModelConfig(backbone=backbone, head="seed", augmentation="none", weights=None)
    return build_model(config, n_classes=2, image_size=image_size, seed=0, host=host)


def _train_one_step(what: str, model: Any, image_size: int) -> float:
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if not nested or not nested[0].trainable_weights:
        fail(what, "the built model has no trainable weights.")
    before = [np.array(weight) for weight in nested[0].trainable_weights]
    # One step, run eagerly: tracing the training graph of even a mobile network takes ~30 s
    # on 2 cores, ten times the step itself; training always traces it (end-to-end tests).
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy", run_eagerly=True
    )
    labels = np.eye(2, dtype=np.float32)[[0, 1, 0, 1]]
    loss = float(np.ravel(model.train_on_batch(_images(4, image_size, seed=1), labels))[0])
    if not math.isfinite(loss):
        fail(what, f"one training step gave a non-finite loss ({loss}).")
    after = [np.array(weight) for weight in nested[0].trainable_weights]
    if all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)):
        fail(what, "one training step changed none of the backbone's weights.")
    return loss


def check_head(
    head: Head,
    *,
    feature_shape: tuple[int, int, int] = (4, 4, 16),
    n_classes: Sequence[int] = (2, 3),
    work_dir: Path | None = None,
    name: str = _UNDER_TEST,
) -> None:
    """Check a head: ``(batch, n_classes)`` probabilities whose rows sum to 1; save and reload.

    Args:
        head: The component.
        feature_shape: Shape of the feature map it is applied to.
        n_classes: Class counts to try.
        work_dir: Folder for the saved models (a temporary folder when ``None``).
        name: The id used in messages.

    Raises:
        ConformanceError: The head breaks its contract.
    """
    import keras

    what = f"head {name!r}"
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, *feature_shape)).astype(np.float32)
    with work_folder(work_dir) as folder:
        for count in n_classes:
            inputs = keras.Input(shape=feature_shape)
            model = keras.Model(inputs, head(inputs, n_classes=count))
            if tuple(model.output_shape) != (None, count):
                fail(what, f"output shape {model.output_shape}, expected (None, {count}).")
            probabilities = np.asarray(model(features, training=False), dtype=np.float64)
            if probabilities.shape != (5, count):
                fail(what, f"returned {probabilities.shape} for 5 rows and {count} classes.")
            if not np.all(np.isfinite(probabilities)) or probabilities.min() < 0:
                fail(what, "returned negative or non-finite probabilities.")
            sums = probabilities.sum(axis=1)
            if not np.allclose(sums, 1.0, atol=TOLERANCE):
                fail(what, f"rows sum to {sums.round(6).tolist()}, not 1 (end with a softmax).")
            same_predictions(what, model, folder / f"head-{count}.keras", features)


def check_augmentation(
    augmentation: Augmentation,
    *,
    image_size: int = 64,
    work_dir: Path | None = None,
    name: str = _UNDER_TEST,
) -> None:
    """Check an augmentation: identity at inference, shape kept in training, serialisable.

    Args:
        augmentation: The component (called as ``augmentation(seed=...)``).
        image_size: Side of the test images.
        work_dir: Folder for the saved model (a temporary folder when ``None``).
        name: The id used in messages.

    Raises:
        ConformanceError: The augmentation breaks its contract.
    """
    import keras

    what = f"augmentation {name!r}"
    images = _images(4, image_size)
    for seed in (0, None):
        layer = augmentation(seed=seed)
        inference = np.asarray(layer(keras.ops.convert_to_tensor(images), training=False))
        if inference.shape != images.shape or not np.allclose(inference, images, atol=1e-4):
            fail(what, "changes images when training=False; it must be the identity then.")
        trained = np.asarray(layer(keras.ops.convert_to_tensor(images), training=True))
        if trained.shape != images.shape:
            fail(what, f"turned a {images.shape} batch into {trained.shape} in training.")
        if not np.all(np.isfinite(trained)):
            fail(what, "produced NaN or infinite pixels in training.")
    inputs = keras.Input(shape=(image_size, image_size, 3))
    model = keras.Model(inputs, augmentation(seed=0)(inputs))
    with work_folder(work_dir) as folder:
        same_predictions(what, model, folder / "augmentation.keras", images)


def synthetic_predictions(*, n_classes: int = 2, n: int = 40, seed: int = 0) -> Predictions:
    """Return informative but imperfect predictions with patient ids, for checking metrics.

    Every class occurs; patients hold four images each; magnifications cycle through BreakHis's.
    """
    rng = np.random.default_rng(seed)
    y_true = np.arange(n, dtype=np.int64) % n_classes
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y_true] += 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = (
        ("benign", "malignant") if n_classes == 2 else tuple(f"class{i}" for i in range(n_classes))
    )
    return Predictions(
        class_names=names,
        y_true=y_true,
        probabilities=probabilities,
        paths=tuple(f"image-{i:03d}.png" for i in range(n)),
        patient_ids=tuple(f"patient-{i % n_classes}-{i // (4 * n_classes)}" for i in range(n)),
        magnifications=tuple((40, 100, 200, 400)[i % 4] for i in range(n)),
    )


def check_metric(
    metric: Metric,
    *,
    predictions: Predictions | None = None,
    n_classes: int = 2,
    work_dir: Path | None = None,
    name: str = _UNDER_TEST,
) -> MetricSection:
    """Check a metric: it returns a :class:`~breastcls.interfaces.MetricSection` whose values are
    strict JSON (no NaN) and whose figures are PNG files inside the output folder.

    Args:
        metric: The component.
        predictions: What to evaluate (:func:`synthetic_predictions` when ``None``).
        n_classes: Classes of the synthetic predictions.
        work_dir: Output folder for figures (a temporary folder when ``None``).
        name: The id used in messages.

    Raises:
        ConformanceError: The metric breaks its contract.
    """
    what = f"metric {name!r}"
    predictions = predictions or synthetic_predictions(n_classes=n_classes)
    with work_folder(work_dir) as folder:
        section = metric(predictions, out_dir=folder)
        if not isinstance(section, MetricSection):
            fail(what, f"returned {type(section).__name__}, not a MetricSection.")
        if not section.name or section.name != section.name.strip().lower() or " " in section.name:
            fail(what, f"section name {section.name!r} is not a lowercase key without spaces.")
        if not section.title.strip():
            fail(what, "section title is empty.")
        try:
            json.dumps(dict(section.values), allow_nan=False)
        except (TypeError, ValueError) as error:
            fail(what, f"values are not strict JSON ({error}); use floats, ints, str, None.")
        for figure in section.figures:
            path = Path(figure)
            if not path.is_file() or path.suffix.lower() != ".png":
                fail(what, f"figure {path} is not a PNG file that exists.")
            if not path.resolve().is_relative_to(folder.resolve()):
                fail(what, f"figure {path} was written outside out_dir {folder}.")
        if section.text is not None and not isinstance(section.text, str):
            fail(what, "text must be a string or None.")
    return section


def check_trainer(
    trainer: Trainer,
    *,
    image_size: int = 32,
    work_dir: Path | None = None,
    name: str = _UNDER_TEST,
) -> dict[str, list[float]]:
    """Check a trainer: it fits the small CNN for two epochs, calls breastcls' callbacks, returns
    a finite per-epoch history that includes the monitored metric and leaves a JSON ``state``.

    Args:
        trainer: The component.
        image_size: Side of the random training images.
        work_dir: The run folder handed to the trainer (a temporary folder when ``None``).
        name: The id used in messages.

    Raises:
        ConformanceError: The trainer breaks its contract.
    """
    import keras
    import tensorflow as tf

    what = f"trainer {name!r}"
    config = TrainConfig(epochs=2, batch_size=4, learning_rate=1e-3, verbose=0)
    model = _full_model(isolated_host(), image_size=image_size, backbone="smallcnn")
    labels = np.eye(2, dtype=np.float32)[[0, 1] * 4]
    data = tf.data.Dataset.from_tensor_slices((_images(8, image_size), labels)).batch(4)
    seen: list[tuple[int, dict[str, float]]] = []
    state: dict[str, Any] = {}

    class Recorder(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seen.append((epoch, {key: float(value) for key, value in (logs or {}).items()}))

    with work_folder(work_dir) as folder:
        history = trainer.fit(
            model,
            data,
            data,
            config=config,
            run_dir=folder,
            callbacks=[Recorder()],
            class_weight=None,
            initial_epoch=0,
            state=state,
        )
    try:
        json.dumps(state, allow_nan=False)
    except (TypeError, ValueError) as error:
        fail(what, f"left a resumable state that is not strict JSON ({error}).")
    if [epoch for epoch, _ in seen] != [0, 1]:
        fail(what, f"breastcls' callbacks saw epochs {[e for e, _ in seen]}, expected [0, 1].")
    if any(config.monitor not in logs for _, logs in seen):
        fail(what, f"epoch logs lack {config.monitor!r}, which the checkpoint monitors.")
    if not isinstance(history, dict) or "loss" not in history:
        fail(what, "fit() must return a dict of per-epoch lists including 'loss'.")
    for key, values in history.items():
        if len(values) != config.epochs or not all(math.isfinite(v) for v in values):
            fail(what, f"history[{key!r}] = {values} is not {config.epochs} finite values.")
    return history


def check_tta(tta: Any, *, image_size: int = 32, name: str = _UNDER_TEST) -> None:
    """Check a test-time augmentation: ``size`` copies of each image, same shape, finite.

    Raises:
        ConformanceError: The TTA breaks its contract.
    """
    import tensorflow as tf

    what = f"tta {name!r}"
    size = getattr(tta, "size", None)
    if not isinstance(size, int) or size < 1:
        fail(what, f"size is {size!r}; it must be a positive int.")
    images = _images(3, image_size)
    copies = np.asarray(tta(tf.constant(images)))
    if copies.shape != (size, *images.shape):
        fail(what, f"returned {copies.shape}, expected {(size, *images.shape)}.")
    if not np.all(np.isfinite(copies)):
        fail(what, "returned NaN or infinite pixels.")


def check_dataset_format(
    dataset_format: DatasetFormat,
    path: Path,
    *,
    config: DataConfig | None = None,
    name: str = _UNDER_TEST,
) -> Dataset:
    """Check a dataset format on an example of its layout at ``path``.

    It must accept ``path``, load a :class:`~breastcls.Dataset` with at least two unique classes
    whose every sample exists and has a known label, and answer a missing path with a
    :class:`~breastcls.BreastclsError` (never a bare exception).

    Raises:
        ConformanceError: The format breaks its contract.
    """
    what = f"dataset format {name!r}"
    if not dataset_format.accepts(path):
        fail(what, f"does not accept its own example {path}.")
    dataset = dataset_format.load(path, config=config or DataConfig(path=path))
    if not isinstance(dataset, Dataset):
        fail(what, f"load() returned {type(dataset).__name__}, which is not a Dataset.")
    names = tuple(dataset.class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        fail(what, f"class names {names} are not two or more unique names.")
    if not dataset.samples:
        fail(what, f"loaded no sample from {path}.")
    for sample in dataset.samples:
        if not isinstance(sample, Sample):
            fail(
                what, f"a sample is a {type(sample).__name__}, not a breastcls.interfaces.Sample."
            )
        if sample.label not in names:
            fail(what, f"sample {sample.path} has label {sample.label!r}, not in {names}.")
        if not Path(sample.path).is_file():
            fail(what, f"sample {sample.path} does not exist.")
    empty = sorted(set(names) - {sample.label for sample in dataset.samples})
    if empty:
        fail(what, f"classes {empty} have no sample.")
    if not all(isinstance(item, SkippedFile) for item in dataset.skipped):
        fail(what, "skipped must hold breastcls.interfaces.SkippedFile values.")
    missing = path.parent / f"{path.name}-missing{path.suffix}"
    try:
        accepted = dataset_format.accepts(missing)
        if accepted:
            dataset_format.load(missing, config=DataConfig(path=missing))
            fail(what, f"loaded a path that does not exist ({missing}).")
    except BreastclsError:
        pass
    except Exception as error:
        fail(what, f"a missing path raised {type(error).__name__}, not a BreastclsError.")
    return dataset


def check_component(
    info: ComponentInfo[Any],
    *,
    work_dir: Path | None = None,
    image_size: int = 64,
    train: bool = True,
    data: Path | None = None,
) -> None:
    """Run the check of ``info``'s kind on a registered component.

    Args:
        info: A registration, e.g. from ``PluginHost().components()``.
        work_dir: Scratch folder (a temporary folder when ``None``).
        image_size: Input side for backbones.
        train: Train backbones for one step (``False`` for networks too big for a CPU).
        data: An example of the layout, for dataset formats.

    Raises:
        ConformanceError: The component breaks its contract, or breastcls has no check for
            its kind (a kind added without a conformance check).
    """
    component = info.component
    if info.kind == "backbone":
        check_backbone(
            component,
            image_size=image_size,
            train=train,
            serialise=train,
            work_dir=work_dir,
            name=info.name,
        )
    elif info.kind == "head":
        check_head(component, work_dir=work_dir, name=info.name)
    elif info.kind == "augmentation":
        check_augmentation(component, work_dir=work_dir, name=info.name)
    elif info.kind == "trainer":
        check_trainer(component, work_dir=work_dir, name=info.name)
    elif info.kind == "metric":
        for n_classes in (2, 3):
            check_metric(component, n_classes=n_classes, work_dir=work_dir, name=info.name)
    elif info.kind == "tta":
        check_tta(component, name=info.name)
    elif info.kind == "slide_reader":
        from breastcls.testing.slide_checks import check_slide_reader

        check_slide_reader(component, data=data, name=info.name)
    elif info.kind == "tissue_detector":
        from breastcls.testing.slide_checks import check_tissue_detector

        check_tissue_detector(component, name=info.name)
    elif info.kind == "stain_normaliser":
        from breastcls.testing.stain_checks import check_stain_normaliser

        check_stain_normaliser(component, work_dir=work_dir, name=info.name)
    elif info.kind == "dataset":
        if data is None:
            fail(f"dataset format {info.name!r}", "pass data=<an example of its layout>.")
        check_dataset_format(component, data, name=info.name)
    else:
        fail(
            f"{info.kind} {info.name!r}", f"breastcls.testing has no check for kind {info.kind!r}."
        )
