"""The tf.data pipeline: shapes, one-hot labels, and the seed's resize."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from breastcls import DataConfig, load_dataset
from breastcls.data.images import decode_image, scan_samples
from breastcls.data.pipeline import make_dataset


def test_batches_have_the_model_shape_and_one_hot_labels(small_breakhis: Path) -> None:
    dataset = load_dataset(DataConfig(path=small_breakhis))
    info, bad = scan_samples(dataset.samples)
    assert bad == [] and len(info) == 20
    batches = list(
        make_dataset(
            dataset.samples,
            dataset.class_names,
            image_size=64,
            batch_size=8,
            image_info=info,
        ).as_numpy_iterator()
    )
    assert [images.shape for images, _ in batches] == [
        (8, 64, 64, 3),
        (8, 64, 64, 3),
        (4, 64, 64, 3),
    ]
    labels = np.concatenate([labels for _, labels in batches])
    np.testing.assert_array_equal(labels.sum(axis=1), 1.0)
    assert labels[:, 0].sum() == 10 and labels[:, 1].sum() == 10
    assert min(images.min() for images, _ in batches) >= 0.0
    assert max(images.max() for images, _ in batches) <= 255.0


def test_resize_matches_the_seeds_cv2_resize(breakhis_dev: Path) -> None:
    import cv2

    # A 350x230 original (non-square: squeezed to 224x224 as the seed does).
    path = next((breakhis_dev / "benign").glob("SOB_B_F-14-25197-40-*.png"))
    dataset = load_dataset(DataConfig(path=breakhis_dev))
    sample = next(s for s in dataset.samples if s.path == path)
    info, _ = scan_samples([sample])
    assert info[path].tf_native and (info[path].width, info[path].height) == (350, 230)
    images, _ = next(
        make_dataset(
            [sample], dataset.class_names, image_size=224, batch_size=1, image_info=info
        ).as_numpy_iterator()
    )
    expected = cv2.resize(decode_image(path), (224, 224)).astype(np.float32)
    assert np.abs(images[0] - expected).mean() < 1.0


def test_the_pillow_path_gives_the_same_pixels_as_the_native_decoder(small_breakhis: Path) -> None:
    dataset = load_dataset(DataConfig(path=small_breakhis))
    samples = list(dataset.samples[:3])
    info, _ = scan_samples(samples)
    native = next(
        make_dataset(
            samples, dataset.class_names, image_size=96, batch_size=3, image_info=info
        ).as_numpy_iterator()
    )[0]
    pillow = next(
        make_dataset(
            samples, dataset.class_names, image_size=96, batch_size=3, image_info={}
        ).as_numpy_iterator()
    )[0]
    np.testing.assert_allclose(native, pillow, atol=1e-3)


def test_a_uint8_image_resizes_to_the_values_of_its_float_copy(breakhis_dev: Path) -> None:
    import tensorflow as tf

    from breastcls.data.pipeline import resize_image

    path = next((breakhis_dev / "benign").glob("SOB_B_F-14-25197-40-*.png"))
    pixels = tf.constant(decode_image(path))  # 350x230, uint8
    for size in (224, 96):
        direct = resize_image(pixels, size)
        assert direct.dtype == tf.float32 and direct.shape == (size, size, 3)
        np.testing.assert_array_equal(direct, resize_image(tf.cast(pixels, tf.float32), size))
        # Unclipped, the uint8 path still stays within 0-255 (bilinear values interpolate).
        assert float(tf.reduce_min(direct)) >= 0.0 and float(tf.reduce_max(direct)) <= 255.0
    # A float image outside 0-255 is clipped.
    bright = resize_image(tf.fill((40, 30, 3), 300.0), 16)
    np.testing.assert_array_equal(bright, np.full((16, 16, 3), 255.0, np.float32))


def test_pipelines_run_without_tf_data_autotuning(small_breakhis: Path) -> None:
    import tensorflow as tf

    from breastcls.data.pipeline import without_autotuning

    dataset = load_dataset(DataConfig(path=small_breakhis))
    info, _ = scan_samples(dataset.samples)
    stream = make_dataset(
        dataset.samples, dataset.class_names, image_size=32, batch_size=8, image_info=info
    )
    # Later stages keep the option: a normalisation mapped over the batches runs without it too.
    normalised = stream.map(lambda x, y: (x / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
    for pipeline in (stream, normalised):
        assert pipeline.options().autotune.enabled is False
    assert tf.data.Dataset.range(3).options().autotune.enabled is not False
    steady = without_autotuning(tf.data.Dataset.range(3))
    assert steady.options().autotune.enabled is False
    assert list(steady.as_numpy_iterator()) == [0, 1, 2]
