"""Stain augmentation: colour deconvolution, HED and colour jitter layers, the ``hed`` and
``pathology`` augmentations (issue 16, item 1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from breastcls.builtin.augmentations import hed_augmentation, pathology_augmentation
from breastcls.config import ModelConfig
from breastcls.layers import (
    HED_FROM_RGB,
    RGB_FROM_HED,
    RandomColorJitter,
    RandomHEDJitter,
    adjust_hed,
    hed_to_rgb,
    rgb_to_hed,
)
from breastcls.model import build_model, load_keras_model
from breastcls.plugins import PluginHost
from breastcls.testing import check_augmentation

Images = npt.NDArray[np.float32]


def _real_images(root: Path, count: int = 6, size: int | None = 96) -> Images:
    """The first ``count`` images of each class, as float32 0-255 RGB (resized when ``size``)."""
    paths = [
        path
        for label in ("benign", "malignant")
        for path in sorted((root / label).glob("*.png"))[: count // 2]
    ]
    images = []
    for path in paths:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if size is not None:
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            images.append(np.asarray(rgb, dtype=np.float32))
    return np.stack(images)


@pytest.fixture(scope="module")
def real(breakhis_dev: Path) -> Images:
    return _real_images(breakhis_dev)


def _run(layer: Any, images: Images, *, training: bool = True) -> Images:
    return np.asarray(layer(keras.ops.convert_to_tensor(images), training=training))


def test_stain_matrices_are_ruifrok_johnstons_and_inverse() -> None:
    assert RGB_FROM_HED[0] == (0.65, 0.70, 0.29)
    product = np.asarray(HED_FROM_RGB) @ np.asarray(RGB_FROM_HED)
    np.testing.assert_allclose(product, np.eye(3), atol=1e-12)
    # A pixel holding only haematoxylin deconvolves to haematoxylin only.
    pure = 256.0 * np.exp(-0.8 * np.asarray(RGB_FROM_HED[0])) - 1.0
    np.testing.assert_allclose(np.asarray(rgb_to_hed(pure[None])), [[0.8, 0.0, 0.0]], atol=1e-5)


def test_deconvolution_then_reconstruction_returns_real_images_within_1_255(
    breakhis_dev: Path,
) -> None:
    images = _real_images(breakhis_dev, count=4, size=None)  # full size, every pixel value
    restored = np.asarray(hed_to_rgb(rgb_to_hed(images)))
    assert float(np.max(np.abs(restored - images))) <= 1.0 / 255.0
    # Black and white, the ends of the range, too.
    ends = np.array([[[[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]]]], dtype=np.float32)
    assert float(np.max(np.abs(np.asarray(hed_to_rgb(rgb_to_hed(ends))) - ends))) <= 1.0 / 255.0


def test_adjust_hed_is_deconvolve_scale_shift_reconstruct(real: Images) -> None:
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.8, 1.2, size=(len(real), 3)).astype(np.float32)
    shift = rng.uniform(-0.2, 0.2, size=(len(real), 3)).astype(np.float32)
    hed = np.asarray(rgb_to_hed(real)) * scale[:, None, None, :] + shift[:, None, None, :]
    expected = np.clip(np.asarray(hed_to_rgb(hed)), 0.0, 255.0)
    np.testing.assert_allclose(np.asarray(adjust_hed(real, scale, shift)), expected, atol=1e-3)


_COLOUR_DEFAULTS = {"brightness": 0.05, "contrast": 0.1, "saturation": 0.1, "hue": 0.02}


def test_hed_jitter_with_colour_is_the_two_layers_in_turn(real: Images) -> None:
    # Compressed into 20-235, so that the HED step leaves every value within 0-255 and the two
    # layers' clip between them changes nothing.
    images = (real * (215.0 / 255.0) + 20.0).astype(np.float32)
    fused = RandomHEDJitter(seed=9, **_COLOUR_DEFAULTS)
    colour = RandomColorJitter(seed=9)
    # The fused layer draws the stain scale and shift, then the colour, from one seed generator:
    # drawing the first two from the colour layer's generator leaves it where the fused one is.
    scale = keras.random.uniform((len(images), 3), 0.95, 1.05, seed=colour.seed_generator)
    shift = keras.random.uniform((len(images), 3), -0.05, 0.05, seed=colour.seed_generator)
    stained = np.asarray(adjust_hed(images, scale, shift))
    assert float(stained.min()) > 0.0 and float(stained.max()) < 255.0
    np.testing.assert_allclose(_run(fused, images), _run(colour, stained), atol=1e-2)


def test_zero_strength_is_the_identity(real: Images) -> None:
    hed = RandomHEDJitter(scale=0.0, shift=0.0, seed=1)
    colour = RandomColorJitter(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, seed=1)
    for layer in (hed, colour):
        assert float(np.max(np.abs(_run(layer, real) - real))) <= 1e-4, layer.name


def _name(factory: Any) -> str:
    return str(factory.__name__)


@pytest.mark.parametrize(
    "factory",
    [RandomHEDJitter, RandomColorJitter, hed_augmentation, pathology_augmentation],
    ids=_name,
)
def test_identity_at_inference(factory: Any, real: Images) -> None:
    layer = factory(seed=3)
    np.testing.assert_array_equal(_run(layer, real, training=False), real)


@pytest.mark.parametrize(
    "factory", [RandomHEDJitter, RandomColorJitter, pathology_augmentation], ids=_name
)
def test_a_fixed_seed_reproduces_the_draws(factory: Any, real: Images) -> None:
    first, second = _run(factory(seed=7), real), _run(factory(seed=7), real)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, real, atol=1.0)  # it did change the images
    assert not np.allclose(first, _run(factory(seed=8), real), atol=1e-3)


@pytest.mark.parametrize("factory", [RandomHEDJitter, RandomColorJitter], ids=_name)
def test_each_image_of_a_batch_gets_its_own_draw(factory: Any, real: Images) -> None:
    same = np.repeat(real[:1], 8, axis=0)
    out = _run(factory(seed=0), same)
    differences = [float(np.max(np.abs(out[0] - out[i]))) for i in range(1, len(out))]
    assert min(differences) > 0.5, differences


_FULL_COLOUR = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.5}


@pytest.mark.parametrize(
    ("factory", "strength"),
    [
        (RandomHEDJitter, {"scale": 1.0, "shift": 1.0}),
        (RandomColorJitter, _FULL_COLOUR),
        (RandomHEDJitter, {"scale": 1.0, "shift": 1.0, **_FULL_COLOUR}),
    ],
    ids=["hed", "colour", "hed-and-colour"],
)
def test_outputs_stay_in_0_255_even_at_full_strength(
    factory: Any, strength: dict[str, float], real: Images
) -> None:
    layer = factory(seed=0, **strength)
    ends = np.zeros_like(real[:2])
    ends[1] = 255.0
    for images in (real, ends):
        for _ in range(3):
            out = _run(layer, images)
            assert np.all(np.isfinite(out))
            assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0


def test_hed_light_moves_real_pixels_by_a_few_levels(real: Images) -> None:
    change = np.abs(_run(RandomHEDJitter(seed=0), real) - real)
    # Mild: a few grey levels on average, never a different image.
    assert 0.5 < float(change.mean()) < 20.0


@pytest.mark.parametrize("bad", [{"scale": -0.1}, {"shift": 1.5}])
def test_hed_jitter_rejects_strengths_out_of_range(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        RandomHEDJitter(**bad)


def test_colour_jitter_rejects_strengths_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"hue=0\.7"):
        RandomColorJitter(hue=0.7)


def test_mixed_precision_computes_in_float32(real: Images) -> None:
    reference = [_run(RandomHEDJitter(seed=4), real), _run(RandomColorJitter(seed=4), real)]
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        mixed = [_run(RandomHEDJitter(seed=4), real), _run(RandomColorJitter(seed=4), real)]
    finally:
        keras.config.set_dtype_policy(previous)
    for want, got in zip(reference, mixed, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-3)


def test_pathology_layers_draw_with_independent_seeds() -> None:
    block = pathology_augmentation(seed=11)
    assert block.name == "augmentation"
    names = [layer.name for layer in block.layers]
    assert names == ["flip_left_right", "flip_top_bottom", "rotation", "zoom", "stain_jitter"]
    colour = {key: block.layers[-1].get_config()[key] for key in _COLOUR_DEFAULTS}
    assert colour == _COLOUR_DEFAULTS  # RandomColorJitter's light defaults, in the same pass
    seeds = [layer.seed for layer in block.layers]
    assert len(set(seeds)) == len(seeds)
    assert all(
        seed is None for seed in (layer.seed for layer in pathology_augmentation(seed=None).layers)
    )
    assert hed_augmentation(seed=11).name == "augmentation"


def test_registry_lists_hed_and_pathology_and_they_conform(tmp_path: Path) -> None:
    registry = PluginHost().augmentations
    for name in ("hed", "pathology"):
        augmentation = registry.get(name)
        check_augmentation(augmentation, image_size=32, work_dir=tmp_path / name, name=name)


def test_a_pathology_model_trains_saves_and_loads_in_safe_mode(
    tmp_path: Path, real: Images
) -> None:
    config = ModelConfig(backbone="smallcnn", augmentation="pathology", weights=None)
    model = build_model(config, n_classes=2, image_size=96, seed=5)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    labels = np.array([0, 1] * (len(real) // 2))
    loss = model.train_on_batch(real, labels)  # the augmentation runs in a traced training step
    assert np.isfinite(loss)
    before = np.asarray(model.predict(real, verbose=0))
    model.save(tmp_path / "pathology.keras")
    loaded = load_keras_model(tmp_path / "pathology.keras")
    np.testing.assert_allclose(np.asarray(loaded.predict(real, verbose=0)), before, atol=1e-5)
    block = loaded.get_layer("augmentation")
    assert type(block.layers[-1]).__name__ == "RandomHEDJitter"
    assert block.layers[-1].get_config() == model.get_layer("augmentation").layers[-1].get_config()
