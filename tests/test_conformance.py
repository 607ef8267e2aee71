"""Every registered component of the default host passes breastcls.testing's conformance checks,
and the checks themselves catch broken components."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from breastcls import KerasBackbone
from breastcls.embeddings.extractor import FrozenExtractor
from breastcls.interfaces import MetricSection, Predictions
from breastcls.plugins import PluginHost
from breastcls.registry import ComponentInfo
from breastcls.testing import (
    ConformanceError,
    check_augmentation,
    check_backbone,
    check_component,
    check_dataset_format,
    check_head,
    check_metric,
    isolated_host,
)
from breastcls.testing.extractors import write_keras_extractor, write_onnx_extractor

_HOST = PluginHost()
_COMPONENTS = list(_HOST.components())
# DenseNet201 is never trained here (a first step takes minutes on a CPU): build, count, forward.
_BUILD_ONLY = {"densenet201"}
_DENSENET201_FEATURE_PARAMS = 18_321_984
_SLOW = {("backbone", "efficientnetb0")}  # a training step and a reload take ~20 s on 2 cores


def _id(info: ComponentInfo[Any]) -> str:
    return f"{info.kind}-{info.name}"


@pytest.mark.parametrize(
    "info",
    [
        pytest.param(info, marks=pytest.mark.slow) if (info.kind, info.name) in _SLOW else info
        for info in _COMPONENTS
    ],
    ids=_id,
)
def test_every_registered_component_conforms(
    info: ComponentInfo[Any], tmp_path: Path, small_breakhis: Path, breakhis_dev: Path
) -> None:
    if info.kind == "dataset":
        candidates = [small_breakhis, breakhis_dev / "manifest.csv"]
        accepted = [path for path in candidates if info.component.accepts(path)]
        assert accepted, f"no example data for dataset format {info.name!r}: add one here"
        check_component(info, data=accepted[0])
        return
    if isinstance(info.component, FrozenExtractor):
        _check_frozen_extractor(info.component, tmp_path)
        return
    if info.kind == "backbone" and info.name in _BUILD_ONLY:
        report = check_backbone(info.component, image_size=32, train=False, serialise=False)
        assert report.loss is None
        if info.name == "densenet201":
            assert report.params == _DENSENET201_FEATURE_PARAMS
            assert report.feature_shape == (1, 1, 1920)
        return
    image_size = 64 if info.name == "smallcnn" else 32
    check_component(info, work_dir=tmp_path, image_size=image_size)


def _check_frozen_extractor(extractor: FrozenExtractor, folder: Path) -> None:
    """A frozen extractor is never built into a network: it opens a stand-in model of its kind
    and embeds a batch (tests/test_foundation.py checks the rest)."""
    write = write_onnx_extractor if extractor.kind == "onnx" else write_keras_extractor
    model = write(folder / f"standin.{extractor.kind}", input_size=32)
    loaded = dataclasses.replace(extractor, file=str(model), input_size=32).load()
    assert loaded.embed(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 16)


def test_every_kind_of_the_default_host_has_components() -> None:
    kinds = {info.kind for info in _COMPONENTS}
    assert {"backbone", "head", "augmentation", "trainer", "metric", "dataset"} <= kinds


def test_smallcnn_report_measures_the_network(tmp_path: Path) -> None:
    report = check_backbone(_HOST.backbones.get("smallcnn"), image_size=64, work_dir=tmp_path)
    # Four conv blocks halve 64 px four times; 16+32+64+128 filters, bias-free, with BatchNorm.
    assert report.feature_shape == (4, 4, 128)
    assert report.params == 3 * 3 * (3 * 16 + 16 * 32 + 32 * 64 + 64 * 128) + 4 * (
        16 + 32 + 64 + 128
    )
    assert report.params == 98_160
    assert report.loss is not None and report.loss > 0
    assert (tmp_path / "under_test.keras").is_file()


def test_isolated_host_ignores_disabled_plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTCLS_DISABLE_PLUGINS", "builtin_backbones")
    assert "smallcnn" in isolated_host().backbones
    assert isolated_host(builtins=False).backbones.names() == []


# The checks must fail on broken components, or they prove nothing.


def _flat_backbone(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    import keras

    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


def _frozen_backbone(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    import keras

    inputs = keras.Input(shape=input_shape)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    model.trainable = False
    return model


def _lambda_backbone(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    import keras

    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(4, 3)(inputs)
    return keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(x))


def test_a_backbone_without_a_feature_map_fails() -> None:
    with pytest.raises(ConformanceError, match="4-D"):
        check_backbone(KerasBackbone(factory=_flat_backbone), image_size=32)


def test_an_undeclared_preprocessing_fails() -> None:
    bad = KerasBackbone(factory=_flat_backbone, preprocessing="imagenet")  # type: ignore[arg-type]
    with pytest.raises(ConformanceError, match="preprocessing is 'imagenet'"):
        check_backbone(bad, image_size=32)


def test_an_untrainable_backbone_fails() -> None:
    with pytest.raises(ConformanceError, match="no trainable weights"):
        check_backbone(KerasBackbone(factory=_frozen_backbone), image_size=32)


def test_a_backbone_that_safe_mode_cannot_load_fails(tmp_path: Path) -> None:
    with pytest.raises(ConformanceError, match="safe-mode load"):
        check_backbone(KerasBackbone(factory=_lambda_backbone), image_size=32, work_dir=tmp_path)


def _logits_head(features: Any, *, n_classes: int) -> Any:
    import keras

    return keras.layers.Dense(n_classes)(keras.layers.Flatten()(features))


def test_a_head_without_softmax_fails() -> None:
    with pytest.raises(ConformanceError, match="negative"):
        check_head(_logits_head)


def _shifting_augmentation(*, seed: int | None) -> Any:
    import keras

    return keras.layers.Rescaling(1.0, offset=1.0)


def test_an_augmentation_active_at_inference_fails() -> None:
    with pytest.raises(ConformanceError, match="training=False"):
        check_augmentation(_shifting_augmentation)


def _nan_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    return MetricSection(name="broken", title="Broken", values={"score": float("nan")})


def _spaced_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    return MetricSection(name="Bad Name", title="Bad", values={})


def test_a_metric_with_nan_or_a_bad_name_fails() -> None:
    with pytest.raises(ConformanceError, match="strict JSON"):
        check_metric(_nan_metric)
    with pytest.raises(ConformanceError, match="lowercase key"):
        check_metric(_spaced_metric)


class _EmptyFormat:
    def accepts(self, path: Path) -> bool:
        return True

    def load(self, path: Path, *, config: Any) -> Any:
        raise FileNotFoundError(path)


def test_a_dataset_format_raising_bare_errors_fails(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_dataset_format(_EmptyFormat(), tmp_path)


def test_an_unknown_kind_has_no_check() -> None:
    info: ComponentInfo[Any] = ComponentInfo(
        kind="widget", name="w", summary="", plugin="p", component=object()
    )
    with pytest.raises(ConformanceError, match="no check for kind 'widget'"):
        check_component(info)
