"""Models are loaded without running code from the file, and only on matching data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import breastcls
from breastcls import ModelConfig, ModelLoadError
from breastcls.cli.app import app
from breastcls.model import build_model


def _one_line_error(args: list[str], *fragments: str) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A run folder holding an (untrained) benign/malignant smallcnn model."""
    model = build_model(ModelConfig(backbone="smallcnn", weights=None), n_classes=2, image_size=32)
    folder = tmp_path / "run"
    folder.mkdir()
    model.save(folder / "best.keras")
    (folder / "class_names.json").write_text(json.dumps(["benign", "malignant"]))
    return folder


@pytest.fixture()
def renamed_classes(small_breakhis: Path, tmp_path: Path) -> Path:
    """The real images under other class names: normal (benign) and tumour (malignant)."""
    root = tmp_path / "renamed"
    shutil.copytree(small_breakhis / "benign", root / "normal")
    shutil.copytree(small_breakhis / "malignant", root / "tumour")
    return root


def test_a_lambda_layer_is_refused_by_safe_mode(tmp_path: Path, small_breakhis: Path) -> None:
    import keras

    model = keras.Sequential(
        [keras.Input((32, 32, 3)), keras.layers.Lambda(lambda x: x * 2.0), keras.layers.Flatten()]
    )
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match=r"Lambda layer\) that safe mode refuses"):
        breastcls.load_model(path)
    _one_line_error(
        ["evaluate", str(path), "--data", str(small_breakhis)],
        "lambda.keras",
        "safe mode",
    )


def test_a_layer_from_a_missing_plugin_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    @keras.saving.register_keras_serializable(package="acme_stain")
    class StainNormalisation(keras.layers.Layer):  # type: ignore[misc]
        def call(self, inputs: Any) -> Any:
            return inputs

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(StainNormalisation()(inputs)))
    path = tmp_path / "plugin.keras"
    keras.Model(inputs, outputs).save(path)
    assert breastcls.load_model(path).keras_model.layers[1].__class__ is StainNormalisation
    # The plugin is uninstalled: Keras no longer knows the class.
    monkeypatch.delitem(keras.saving.get_custom_objects(), "acme_stain>StainNormalisation")
    with pytest.raises(ModelLoadError) as caught:
        breastcls.load_model(path)
    message = str(caught.value)
    assert "StainNormalisation (registered by 'acme_stain')" in message
    assert "install the breastcls plugin acme_stain" in message
    _one_line_error(["evaluate", str(path)], "acme_stain", "StainNormalisation")


def test_a_model_trained_on_other_classes_is_refused(run_dir: Path, renamed_classes: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"trained on classes \['benign', 'malignant'\]"):
        breastcls.load_model(run_dir, class_names=["normal", "tumour"])
    assert breastcls.load_model(run_dir, class_names=["benign", "malignant"]) is not None
    with pytest.raises(ModelLoadError, match=r"\['normal', 'tumour'\]"):
        breastcls.evaluate(run_dir, data=renamed_classes, verbose=0)
    _one_line_error(
        ["evaluate", str(run_dir), "--data", str(renamed_classes)],
        "trained on classes ['benign', 'malignant']",
        "['normal', 'tumour']",
    )


def test_a_damaged_model_file_is_a_clear_error(run_dir: Path) -> None:
    data = (run_dir / "best.keras").read_bytes()
    (run_dir / "best.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"not a \.keras model file"):
        breastcls.load_model(run_dir)
    flipped = bytearray(data)
    middle = len(flipped) // 2
    flipped[middle : middle + 64] = bytes(64)
    (run_dir / "best.keras").write_bytes(bytes(flipped))
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        breastcls.load_model(run_dir)
