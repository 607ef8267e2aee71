"""Built-in heads."""

from __future__ import annotations

from typing import Any

from breastcls.interfaces import Head
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry


def seed_head(features: Any, *, n_classes: int) -> Any:
    """The seed's head: GlobalAveragePooling2D, Dropout(0.5), BatchNormalization, Dense softmax.

    The softmax runs in float32 so that mixed-precision training stays numerically safe.
    """
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    x = keras.layers.Dropout(0.5, name="head_dropout")(x)
    x = keras.layers.BatchNormalization(name="head_batchnorm")(x)
    return keras.layers.Dense(
        n_classes, activation="softmax", dtype="float32", name="head_probabilities"
    )(x)


@hookimpl
def breastcls_register_heads(registry: PluginRegistry[Head]) -> None:
    """Register the seed head."""
    registry.add(
        "seed",
        seed_head,
        summary="GlobalAveragePooling -> Dropout 0.5 -> BatchNorm -> Dense softmax (the seed's)",
    )
