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
    """Flip each axis, rotate by up to ±90° and zoom by up to ±20%, each drawn independently.

    Tissue has no orientation, so flips and rotations are safe. Each image gets its own
    left-right flip, top-bottom flip (probability ½ each), angle from U(-90°, 90°) and isotropic
    zoom factor from U(0.8, 1.2), all independent: the two flips and the nearest quarter turn of
    the angle reach each of the 8 symmetries of the square equally often, mirrors included. The
    zoom stays within ±20% (the seed's U(-1, 3) mirrors and magnifies images far beyond what a
    microscope shows), and borders are reflected instead of smeared.

    Args:
        seed: Seed of the random transforms; each of the four layers gets its own seed derived
            from it (one shared seed would make Keras draw the same numbers in every layer).
            ``None`` leaves them unseeded.
    """
    import keras

    flip_x, flip_y, rotation, zoom = _derived_seeds(seed, 4)
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=flip_x, name="flip_left_right"),
            keras.layers.RandomFlip("vertical", seed=flip_y, name="flip_top_bottom"),
            keras.layers.RandomRotation(0.25, fill_mode="reflect", seed=rotation, name="rotation"),
            keras.layers.RandomZoom((-0.2, 0.2), fill_mode="reflect", seed=zoom, name="zoom"),
        ],
        name="augmentation",
    )


def _derived_seeds(seed: int | None, count: int) -> list[int | None]:
    """Return ``count`` unrelated seeds derived from ``seed`` (all ``None`` when it is ``None``).

    NumPy's ``SeedSequence`` hashes the seed, so neighbouring seeds (runs 11 and 12) share no
    stream either; a negative seed is taken modulo 2**64. The values stay below 2**31 - 2, where
    Keras' TensorFlow backend folds seeds.
    """
    if seed is None:
        return [None] * count
    import numpy as np

    states = np.random.SeedSequence(seed % 2**64).generate_state(count)
    return [int(state) % (2**31 - 2) for state in states]


def hed_augmentation(*, seed: int | None) -> Any:
    """Jitter the haematoxylin, eosin and DAB amounts of each image ("HED-light"), nothing else.

    See :class:`~breastcls.layers.RandomHEDJitter`: each stain amount is scaled by U(0.95, 1.05)
    and shifted by U(-0.05, 0.05), independently per image and per stain (Tellez et al. 2019).

    Args:
        seed: Seed of the random draws (a seed derived from it, as in
            :func:`default_augmentation`); ``None`` leaves them unseeded.
    """
    from breastcls.layers import RandomHEDJitter

    (hed,) = _derived_seeds(seed, 1)
    return RandomHEDJitter(seed=hed, name="augmentation")


def pathology_augmentation(*, seed: int | None) -> Any:
    """Flip each axis, rotate by up to ±90°, zoom by up to ±10%, then jitter stain and colour.

    The geometry is :func:`default_augmentation`'s with a milder zoom; then each image's H, E
    and D amounts are jittered ("HED-light") and its brightness (±5% of 255), contrast
    (×U(0.9, 1.1)), saturation (×U(0.9, 1.1)) and hue (±0.02 turn) lightly, in one
    :class:`~breastcls.layers.RandomHEDJitter` pass (its colour jitter is
    :class:`~breastcls.layers.RandomColorJitter`'s). Each of the five layers draws per image,
    independently, with its own derived seed.

    Args:
        seed: Seed of the random transforms; each layer gets its own seed derived from it.
            ``None`` leaves them unseeded.
    """
    import keras

    from breastcls.layers import RandomHEDJitter

    flip_x, flip_y, rotation, zoom, stain = _derived_seeds(seed, 5)
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=flip_x, name="flip_left_right"),
            keras.layers.RandomFlip("vertical", seed=flip_y, name="flip_top_bottom"),
            keras.layers.RandomRotation(0.25, fill_mode="reflect", seed=rotation, name="rotation"),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="reflect", seed=zoom, name="zoom"),
            # One pass for stain and colour: the HED step's log and exp dominate the cost, and a
            # separate colour layer would add a second read, clip and write of every pixel.
            RandomHEDJitter(
                brightness=0.05,
                contrast=0.1,
                saturation=0.1,
                hue=0.02,
                seed=stain,
                name="stain_jitter",
            ),
        ],
        name="augmentation",
    )


def no_augmentation(*, seed: int | None) -> Any:
    """No augmentation: an identity layer."""
    import keras

    return keras.layers.Identity(name="augmentation")


@hookimpl
def breastcls_register_augmentations(registry: PluginRegistry[Augmentation]) -> None:
    """Register the ``default``, ``seed``, ``none``, ``hed`` and ``pathology`` augmentations."""
    registry.add(
        "default",
        default_augmentation,
        summary="independent flips on each axis, rotation in ±90°, zoom ±20% (reflect borders)",
    )
    registry.add(
        "seed",
        seed_augmentation,
        summary="the seed blog's ImageDataGenerator: zoom_range=2, rotation 90°, flips",
    )
    registry.add("none", no_augmentation, summary="no augmentation")
    registry.add(
        "hed",
        hed_augmentation,
        summary="stain jitter only: H, E and D amounts scaled ±5% and shifted ±0.05 (HED-light)",
    )
    registry.add(
        "pathology",
        pathology_augmentation,
        summary="flips, rotation ±90°, zoom ±10%, HED-light stain jitter and light colour jitter",
    )
