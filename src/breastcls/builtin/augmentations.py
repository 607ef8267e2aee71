"""Built-in augmentations: in-graph Keras layers, active in training only."""

from __future__ import annotations

from typing import Any

from breastcls.interfaces import Augmentation
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry


def seed_augmentation(*, seed: int | None) -> Any:
    """The seed blog's ImageDataGenerator, faithfully (zoom factors from U(-1, 3) included)."""
    from breastcls.layers import SeedAugmentation

    return SeedAugmentation(seed=seed, name="augmentation")


def default_augmentation(*, seed: int | None) -> Any:
    """The seed's transforms with sane ranges: flips, rotation up to 90°, zoom ±20%.

    Tissue has no orientation, so flips and rotations are safe; the zoom stays within ±20%
    (the seed's U(-1, 3) mirrors and magnifies images far beyond what a microscope shows), and
    borders are reflected instead of smeared.
    """
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.25, fill_mode="reflect", seed=seed),
            keras.layers.RandomZoom((-0.2, 0.2), fill_mode="reflect", seed=seed),
        ],
        name="augmentation",
    )


def no_augmentation(*, seed: int | None) -> Any:
    """No augmentation: an identity layer."""
    import keras

    return keras.layers.Identity(name="augmentation")


@hookimpl
def breastcls_register_augmentations(registry: PluginRegistry[Augmentation]) -> None:
    """Register the ``default``, ``seed`` and ``none`` augmentations."""
    registry.add(
        "default",
        default_augmentation,
        summary="flips, rotation up to 90°, zoom ±20% (reflect borders)",
    )
    registry.add(
        "seed",
        seed_augmentation,
        summary="the seed blog's ImageDataGenerator: zoom_range=2, rotation 90°, flips",
    )
    registry.add("none", no_augmentation, summary="no augmentation")
