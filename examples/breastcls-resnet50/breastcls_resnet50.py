"""A ResNet50 backbone for breastcls (an example third-party plugin)."""

from __future__ import annotations

from typing import Any

import breastcls


def build_resnet50(*, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    """ResNet50 without its classifier: a (batch, h/32, w/32, 2048) feature map."""
    import keras

    return keras.applications.ResNet50(include_top=False, weights=weights, input_shape=input_shape)


@breastcls.hookimpl
def breastcls_register_backbones(registry: breastcls.PluginRegistry[breastcls.Backbone]) -> None:
    """Register ``resnet50`` with its Caffe-style preprocessing (BGR, ImageNet means)."""
    backbone = breastcls.KerasBackbone(factory=build_resnet50, preprocessing="caffe")
    registry.add("resnet50", backbone, summary="ResNet50 (ImageNet), from breastcls-resnet50")
