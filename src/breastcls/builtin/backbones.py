"""Built-in backbones: DenseNet201 (the seed's) and light networks that train on a CPU."""

from __future__ import annotations

from typing import Any

from breastcls.embeddings.extractor import FrozenExtractor
from breastcls.interfaces import Backbone, KerasBackbone
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry


def build_densenet201(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    """DenseNet201 without its classifier (18,321,984 parameters at any input size)."""
    import keras

    return keras.applications.DenseNet201(
        include_top=False, weights=weights, input_shape=input_shape
    )


def build_mobilenetv3small(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    """MobileNetV3Small without its classifier; it rescales 0-255 inputs itself."""
    import keras

    return keras.applications.MobileNetV3Small(
        include_top=False, weights=weights, input_shape=input_shape, include_preprocessing=True
    )


def build_efficientnetb0(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    """EfficientNetB0 without its classifier; it rescales 0-255 inputs itself."""
    import keras

    return keras.applications.EfficientNetB0(
        include_top=False, weights=weights, input_shape=input_shape
    )


def build_smallcnn(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    """A four-block CNN (about 0.1 M parameters) that learns from scratch in seconds on a CPU.

    It has no ImageNet weights: ``weights`` must be ``None`` or a local weights file.
    """
    import keras

    if weights == "imagenet":
        raise ValueError("smallcnn has no ImageNet weights; use weights=None")
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters in (16, 32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        # A fast-moving BatchNorm: its statistics settle within a few short epochs.
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    model = keras.Model(inputs, x, name="smallcnn")
    if weights is not None:
        model.load_weights(weights)
    return model


@hookimpl
def breastcls_register_backbones(registry: PluginRegistry[Backbone]) -> None:
    """Register DenseNet201, MobileNetV3Small, EfficientNetB0, a small CNN and the two frozen
    feature extractors (a foundation model's ONNX or ``.keras`` file, with a probe)."""
    registry.add(
        "densenet201",
        KerasBackbone(factory=build_densenet201, preprocessing="torch"),
        summary="DenseNet201 (ImageNet), the seed blog's backbone; GPU work at 224 px",
    )
    registry.add(
        "mobilenetv3small",
        KerasBackbone(factory=build_mobilenetv3small, preprocessing="none"),
        summary="MobileNetV3Small (ImageNet), light: trains on a CPU in minutes",
    )
    registry.add(
        "smallcnn",
        KerasBackbone(factory=build_smallcnn, preprocessing="tf", imagenet_weights=False),
        summary="a small 4-block CNN trained from scratch: demos, tests, quick CPU baselines",
    )
    registry.add(
        "efficientnetb0",
        KerasBackbone(factory=build_efficientnetb0, preprocessing="none"),
        summary="EfficientNetB0 (ImageNet), a stronger light backbone",
    )
    registry.add(
        "onnx",
        FrozenExtractor(kind="onnx"),
        summary="a frozen foundation model exported to ONNX (file=...): embeddings cached, "
        "a linear or mlp probe trained on them",
    )
    registry.add(
        "keras",
        FrozenExtractor(kind="keras"),
        summary="a frozen feature extractor saved as .keras (file=...): embeddings cached, "
        "a linear or mlp probe trained on them",
    )
