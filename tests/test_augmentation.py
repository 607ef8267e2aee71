"""The default augmentation draws each transform, and each flip axis, independently.

Keras 3 layers given one seed draw the same random numbers, so the augmentation's layers need
seeds of their own; and ``RandomFlip("horizontal_and_vertical")`` flips both axes with one coin,
which never mirrors an image. These tests sample the per-image parameters the layers draw in
training (``get_random_transformation``, which each layer's ``call`` uses) and check them
statistically, then check on pixels that mirrors really come out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from breastcls.builtin.augmentations import default_augmentation, seed_augmentation

STEPS, BATCH = 20, 200  # 4,000 draws, taken as training takes them: batch after batch
N = STEPS * BATCH
# For independent draws the sample correlation is about N(0, 1/N): sigma = 1/sqrt(4000) = 0.016,
# so 0.06 is ~3.8 sigma (a false alarm ~1e-4 per pair), while one shared seed gives |r| > 0.8.
MAX_CORRELATION = 0.06
# A fair coin's share over 4,000 draws has sigma = 0.5/sqrt(4000) = 0.008; 0.03 is ~3.8 sigma.
MAX_FLIP_BIAS = 0.03


def _draws(augmentation: Any) -> dict[str, np.ndarray]:
    """Per-image parameters of ``STEPS`` training batches: flips, angle (degrees), zoom."""
    import keras

    layers = augmentation.layers
    images = np.zeros((BATCH, 8, 8, 3), np.float32)
    h_flip, v_flip, angle, zoom_y, zoom_x = [], [], [], [], []
    for _ in range(STEPS):
        h, v = np.zeros(BATCH, bool), np.zeros(BATCH, bool)
        for layer in layers:
            drawn = layer.get_random_transformation(images, training=True)
            if isinstance(layer, keras.layers.RandomFlip):
                flips = np.asarray(drawn["flips"]).reshape(BATCH)
                if layer.mode in ("horizontal", "horizontal_and_vertical"):
                    h ^= flips
                if layer.mode in ("vertical", "horizontal_and_vertical"):
                    v ^= flips
            elif isinstance(layer, keras.layers.RandomRotation):
                angle.append(np.asarray(drawn["angle"]).reshape(BATCH))
            elif isinstance(layer, keras.layers.RandomZoom):
                zoom_y.append(np.asarray(drawn["height_zoom"]).reshape(BATCH))
                zoom_x.append(np.asarray(drawn["width_zoom"]).reshape(BATCH))
        h_flip.append(h)
        v_flip.append(v)
    return {
        "h_flip": np.concatenate(h_flip),
        "v_flip": np.concatenate(v_flip),
        "angle": np.concatenate(angle).astype(np.float64),
        "zoom": np.concatenate(zoom_y).astype(np.float64),
        "zoom_x": np.concatenate(zoom_x).astype(np.float64),
    }


@pytest.fixture(scope="module")
def draws() -> dict[str, np.ndarray]:
    return _draws(default_augmentation(seed=11))


def _dihedral_element(h_flip: bool, v_flip: bool, angle: float) -> tuple[int, ...]:
    """The symmetry of the square nearest to flipping, then rotating by ``angle``."""
    mirror_x, mirror_y = np.diag([-1, 1]), np.diag([1, -1])
    quarter = np.array([[0, -1], [1, 0]])
    turns = int(np.rint(angle / 90.0)) % 4
    matrix = (
        np.linalg.matrix_power(quarter, turns)
        @ np.linalg.matrix_power(mirror_y, int(v_flip))
        @ np.linalg.matrix_power(mirror_x, int(h_flip))
    )
    return tuple(int(value) for value in matrix.ravel())


def test_default_augmentation_draws_are_pairwise_uncorrelated(
    draws: dict[str, np.ndarray],
) -> None:
    names = ("h_flip", "v_flip", "angle", "zoom")
    correlation = np.corrcoef(np.stack([draws[name].astype(np.float64) for name in names]))
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            assert abs(correlation[i, j]) < MAX_CORRELATION, (
                f"{names[i]} and {names[j]} correlate: r = {correlation[i, j]:.3f} over {N} draws"
            )


def test_default_augmentation_ranges(draws: dict[str, np.ndarray]) -> None:
    # Each flip is a fair coin of its own: mirrors are possible, not only half turns.
    for name in ("h_flip", "v_flip"):
        assert abs(draws[name].mean() - 0.5) < MAX_FLIP_BIAS, (name, draws[name].mean())
    assert np.mean(draws["h_flip"] != draws["v_flip"]) > 0.4
    # The angle is continuous over (-90°, 90°): about uniform over 10° bins (expected 222
    # each, sigma ~15), not a few quarter turns.
    angle = draws["angle"]
    assert angle.min() >= -90.0 and angle.max() <= 90.0
    assert angle.min() < -88.0 and angle.max() > 88.0
    assert len(np.unique(angle)) > 0.99 * N
    counts, _ = np.histogram(angle, bins=18, range=(-90.0, 90.0))
    assert counts.min() > 150, counts
    # One zoom factor for both axes, within ±20%, spanning the range.
    zoom = draws["zoom"]
    np.testing.assert_array_equal(draws["zoom_x"], zoom)
    assert zoom.min() >= 0.8 - 1e-6 and zoom.max() <= 1.2 + 1e-6
    assert zoom.min() < 0.81 and zoom.max() > 1.19


def test_default_augmentation_reaches_every_dihedral_element_equally(
    draws: dict[str, np.ndarray],
) -> None:
    # Two fair, independent flips and a uniform angle in (-90°, 90°) rounded to a quarter turn
    # make each of the 8 symmetries equally likely: 500 of 4,000 each (sigma ~21).
    elements: dict[tuple[int, ...], int] = {}
    for h, v, a in zip(draws["h_flip"], draws["v_flip"], draws["angle"], strict=True):
        key = _dihedral_element(bool(h), bool(v), float(a))
        elements[key] = elements.get(key, 0) + 1
    assert len(elements) == 8, elements
    assert all(400 < count < 600 for count in elements.values()), elements


def test_default_augmentation_mirrors_real_pixels() -> None:
    import keras

    augmentation = default_augmentation(seed=11)
    flips = [layer for layer in augmentation.layers if isinstance(layer, keras.layers.RandomFlip)]
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, size=(6, 6, 3)).astype(np.float32)  # no symmetry at all
    outputs = keras.ops.convert_to_tensor(np.repeat(image[None], 64, axis=0))
    for layer in flips:
        outputs = layer(outputs, training=True)
    outputs = np.asarray(outputs)
    candidates = {
        "identity": image,
        "left-right mirror": image[:, ::-1],
        "top-bottom mirror": image[::-1, :],
        "half turn": np.rot90(image, 2, axes=(0, 1)),
    }
    seen = {
        name
        for output in outputs
        for name, candidate in candidates.items()
        if np.array_equal(output, candidate)
    }
    assert seen == set(candidates), f"flips of 64 copies gave only {sorted(seen)}"


def test_default_augmentation_is_one_layer_reproducible_per_seed() -> None:
    import keras

    images = keras.ops.convert_to_tensor(
        np.random.default_rng(1).uniform(0, 255, size=(8, 16, 16, 3)).astype(np.float32)
    )
    first, again = default_augmentation(seed=5), default_augmentation(seed=5)
    assert first.name == "augmentation" and isinstance(first, keras.layers.Layer)
    seeds = [layer.seed for layer in first.layers]
    assert len(set(seeds)) == len(seeds), seeds
    assert seeds != [layer.seed for layer in default_augmentation(seed=6).layers]
    assert all(layer.seed is None for layer in default_augmentation(seed=None).layers)
    assert len({layer.seed for layer in default_augmentation(seed=-1).layers}) == 4
    np.testing.assert_array_equal(
        np.asarray(first(images, training=True)), np.asarray(again(images, training=True))
    )
    np.testing.assert_array_equal(np.asarray(first(images, training=False)), np.asarray(images))


def test_seed_augmentation_keeps_its_random_stream() -> None:
    """``--augmentation seed`` reproduces the blog bit for bit: its draws must not move."""
    import keras

    images = np.arange(2 * 8 * 8 * 3, dtype=np.float32).reshape(2, 8, 8, 3)
    layer = seed_augmentation(seed=0)
    assert layer.name == "augmentation" and layer.seed == 0
    outputs = np.asarray(layer(keras.ops.convert_to_tensor(images), training=True))
    np.testing.assert_allclose(outputs[:, 0, :3, 0], GOLDEN_SEED_OUTPUT, rtol=1e-5, atol=1e-3)


# Recorded from the seed augmentation as the blog-faithful version shipped it (seed 0, CPU).
GOLDEN_SEED_OUTPUT = np.array(
    [[94.47374, 134.30884, 174.14395], [370.34192, 344.24188, 315.8181]], np.float32
)
