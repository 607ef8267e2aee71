"""Test-time augmentation: the dihedral group, shapes, batching, invariance."""

from __future__ import annotations

import numpy as np
import pytest

from breastcls.builtin.tta import D8_ELEMENTS, FLIPS_ELEMENTS, DihedralTTA


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

    from breastcls.evaluation.inference import iter_probabilities, predict_probabilities

    model = _invariant_model(16)
    # Small values keep the softmax away from saturation, so equality means something.
    images = np.random.default_rng(1).uniform(0, 8, size=(10, 16, 16, 3)).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(4)
    plain = np.asarray(model.predict(images, verbose=0))  # type: ignore[attr-defined]
    d8 = predict_probabilities(model, batches, tta=DihedralTTA(elements=D8_ELEMENTS))
    assert d8.shape == (10, 2)
    np.testing.assert_allclose(d8, plain, atol=1e-5)
    assert not np.allclose(plain[:, 0], plain[0, 0])  # the model is not constant
    sizes = [
        len(p) for p in iter_probabilities(model, batches, tta=DihedralTTA(elements=D8_ELEMENTS))
    ]
    assert sizes == [4, 4, 2]


def test_tta_runs_the_model_once_per_batch_on_all_copies() -> None:
    import keras
    import tensorflow as tf

    from breastcls.evaluation.inference import predict_probabilities

    seen: list[int] = []

    class Recording(keras.layers.Layer):  # type: ignore[misc]
        def call(self, x: object) -> object:
            seen.append(int(x.shape[0]) if x.shape[0] is not None else -1)  # type: ignore[attr-defined]
            return x

    inputs = keras.Input(shape=(8, 8, 3))
    x = Recording()(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images = np.random.default_rng(2).uniform(0, 255, size=(6, 8, 8, 3)).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(6)
    out = predict_probabilities(model, batches, tta=DihedralTTA(elements=D8_ELEMENTS))
    assert out.shape == (6, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # Traced once, on one stacked batch of 8 x 6 images (not 8 calls, not per image).
    assert [n for n in seen if n != -1] == [48]  # -1: the symbolic call building the model
    # The average of the eight views: check against eight separate plain predictions.
    views = DihedralTTA(elements=D8_ELEMENTS)(images).numpy()
    expected = np.mean([model(v, training=False).numpy() for v in views], axis=0)
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["none", "flips", "d8"])
def test_tta_output_shape_per_preset(host: object, name: str) -> None:
    tta = host.tta.get(name)  # type: ignore[attr-defined]
    copies = tta(_asymmetric_batch())
    assert tuple(copies.shape) == (tta.size, 3, 6, 6, 3)
