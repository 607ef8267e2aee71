"""examples/train_api.py runs as documented."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import copy_patients

REPO = Path(__file__).resolve().parents[1]


def test_train_api_example_trains_on_a_data_folder(breakhis_dev: Path, tmp_path: Path) -> None:
    # Six slides per class (four benign accessions): the default fractions give every role
    # (training, selection, test) patients of both classes.
    data = copy_patients(breakhis_dev, tmp_path / "data", patients=6, images_per_patient=2)
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_api.py"), "--data", str(data),
         "--epochs", "1", "--image-size", "32", "--out", str(tmp_path)],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    run_dirs = [path for path in tmp_path.iterdir() if (path / "best.keras").is_file()]
    assert len(run_dirs) == 1
    metrics = json.loads((run_dirs[0] / "metrics.json").read_text())
    # result.metrics, which the example prints, are the test set's.
    assert metrics["evaluated_on"]["role"] == "test"
    assert f"test-set accuracy: {metrics['classification']['accuracy']:.3f}" in result.stdout
    assert "parameters)" in result.stdout


def test_train_api_example_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_api.py"), "--data",
         str(tmp_path / "missing"), "--out", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert str(tmp_path / "missing") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
