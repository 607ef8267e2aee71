"""Frozen feature extractors: a foundation model's file, run as it is, never trained.

A :class:`FrozenExtractor` is registered as a backbone (``onnx``: any model exported to ONNX, run
with ONNX Runtime; ``keras``: a local ``.keras`` feature extractor) and configured with backbone
options: the file, the input size, the mean and standard deviation of the model card, which
output is the embedding and the microns per pixel the model expects. It is not fine-tuned:
breastcls embeds the images once (:mod:`breastcls.embeddings.cache`) and fits a probe on the
embeddings (:mod:`breastcls.embeddings.probe`). :meth:`FrozenExtractor.load` checks the file
before any image is read and gives a :class:`LoadedExtractor`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt

from breastcls.errors import ConfigError, ModelLoadError
from breastcls.interfaces import BackbonePreprocessing

__all__ = [
    "EXTRACTOR_KINDS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EmbeddingOutput",
    "ExtractorKind",
    "ExtractorRecord",
    "FrozenExtractor",
    "LoadedExtractor",
    "extractor_calls",
    "extractor_key",
]

ExtractorKind = Literal["onnx", "keras"]
EXTRACTOR_KINDS: tuple[str, ...] = get_args(ExtractorKind)
EmbeddingOutput = Literal["pooled", "class_token"]
"""Which part of the chosen output is the embedding: ``pooled``, the output as it is when it is
``(n, d)``, averaged over tokens or positions otherwise; ``class_token``, the first token of a
``(n, tokens, d)`` output (a ViT's CLS token)."""
_EMBEDDING_OUTPUTS: tuple[str, ...] = get_args(EmbeddingOutput)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""The ImageNet mean most model cards give (UNI, Phikon, kaiko.ai's ViTs)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""The ImageNet standard deviation most model cards give."""

FloatArray = npt.NDArray[np.float32]


class _Calls:
    """How many batches every frozen extractor in this process has run (tests count it: a
    cached embedding must cost no extractor call)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        return self._count


_CALLS = _Calls()


def extractor_calls() -> int:
    """The number of batches frozen extractors have embedded in this process so far."""
    return _CALLS.count


def _triple(value: Any, name: str) -> tuple[float, float, float]:
    """A mean or standard deviation: three numbers, or text such as ``0.5,0.5,0.5``."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        numbers = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != 3:
        raise ConfigError(
            f"Backbone option {name}={value!r} is not three numbers (R, G, B): write e.g. "
            f"{name}=0.485,0.456,0.406 as the model card gives it."
        )
    return numbers[0], numbers[1], numbers[2]


@dataclass(frozen=True, slots=True, kw_only=True)
class FrozenExtractor:
    """A frozen feature extractor (a backbone kind; its fields are its backbone options).

    Attributes:
        kind: ``onnx`` (run with ONNX Runtime) or ``keras`` (a ``.keras`` file, safe mode).
        file: The model file.
        input_size: The side in pixels the model takes (images are resized to it).
        mean: Per-channel mean of the model card, on the 0-1 scale.
        std: Per-channel standard deviation of the model card, on the 0-1 scale.
        embedding: Which part of the output is the embedding (:data:`EmbeddingOutput`).
        output: The name of the output to take (empty: the first).
        mpp: The microns per pixel the model expects (0: not stated); recorded with the model.
        preprocessing: ``none``: the mean and standard deviation are applied by the extractor
            itself, not by a backbone preprocessing layer.
    """

    kind: ExtractorKind
    file: str = ""
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    embedding: EmbeddingOutput = "pooled"
    output: str = ""
    mpp: float = 0.0
    preprocessing: BackbonePreprocessing = field(default="none", repr=False)

    def __post_init__(self) -> None:
        if self.kind not in EXTRACTOR_KINDS:
            raise ConfigError(f"Extractor kind {self.kind!r} is not one of {EXTRACTOR_KINDS}.")
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, "std"))
        if not all(s > 0 for s in self.std):
            raise ConfigError(f"Backbone option std={self.std} must be positive numbers.")
        if not 8 <= self.input_size <= 4096:
            raise ConfigError(
                f"Backbone option input_size={self.input_size} is not an image side (8-4096 px)."
            )
        if self.embedding not in _EMBEDDING_OUTPUTS:
            raise ConfigError(
                f"Backbone option embedding={self.embedding!r} is not one of "
                f"{', '.join(_EMBEDDING_OUTPUTS)}."
            )
        if self.mpp < 0:
            raise ConfigError(f"Backbone option mpp={self.mpp} must be 0 (unknown) or more.")

    @property
    def path(self) -> Path:
        """The model file, the user's home expanded."""
        return Path(self.file).expanduser()

    def build(self, *, input_shape: tuple[int, int, int], weights: str | None) -> Any:
        """A frozen extractor is never built into a model to fine-tune.

        Raises:
            ConfigError: Always, saying what to do instead.
        """
        raise ConfigError(
            f"Backbone {self.kind!r} is a frozen feature extractor: breastcls fits a probe on "
            "its cached embeddings (--head linear or mlp) instead of building it into a "
            "network to train."
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the model record and the embedding cache's index."""
        found = asdict(self)
        found.pop("preprocessing")
        found["mean"], found["std"] = list(self.mean), list(self.std)
        return found

    @classmethod
    def from_dict(cls, raw: Any) -> FrozenExtractor:
        """Read :meth:`to_dict`'s form back.

        Raises:
            ConfigError: It is not one.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"An extractor record must be a JSON object, not {raw!r}.")
        try:
            return cls(**raw)
        except TypeError as error:
            raise ConfigError(f"An extractor record holds an unknown field: {error}.") from error

    def load(self) -> LoadedExtractor:
        """Open the model file and check it: an input of ``input_size`` (or of any size) with
        three channels, and an output that :attr:`embedding` can take.

        Raises:
            ConfigError: No file given, or the file is missing, or ONNX Runtime is missing.
            ModelLoadError: The model takes another input size, or has no usable output (one
                line naming the file, the shapes and the option to change).
        """
        if not self.file:
            raise ConfigError(
                f"Backbone {self.kind!r} needs its model file: pass --backbone-option "
                f"file=PATH (backbone_options={{'file': ...}})."
            )
        if not self.path.is_file():
            raise ConfigError(f"The {self.kind} extractor file {str(self.path)!r} does not exist.")
        from breastcls.inference.runtime import model_sha256

        run = _onnx_runner(self) if self.kind == "onnx" else _keras_runner(self)
        return LoadedExtractor(spec=self, sha256=model_sha256(self.path), run=run)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedExtractor:
    """An opened, checked extractor.

    Attributes:
        spec: Its options.
        sha256: The model file's SHA-256.
        run: Normalised ``(n, size, size, 3)`` float32 images to the ``(n, d)`` embedding.
    """

    spec: FrozenExtractor
    sha256: str
    run: Callable[[FloatArray], FloatArray]

    def embed(self, images: npt.NDArray[Any]) -> FloatArray:
        """The ``(n, d)`` float32 embeddings of ``(n, size, size, 3)`` 0-255 RGB images.

        Raises:
            DataError: The images are not of the extractor's input size.
        """
        from breastcls.errors import DataError

        size = self.spec.input_size
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise DataError(
                f"The {self.spec.kind} extractor {self.spec.path.name} takes ({size}, {size}, 3) "
                f"images, not {tuple(images.shape[1:])}: resize them to {size} px first."
            )
        std = np.asarray(self.spec.std, dtype=np.float32)
        # (x / 255 - mean) / std as one product and one in-place difference: two passes over
        # the pixels instead of four, each with its own temporary.
        normalised = np.multiply(images, 1.0 / (255.0 * std), dtype=np.float32)
        normalised -= np.asarray(self.spec.mean, dtype=np.float32) / std
        _CALLS.add()
        return np.asarray(self.run(normalised), dtype=np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractorRecord:
    """What a model record keeps of the frozen extractor its probe was fitted on.

    Attributes:
        extractor: The extractor's options (file, input size, mean, std, output, mpp).
        sha256: The SHA-256 of the file the probe was fitted on; loading checks it.
        dimension: The embedding's dimension.
        probe: The probe head (``linear`` or ``mlp``).
    """

    extractor: FrozenExtractor
    sha256: str
    dimension: int
    probe: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the extractor's options, then the other fields)."""
        return {
            **self.extractor.to_dict(),
            "sha256": self.sha256,
            "dimension": self.dimension,
            "probe": self.probe,
        }

    @classmethod
    def from_dict(cls, raw: Any) -> ExtractorRecord:
        """Read :meth:`to_dict`'s form back.

        Raises:
            ConfigError: It is not one.
        """
        if not isinstance(raw, dict) or not {"sha256", "dimension", "probe"} <= set(raw):
            raise ConfigError(f"An extractor record needs sha256, dimension and probe: {raw!r}.")
        options = {k: v for k, v in raw.items() if k not in ("sha256", "dimension", "probe")}
        return cls(
            extractor=FrozenExtractor.from_dict(options),
            sha256=str(raw["sha256"]),
            dimension=int(raw["dimension"]),
            probe=str(raw["probe"]),
        )


def extractor_key(spec: FrozenExtractor, sha256: str) -> str:
    """What an extractor's embeddings depend on, as a hex SHA-256: its file's hash and the
    preprocessing (input size, bilinear resizing, mean, standard deviation, output taken)."""
    options = spec.to_dict()
    preprocessing = {k: options[k] for k in ("input_size", "mean", "std", "embedding", "output")}
    described = {"sha256": sha256, "resize": "bilinear", **preprocessing}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _wrong(spec: FrozenExtractor, problem: str, fix: str) -> ModelLoadError:
    return ModelLoadError(f"The {spec.kind} extractor {spec.path}: {problem}; {fix}.")


def _check_input(spec: FrozenExtractor, shape: tuple[Any, ...], channels_first: bool) -> None:
    """Refuse an input whose fixed side differs from ``input_size``."""
    sides = shape[2:4] if channels_first else shape[1:3]
    fixed = [side for side in sides if isinstance(side, int) and side > 0]
    if any(side != spec.input_size for side in fixed):
        raise _wrong(
            spec,
            f"it takes {'x'.join(str(s) for s in sides)} px images but input_size is "
            f"{spec.input_size}",
            f"pass --backbone-option input_size={fixed[0]} (and the same --image-size)",
        )


def _pooling(spec: FrozenExtractor, rank: int | None, channels_first: bool) -> Any:
    """The function from the chosen output to the ``(n, d)`` embedding.

    Raises:
        ModelLoadError: The output's rank does not give an embedding with :attr:`embedding`.
    """
    if spec.embedding == "class_token":
        if rank != 3:
            raise _wrong(
                spec,
                f"its output has rank {rank}, not (n, tokens, d): it has no class token",
                "pass --backbone-option embedding=pooled, or another output=NAME",
            )
        return lambda out: out[:, 0, :]
    if rank == 2:
        return lambda out: out
    if rank == 3:
        return lambda out: out.mean(axis=1)
    if rank == 4:
        axes = (2, 3) if channels_first else (1, 2)
        return lambda out: out.mean(axis=axes)
    raise _wrong(
        spec,
        f"its output has rank {rank}, which holds no embedding (need (n, d), (n, tokens, d) or "
        "a feature map)",
        "export the model's feature output, or pass --backbone-option output=NAME",
    )


def _chosen(spec: FrozenExtractor, names: list[str]) -> int:
    if not spec.output:
        return 0
    if spec.output not in names:
        raise _wrong(
            spec,
            f"it has no output {spec.output!r} (its outputs: {', '.join(names) or 'none'})",
            "pass one of them as --backbone-option output=NAME",
        )
    return names.index(spec.output)


def _onnx_runner(spec: FrozenExtractor) -> Callable[[FloatArray], FloatArray]:
    from breastcls.inference.runtime import onnx_session

    try:
        session = onnx_session(spec.path)
    except ConfigError:
        raise
    except Exception as error:  # onnxruntime raises its own classes for a damaged file
        raise _wrong(spec, f"ONNX Runtime cannot open it ({error})", "re-export it") from error
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = tuple(inputs[0].shape)
    if len(inputs) != 1 or len(shape) != 4 or 3 not in (shape[1], shape[3]):
        raise _wrong(
            spec, f"its input is {shape}, not one batch of RGB images", "export one image input"
        )
    channels_first = shape[1] == 3 and shape[3] != 3
    _check_input(spec, shape, channels_first)
    if not outputs:
        raise _wrong(spec, "it has no output", "export the model's feature output")
    index = _chosen(spec, [o.name for o in outputs])
    rank = len(outputs[index].shape) if outputs[index].shape is not None else None
    pool = _pooling(spec, rank, channels_first)
    name, output = inputs[0].name, outputs[index].name

    def run(images: FloatArray) -> FloatArray:
        batch = images.transpose(0, 3, 1, 2) if channels_first else images
        found = session.run([output], {name: np.ascontiguousarray(batch)})[0]
        return np.asarray(pool(np.asarray(found, dtype=np.float32)), dtype=np.float32)

    return run


def _keras_runner(spec: FrozenExtractor) -> Callable[[FloatArray], FloatArray]:
    from breastcls.model import load_keras_model

    model = load_keras_model(spec.path)
    shape = tuple(model.input_shape) if isinstance(model.input_shape, tuple) else ()
    if len(shape) != 4 or shape[3] != 3:
        raise _wrong(spec, f"its input is {shape}, not (n, h, w, 3)", "save one image input")
    _check_input(spec, shape, channels_first=False)
    names = [str(getattr(t, "name", "")).split("/")[0] for t in model.outputs]
    index = _chosen(spec, names)
    pool = _pooling(spec, len(model.outputs[index].shape), channels_first=False)
    import keras

    from breastcls.inference.runtime import TensorFlowRuntime

    # The chosen output alone, run through the compiled inference step every Keras model of
    # breastcls runs through (called eagerly, MobileNetV3Small took 23 CPU ms per 224 px image
    # on 2 cores; compiled, 7).
    runtime = TensorFlowRuntime(
        keras_model=keras.Model(model.inputs, model.outputs[index]),
        reason="a frozen keras extractor",
    )
    side = spec.input_size

    def run(images: FloatArray) -> FloatArray:
        (found,) = runtime.iter_outputs(_OneBatch(images, side))
        # A runtime calls its model's output "probabilities"; here it is the chosen output.
        return np.asarray(pool(found.probabilities), dtype=np.float32)

    return run


class _OneBatch:
    """One batch of images with the ``element_spec`` of a dataset of batches of any size, so
    the compiled step is traced once for every batch size (a partial last batch included)."""

    def __init__(self, images: FloatArray, side: int) -> None:
        import tensorflow as tf

        self.images = images
        self.element_spec = tf.TensorSpec([None, side, side, 3], tf.float32)

    def __iter__(self) -> Iterator[FloatArray]:
        yield self.images
