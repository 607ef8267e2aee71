"""Converting a Keras model into an inference model in another format, checked.

Every conversion is an inference model: the training augmentation is removed, the preprocessing
stays inside, so each format takes raw 0-255 RGB images of the model's input size and returns
class probabilities; each is checked against the model (maximum absolute difference of the
probabilities at most :data:`EXPORT_TOLERANCE`) before it is moved into place. Used by
:func:`breastcls.export` and by the ONNX runtime (:mod:`breastcls.inference.runtime`).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError, ModelLoadError, OutputError
from breastcls.io import is_disk_full, replace_path
from breastcls.onnx_graph import fuse_hard_activations

__all__ = [
    "EXPORT_FILE_NAMES",
    "EXPORT_TOLERANCE",
    "ONNX_GRAPH_VERSION",
    "Conversion",
    "ExportFormat",
    "check_batch",
    "check_format",
    "convert_model",
    "run_exported",
    "write_checked",
    "write_onnx",
]

ExportFormat = Literal["keras", "savedmodel", "onnx", "tflite"]
EXPORT_TOLERANCE = 1e-5
"""Largest absolute difference of probabilities allowed between an export and the run's model."""

EXPORT_FILE_NAMES: dict[str, str] = {
    "keras": "model.keras",
    "savedmodel": "saved_model",
    "onnx": "model.onnx",
    "tflite": "model.tflite",
}
_ONNX_OPSET = 17
ONNX_GRAPH_VERSION = 2
"""What :func:`write_onnx` writes, numbered: from 2, each hard-sigmoid and hard-swish is one node.
A cached ONNX conversion of another number is converted again."""


def check_format(format: str) -> ExportFormat:
    allowed = get_args(ExportFormat)
    if format not in allowed:
        raise ConfigError(f"Export format {format!r} is unknown: use one of {', '.join(allowed)}.")
    return format  # type: ignore[return-value]


def _inference_model(model: Any) -> Any:
    """Return ``model`` without its training augmentation, with a plain ``image`` input.

    :func:`~breastcls.model.build_model` puts the augmentation plugin's layer, whatever its name,
    between the input (or the ``stain_normalisation`` layer) and the ``preprocessing`` layer, so
    the inference model is the stain normalisation, when there is one, followed by everything
    from that layer's input on.
    """
    import keras

    try:
        start = model.get_layer("preprocessing").input
    except ValueError:
        start = model.inputs[0]
    body = keras.Model(start, model.output, name="inference")
    image = keras.Input(shape=tuple(model.input_shape[1:]), name="image")
    x = image
    if start is not model.inputs[0] and any(
        layer.name == "stain_normalisation" for layer in model.layers
    ):
        x = model.get_layer("stain_normalisation")(x)
    return keras.Model(image, body(x), name=model.name)


_MIXED_POLICIES = frozenset({"mixed_float16", "mixed_bfloat16"})
_REDUCED_DTYPES = _MIXED_POLICIES | {"float16", "bfloat16"}


def _is_mixed(model: Any) -> bool:
    return any(layer.dtype_policy.name in _MIXED_POLICIES for layer in _all_layers(model))


def _all_layers(model: Any) -> list[Any]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if hasattr(layer, "layers"):
            layers.extend(_all_layers(layer))
    return layers


def _float32_copy(model: Any) -> Any:
    """Return ``model`` rebuilt with every mixed-precision layer in float32, same weights."""
    import keras

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                name = node.get("config", {}).get("name")
                if name in _MIXED_POLICIES:
                    return {**node, "config": {**node["config"], "name": "float32"}}
            return {key: scrub(value) for key, value in node.items()}
        if isinstance(node, list):
            return [scrub(item) for item in node]
        return "float32" if node in _REDUCED_DTYPES else node

    copy = keras.models.model_from_json(json.dumps(scrub(json.loads(model.to_json()))))
    copy.set_weights(model.get_weights())
    return copy


def check_batch(image_size: int) -> npt.NDArray[np.float32]:
    """The batch every conversion is checked on: four images of random 0-255 pixels."""
    rng = np.random.default_rng(0)
    return rng.uniform(0.0, 255.0, size=(4, image_size, image_size, 3)).astype(np.float32)


def _write_savedmodel(model: Any, path: Path) -> None:
    import keras
    import tensorflow as tf

    shape = tuple(model.input_shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        lambda image: model(image, training=False),
        input_signature=[tf.TensorSpec((None, *shape), tf.float32, name="image")],
    )
    archive.write_out(str(path), verbose=False)


def _write_tflite(model: Any, path: Path) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="breastcls-tflite-") as folder:
        saved = Path(folder) / "saved_model"
        _write_savedmodel(model, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        path.write_bytes(converter.convert())


def write_onnx(model: Any, path: Path) -> None:
    """Convert a Keras model (one image input) to ONNX with tf2onnx, in inference mode, each
    hard-sigmoid and hard-swish one node (:func:`~breastcls.onnx_graph.fuse_hard_activations`).

    Raises:
        ConfigError: tf2onnx is not installed.
    """
    try:
        import tf2onnx
    except ImportError as error:
        raise ConfigError(
            f"ONNX export needs tf2onnx, which is not installed ({error}): "
            "pip install 'breastcls[onnx]' (tf2onnx, onnx, onnxruntime), then export again."
        ) from error
    import onnx
    import tensorflow as tf

    spec = (tf.TensorSpec((None, *tuple(model.input_shape[1:])), tf.float32, name="image"),)
    function = tf.function(lambda image: model(image, training=False), input_signature=spec)
    converted, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=_ONNX_OPSET)
    fuse_hard_activations(converted)
    onnx.save(converted, str(path))


def run_exported(path: Path, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Run an exported model on a batch of 0-255 images; return its probabilities.

    Shows how each format is used: ``.keras`` with :func:`breastcls.model.load_keras_model`, a
    SavedModel folder with ``tf.saved_model.load(path).serve``, ``.onnx`` with onnxruntime and
    ``.tflite`` with the TFLite interpreter.

    Args:
        path: ``model.keras``, the ``saved_model`` folder, ``model.onnx`` or ``model.tflite``.
        images: ``(batch, size, size, 3)`` float32 pixels.

    Raises:
        ModelLoadError: ``path`` is not an export breastcls knows.
    """
    path = Path(path)
    images = np.asarray(images, dtype=np.float32)
    if path.suffix == ".keras":
        from breastcls.model import load_keras_model

        return np.asarray(load_keras_model(path).predict(images, verbose=0), dtype=np.float32)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))  # keep a reference: it owns the variables
        return np.asarray(loaded.serve(tf.constant(images)))
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.asarray(session.run(None, {name: images})[0], dtype=np.float32)
    if path.suffix == ".tflite":
        return _run_tflite(path, images)
    raise ModelLoadError(
        f"{path} is not an export: pass model.keras, a saved_model folder, model.onnx or "
        "model.tflite."
    )


_XNNPACK_INFO = "Created TensorFlow Lite XNNPACK delegate for CPU"


def _run_tflite(path: Path, images: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    import tensorflow as tf

    from breastcls.environment import native_stderr_without

    # TensorFlow Lite's native code says it created its CPU delegate on every first run, an
    # INFO line on file descriptor 2 that no logging setting silences.
    with warnings.catch_warnings(), native_stderr_without(_XNNPACK_INFO):
        # Six lines on every export telling users of tf.lite to move to LiteRT, which the
        # tflite format does not need yet: the export is still a plain .tflite file.
        warnings.filterwarnings("ignore", "[\\s\\S]*tf.lite.Interpreter is deprecated")
        interpreter = tf.lite.Interpreter(model_path=str(path))
        inputs = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inputs["index"], images.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inputs["index"], images)
        interpreter.invoke()
        output = interpreter.get_output_details()[0]["index"]
        return np.asarray(interpreter.get_tensor(output), dtype=np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversion:
    """How closely a converted model (:func:`convert_model`) matches the model it came from.

    Attributes:
        max_difference: Largest absolute difference of probabilities between the conversion and
            the inference graph it was made from (at most :data:`EXPORT_TOLERANCE`).
        max_difference_to_model: The same against the model as loaded (larger only when a
            mixed-precision model was converted as a float32 copy).
        computes_in: ``float32``, or ``mixed`` for a Keras or SavedModel export of a
            mixed-precision model.
    """

    max_difference: float
    max_difference_to_model: float
    computes_in: str


def convert_model(model: Any, format: ExportFormat, path: Path, *, source: Path) -> Conversion:
    """Write ``model`` (as :func:`~breastcls.model.load_keras_model` loads it) in ``format`` at
    ``path``: without its training augmentation, in float32 for ONNX and TFLite, checked on a
    batch of random images against the model within :data:`EXPORT_TOLERANCE`, and moved into
    place only then (a reader never sees a partial file).

    Raises:
        ConfigError: ``onnx`` without tf2onnx installed.
        OutputError: The conversion fails or does not reproduce the model's probabilities
            (nothing is left behind).
    """
    inference = _inference_model(model)
    batch = check_batch(int(model.input_shape[1]))
    original = np.asarray(model.predict(batch, verbose=0), dtype=np.float32)
    mixed = _is_mixed(inference)
    if mixed and format in ("onnx", "tflite"):
        # ONNX and TFLite cannot hold Keras' mixed float16/bfloat16 graphs: export a float32
        # copy with the same weights, and check the export against that copy.
        inference = _float32_copy(inference)
    expected = np.asarray(inference.predict(batch, verbose=0), dtype=np.float32)
    writers: dict[str, Callable[[Path], None]] = {
        "keras": inference.save,
        "savedmodel": lambda staged: _write_savedmodel(inference, staged),
        "onnx": lambda staged: write_onnx(inference, staged),
        "tflite": lambda staged: _write_tflite(inference, staged),
    }
    difference = write_checked(writers[format], format, Path(path), batch, expected, source=source)
    return Conversion(
        max_difference=difference,
        max_difference_to_model=float(np.max(np.abs(expected - original))),
        computes_in="float32" if format in ("onnx", "tflite") or not mixed else "mixed",
    )


def write_checked(
    write: Callable[[Path], None],
    checked: str,
    final: Path,
    batch: npt.NDArray[np.float32],
    expected: npt.NDArray[np.float32],
    *,
    source: Path,
    instead: str = "--format savedmodel or keras",
) -> float:
    """Write a conversion with ``write`` (given the staged path) in a staging folder, check
    that it predicts ``expected`` on ``batch`` within :data:`EXPORT_TOLERANCE`, then move it
    to ``final``; return the largest difference.

    Raises:
        ConfigError: ``write``'s own (a converter not installed).
        OutputError: The conversion fails (the message suggests ``instead``), the disk is
            full, or it does not reproduce ``expected``; nothing is left behind.
    """
    run = source
    with tempfile.TemporaryDirectory(prefix=".export-", dir=final.parent) as staging:
        staged = Path(staging) / EXPORT_FILE_NAMES[checked]
        try:
            write(staged)
        except ConfigError:
            raise
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [""])[0][:300]
            if is_disk_full(error):
                raise OutputError(
                    f"The disk of {final.parent} is full: the {checked} conversion of {run} "
                    "could not be written, and nothing was. Free space (or choose another "
                    "folder), then export again."
                ) from error
            raise OutputError(
                f"Could not convert {run} to {checked} ({type(error).__name__}: {first_line}); "
                "nothing was written. Its layers may have no equivalent in this format: try "
                f"{instead}."
            ) from error
        difference = float(np.max(np.abs(run_exported(staged, batch) - expected)))
        if not difference <= EXPORT_TOLERANCE:
            raise OutputError(
                f"The {checked} export of {run} predicts probabilities up to {difference:.2e} away "
                f"from the model (allowed {EXPORT_TOLERANCE:.0e}); nothing was written. Report "
                "this with the run's environment.json."
            )
        replace_path(staged, final)
    return difference
