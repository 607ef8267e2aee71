"""Where a model's arithmetic runs: TensorFlow, or ONNX Runtime on a converted copy.

Every probability breastcls computes comes from one loop here, through a :class:`Runtime`:
:class:`TensorFlowRuntime` runs the Keras model in a compiled step, :class:`OnnxRuntime` runs an
ONNX session; both expand a batch into its test-time augmentation copies and average them.

On a CPU neither runtime is always faster: at 224 px, batch 16, ONNX Runtime ran
MobileNetV3Small 1.8x faster than TensorFlow on a 2-core machine, but DenseNet201 at 0.6x
(TensorFlow with oneDNN already reaches most of that CPU's peak arithmetic on it). So
:func:`choose_runtime` offers both, and ``auto`` measures them once for a model on a machine
and remembers the faster.

``onnx`` converts the model once with :func:`breastcls.conversion.convert_model` (the
augmentation removed, float32, checked against the model within
:data:`~breastcls.conversion.EXPORT_TOLERANCE`). The conversion and ``auto``'s measurements are
a cache, kept in the user's cache folder (:func:`cache_dir`), never beside the model: a run
folder may be read-only, and reading a model never writes into it. They are keyed by the hash
of the model file, so a changed model is converted again.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import os
import platform
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt

from breastcls.environment import cpu_name
from breastcls.errors import BreastclsError, ConfigError, OutputError
from breastcls.inference.quantization import SelectionImages
from breastcls.interfaces import TTA
from breastcls.io import atomic_write_json
from breastcls.progress import active_reporter

__all__ = [
    "CACHE_VARIABLE",
    "RUNTIMES",
    "OnnxRuntime",
    "Runtime",
    "RuntimeName",
    "RuntimeOutput",
    "TensorFlowRuntime",
    "cache_dir",
    "cached_runtime_record",
    "check_runtime",
    "choose_runtime",
    "machine",
    "model_sha256",
    "onnx_session",
]

FloatArray = npt.NDArray[np.float64]

RuntimeName = Literal["tensorflow", "onnx", "onnx-int8", "auto"]
RUNTIMES: tuple[str, ...] = get_args(RuntimeName)
"""The runtimes :func:`choose_runtime` accepts."""

CACHE_VARIABLE = "BREASTCLS_CACHE_DIR"
"""The environment variable naming breastcls' cache folder (see :func:`cache_dir`)."""

_INSTALL = "pip install 'breastcls[onnx]' (tf2onnx, onnx, onnxruntime)"
# The probe of `auto`: each runtime runs at least this many batches and this many seconds
# after a warm-up batch, in turn, twice; each keeps its faster round (a shared machine slows
# one round now and then, not both runtimes' best).
_PROBE_BATCHES = 3
_PROBE_SECONDS = 0.3
_PROBE_ROUNDS = 2


@dataclass(frozen=True, slots=True)
class RuntimeOutput:
    """What a runtime gives for one batch.

    Attributes:
        probabilities: ``(n, n_classes)`` uncalibrated probabilities (averaged over TTA copies).
        features: ``(n, d + 2)`` when asked for and the runtime can give them: the penultimate
            layer's embedding (averaged over TTA copies), then the log sharpness and log
            chroma of each input image (:mod:`breastcls.inference.domain`); else ``None``.
    """

    probabilities: FloatArray
    features: FloatArray | None = None


class Runtime(Protocol):
    """Runs a model on batches of images: the one loop every probability comes from."""

    @property
    def name(self) -> Literal["tensorflow", "onnx", "onnx-int8"]:
        """``tensorflow``, ``onnx`` or ``onnx-int8``."""
        ...

    @property
    def reason(self) -> str:
        """Why it was chosen, in one line."""
        ...

    def iter_outputs(
        self, batches: Any, *, tta: TTA | None = None, features: bool = False
    ) -> Iterator[RuntimeOutput]:
        """Yield the model's outputs for each batch of a ``tf.data`` dataset of 0-255 float32
        image batches.

        With ``tta``, the copies of a batch are made with the TTA's TensorFlow ops and go
        through the model in one call, and their outputs are averaged. With ``features``, the
        embedding and image statistics the domain-shift score needs come from the same call,
        where the runtime can give them.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorFlowRuntime:
    """The Keras model, run by TensorFlow in a compiled step traced once per model, TTA and
    input signature in a process.

    Attributes:
        keras_model: The Keras model (0-255 RGB in, probabilities out).
        reason: Why it was chosen.
    """

    keras_model: Any
    reason: str = "--runtime tensorflow"
    name: Literal["tensorflow"] = "tensorflow"

    def iter_outputs(
        self, batches: Any, *, tta: TTA | None = None, features: bool = False
    ) -> Iterator[RuntimeOutput]:
        """See :meth:`Runtime.iter_outputs`."""
        step = _step(self.keras_model, batches, tta, features)
        for images in batches:
            if not features:
                yield RuntimeOutput(np.asarray(step(images).numpy(), dtype=np.float64))
                continue
            probabilities, found = step(images)
            yield RuntimeOutput(
                np.asarray(probabilities.numpy(), dtype=np.float64),
                np.asarray(found.numpy(), dtype=np.float64),
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class OnnxRuntime:
    """An ONNX Runtime session of the model (a converted copy, or an ONNX export). It gives
    probabilities only: no features for the domain-shift score.

    Attributes:
        session: The ``onnxruntime.InferenceSession``.
        reason: Why it was chosen.
        name: ``onnx``, or ``onnx-int8`` for an int8 copy.
    """

    session: Any
    reason: str = "--runtime onnx"
    name: Literal["onnx", "onnx-int8"] = "onnx"

    def iter_outputs(
        self, batches: Any, *, tta: TTA | None = None, features: bool = False
    ) -> Iterator[RuntimeOutput]:
        """See :meth:`Runtime.iter_outputs` (``features`` are never given)."""
        name = self.session.get_inputs()[0].name
        for images in batches:
            if tta is None or tta.size == 1:
                probabilities = self.session.run(None, {name: np.asarray(images)})[0]
                yield RuntimeOutput(np.asarray(probabilities, dtype=np.float64))
                continue
            copies = np.asarray(tta(images))
            flat = copies.reshape(-1, *copies.shape[2:])
            per_copy = self.session.run(None, {name: flat})[0].reshape(*copies.shape[:2], -1)
            yield RuntimeOutput(np.asarray(per_copy, dtype=np.float64).mean(axis=0))


def onnx_session(path: Path) -> Any:
    """An ONNX Runtime session of the ONNX file ``path`` on the CPU.

    Raises:
        ConfigError: ONNX Runtime is not installed.
    """
    missing = _onnxruntime_missing()
    if missing is not None:
        raise ConfigError(f"{path} needs ONNX Runtime, but {missing}: {_INSTALL}.")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # ONNX Runtime's threads spin while they wait for work. Where they share the cores with
    # the slide's tile readers, or with other jobs, the spinning took half the CPU time: the
    # model alone ran at 118 tiles per CPU second spinning, 230 not (MobileNetV3Small, 224 px,
    # 2 shared cores), and no slower by the wall clock.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _compile_step(model: Any, tta: TTA | None, batches: Any, features: bool) -> Any:
    import tensorflow as tf

    from breastcls.inference.domain import image_statistics

    # Traced once for any batch size: the last, partial batch of a dataset would otherwise
    # trace the whole model again (seconds for DenseNet201).
    spec = getattr(batches, "element_spec", None)
    signature = (
        [tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)]
        if isinstance(spec, tf.TensorSpec)
        else None
    )

    def compile_step(step: Any) -> Any:
        if signature is None:
            return tf.function(step, reduce_retracing=True)
        return tf.function(step, input_signature=signature)

    def run(flat: Any) -> tuple[Any, Any]:
        if not features:
            return tf.cast(model(flat, training=False), tf.float32), None
        embedding, probabilities = model(flat, training=False)
        return tf.cast(probabilities, tf.float32), tf.cast(embedding, tf.float32)

    def with_statistics(images: Any, probabilities: Any, embedding: Any) -> Any:
        if not features:
            return probabilities
        found = tf.concat([embedding, image_statistics(tf.cast(images, tf.float32))], axis=1)
        return probabilities, found

    if tta is None or tta.size == 1:

        def plain(images: Any) -> Any:
            return with_statistics(images, *run(images))

        return compile_step(plain)

    def augmented(images: Any) -> Any:
        # All copies of the batch go through the model in one call; no per-image Python code.
        copies = tta(images)
        shape = tf.shape(copies)
        flat = tf.reshape(copies, tf.concat([[-1], shape[2:]], axis=0))
        probabilities, embedding = run(flat)
        mean = tf.reduce_mean(tf.reshape(probabilities, [shape[0], shape[1], -1]), axis=0)
        if embedding is not None:
            embedding = tf.reduce_mean(tf.reshape(embedding, [shape[0], shape[1], -1]), axis=0)
        return with_statistics(images, mean, embedding)

    return compile_step(augmented)


# The compiled step of each Keras model, by TTA, input signature and whether it gives features:
# tracing MobileNetV3Small takes about 3 s on two cores, longer than classifying a small slide,
# and a new tf.function would trace again for every slide of `predict_slides`. Weak keys: a
# model no longer used elsewhere is freed with its steps (they reach it only through a weak
# reference).
_STEPS: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_STEPS_LOCK = threading.Lock()


def _step(keras_model: Any, batches: Any, tta: TTA | None, features: bool) -> Any:
    """The compiled step of ``keras_model``, traced once per model, TTA, input signature and
    features."""
    key = (tta, getattr(batches, "element_spec", None), features)
    try:
        hash(key)
    except TypeError:  # an unhashable TTA or signature: a step of its own
        return _compile_step(_runnable(keras_model, features), tta, batches, features)
    with _STEPS_LOCK:
        steps = _STEPS.setdefault(keras_model, {})
        step = steps.get(key)
        if step is None:
            runnable = _WeakModel(keras_model, features)
            step = steps[key] = _compile_step(runnable, tta, batches, features)
    return step


def _runnable(keras_model: Any, features: bool) -> Any:
    """``keras_model``, or with ``features`` a model of the same layers that also gives the
    penultimate layer's output (the input of the model's last layer)."""
    if not features:
        return keras_model
    import keras

    return keras.Model(keras_model.inputs, _with_embedding(keras_model))


def _with_embedding(model: Any) -> list[Any]:
    """The symbolic ``[embedding, probabilities]`` of a functional model: the input and output
    of its last layer, looked for inside the last layer when that is itself a model (as in an
    export, whose body is a nested model)."""
    import keras

    last = model.layers[-1]
    if not isinstance(last, keras.Model):
        return [last.input, model.output]
    (node,) = last._inbound_nodes  # called once, on the outer model's tensors
    inner = keras.Model(last.inputs, _with_embedding(last))
    tensors = node.input_tensors
    return list(inner(tensors[0] if len(tensors) == 1 else tensors))


class _WeakModel:
    """Calls a Keras model it does not keep alive (the compiled steps hold this, not it); with
    ``features``, its features model, which shares the layers but not the model object."""

    def __init__(self, model: Any, features: bool) -> None:
        self._model = weakref.ref(model)
        self._features = _runnable(model, features) if features else None

    def __call__(self, images: Any, *, training: bool) -> Any:
        model = self._model()
        if model is None:
            raise RuntimeError("The Keras model of a compiled step was freed.")
        runnable = model if self._features is None else self._features
        return runnable(images, training=training)


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, modified_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_sha256(source: Path) -> str:
    """The model file's hash (computed once per file version in a process)."""
    stat = source.stat()
    return _sha256(str(source), stat.st_size, stat.st_mtime_ns)


def cache_dir() -> Path:
    """breastcls' cache folder: ``$BREASTCLS_CACHE_DIR``, else ``$XDG_CACHE_HOME/breastcls``,
    else ``~/.cache/breastcls``. It holds what can be rebuilt (ONNX conversions, runtime
    measurements), never a model's facts."""
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "breastcls"


@dataclass(frozen=True, slots=True, kw_only=True)
class _ModelCache:
    """The cache folder of one model file version: ``runtime.onnx`` and ``runtime.json``."""

    source: Path
    sha256: str

    @property
    def folder(self) -> Path:
        return cache_dir() / "runtime" / self.sha256[:32]

    @property
    def onnx(self) -> Path:
        return self.folder / "runtime.onnx"

    @property
    def record_file(self) -> Path:
        return self.folder / "runtime.json"

    @property
    def int8(self) -> Path:
        return self.folder / "runtime-int8.onnx"

    def read(self) -> dict[str, Any]:
        """``runtime.json`` when it belongs to this model file, else a new record."""
        try:
            record = json.loads(self.record_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if isinstance(record, dict) and record.get("model_sha256") == self.sha256:
            return record
        return {"model": str(self.source), "model_sha256": self.sha256, "choices": []}

    def write(self, record: dict[str, Any]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.record_file, record)
        except OSError as error:
            raise self.unwritable(error) from error

    def unwritable(self, error: OSError) -> OutputError:
        return OutputError(
            f"Cannot write the ONNX Runtime cache {self.folder} ({error.strerror or error}): "
            f"point {CACHE_VARIABLE} at a writable folder, or use --runtime tensorflow."
        )


def cached_runtime_record(source: Path) -> dict[str, Any]:
    """What the cache remembers of the model file ``source``: its ONNX conversion and the
    choices ``auto`` measured (``runtime.json``; a new, empty record when there is none)."""
    return _ModelCache(source=source, sha256=model_sha256(source)).read()


def machine() -> dict[str, Any]:
    """What the speed of a runtime depends on here: the CPU model, the cores this process may
    use, and the versions of TensorFlow and ONNX Runtime. ``auto`` measures again when any
    differs from the machine it measured on."""
    import onnxruntime
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_name(),
        "cores": cores,
        "tensorflow": tf.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def _onnxruntime_missing() -> str | None:
    """Why ONNX Runtime cannot be used here, or ``None``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"onnxruntime is not installed ({error})"
    return None


def _has_conversion(cache: _ModelCache, record: dict[str, Any]) -> bool:
    """Whether ``record`` names a conversion of its model file in the cache, written by this
    version of :func:`~breastcls.conversion.write_onnx`."""
    from breastcls.conversion import ONNX_GRAPH_VERSION

    converted = record.get("onnx")
    return (
        isinstance(converted, dict)
        and converted.get("graph_version") == ONNX_GRAPH_VERSION
        and cache.onnx.is_file()
    )


def _converted_session(keras_model: Any, cache: _ModelCache, record: dict[str, Any]) -> Any:
    """An ONNX Runtime session of the model, converted into the cache first when ``record``
    has none (:func:`_has_conversion`)."""
    from breastcls.conversion import EXPORT_TOLERANCE, ONNX_GRAPH_VERSION, convert_model

    if not _has_conversion(cache, record):
        try:
            cache.folder.mkdir(parents=True, exist_ok=True)
            conversion = convert_model(keras_model, "onnx", cache.onnx, source=cache.source)
        except OSError as error:
            raise cache.unwritable(error) from error
        record["onnx"] = {
            "file": cache.onnx.name,
            "graph_version": ONNX_GRAPH_VERSION,
            "max_difference": conversion.max_difference,
            "max_difference_to_model": conversion.max_difference_to_model,
            "tolerance": EXPORT_TOLERANCE,
        }
        record["choices"] = []  # measured on the former conversion
        record.pop("onnx_int8", None)  # quantised from it
        cache.write(record)
    return onnx_session(cache.onnx)


def _rate(runtime: Runtime, images: npt.NDArray[np.float32]) -> float:
    """Images per second of ``runtime`` on ``images``, a batch fed over and over."""
    import tensorflow as tf

    stream = runtime.iter_outputs(tf.data.Dataset.from_tensors(images).repeat())
    next(stream)  # traces the graph, or warms the session up
    start, done = time.perf_counter(), 0
    while done < _PROBE_BATCHES or time.perf_counter() - start < _PROBE_SECONDS:
        next(stream)
        done += 1
    return done * len(images) / (time.perf_counter() - start)


def _measure(
    tensorflow: Runtime, onnx: Runtime, image_size: int, batch_size: int
) -> dict[str, float]:
    rng = np.random.default_rng(0)
    shape = (batch_size, image_size, image_size, 3)
    images = rng.uniform(0.0, 255.0, size=shape).astype(np.float32)
    best = {"tensorflow": 0.0, "onnx": 0.0}
    for _ in range(_PROBE_ROUNDS):
        for runtime in (tensorflow, onnx):
            best[runtime.name] = max(best[runtime.name], _rate(runtime, images))
    return best


def _say(line: str, verbose: int) -> None:
    """One line to the active progress reporter (the CLI shows it on stderr)."""
    reporter = active_reporter() if verbose else None
    if reporter is not None:
        reporter.task_started("choosing the runtime", total=None, unit="batches")
        reporter.task_finished(line)


def check_runtime(runtime: str) -> RuntimeName:
    """Check a runtime's name before any model is loaded.

    Raises:
        ConfigError: It is not one of :data:`RUNTIMES`, or it is ``onnx`` or ``onnx-int8``
            and ONNX Runtime is not installed.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"Runtime {runtime!r} is unknown: use one of {', '.join(RUNTIMES)}.")
    missing = _onnxruntime_missing()
    if runtime in ("onnx", "onnx-int8") and missing is not None:
        raise ConfigError(
            f"--runtime {runtime} needs ONNX Runtime, but {missing}: {_INSTALL}, or use "
            "--runtime tensorflow."
        )
    return runtime  # type: ignore[return-value]


def choose_runtime(
    keras_model: Any,
    runtime: str,
    *,
    source: Path,
    image_size: int,
    batch_size: int = 32,
    verbose: int = 0,
    selection: SelectionImages | None = None,
) -> Runtime:
    """Choose where ``keras_model`` (loaded from the file ``source``) runs: ``tensorflow``,
    ``onnx``, ``onnx-int8`` or ``auto``.

    ``onnx`` converts the model once into the cache (:func:`cache_dir`; again when the model
    file changes). ``onnx-int8`` quantises that conversion to int8 once, calibrated on the
    run's ``selection`` images, and records its agreement with float32 in the cache
    (:mod:`breastcls.inference.quantization`). ``auto`` measures TensorFlow and ONNX Runtime on
    batches of ``batch_size`` images of ``image_size`` the first time it meets this model on
    this machine (:func:`machine`), remembers the faster in the cache and uses it; without
    onnxruntime, or when the model cannot be converted, it uses TensorFlow. With ``verbose``,
    ``auto`` and ``onnx-int8`` report the choice and why in one line.

    Raises:
        ConfigError: An unknown runtime; ``onnx`` or ``onnx-int8`` without onnxruntime or
            tf2onnx installed; ``onnx-int8`` without selection images.
        OutputError: ``onnx`` cannot convert the model, or cannot write the cache.
        DataError: A selection image is unreadable.
    """
    name = check_runtime(runtime)
    tensorflow = TensorFlowRuntime(keras_model=keras_model)
    if name == "tensorflow":
        return tensorflow
    cache = _ModelCache(source=source, sha256=model_sha256(source))
    if name == "onnx":
        return OnnxRuntime(session=_converted_session(keras_model, cache, cache.read()))
    missing = _onnxruntime_missing()
    if name == "onnx-int8":
        chosen: Runtime = _int8_runtime(keras_model, cache, selection)
    elif missing is not None:
        chosen = TensorFlowRuntime(
            keras_model=keras_model,
            reason=f"--runtime auto: tensorflow, since {missing}: {_INSTALL}",
        )
    else:
        chosen = _auto(keras_model, cache, image_size, batch_size)
    _say(chosen.reason, verbose)
    return chosen


def _int8_runtime(
    keras_model: Any, cache: _ModelCache, selection: SelectionImages | None
) -> OnnxRuntime:
    """The int8 copy of the model's ONNX conversion, quantised into the cache first when the
    cache has none for this model file and selection set."""
    if selection is None or not selection.samples:
        raise ConfigError(
            f"--runtime onnx-int8 calibrates the int8 model on the selection images of the run "
            f"{cache.source} comes from, and {cache.source.parent} names none (no split.csv, "
            "or no selection image in it): load the model from its run folder, or use "
            "--runtime onnx."
        )
    record = cache.read()
    float_session = _converted_session(keras_model, cache, record)
    entry = record.get("onnx_int8")
    if not (
        isinstance(entry, dict)
        and entry.get("selection_sha256") == selection.fingerprint
        and cache.int8.is_file()
    ):
        entry = _quantize(float_session, cache, selection)
        record["onnx_int8"] = entry
        cache.write(record)
    reason = _int8_reason(entry, cache)
    return OnnxRuntime(session=onnx_session(cache.int8), reason=reason, name="onnx-int8")


def _int8_reason(entry: dict[str, Any], cache: _ModelCache) -> str:
    """The line saying what the int8 copy was calibrated on and how far it is from float32."""
    if entry.get("max_abs_diff") is None:
        return (
            f"--runtime onnx-int8: calibrated on {entry['calibration_images']} selection "
            f"image(s); no other selection image to check it on (kept in {cache.record_file})"
        )
    auc = (
        f"AUC {entry['auc_float32']:.4f} -> {entry['auc_int8']:.4f}"
        if entry.get("auc_change") is not None
        else "AUC not measured (one class)"
    )
    return (
        f"--runtime onnx-int8: calibrated on {entry['calibration_images']} selection images; on "
        f"{entry['check_images']} others, probabilities within {entry['max_abs_diff']:.2g} of "
        f"float32, {auc} (kept in {cache.record_file})"
    )


def _quantize(float_session: Any, cache: _ModelCache, selection: SelectionImages) -> dict[str, Any]:
    """Quantise the cached conversion into ``cache.int8`` (written whole, then renamed) and
    measure its agreement with float32 on the check images."""
    from breastcls.inference.quantization import agreement, quantize_onnx

    partial = cache.int8.with_name(f"{cache.int8.stem}.{os.getpid()}.partial.onnx")
    calibration = selection.calibration
    try:
        name = float_session.get_inputs()[0].name
        quantize_onnx(cache.onnx, partial, selection.batches(calibration), name)
        os.replace(partial, cache.int8)
    except OSError as error:
        raise cache.unwritable(error) from error
    finally:
        partial.unlink(missing_ok=True)
    check = [selection.samples[i] for i in selection.check]
    float32, int8 = (
        _probabilities(OnnxRuntime(session=session), selection.batches(check))
        for session in (float_session, onnx_session(cache.int8))
    )
    return {
        "file": cache.int8.name,
        "selection_sha256": selection.fingerprint,
        "calibration_images": len(calibration),
        **agreement(float32, int8, selection),
        "quantised": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _probabilities(runtime: Runtime, batches: Any) -> FloatArray:
    """The runtime's probabilities of every batch, joined (``(0, 0)`` for none)."""
    found = [output.probabilities for output in runtime.iter_outputs(batches)]
    return np.concatenate(found) if found else np.zeros((0, 0))


def _auto(keras_model: Any, cache: _ModelCache, image_size: int, batch_size: int) -> Runtime:
    record = cache.read()
    key = {"machine": machine(), "image_size": image_size, "batch_size": batch_size}
    remembered = next(
        (
            choice
            for choice in (record.get("choices", []) if _has_conversion(cache, record) else [])
            if isinstance(choice, dict) and all(choice.get(k) == v for k, v in key.items())
        ),
        None,
    )
    when = f"measured on this CPU on {remembered.get('measured')}" if remembered else ""
    if remembered is not None and remembered.get("runtime") == "tensorflow":
        return _chosen(remembered, keras_model, None, when)
    try:
        session = _converted_session(keras_model, cache, record)
    except BreastclsError as error:
        first_line = (str(error).splitlines() or [""])[0]
        return TensorFlowRuntime(
            keras_model=keras_model,
            reason=f"--runtime auto: tensorflow, since ONNX: {first_line}",
        )
    if remembered is not None:
        return _chosen(remembered, keras_model, session, when)
    rates = _measure(
        TensorFlowRuntime(keras_model=keras_model, reason="probe"),
        OnnxRuntime(session=session, reason="probe"),
        image_size,
        batch_size,
    )
    choice = {
        **key,
        "runtime": "onnx" if rates["onnx"] > rates["tensorflow"] else "tensorflow",
        "tensorflow_images_per_s": rates["tensorflow"],
        "onnx_images_per_s": rates["onnx"],
        "host": platform.node(),
        "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record["choices"] = [*record.get("choices", []), choice]
    cache.write(record)
    return _chosen(choice, keras_model, session, f"measured now, kept in {cache.record_file}")


def _chosen(choice: dict[str, Any], keras_model: Any, session: Any, when: str) -> Runtime:
    rates = (
        f"onnx {choice['onnx_images_per_s']:.0f}, "
        f"tensorflow {choice['tensorflow_images_per_s']:.0f} images/s"
    )
    reason = f"--runtime auto: {choice['runtime']} ({rates}, {when})"
    if choice["runtime"] == "onnx":
        return OnnxRuntime(session=session, reason=reason)
    return TensorFlowRuntime(keras_model=keras_model, reason=reason)
