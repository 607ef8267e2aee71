"""A probe on a frozen extractor converted into one model: 0-255 RGB images in, probabilities out.

The run's model is two parts (:class:`~breastcls.embeddings.runtime.ProbeRuntime`): the
extractor, given images scaled to 0-1 and normalised with the model card's mean and standard
deviation, whose embedding is rounded to float16 as the cache stores it, and the Keras probe.
:func:`convert_probe` writes both as one model doing the same arithmetic, checked against the
run's model on a batch of random images within
:data:`~breastcls.conversion.EXPORT_TOLERANCE`:

- ``onnx``: the extractor's graph (a ``keras`` extractor converted alone by tf2onnx) is
  composed with the normalisation before it and the probe's arithmetic after it
  (standardisation, the Dense layers, softmax; the weights as initialisers) into one ONNX
  graph, run by ONNX Runtime;
- ``savedmodel`` and ``tflite``: a ``keras`` extractor and the probe are composed into one
  Keras model, converted by the ordinary export paths.

No converter from ONNX to TensorFlow is installed, so an ``onnx`` extractor exports as ``onnx``
(one graph) or ``keras`` (the files side by side), not as ``savedmodel`` or ``tflite``:
:func:`check_probe_format` says so before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.conversion import (
    EXPORT_TOLERANCE,
    Conversion,
    ExportFormat,
    check_batch,
    convert_model,
    run_exported,
    write_checked,
    write_onnx,
)
from breastcls.embeddings.extractor import FrozenExtractor
from breastcls.embeddings.runtime import ProbeRuntime, probe_probabilities
from breastcls.errors import ConfigError, OutputError

__all__ = ["check_probe_format", "convert_probe", "describe_probe_export"]

_ONE_GRAPH_FORMATS = {"onnx": ("onnx",), "keras": ("savedmodel", "tflite", "onnx")}
"""The formats each extractor kind is converted into as one model (besides ``keras``, the files
side by side, which both kinds export as)."""


def check_probe_format(spec: FrozenExtractor, format: ExportFormat, source: Path) -> None:
    """Refuse a format the probe's extractor kind cannot be converted into.

    Raises:
        ConfigError: ``savedmodel`` or ``tflite`` of a probe on an ``onnx`` extractor.
    """
    if format == "keras" or format in _ONE_GRAPH_FORMATS[spec.kind]:
        return
    raise ConfigError(
        f"{source} is a probe on an onnx extractor: it cannot be exported as {format}, as no "
        "ONNX-to-TensorFlow converter is installed; use --format onnx (one ONNX graph: "
        "the extractor and the probe) or --format keras (the probe and the extractor file)."
    )


def describe_probe_export(spec: FrozenExtractor, probe: str, format: ExportFormat) -> str:
    """What a probe's export holds, in one sentence (``export.json``'s ``holds``)."""
    inputs = (
        f"0-255 RGB images of {spec.input_size} px in; scaled to 0-1 and normalised with mean "
        f"{list(spec.mean)} and std {list(spec.std)} inside"
    )
    if format == "keras":
        return (
            f"the {probe} probe (model.keras) and its {spec.kind} extractor beside it, both "
            "copied byte for byte; breastcls loads them together (embeddings cached)"
        )
    return (
        f"the {spec.kind} extractor and the {probe} probe as one model: {inputs}; the embedding "
        "rounded to float16 as the embedding cache stores it; class probabilities out"
    )


def convert_probe(
    runtime: ProbeRuntime, format: ExportFormat, path: Path, *, source: Path
) -> Conversion:
    """Write the extractor and the probe of ``runtime`` as one model in ``format`` at
    ``path``, checked against the run's model (the extractor then the probe) within
    :data:`~breastcls.conversion.EXPORT_TOLERANCE` and moved into place only then.

    Raises:
        ConfigError: A format the extractor's kind cannot be converted into; ``onnx`` of a
            ``keras`` extractor without tf2onnx.
        ModelLoadError: The extractor file does not fit its options any more.
        OutputError: The conversion fails or does not reproduce the run's probabilities.
    """
    spec = runtime.embedder.spec
    check_probe_format(spec, format, source)
    batch = check_batch(spec.input_size)
    extractor = runtime.embedder.extractor  # opened and checked, never through the cache
    # The cache stores float16 embeddings, and a run reads those whether cached or not.
    rounded = extractor.embed(batch).astype(np.float16).astype(np.float32)
    expected = np.asarray(probe_probabilities(runtime.probe, rounded), dtype=np.float32)
    if format == "onnx":

        def write(staged: Path) -> None:
            _save_onnx(_composed_onnx(spec, runtime.probe, staged.parent), staged)

        difference = write_checked(
            write, format, Path(path), batch, expected, source=source,
            instead="--format keras (the probe and the extractor file)",
        )  # fmt: skip
        return Conversion(
            max_difference=difference, max_difference_to_model=difference, computes_in="float32"
        )
    composed = _composed_keras(spec, runtime.probe)
    to_run = float(np.max(np.abs(np.asarray(composed(batch, training=False)) - expected)))
    if not to_run <= EXPORT_TOLERANCE:
        raise OutputError(
            f"The {format} export of {source}: the extractor and the probe composed into one "
            f"Keras model give probabilities up to {to_run:.2e} away from the run's model "
            f"(allowed {EXPORT_TOLERANCE:.0e}); nothing was written. Export with --format "
            "keras, and report this with the run's environment.json."
        )
    conversion = convert_model(composed, format, path, source=source)
    exported = run_exported(Path(path), batch)
    return Conversion(
        max_difference=conversion.max_difference,
        max_difference_to_model=float(np.max(np.abs(exported - expected))),
        computes_in="float32",
    )


def _save_onnx(model: Any, path: Path) -> None:
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _pooling_rule(spec: FrozenExtractor, rank: int, channels_first: bool) -> tuple[int, ...]:
    """How the embedding is taken from the chosen output, as the extractor takes it: ``()``
    the output as it is, ``(-1,)`` its first token, else the axes averaged."""
    if spec.embedding == "class_token":
        return (-1,)
    if rank == 3:
        return (1,)
    if rank == 4:
        return (2, 3) if channels_first else (1, 2)
    return ()


def _keras_output(spec: FrozenExtractor) -> Any:
    """The ``keras`` extractor as a model giving the output its embedding is taken from."""
    import keras

    from breastcls.model import load_keras_model

    extractor = load_keras_model(spec.path)
    pixels = keras.Input(shape=(spec.input_size, spec.input_size, 3), name="pixels")
    found = extractor(pixels, training=False)
    names = [str(getattr(t, "name", "")).split("/")[0] for t in extractor.outputs]
    output = found[names.index(spec.output) if spec.output else 0] if len(names) > 1 else found
    return keras.Model(pixels, output, name="extractor")


def _composed_keras(spec: FrozenExtractor, probe: Any) -> Any:
    """One Keras model: normalisation, the extractor, its embedding rounded to float16, the
    probe."""
    import keras

    image = keras.Input(shape=(spec.input_size, spec.input_size, 3), name="image")
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    output = _keras_output(spec)((image / 255.0 - mean) / std)
    rule = _pooling_rule(spec, len(output.shape), channels_first=False)
    if rule == (-1,):
        output = output[:, 0, :]
    elif rule:
        output = keras.ops.mean(output, axis=rule)
    rounded = keras.ops.cast(keras.ops.cast(output, "float16"), "float32")
    return keras.Model(image, probe(rounded, training=False), name="breastcls_probe_export")


def _extractor_graph(spec: FrozenExtractor, folder: Path) -> tuple[Any, str]:
    """The extractor as an ONNX graph (a ``keras`` one converted by tf2onnx, written into the
    staging ``folder`` on the way) and the name of the output its embedding is taken from
    (empty: the first)."""
    import onnx

    if spec.kind == "onnx":
        return onnx.load(str(spec.path)), spec.output
    converted = folder / "extractor.onnx"
    write_onnx(_keras_output(spec), converted)
    return onnx.load(str(converted)), ""


def _composed_onnx(spec: FrozenExtractor, probe: Any, folder: Path) -> Any:
    """One ONNX graph: normalisation, the extractor's graph (its names prefixed), the
    embedding taken and rounded to float16, the probe's arithmetic."""
    import onnx
    from onnx import TensorProto, helper

    found, output = _extractor_graph(spec, folder)
    extractor = onnx.compose.add_prefix(found, "extractor/")
    graph = extractor.graph
    opset = next(o.version for o in extractor.opset_import if o.domain in ("", "ai.onnx"))
    constants = {i.name for i in graph.initializer}
    pixels = next(i for i in graph.input if i.name not in constants)
    shape = [d.dim_value or d.dim_param for d in pixels.type.tensor_type.shape.dim]
    channels_first = shape[1] == 3 and shape[3] != 3
    outputs = [o.name for o in graph.output]
    chosen = outputs[outputs.index(f"extractor/{output}") if output else 0]
    rank = len(next(o for o in graph.output if o.name == chosen).type.tensor_type.shape.dim)
    builder = _GraphBuilder(opset)
    normalised = builder.normalise(spec)
    builder.add("Transpose" if channels_first else "Identity", [normalised], pixels.name,
                **({"perm": [0, 3, 1, 2]} if channels_first else {}))  # fmt: skip
    before = len(builder.nodes)  # the nodes feeding the extractor's graph
    embedding = builder.embedding(chosen, _pooling_rule(spec, rank, channels_first))
    probabilities = _probe_nodes(builder, probe, embedding)
    size, classes = spec.input_size, int(probe.output_shape[-1])
    composed = helper.make_graph(
        [*builder.nodes[:before], *graph.node, *builder.nodes[before:]],
        "breastcls_probe_export",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(probabilities, TensorProto.FLOAT, ["batch", classes])],
        initializer=[*graph.initializer, *builder.initializers],
        value_info=list(graph.value_info),
    )
    model = helper.make_model(composed, opset_imports=list(extractor.opset_import))
    model.ir_version = extractor.ir_version
    model.functions.extend(extractor.functions)
    return model


class _GraphBuilder:
    """ONNX nodes and initialisers written around the extractor's graph, each name unique."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, what: str) -> str:
        self._count += 1
        return f"breastcls/{what}_{self._count}"

    def constant(self, value: npt.ArrayLike, what: str, dtype: Any = np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(what)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def add(self, op: str, inputs: list[str], output: str = "", **attributes: Any) -> str:
        from onnx import helper

        output = output or self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def normalise(self, spec: FrozenExtractor) -> str:
        """``(image / 255 - mean) / std`` in float32, as the extractor's runner does."""
        scaled = self.add("Div", ["image", self.constant(255.0, "scale")])
        centred = self.add("Sub", [scaled, self.constant(spec.mean, "mean")])
        return self.add("Div", [centred, self.constant(spec.std, "std")])

    def embedding(self, output: str, rule: tuple[int, ...]) -> str:
        """The embedding taken from the extractor's ``output`` by ``rule``, rounded to float16
        and back as the cache stores it."""
        from onnx import TensorProto

        if rule == (-1,):
            taken = self.add("Gather", [output, self.constant(0, "first", np.int64)], axis=1)
        elif rule and self.opset >= 18:  # ReduceMean's axes became an input at opset 18
            axes = self.constant(rule, "axes", np.int64)
            taken = self.add("ReduceMean", [output, axes], keepdims=0)
        elif rule:
            taken = self.add("ReduceMean", [output], axes=list(rule), keepdims=0)
        else:
            taken = output
        half = self.add("Cast", [taken], to=TensorProto.FLOAT16)
        return self.add("Cast", [half], to=TensorProto.FLOAT)


def _probe_nodes(builder: _GraphBuilder, probe: Any, embedding: str) -> str:
    """The probe's layers as ONNX nodes (Normalization, Dense with its activation, Dropout
    left out at inference); return the probabilities' name.

    Raises:
        OutputError: A layer with no equivalent here (a probe breastcls did not fit).
    """
    steps: dict[str, Callable[[Any, str], str]] = {
        "InputLayer": lambda layer, x: x,
        "Dropout": lambda layer, x: x,
        "Normalization": lambda layer, x: _standardise(builder, layer, x),
        "Dense": lambda layer, x: _dense(builder, layer, x),
    }
    x = embedding
    for layer in probe.layers:
        step = steps.get(type(layer).__name__)
        if step is None:
            raise OutputError(
                f"The probe's layer {layer.name} ({type(layer).__name__}) has no ONNX "
                "equivalent in breastcls' probe export; export with --format keras."
            )
        x = step(layer, x)
    return builder.add("Identity", [x], "probabilities")


def _standardise(builder: _GraphBuilder, layer: Any, x: str) -> str:
    """Keras' Normalization: ``(x - mean) / max(sqrt(variance), epsilon)``."""
    import keras

    mean = np.asarray(layer.mean, np.float32).reshape(-1)
    variance = np.asarray(layer.variance, np.float32).reshape(-1)
    scale = np.maximum(np.sqrt(variance), np.float32(keras.backend.epsilon()))
    centred = builder.add("Sub", [x, builder.constant(mean, "probe_mean")])
    return builder.add("Div", [centred, builder.constant(scale, "probe_scale")])


def _dense(builder: _GraphBuilder, layer: Any, x: str) -> str:
    import keras

    kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
    product = builder.add("MatMul", [x, builder.constant(kernel, "kernel")])
    y = builder.add("Add", [product, builder.constant(bias, "bias")])
    name = str(keras.activations.serialize(layer.activation))
    if name == "relu":
        return builder.add("Relu", [y])
    if name == "softmax":
        return builder.add("Softmax", [y], axis=-1)
    if name == "linear":
        return y
    raise OutputError(
        f"The probe's layer {layer.name} has the activation {name!r}, which breastcls' probe "
        "export does not write; export with --format keras."
    )
