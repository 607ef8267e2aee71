"""Exporting to TFLite says nothing about TensorFlow's plans for tf.lite (it printed a six-line
deprecation warning on every export and every check of one), nor TensorFlow Lite's native
``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` line."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

from _runs import run_watched

# A separate process: TensorFlow Lite may say it once per process, and the line is written to
# file descriptor 2 by native code, past pytest's capture of sys.stderr.
_EXPORT_AND_CHECK = """
import sys
from pathlib import Path
import keras
import numpy as np
from breastcls.conversion import _write_tflite, run_exported
model = keras.Sequential(
    [keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2, "softmax")]
)
path = Path(sys.argv[1])
_write_tflite(model, path)
images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
print(run_exported(path, images).shape)
print("after the check", file=sys.stderr)
"""


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


def test_checking_a_tflite_export_leaves_out_tensorflow_lite_s_delegate_line(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    ran = run_watched(
        [sys.executable, "-c", _EXPORT_AND_CHECK, str(tmp_path / "model.tflite")], env=env
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip() == "(2, 2)"
    assert "XNNPACK" not in ran.stderr, ran.stderr
    assert ran.stderr.rstrip().endswith("after the check")


_NATIVE_WRITES = """
import os, sys
from breastcls.environment import native_stderr_without
with native_stderr_without("INFO: Created TensorFlow Lite XNNPACK delegate"):
    os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
    os.write(2, b"ERROR: a real failure of native code\\n")
    print("python's own line", file=sys.stderr)
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate, after the block\\n")
"""


def test_only_the_known_native_lines_are_left_out_of_stderr() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", _NATIVE_WRITES], capture_output=True, text=True, check=True
    )
    assert ran.stderr.splitlines() == [
        "ERROR: a real failure of native code",
        "python's own line",
        "INFO: Created TensorFlow Lite XNNPACK delegate, after the block",
    ]
