"""Model building: the seed architecture, parameter counts, preprocessing, augmentation, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from breastcls import ConfigError, ModelConfig, load_model
from breastcls.model import build_model
from breastcls.plugins import PluginHost


def test_densenet201_with_seed_head_has_the_documented_parameter_count(host: PluginHost) -> None:
    # The count does not depend on the input size, so a 64 px build checks the 224 px model.
    model = build_model(
        ModelConfig(backbone="densenet201", head="seed", augmentation="none", weights=None),
        n_classes=2,
        image_size=64,
        host=host,
    )
    assert model.count_params() == 18_333_506
    head = [layer.name for layer in model.layers[-4:]]
    assert head == ["head_pool", "head_dropout", "head_batchnorm", "head_probabilities"]
    assert model.get_layer("head_dropout").rate == 0.5
    probabilities = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_head_adapts_to_the_number_of_classes(host: PluginHost) -> None:
    model = build_model(
        ModelConfig(backbone="smallcnn", weights=None), n_classes=8, image_size=32, host=host
    )
    assert model.output_shape == (None, 8)
    # smallcnn: 4 conv blocks (3x3, no bias) + BatchNorm, then BN(128) and Dense(128 -> 8).
    convs = 3 * 3 * (3 * 16 + 16 * 32 + 32 * 64 + 64 * 128)
    batchnorms = 4 * (16 + 32 + 64 + 128)
    assert model.count_params() == convs + batchnorms + 4 * 128 + 128 * 8 + 8


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("none", [0.0, 127.5, 255.0]),
        ("tf", [-1.0, 0.0, 1.0]),
        ("torch", [(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (1 - 0.406) / 0.225]),
        ("caffe", [255.0 - 103.939, 127.5 - 116.779, 0.0 - 123.68]),
    ],
)
def test_preprocessing_modes(mode: str, expected: list[float]) -> None:
    from breastcls.layers import ImagePreprocessing

    pixel = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    out = np.asarray(ImagePreprocessing(mode=mode)(pixel))
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-5, atol=1e-4)


def test_seed_augmentation_is_inactive_at_inference_and_only_flips_without_zoom() -> None:
    from breastcls.layers import SeedAugmentation

    image = np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 3)).astype(np.float32)
    layer = SeedAugmentation(rotation_degrees=0.0, zoom_range=0.0, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(image, training=False)), image)
    out = np.asarray(layer(image, training=True))
    assert out.shape == image.shape
    for original, augmented in zip(image, out, strict=True):
        flips = [original, original[:, ::-1], original[::-1], original[::-1, ::-1]]
        assert min(np.abs(augmented - f).max() for f in flips) < 1e-3


def test_seed_augmentation_draws_mirrored_zooms() -> None:
    from breastcls.layers import SeedAugmentation

    # A left-right ramp: with zoom factors from U(-1, 3) some images come out mirrored
    # (ramp decreasing) even with flips impossible to tell apart from it; none are constant.
    ramp = np.tile(np.linspace(0, 255, 32, dtype=np.float32), (32, 1))
    batch = np.repeat(np.stack([ramp] * 3, axis=-1)[None], 64, axis=0)
    layer = SeedAugmentation(rotation_degrees=0.0, zoom_range=2.0, seed=1)
    out = np.asarray(layer(batch, training=True))
    changed = [not np.allclose(o, batch[0], atol=1.0) for o in out]
    assert sum(changed) > 48


def test_on_tensorflow_the_seed_augmentation_stays_out_of_xla(host: PluginHost) -> None:
    # TensorFlow's affine transform has no XLA kernel: with --jit the trainer compiles the rest
    # of the step by auto-clustering instead of failing on the whole-step compilation.
    from breastcls.builtin.trainer import _supports_xla

    def model(augmentation: str) -> object:
        config = ModelConfig(backbone="smallcnn", augmentation=augmentation, weights=None)
        return build_model(config, n_classes=2, image_size=32, host=host)

    assert not _supports_xla(model("seed"))
    assert _supports_xla(model("none"))


def test_a_missing_weights_file_is_a_clear_error(host: PluginHost, tmp_path: Path) -> None:
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ConfigError, match=r"nope\.weights\.h5' does not exist"):
        build_model(
            ModelConfig(backbone="smallcnn", weights=str(missing)),
            n_classes=2,
            image_size=32,
            host=host,
        )


def test_a_local_weights_file_is_loaded_for_air_gapped_labs(
    host: PluginHost, tmp_path: Path
) -> None:
    import keras

    source = keras.applications.MobileNetV3Small(
        include_top=False, weights=None, input_shape=(64, 64, 3)
    )
    path = tmp_path / "mobilenet_notop.weights.h5"
    source.save_weights(path)
    model = build_model(
        ModelConfig(backbone="mobilenetv3small", weights=str(path)),
        n_classes=2,
        image_size=64,
        host=host,
    )
    backbone = model.get_layer(source.name)
    for loaded, original in zip(backbone.get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, original)


def test_saved_models_reload_in_safe_mode_with_the_same_output(
    host: PluginHost, tmp_path: Path
) -> None:
    model = build_model(
        ModelConfig(backbone="smallcnn", augmentation="seed", weights=None),
        n_classes=2,
        image_size=32,
        host=host,
    )
    images = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    reloaded = load_model(tmp_path / "model.keras").keras_model
    np.testing.assert_allclose(
        reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )
