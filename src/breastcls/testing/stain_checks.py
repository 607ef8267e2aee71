"""The conformance check of stain normalisers (used by `breastcls.testing.check_component`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from breastcls.errors import DataError
from breastcls.interfaces import StainNormaliser
from breastcls.testing.support import fail, same_predictions, work_folder

__all__ = ["check_stain_normaliser", "stained_pixels"]


def stained_pixels(
    size: int, *, haematoxylin: float = 1.0, eosin: float = 1.0, seed: int = 0
) -> npt.NDArray[np.uint8]:
    """A synthetic H&E image, ``(size, size, 3)`` uint8: random amounts of the two stains
    (Ruifrok–Johnston vectors, scaled by ``haematoxylin`` and ``eosin``) on a white quarter."""
    from breastcls.layers import RGB_FROM_HED

    rng = np.random.default_rng(seed)
    amounts = rng.uniform(0.1, 1.0, size=(size, size, 2)) * (haematoxylin, eosin)
    amounts[: size // 2, : size // 2] = 0.0  # background
    density = amounts @ np.array(RGB_FROM_HED[:2])
    pixels: npt.NDArray[np.uint8] = (
        np.clip(256.0 * np.exp(-density) - 1.0, 0, 255).round().astype(np.uint8)
    )
    return pixels


def check_stain_normaliser(
    normaliser: StainNormaliser,
    *,
    image_size: int = 32,
    work_dir: Path | None = None,
    name: str = "under-test",
) -> None:
    """Check a stain normaliser: JSON-ready parameters from stained pixels, a clear
    :class:`~breastcls.errors.DataError` for blank pixels, and a layer (or ``None``) that keeps
    shapes, gives 0-255 values without NaN on white, black, flat and noisy images, and survives
    a ``.keras`` save and safe-mode load.

    Raises:
        ConformanceError: The normaliser breaks its contract.
    """
    import json

    import keras

    what = f"stain normaliser {name!r}"
    parameters = normaliser.fit(stained_pixels(64).reshape(-1, 3))
    try:
        json.dumps(parameters, allow_nan=False)
    except (TypeError, ValueError) as error:
        fail(what, f"fit() returned parameters that are not strict JSON ({error}).")
    if parameters:
        try:
            normaliser.fit(np.full((4096, 3), 255, dtype=np.uint8))
            fail(what, "fit() accepted blank white pixels; raise DataError saying why.")
        except DataError:
            pass
    layer = normaliser.layer(parameters)
    if layer is None:
        return
    batch = np.stack(
        [
            np.full((image_size, image_size, 3), 255.0),
            np.zeros((image_size, image_size, 3)),
            np.full((image_size, image_size, 3), 150.0),
            np.random.default_rng(0).uniform(0, 255, (image_size, image_size, 3)),
            stained_pixels(image_size, haematoxylin=1.5, eosin=0.6, seed=1).astype(np.float64),
        ]
    ).astype(np.float32)
    out = np.asarray(layer(keras.ops.convert_to_tensor(batch)))
    if out.shape != batch.shape:
        fail(what, f"its layer turned a {batch.shape} batch into {out.shape}.")
    if not np.all(np.isfinite(out)) or out.min() < 0 or out.max() > 255:
        fail(what, "its layer gave NaN, infinite or out-of-range (0-255) values.")
    inputs = keras.Input(shape=(image_size, image_size, 3))
    model = keras.Model(inputs, normaliser.layer(parameters)(inputs))
    with work_folder(work_dir) as folder:
        same_predictions(what, model, folder / "stain.keras", batch)
