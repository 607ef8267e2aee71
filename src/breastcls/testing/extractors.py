"""Stand-in foundation models: small frozen extractors written in seconds, for tests, benchmarks
and trying ``--backbone onnx`` / ``--backbone keras`` without downloading a gated model.

:func:`write_onnx_extractor` writes a ViT-shaped ONNX model with :mod:`onnx.helper` (NCHW input,
a patch embedding, a ``tokens`` output ``(n, tokens, d)`` whose first token plays the class
token, and a ``pooled`` output ``(n, d)``), as ``torch.onnx.export`` of a timm ViT gives.
:func:`write_keras_extractor` saves a small CNN ending in a pooled ``(n, d)`` output as
``.keras``. Both are random but fixed by ``seed``: their embeddings separate images by colour and
texture, enough for a probe to learn BreakHis' easier cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_keras_extractor", "write_onnx_extractor"]


def write_onnx_extractor(
    path: Path, *, input_size: int = 32, dimension: int = 16, patch: int = 8, seed: int = 0
) -> Path:
    """Write a ViT-shaped stand-in ONNX model taking ``(n, 3, input_size, input_size)``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.2, size=(dimension, 3, patch, patch)).astype(np.float32)
    tokens = (input_size // patch) ** 2
    nodes = [
        helper.make_node(
            "Conv", ["pixel_values", "patch_weights"], ["patches"],
            kernel_shape=[patch, patch], strides=[patch, patch],
        ),
        helper.make_node("Relu", ["patches"], ["activated"]),
        helper.make_node("Reshape", ["activated", "token_shape"], ["channels_tokens"]),
        helper.make_node("Transpose", ["channels_tokens"], ["tokens"], perm=[0, 2, 1]),
        helper.make_node("ReduceMean", ["tokens", "token_axis"], ["pooled"], keepdims=0),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "standin_vit",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT,
                                       ["batch", 3, input_size, input_size])],
        [
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT,
                                          ["batch", tokens, dimension]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", dimension]),
        ],
        initializer=[
            numpy_helper.from_array(weights, "patch_weights"),
            numpy_helper.from_array(np.array([0, dimension, -1], np.int64), "token_shape"),
            numpy_helper.from_array(np.array([1], np.int64), "token_axis"),
        ],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_keras_extractor(
    path: Path, *, input_size: int = 32, dimension: int = 16, seed: int = 0
) -> Path:
    """Save a small CNN taking ``(n, input_size, input_size, 3)`` with a pooled
    ``(n, dimension)`` output as a ``.keras`` file."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(dimension, 3, strides=2, activation="relu")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs, name="standin_cnn").save(path)
    return path
