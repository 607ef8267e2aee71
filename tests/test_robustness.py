"""The stain-shift robustness section of ``breastcls evaluate``, on planted models.

Two tiny Keras models (standard layers only, so they load in safe mode) score the real
development images:

- a *colour* model: the mean red value of the image against a threshold;
- a *structure* model: the mean vertical minus the mean horizontal grey-level gradient (the
  orientation of the texture), which a stain shift scales but does not reverse.

Each is evaluated on images labelled by its own unshifted decision, so both start at accuracy 1;
what the section then measures is how far a stain shift moves each model off its own decisions.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from breastcls.cli.app import app

SIZE = 48
runner = CliRunner()


def _colour_model(threshold: float) -> Any:
    """Malignant when the image's mean red value exceeds ``threshold``."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    mean = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(2, activation="softmax")
    outputs = dense(mean)
    k = 0.25
    dense.set_weights(
        [
            np.array([[-k, k], [0.0, 0.0], [0.0, 0.0]], dtype=np.float32),
            np.array([k * threshold, -k * threshold], dtype=np.float32),
        ]
    )
    return keras.Model(inputs, outputs, name="red_threshold")


def _structure_model() -> Any:
    """Malignant when the grey levels change more from row to row than from column to column."""
    import keras

    kernel = np.zeros((2, 2, 3, 4), dtype=np.float32)
    third = 1.0 / 3.0
    kernel[0, 0, :, 0], kernel[1, 0, :, 0] = third, -third  # rows: +d
    kernel[0, 0, :, 1], kernel[1, 0, :, 1] = -third, third  # rows: -d
    kernel[0, 0, :, 2], kernel[0, 1, :, 2] = third, -third  # columns: +d
    kernel[0, 0, :, 3], kernel[0, 1, :, 3] = -third, third  # columns: -d
    inputs = keras.Input((SIZE, SIZE, 3))
    convolution = keras.layers.Conv2D(4, 2, activation="relu", use_bias=False)
    features = keras.layers.GlobalAveragePooling2D()(convolution(inputs))
    dense = keras.layers.Dense(2, activation="softmax")
    outputs = dense(features)
    convolution.set_weights([kernel])
    k = 2.0
    dense.set_weights(
        [
            np.array([[-k, k], [-k, k], [k, -k], [k, -k]], dtype=np.float32),
            np.zeros(2, dtype=np.float32),
        ]
    )
    return keras.Model(inputs, outputs, name="texture_orientation")


def _images(breakhis_dev: Path) -> list[Path]:
    return sorted(breakhis_dev.glob("*/*.png"))[::2]


def _planted(model: Any, images: list[Path], root: Path) -> tuple[Path, Path]:
    """Save ``model`` and copy ``images`` into ``root/data/{benign,malignant}`` by its own
    unshifted decisions; return the model file and the data folder."""
    from breastcls.inference.model import InferenceModel

    root.mkdir(parents=True)
    model_path = root / "model" / "model.keras"
    model_path.parent.mkdir()
    model.save(model_path)
    loaded = InferenceModel.load(model_path, class_names=("benign", "malignant"))
    decided = loaded.predict(images).predicted
    data = root / "data"
    for label in ("benign", "malignant"):
        (data / label).mkdir(parents=True)
    for image, label in zip(images, decided, strict=True):
        shutil.copy(image, data / label / image.name)
    return model_path, data


def _red_median(images: list[Path]) -> float:
    import tensorflow as tf

    from breastcls.data.pipeline import load_image_tensor

    reds = [
        float(
            tf.reduce_mean(load_image_tensor(tf.constant(str(p)), tf.constant(False), SIZE)[..., 0])
        )
        for p in images
    ]
    return float(np.median(reds))


@pytest.fixture(scope="module")
def colour_evaluation(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    import breastcls

    images = _images(breakhis_dev)
    root = tmp_path_factory.mktemp("colour")
    model, data = _planted(_colour_model(_red_median(images)), images, root / "planted")
    return breastcls.evaluate(model, data=data, gradcam=False, out_dir=root / "eval").out_dir


@pytest.fixture(scope="module")
def structure_evaluation(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    import breastcls

    root = tmp_path_factory.mktemp("structure")
    model, data = _planted(_structure_model(), _images(breakhis_dev), root / "planted")
    return breastcls.evaluate(model, data=data, gradcam=False, out_dir=root / "eval").out_dir


def _robustness(folder: Path) -> dict[str, Any]:
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["robustness"]["set"] == metrics["evaluated_on"]["set"]
    assert metrics["robustness"]["images"] == metrics["evaluated_on"]["images"]
    return dict(metrics["robustness"])


def test_a_colour_model_loses_accuracy_as_the_stain_shifts(colour_evaluation: Path) -> None:
    section = _robustness(colour_evaluation)
    curve = section["curve"]
    assert [point["strength"] for point in curve] == [0.0, 0.05, 0.1, 0.2]
    accuracy = [point["accuracy"]["estimate"] for point in curve]
    print("colour model accuracy by strength:", accuracy)
    assert accuracy[0] == 1.0  # labelled by its own decisions
    assert accuracy[1] > accuracy[2] > accuracy[3]  # each stronger shift flips more images
    assert accuracy[3] < 0.9
    # The drop is paired with the unshifted scores: its interval excludes no change.
    strongest = curve[-1]["accuracy_change"]
    assert strongest["high"] < 0 and strongest["estimate"] == pytest.approx(accuracy[3] - 1.0)
    assert curve[-1]["auc"]["estimate"] < curve[0]["auc"]["estimate"]
    assert section["bootstrap"]["n_resamples"] == 1000
    assert (colour_evaluation / "robustness.png").stat().st_size > 10_000
    report = (colour_evaluation / "report.html").read_text(encoding="utf-8")
    assert "Robustness to stain shifts" in report and "robustness.png" in report


def test_a_texture_model_keeps_its_decisions_under_the_same_shifts(
    structure_evaluation: Path,
) -> None:
    curve = _robustness(structure_evaluation)["curve"]
    for point in curve:
        assert point["accuracy"]["estimate"] == 1.0
        assert point["auc"]["estimate"] == 1.0
        assert point["accuracy_change"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}


def test_strength_zero_is_the_evaluation_itself(colour_evaluation: Path) -> None:
    metrics = json.loads((colour_evaluation / "metrics.json").read_text(encoding="utf-8"))
    unshifted = metrics["robustness"]["curve"][0]
    assert unshifted["accuracy"]["estimate"] == metrics["classification"]["accuracy"]
    assert unshifted["auc"] == metrics["bootstrap"]["intervals"]["auc"]
    settings = json.loads((colour_evaluation / "evaluation.json").read_text(encoding="utf-8"))
    assert settings["stain_shift"] == "hed"


def test_the_draws_depend_on_the_seed_and_the_file_name_only() -> None:
    from breastcls.evaluation.robustness import stain_shift_draws

    a, b = stain_shift_draws(["x/one.png", "two.png"])
    again_a, again_b = stain_shift_draws(["elsewhere/two.png", "one.png"])
    np.testing.assert_array_equal(a[::-1], again_a)
    np.testing.assert_array_equal(b[::-1], again_b)
    assert np.abs(a).max() <= 1 and np.abs(b).max() <= 1
    other, _ = stain_shift_draws(["x/one.png"], seed=1)
    assert not np.array_equal(other[0], a[0])


def test_the_cli_option_turns_the_section_off_and_refuses_unknown_shifts(
    colour_evaluation: Path, tmp_path: Path
) -> None:
    model = colour_evaluation.parent / "planted" / "model" / "model.keras"
    data = colour_evaluation.parent / "planted" / "data"
    out = tmp_path / "plain"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(model),
            "--data",
            str(data),
            "--no-gradcam",
            "--stain-shift",
            "none",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "under HED stain shift" not in result.output
    assert "robustness" not in json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert not (out / "robustness.png").exists()
    refused = runner.invoke(
        app, ["evaluate", str(model), "--data", str(data), "--stain-shift", "macenko"]
    )
    assert refused.exit_code == 2
    assert "Unknown stain shift 'macenko': use one of none, hed" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
