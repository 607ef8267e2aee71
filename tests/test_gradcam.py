"""Grad-CAM: finds the feature map by structure and puts the heat where the decision is made."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from breastcls.evaluation.gradcam import find_feature_layer, gradcam_heatmaps

SIZE = 32


def _red_detector(gain: float = 20.0, final: str = "dense") -> Any:
    """Input -> nested 'backbone' (1x1 conv: channel 0 = red, channel 1 = green) -> GAP -> Dense.

    The malignant logit grows with the amount of red only, so the decision depends on where
    the red is, and on nothing else. ``gain`` scales the logits (2000 saturates the softmax);
    ``final`` ends the model in ``Dense(softmax)`` (``dense``), or in a linear ``Dense``
    followed by a ``Softmax`` (``softmax``) or an ``Activation("softmax")`` (``activation``)
    layer.
    """
    import keras

    backbone_in = keras.Input(shape=(SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="colour_split")
    backbone = keras.Model(backbone_in, conv(backbone_in), name="any_backbone")
    conv.set_weights([np.array([[[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]], dtype=np.float32)])
    inputs = keras.Input(shape=(SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1.0, name="preprocessing")(inputs)
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax" if final == "dense" else None, name="head")
    outputs = dense(x)
    if final == "softmax":
        outputs = keras.layers.Softmax(dtype="float32")(outputs)
    elif final == "activation":
        outputs = keras.layers.Activation("softmax", dtype="float32")(outputs)
    model = keras.Model(inputs, outputs)
    kernel = np.array([[-gain, gain], [0.0, 0.0]], dtype=np.float32)
    dense.set_weights([kernel, np.zeros(2, dtype=np.float32)])
    return model


def _image(red_at: tuple[int, int], green_at: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.0, 0.02, size=(SIZE, SIZE, 3)).astype(np.float32)
    (ry, rx), (gy, gx) = red_at, green_at
    image[ry : ry + 8, rx : rx + 8, 0] = 1.0
    image[gy : gy + 8, gx : gx + 8, 1] = 1.0
    return image


@pytest.fixture(params=["float32", "mixed_float16", "mixed_bfloat16"])
def dtype_policy(request: pytest.FixtureRequest) -> Iterator[str]:
    """Build models under each precision ``--precision`` can give (GPU float16, CPU bfloat16)."""
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield str(request.param)
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize(("red_at", "green_at"), [((2, 3), (20, 22)), ((22, 20), (4, 2))])
def test_heat_is_where_the_decision_is_made(
    red_at: tuple[int, int], green_at: tuple[int, int], dtype_policy: str
) -> None:
    model = _red_detector()
    assert model.get_layer("head").dtype_policy.name == dtype_policy
    assert find_feature_layer(model).name == "any_backbone"
    image = _image(red_at, green_at)
    heat = gradcam_heatmaps(model, image[None], [1])[0]
    assert heat.shape == (SIZE, SIZE)
    assert heat.max() == pytest.approx(1.0)
    assert heat.min() >= 0.0
    y, x = red_at
    region = np.zeros_like(heat, dtype=bool)
    region[y : y + 8, x : x + 8] = True
    assert heat[region].sum() / heat.sum() > 0.6  # the region is 1/16 of the image
    peak = np.unravel_index(np.argmax(heat), heat.shape)
    assert region[peak]
    gy, gx = green_at
    assert heat[gy : gy + 8, gx : gx + 8].mean() < 0.05  # the green patch plays no part


def _assert_heat_on(heat: np.ndarray, red_at: tuple[int, int], green_at: tuple[int, int]) -> None:
    assert heat.max() == pytest.approx(1.0)
    y, x = red_at
    region = np.zeros_like(heat, dtype=bool)
    region[y : y + 8, x : x + 8] = True
    assert heat[region].sum() / heat.sum() > 0.6
    gy, gx = green_at
    assert heat[gy : gy + 8, gx : gx + 8].mean() < 0.05


@pytest.mark.parametrize("final", ["dense", "softmax", "activation"])
def test_a_saturated_softmax_still_explains_through_the_pre_softmax_score(
    final: str, dtype_policy: str
) -> None:
    """Selvaraju et al. differentiate the class score y^c before the softmax.

    With logits ~ +-280 the softmax gives exactly 1 and 0, so the gradient of the probability
    is exactly 0 everywhere and a probability-based Grad-CAM is an all-zero map; the score's
    gradient does not depend on how confident the model is.
    """
    import tensorflow as tf

    red_at, green_at = (2, 3), (20, 22)
    image = _image(red_at, green_at)
    model = _red_detector(gain=2000.0, final=final)
    probabilities = np.asarray(model(image[None]), dtype=np.float64)
    assert probabilities[0].tolist() == [0.0, 1.0]  # saturated
    batch = tf.constant(image[None])
    with tf.GradientTape() as tape:
        tape.watch(batch)
        probability = tf.cast(model(batch)[:, 1], tf.float32)
    assert not np.any(tape.gradient(probability, batch).numpy())  # what the old code saw

    heat = gradcam_heatmaps(model, image[None], [1])[0]
    _assert_heat_on(heat, red_at, green_at)
    # The map is the same as for an unsaturated model: the score is linear in the gain.
    reference = gradcam_heatmaps(_red_detector(gain=20.0, final=final), image[None], [1])[0]
    np.testing.assert_allclose(heat, reference, atol=2e-2)


def test_the_explained_score_is_the_pre_softmax_logit(dtype_policy: str) -> None:
    """The map weighs each feature by its weight in the class's own logit.

    Here benign = 20 x green and malignant = 20 x red + 40 x green (both means over the image).
    Malignant's logit counts green twice as much as red: its map is 1 on the green patch and 1/2
    on the red one. Its probability only sees the difference of the logits (20 x red + 20 x green),
    so a probability-based map gives both patches the same heat.
    """
    import keras

    red_at, green_at = (2, 3), (20, 22)
    image = _image(red_at, green_at)
    model = _red_detector()
    dense = model.get_layer("head")
    kernel = np.array([[0.0, 20.0], [20.0, 40.0]], dtype=np.float32)
    dense.set_weights([kernel, np.zeros(2, dtype=np.float32)])
    logits = image.mean(axis=(0, 1))[:2] @ kernel
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    probabilities = keras.ops.convert_to_numpy(model(image[None])).astype(np.float64)[0]
    np.testing.assert_allclose(probabilities, expected, atol=5e-3)
    assert 0.2 < probabilities[1] < 0.99  # not saturated: only the score differs here

    heat = gradcam_heatmaps(model, image[None], [1])[0]
    (ry, rx), (gy, gx) = red_at, green_at
    green = heat[gy + 1 : gy + 7, gx + 1 : gx + 7].mean()
    red = heat[ry + 1 : ry + 7, rx + 1 : rx + 7].mean()
    assert green == pytest.approx(1.0, abs=0.03)
    assert red / green == pytest.approx(0.5, abs=0.05)  # the probability's map gives 1.0


def test_breastcls_model_uses_its_backbone_whatever_its_name() -> None:
    from breastcls import ModelConfig
    from breastcls.model import build_model

    model = build_model(
        ModelConfig(backbone="smallcnn", weights=None, augmentation="none"),
        n_classes=2,
        image_size=64,
    )
    layer = find_feature_layer(model)
    assert layer.name == "smallcnn"
    images = np.random.default_rng(3).uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
    heat = gradcam_heatmaps(model, images, [0, 1])
    assert heat.shape == (2, 64, 64)
    assert heat.min() >= 0.0 and heat.max() <= 1.0 + 1e-6


def test_a_model_without_a_feature_map_is_refused() -> None:
    import keras

    from breastcls import ModelLoadError

    inputs = keras.Input(shape=(8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(ModelLoadError, match="4-D"):
        find_feature_layer(model)


def test_an_overlay_title_wraps_a_long_file_name_instead_of_cutting_it() -> None:
    from breastcls.evaluation.gradcam import TITLE_WIDTH, overlay_title

    name = "SOB_M_DC-14-10926-400-011_with_a_longer_suffix.png"
    title = overlay_title(name, "true malignant, pred benign 0.97")
    lines = title.splitlines()
    assert lines[-1] == "true malignant, pred benign 0.97"
    assert "".join(lines[:-1]) == name and len(lines) >= 2
    assert all(len(line) <= TITLE_WIDTH for line in lines[:-1])
