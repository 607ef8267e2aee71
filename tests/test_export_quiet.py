"""Exporting to TFLite says nothing about TensorFlow's plans for tf.lite (it printed a six-line
deprecation warning on every export and every check of one)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def test_a_tflite_export_runs_without_the_deprecation_warning(tmp_path: Path) -> None:
    import keras

    from breastcls.conversion import _write_tflite, run_exported

    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")]
    )
    path = tmp_path / "model.tflite"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _write_tflite(model, path)
        images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
        probabilities = run_exported(path, images)
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities, model.predict(images, verbose=0), atol=1e-5)
    assert not [w for w in caught if "tf.lite" in str(w.message)], [str(w.message) for w in caught]
