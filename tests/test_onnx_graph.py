"""Hard-sigmoid and hard-swish in ONNX graphs: fused into one node for float32 sessions (the
ONNX conversions and exports), spelled out again for int8 quantisation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from breastcls.onnx_graph import expand_hard_activations, fuse_hard_activations  # noqa: E402


def _scalar(name: str, value: float) -> Any:
    return helper.make_tensor(name, TensorProto.FLOAT, [], [value])


def _chains_graph(opset: int = 17) -> Any:
    """Four chains on ``x`` (8 values):

    - ``swish``: ``x * Mul(Clip(Add(x, 3), 0, 6), 1/6)``: a hard-swish;
    - ``gate``: ``z * Div(Clip(Add(3, x), 0, 6), 6)``: a hard-sigmoid gating another tensor;
    - ``shared``: a chain whose ``Clip`` is also a graph output: left alone;
    - ``shifted``: ``Add(x, 2)``: no hard-sigmoid, left alone.
    """
    node = helper.make_node
    nodes = [
        node("Add", ["x", "three"], ["a1"]),
        node("Clip", ["a1", "zero", "six"], ["c1"]),
        node("Mul", ["c1", "sixth"], ["s1"]),
        node("Mul", ["s1", "x"], ["swish"]),
        node("Add", ["three", "x"], ["a2"]),
        node("Clip", ["a2", "zero", "six"], ["c2"]),
        node("Div", ["c2", "six"], ["s2"]),
        node("Mul", ["z", "s2"], ["gate"]),
        node("Add", ["x", "three"], ["a3"]),
        node("Clip", ["a3", "zero", "six"], ["shared_clip"]),
        node("Mul", ["shared_clip", "sixth"], ["shared"]),
        node("Add", ["x", "two"], ["a4"]),
        node("Clip", ["a4", "zero", "six"], ["c4"]),
        node("Mul", ["c4", "sixth"], ["shifted"]),
    ]
    vector = [8]
    graph = helper.make_graph(
        nodes,
        "chains",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, vector) for n in ("x", "z")],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, vector)
            for n in ("swish", "gate", "shared_clip", "shared", "shifted")
        ],
        [
            _scalar("three", 3.0),
            _scalar("zero", 0.0),
            _scalar("six", 6.0),
            _scalar("sixth", 1 / 6),
            _scalar("two", 2.0),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: Any) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.linspace(-5, 5, 8, dtype=np.float32)  # both sides of the clip points -3 and 3
    z = np.arange(8, dtype=np.float32)
    return [np.asarray(a) for a in session.run(None, {"x": x, "z": z})]


def _ops(model: Any) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_hard_swish_and_hard_sigmoid_chains_become_one_node_with_the_same_values() -> None:
    model = _chains_graph()
    expected = _run(model)
    assert fuse_hard_activations(model) == 2
    onnx.checker.check_model(model)
    ops = _ops(model)
    assert ops.count("HardSwish") == 1 and ops.count("HardSigmoid") == 1
    assert len(ops) == 14 - 4 - 3 + 2  # the two chains' seven nodes are two
    found = _run(model)
    for want, got in zip(expected, found, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)
    # x * relu6(x + 3) / 6 at x = -5, ..., 5: 0 below -3, x above 3.
    np.testing.assert_allclose(found[0][[0, -1]], [0.0, 5.0], atol=1e-6)
    # The constants only the fused chains read are gone; those still read are kept.
    kept = {t.name for t in model.graph.initializer}
    assert kept == {"three", "zero", "six", "sixth", "two"}


def test_only_hard_sigmoid_is_fused_below_opset_14() -> None:
    model = _chains_graph(opset=13)
    assert fuse_hard_activations(model) == 2
    ops = _ops(model)
    assert "HardSwish" not in ops and ops.count("HardSigmoid") == 2
    expected = _run(_chains_graph(opset=13))
    for want, got in zip(expected, _run(model), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_expanding_gives_back_add_clip_and_mul_with_the_same_values() -> None:
    model = _chains_graph()
    expected = _run(model)
    fuse_hard_activations(model)
    assert expand_hard_activations(model) == 2
    onnx.checker.check_model(model)
    ops = _ops(model)
    assert "HardSwish" not in ops and "HardSigmoid" not in ops
    assert ops.count("Clip") == 4  # two expanded, two never fused
    for want, got in zip(expected, _run(model), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def _mobilenet_features(size: int) -> Any:
    """MobileNetV3Small's pooled features (no weights to download), its batch normalisation
    given spread statistics so that the features differ between images."""
    import keras

    keras.utils.set_random_seed(5)
    model = keras.applications.MobileNetV3Small(
        input_shape=(size, size, 3), weights=None, include_top=False, pooling="avg",
        include_preprocessing=True,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma, rng.normal(0, 0.5, beta.shape).astype(np.float32), mean,
                               np.full_like(variance, 0.05)])  # fmt: skip
    return model


def _real_images(folder: Path, size: int, count: int) -> np.ndarray:
    from PIL import Image

    paths = sorted(folder.glob("*/*.png"))[:: 269 // count][:count]
    return np.stack(
        [
            np.asarray(Image.open(p).convert("RGB").resize((size, size)), dtype=np.float32)
            for p in paths
        ]
    )


@pytest.mark.real_data
def test_a_mobilenetv3_conversion_has_its_hard_activations_fused_and_int8_spells_them_out(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    from breastcls.conversion import write_onnx
    from breastcls.inference.quantization import quantize_onnx

    size = 64
    model = _mobilenet_features(size)
    images = _real_images(breakhis_dev, size, 12)
    expected = np.asarray(model.predict(images, verbose=0))
    assert expected.std(axis=0).mean() > 1.0  # features that differ between the images
    path = tmp_path / "mobilenet.onnx"
    write_onnx(model, path)
    graph = onnx.load(str(path))
    ops = _ops(graph)
    # MobileNetV3Small: 18 hard-swish activations and 9 hard-sigmoid gates (squeeze-excite).
    assert (ops.count("HardSwish"), ops.count("HardSigmoid"), ops.count("Clip")) == (18, 9, 0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run(None, {"image": images})[0]
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())

    int8 = tmp_path / "mobilenet-int8.onnx"
    quantize_onnx(path, int8, [images[:6], images[6:]], "image")
    quantised = onnx.load(str(int8))
    assert "HardSwish" not in _ops(quantised) and "HardSigmoid" not in _ops(quantised)
    # Spelled out into Add and Mul (each Clip folded into its integer range), every one of them
    # between dequantised inputs: ONNX Runtime runs them as integer kernels.
    producer = {out: node.op_type for node in quantised.graph.node for out in node.output}
    elementwise = [n for n in quantised.graph.node if n.op_type in ("Add", "Mul")]
    assert len(elementwise) >= 2 * 18 + 2 * 9
    assert all(producer.get(i) == "DequantizeLinear" for n in elementwise for i in n.input)
