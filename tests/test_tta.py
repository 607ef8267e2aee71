"""Test-time augmentation: the dihedral group, shapes, batching, invariance."""

from __future__ import annotations

import numpy as np
import pytest

from breastcls.builtin.tta import D8_ELEMENTS, FLIPS_ELEMENTS, DihedralTTA
from breastcls.inference.runtime import TensorFlowRuntime


def _asymmetric_batch() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, size=(3, 6, 6, 3)).astype(np.float32)


def test_d8_is_the_dihedral_group_of_the_square() -> None:
    images = _asymmetric_batch()
    copies = DihedralTTA(elements=D8_ELEMENTS)(images).numpy()
    assert copies.shape == (8, 3, 6, 6, 3)
    # The eight copies are distinct ...
    flat = {copies[i].tobytes() for i in range(8)}
    assert len(flat) == 8
    # ... and are exactly the four rotations of the image and of its mirror image.
    image = images[0]
    expected = {
        np.ascontiguousarray(np.rot90(candidate, k, axes=(0, 1))).tobytes()
        for candidate in (image, image[:, ::-1])
        for k in range(4)
    }
    assert {copies[i, 0].tobytes() for i in range(8)} == expected
    np.testing.assert_array_equal(copies[0], images)  # identity first


def test_flips_are_identity_mirrors_and_half_turn() -> None:
    images = _asymmetric_batch()
    copies = DihedralTTA(elements=FLIPS_ELEMENTS)(images).numpy()
    assert copies.shape == (4, 3, 6, 6, 3)
    np.testing.assert_array_equal(copies[0], images)
    np.testing.assert_array_equal(copies[1], images[:, :, ::-1])
    np.testing.assert_array_equal(copies[2], images[:, ::-1, :])
    np.testing.assert_array_equal(copies[3], images[:, ::-1, ::-1])


def test_registered_tta(host: object) -> None:
    registry = host.tta  # type: ignore[attr-defined]
    assert registry.names() == ["d8", "flips", "none"]
    assert [registry.get(n).size for n in ("none", "flips", "d8")] == [1, 4, 8]
    assert registry.info("d8").plugin == "builtin_tta"


def _invariant_model(size: int) -> object:
    import keras

    inputs = keras.Input(shape=(size, size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(
        2, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(0, 0.5, 1)
    )(pooled)
    return keras.Model(inputs, outputs)


def test_d8_equals_plain_predictions_for_an_invariant_model() -> None:
    import tensorflow as tf

    model = _invariant_model(16)
    # Small values keep the softmax away from saturation, so equality means something.
    images = np.random.default_rng(1).uniform(0, 8, size=(10, 16, 16, 3)).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(4)
    plain = np.asarray(model.predict(images, verbose=0))  # type: ignore[attr-defined]
    d8 = _probabilities(model, batches, tta=DihedralTTA(elements=D8_ELEMENTS))
    assert d8.shape == (10, 2)
    np.testing.assert_allclose(d8, plain, atol=1e-5)
    assert not np.allclose(plain[:, 0], plain[0, 0])  # the model is not constant
    runtime = TensorFlowRuntime(keras_model=model)
    sizes = [
        len(o.probabilities)
        for o in runtime.iter_outputs(batches, tta=DihedralTTA(elements=D8_ELEMENTS))
    ]
    assert sizes == [4, 4, 2]


def _probabilities(model: object, batches: object, *, tta: DihedralTTA | None) -> np.ndarray:
    """Every batch's probabilities from the one inference loop (the TensorFlow runtime)."""
    runtime = TensorFlowRuntime(keras_model=model)
    return np.concatenate([o.probabilities for o in runtime.iter_outputs(batches, tta=tta)])


def _recording_model() -> tuple[object, list[int], dict[str, object]]:
    """A small model whose ``Recording`` layer counts traces (Python runs only while tracing)
    and, at run time, the model calls and the rows they carried."""
    import keras

    traces: list[int] = []
    counters: dict[str, object] = {}

    class Recording(keras.layers.Layer):  # type: ignore[misc]
        def build(self, input_shape: object) -> None:
            for name in ("calls", "rows"):
                counters[name] = self.add_weight(
                    name=name, shape=(), dtype="int32", initializer="zeros", trainable=False
                )

        def call(self, x: object) -> object:
            from keras import ops

            traces.append(1)
            counters["calls"].assign_add(1)  # type: ignore[attr-defined]
            counters["rows"].assign_add(ops.shape(x)[0])  # type: ignore[attr-defined]
            return x

    inputs = keras.Input(shape=(8, 8, 3))
    x = Recording()(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    traces.clear()  # the symbolic call that built the model
    return model, traces, counters


def test_tta_runs_the_model_once_per_batch_on_all_copies() -> None:
    import tensorflow as tf

    model, _, counters = _recording_model()
    images = np.random.default_rng(2).uniform(0, 255, size=(6, 8, 8, 3)).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(6)
    out = _probabilities(model, batches, tta=DihedralTTA(elements=D8_ELEMENTS))
    assert out.shape == (6, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # One model call on one stacked batch of 8 x 6 images (not 8 calls, not per image).
    assert (int(counters["calls"]), int(counters["rows"])) == (1, 48)  # type: ignore[call-overload]
    # The average of the eight views: check against eight separate plain predictions.
    views = DihedralTTA(elements=D8_ELEMENTS)(images).numpy()
    expected = np.mean([model(v, training=False).numpy() for v in views], axis=0)  # type: ignore[operator]
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("tta", [None, DihedralTTA(elements=D8_ELEMENTS)])
def test_inference_is_traced_once_whatever_the_batch_sizes(tta: DihedralTTA | None) -> None:
    import tensorflow as tf

    model, traces, counters = _recording_model()
    images = np.random.default_rng(3).uniform(0, 255, size=(10, 8, 8, 3)).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(4)  # 4, 4, then 2
    assert _probabilities(model, batches, tta=tta).shape == (10, 3)
    # The last, partial batch reuses the trace: no second trace of the model.
    assert len(traces) == 1
    copies = 1 if tta is None else tta.size
    assert (int(counters["calls"]), int(counters["rows"])) == (3, 10 * copies)  # type: ignore[call-overload]


@pytest.mark.parametrize("name", ["none", "flips", "d8"])
def test_tta_output_shape_per_preset(host: object, name: str) -> None:
    tta = host.tta.get(name)  # type: ignore[attr-defined]
    copies = tta(_asymmetric_batch())
    assert tuple(copies.shape) == (tta.size, 3, 6, 6, 3)
