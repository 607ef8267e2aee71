"""Where a model's arithmetic runs: TensorFlow, or ONNX Runtime on a converted copy.

On a CPU neither runtime is always faster: at 224 px, batch 16, ONNX Runtime ran
MobileNetV3Small 1.8x faster than TensorFlow on a 2-core machine, but DenseNet201 at 0.6x
(TensorFlow with oneDNN already reaches most of that CPU's peak arithmetic on it). So
:func:`choose_runtime` offers both, and ``auto`` measures them once for a model on a machine
and remembers the faster in the model's folder.

``onnx`` converts the model once with :func:`breastcls.export.convert_model` (the augmentation
removed, float32, checked against the model within
:data:`~breastcls.export.EXPORT_TOLERANCE`) into ``runtime.onnx`` beside it; ``runtime.json``
records the hash of the model file it came from, so a changed model is converted again.
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
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from breastcls.environment import cpu_name
from breastcls.errors import BreastclsError, ConfigError, OutputError
from breastcls.inference.model import InferenceModel
from breastcls.interfaces import TTA
from breastcls.io import atomic_write_json
from breastcls.progress import active_reporter

__all__ = ["RUNTIMES", "Runtime", "RuntimeName", "choose_runtime", "machine"]

FloatArray = npt.NDArray[np.float64]

RuntimeName = Literal["tensorflow", "onnx", "auto"]
RUNTIMES: tuple[str, ...] = get_args(RuntimeName)
"""The runtimes :func:`choose_runtime` accepts."""

_INSTALL = "pip install 'breastcls[onnx]' (tf2onnx, onnx, onnxruntime)"
# The probe of `auto`: each runtime runs at least this many batches and this many seconds
# after a warm-up batch, in turn, twice; each keeps its faster round (a shared machine slows
# one round now and then, not both runtimes' best).
_PROBE_BATCHES = 3
_PROBE_SECONDS = 0.3
_PROBE_ROUNDS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """A runtime chosen for one model (:func:`choose_runtime`).

    Attributes:
        name: ``tensorflow`` or ``onnx``.
        reason: Why it was chosen, in one line.
        session: The ``onnxruntime.InferenceSession`` of ``runtime.onnx``, for ``onnx``.
    """

    name: Literal["tensorflow", "onnx"]
    reason: str
    session: Any = None

    def iter_probabilities(
        self, model: InferenceModel, batches: Any, *, tta: TTA | None = None
    ) -> Iterator[FloatArray]:
        """Yield the uncalibrated probabilities of each batch of a ``tf.data`` dataset of
        0-255 float32 image batches, as
        :func:`breastcls.inference.batches.iter_probabilities` does with TensorFlow.

        With ``tta``, the copies of a batch are made with the TTA's TensorFlow ops and go
        through the model in one call, and their probabilities are averaged.
        """
        if self.session is None:
            return _tensorflow_probabilities(model.keras_model, batches, tta)
        return _onnx_probabilities(self.session, batches, tta)


# The compiled step of each Keras model, by TTA and input signature: tracing MobileNetV3Small
# takes about 3 s on two cores, longer than classifying a small slide, and a new tf.function
# would trace again for every slide of `predict_slides`. Weak keys: a model no longer used
# elsewhere is freed with its steps (they reach it only through a weak reference).
_STEPS: weakref.WeakKeyDictionary[Any, dict[Any, Any]] = weakref.WeakKeyDictionary()
_STEPS_LOCK = threading.Lock()


def _step(keras_model: Any, batches: Any, tta: TTA | None) -> Any:
    """The compiled step of :mod:`breastcls.inference.batches` for ``keras_model``, traced once
    per model, TTA and input signature in a process."""
    from breastcls.inference.batches import _make_step

    key = (tta, getattr(batches, "element_spec", None))
    try:
        hash(key)
    except TypeError:  # an unhashable TTA or signature: a step of its own, as before
        return _make_step(keras_model, tta, batches)
    with _STEPS_LOCK:
        steps = _STEPS.setdefault(keras_model, {})
        step = steps.get(key)
        if step is None:
            step = steps[key] = _make_step(_WeakModel(keras_model), tta, batches)
    return step


class _WeakModel:
    """Calls a Keras model it does not keep alive (the compiled steps hold this, not it)."""

    def __init__(self, model: Any) -> None:
        self._model = weakref.ref(model)

    def __call__(self, images: Any, *, training: bool) -> Any:
        model = self._model()
        if model is None:
            raise RuntimeError("The Keras model of a compiled step was freed.")
        return model(images, training=training)


def _tensorflow_probabilities(
    keras_model: Any, batches: Any, tta: TTA | None
) -> Iterator[FloatArray]:
    step = _step(keras_model, batches, tta)
    for images in batches:
        yield np.asarray(step(images).numpy(), dtype=np.float64)


def _onnx_probabilities(session: Any, batches: Any, tta: TTA | None) -> Iterator[FloatArray]:
    name = session.get_inputs()[0].name
    for images in batches:
        if tta is None or tta.size == 1:
            probabilities = session.run(None, {name: images.numpy()})[0]
            yield np.asarray(probabilities, dtype=np.float64)
            continue
        copies = np.asarray(tta(images))
        flat = copies.reshape(-1, *copies.shape[2:])
        per_copy = session.run(None, {name: flat})[0].reshape(*copies.shape[:2], -1)
        yield np.asarray(per_copy, dtype=np.float64).mean(axis=0)


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


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, modified_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_sha256(source: Path) -> str:
    """The model file's hash (computed once per file version in a process)."""
    stat = source.stat()
    return _sha256(str(source), stat.st_size, stat.st_mtime_ns)


def _read_record(model: InferenceModel) -> dict[str, Any]:
    """``runtime.json`` when it belongs to the model file as it is now, else a new record (a
    changed model invalidates its conversion and its measurements)."""
    sha256 = _model_sha256(model.source)
    path = model.folder.runtime_record
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("model_sha256") == sha256:
        return record
    return {"model": model.source.name, "model_sha256": sha256, "choices": []}


def _write_record(model: InferenceModel, record: dict[str, Any]) -> None:
    try:
        atomic_write_json(model.folder.runtime_record, record)
    except OSError as error:
        raise _unwritable(model, error) from error


def _unwritable(model: InferenceModel, error: OSError) -> OutputError:
    return OutputError(
        f"Cannot write the ONNX Runtime files beside {model.source} "
        f"({error.strerror or error}): copy the model with its folder somewhere writable, or "
        "use --runtime tensorflow."
    )


def _onnxruntime_missing() -> str | None:
    """Why ONNX Runtime cannot be used here, or ``None``."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"onnxruntime is not installed ({error})"
    return None


def _onnx_session(model: InferenceModel, record: dict[str, Any]) -> Any:
    """An ONNX Runtime session of the model, converted first when ``record`` (as
    :func:`_read_record` returns it) has no conversion of this model file."""
    import onnxruntime

    from breastcls.export import EXPORT_TOLERANCE, convert_model

    path = model.folder.runtime_onnx
    if not (isinstance(record.get("onnx"), dict) and path.is_file()):
        try:
            conversion = convert_model(model.keras_model, "onnx", path, source=model.source)
        except OSError as error:
            raise _unwritable(model, error) from error
        record["onnx"] = {
            "file": path.name,
            "max_difference": conversion.max_difference,
            "max_difference_to_model": conversion.max_difference_to_model,
            "tolerance": EXPORT_TOLERANCE,
        }
        record["choices"] = []  # measured on the former conversion
        _write_record(model, record)
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _rate(runtime: Runtime, model: InferenceModel, images: npt.NDArray[np.float32]) -> float:
    """Images per second of ``runtime`` on ``images``, a batch fed over and over."""
    import tensorflow as tf

    stream = runtime.iter_probabilities(model, tf.data.Dataset.from_tensors(images).repeat())
    next(stream)  # traces the graph, or warms the session up
    start, done = time.perf_counter(), 0
    while done < _PROBE_BATCHES or time.perf_counter() - start < _PROBE_SECONDS:
        next(stream)
        done += 1
    return done * len(images) / (time.perf_counter() - start)


def _measure(model: InferenceModel, onnx: Runtime, batch_size: int) -> dict[str, float]:
    size = model.image_size
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 255.0, size=(batch_size, size, size, 3)).astype(np.float32)
    tensorflow = Runtime(name="tensorflow", reason="probe")
    best = {"tensorflow": 0.0, "onnx": 0.0}
    for _ in range(_PROBE_ROUNDS):
        for runtime in (tensorflow, onnx):
            best[runtime.name] = max(best[runtime.name], _rate(runtime, model, images))
    return best


def _say(line: str, verbose: int) -> None:
    """One line to the active progress reporter (the CLI shows it on stderr)."""
    reporter = active_reporter() if verbose else None
    if reporter is not None:
        reporter.task_started("choosing the runtime", total=None, unit="batches")
        reporter.task_finished(line)


def choose_runtime(
    model: InferenceModel, runtime: str, *, batch_size: int = 32, verbose: int = 0
) -> Runtime:
    """Choose where ``model`` runs: ``tensorflow``, ``onnx`` or ``auto``.

    ``onnx`` converts the model into ``runtime.onnx`` beside it once (again when the model file
    changes). ``auto`` measures TensorFlow and ONNX Runtime on batches of ``batch_size``
    images of the model's size the first time it meets this model on this machine
    (:func:`machine`), remembers the faster in ``runtime.json`` and uses it; without
    onnxruntime, or when the model cannot be converted, it uses TensorFlow. With ``verbose``,
    ``auto`` reports its choice and why in one line.

    Raises:
        ConfigError: An unknown runtime, or ``onnx`` without onnxruntime or tf2onnx installed.
        OutputError: ``onnx`` cannot convert the model, or cannot write beside it.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"Runtime {runtime!r} is unknown: use one of {', '.join(RUNTIMES)}.")
    if runtime == "tensorflow":
        return Runtime(name="tensorflow", reason="--runtime tensorflow")
    missing = _onnxruntime_missing()
    if runtime == "onnx":
        if missing is not None:
            raise ConfigError(
                f"--runtime onnx needs ONNX Runtime, but {missing}: {_INSTALL}, or use "
                "--runtime tensorflow."
            )
        return Runtime(
            name="onnx", reason="--runtime onnx", session=_onnx_session(model, _read_record(model))
        )
    if missing is not None:
        chosen = Runtime(
            name="tensorflow", reason=f"--runtime auto: tensorflow, since {missing}: {_INSTALL}"
        )
        _say(chosen.reason, verbose)
        return chosen
    chosen = _auto(model, batch_size)
    _say(chosen.reason, verbose)
    return chosen


def _auto(model: InferenceModel, batch_size: int) -> Runtime:
    record = _read_record(model)
    here = machine()
    key = {"machine": here, "image_size": model.image_size, "batch_size": batch_size}
    converted = isinstance(record.get("onnx"), dict) and model.folder.runtime_onnx.is_file()
    remembered = next(
        (
            choice
            for choice in (record.get("choices", []) if converted else [])
            if isinstance(choice, dict) and all(choice.get(k) == v for k, v in key.items())
        ),
        None,
    )
    when = f"measured on this CPU on {remembered.get('measured')}" if remembered else ""
    if remembered is not None and remembered.get("runtime") == "tensorflow":
        return _chosen(remembered, None, when)
    try:
        session = _onnx_session(model, record)
    except BreastclsError as error:
        first_line = (str(error).splitlines() or [""])[0]
        return Runtime(
            name="tensorflow", reason=f"--runtime auto: tensorflow, since ONNX: {first_line}"
        )
    if remembered is not None:
        return _chosen(remembered, session, when)
    rates = _measure(model, Runtime(name="onnx", reason="probe", session=session), batch_size)
    choice = {
        **key,
        "runtime": "onnx" if rates["onnx"] > rates["tensorflow"] else "tensorflow",
        "tensorflow_images_per_s": rates["tensorflow"],
        "onnx_images_per_s": rates["onnx"],
        "host": platform.node(),
        "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    record["choices"] = [*record.get("choices", []), choice]
    _write_record(model, record)
    return _chosen(choice, session, f"measured now, kept in {model.folder.runtime_record.name}")


def _chosen(choice: dict[str, Any], session: Any, when: str) -> Runtime:
    rates = (
        f"onnx {choice['onnx_images_per_s']:.0f}, "
        f"tensorflow {choice['tensorflow_images_per_s']:.0f} images/s"
    )
    reason = f"--runtime auto: {choice['runtime']} ({rates}, {when})"
    if choice["runtime"] == "onnx":
        return Runtime(name="onnx", reason=reason, session=session)
    return Runtime(name="tensorflow", reason=reason)
