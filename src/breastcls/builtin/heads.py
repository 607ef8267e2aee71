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


def linear_head(features: Any, *, n_classes: int) -> Any:
    """GlobalAveragePooling2D and one Dense softmax: a linear probe on the pooled features (a
    frozen extractor's run fits it as L2 logistic regression on cached embeddings)."""
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    return keras.layers.Dense(
        n_classes, activation="softmax", dtype="float32", name="head_probabilities"
    )(x)


def mlp_head(features: Any, *, n_classes: int) -> Any:
    """GlobalAveragePooling2D, Dense 256 ReLU, Dropout 0.3, Dense softmax (a frozen extractor's
    run fits it on cached embeddings, stopped at the best selection-set loss)."""
    import keras

    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
    x = keras.layers.Dense(256, activation="relu", name="head_hidden")(x)
    x = keras.layers.Dropout(0.3, name="head_dropout")(x)
    return keras.layers.Dense(
        n_classes, activation="softmax", dtype="float32", name="head_probabilities"
    )(x)


@hookimpl
def breastcls_register_heads(registry: PluginRegistry[Head]) -> None:
    """Register the seed head and the two probes (linear, mlp)."""
    registry.add(
        "seed",
        seed_head,
        summary="GlobalAveragePooling -> Dropout 0.5 -> BatchNorm -> Dense softmax (the seed's)",
    )
    registry.add(
        "linear",
        linear_head,
        summary="GlobalAveragePooling -> Dense softmax; on a frozen extractor: L2 logistic "
        "regression, its strength chosen on the selection set",
    )
    registry.add(
        "mlp",
        mlp_head,
        summary="GlobalAveragePooling -> Dense 256 ReLU -> Dropout 0.3 -> Dense softmax",
    )
