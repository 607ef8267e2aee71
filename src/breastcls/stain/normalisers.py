"""Stain normalisers: the plugin kind that maps every image to one reference stain.

A :class:`StainNormaliser` is fitted once, to reference pixels (one image, a folder, or by
default the training set's images), and returns JSON-ready parameters; from those it builds a
Keras layer that breastcls puts inside the model, before augmentation and preprocessing, so
training, evaluation, prediction and every export normalise alike. Normalisers register through
the ``breastcls_register_stain_normalisers`` hook, the built-in ones included:

* ``none`` (:class:`NoNormaliser`): no normalisation (the default).
* ``reinhard`` (:class:`ReinhardNormaliser`): each image's mean and standard deviation in
  Reinhard's lαβ colour space matched to the reference's (Reinhard et al., *Color transfer
  between images*, IEEE Computer Graphics and Applications 21(5), 2001).
* ``macenko`` (:class:`MacenkoNormaliser`): each image's haematoxylin and eosin vectors,
  estimated from its optical density, replaced by the reference's, and its stain amounts scaled
  to the reference's (Macenko et al., *A method for normalizing histology slides for
  quantitative analysis*, ISBI 2009).

The contract, :class:`~breastcls.interfaces.StainNormaliser`, lives in the core
:mod:`breastcls.interfaces`; the numbers (optical density, the tissue threshold, lαβ, Macenko's
estimate) in :mod:`breastcls.stain.optics`. Both are re-exported here. Importing this module
imports no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import DataError
from breastcls.interfaces import StainNormaliser
from breastcls.stain.optics import (
    ANGLE_PERCENTILE,
    LAB_FROM_LOG_LMS,
    LMS_FROM_RGB,
    MIN_TISSUE_FRACTION,
    MIN_TISSUE_PIXELS,
    TISSUE_OD,
    estimate_stain,
    lab_from_rgb,
    optical_density,
    tissue_pixels,
)

__all__ = [
    "ANGLE_PERCENTILE",
    "LAB_FROM_LOG_LMS",
    "LMS_FROM_RGB",
    "MIN_TISSUE_FRACTION",
    "MIN_TISSUE_PIXELS",
    "TISSUE_OD",
    "MacenkoNormaliser",
    "NoNormaliser",
    "ReinhardNormaliser",
    "StainNormaliser",
    "estimate_stain",
    "lab_from_rgb",
    "optical_density",
    "tissue_pixels",
]

UInt8Array = npt.NDArray[np.uint8]


def _tissue_of(pixels: UInt8Array, method: str) -> UInt8Array:
    tissue = tissue_pixels(pixels)
    if len(tissue) < MIN_TISSUE_PIXELS:
        raise DataError(
            f"only {len(tissue)} of the {len(pixels)} reference pixels sampled are tissue "
            f"(optical density at least {TISSUE_OD} in every channel); {method} needs at least "
            f"{MIN_TISSUE_PIXELS}: the reference is background or blank"
        )
    return tissue


@dataclass(frozen=True, slots=True, kw_only=True)
class NoNormaliser:
    """No stain normalisation: the model sees the images as they are."""

    def fit(self, pixels: UInt8Array) -> dict[str, Any]:
        """Return no parameters."""
        return {}

    def layer(self, parameters: Mapping[str, Any]) -> Any:
        """Return ``None``: the model holds no normalisation layer."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReinhardNormaliser:
    """Match each image's lαβ mean and standard deviation, over its tissue, to the reference's.

    Parameters: ``mean`` and ``std``, the reference tissue's lαβ mean and standard deviation.
    Each image's tissue statistics are measured in the model, and every pixel (background
    included, so that no edge appears) is mapped by the same per-channel affine map. An image with
    too little tissue or a flat colour is passed through unchanged.
    """

    def fit(self, pixels: UInt8Array) -> dict[str, Any]:
        """Return the lαβ mean and standard deviation of the reference's tissue pixels."""
        lab = lab_from_rgb(_tissue_of(pixels, "Reinhard normalisation"))
        return {
            "mean": [float(v) for v in lab.mean(axis=0)],
            "std": [float(v) for v in lab.std(axis=0)],
        }

    def layer(self, parameters: Mapping[str, Any]) -> Any:
        """Return a :class:`~breastcls.stain.layer.ReinhardNormalisation` layer."""
        from breastcls.stain.layer import ReinhardNormalisation

        return ReinhardNormalisation(
            mean=list(parameters["mean"]), std=list(parameters["std"]), name="stain_normalisation"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class MacenkoNormaliser:
    """Replace each image's stain vectors by the reference's and scale its stain amounts.

    Parameters: ``stain_matrix``, the reference's unit haematoxylin and eosin OD vectors (rows),
    and ``max_concentrations``, the 99th percentile of each stain's amount over its tissue. In
    the model each image's own vectors are estimated from its tissue's optical density (the plane
    of its two main directions, the 1st and 99th percentile angles in it), its pixels are
    decomposed into the two stains, each amount is scaled so that its 99th percentile matches
    the reference's, and the pixels are rebuilt with the reference's vectors. An image with too
    little tissue, or whose two stain directions coincide, is passed through unchanged.
    """

    def fit(self, pixels: UInt8Array) -> dict[str, Any]:
        """Return the reference's stain matrix and maximum stain amounts."""
        od = optical_density(_tissue_of(pixels, "Macenko normalisation"))
        vectors = estimate_stain(od)
        if vectors is None:  # _tissue_of already keeps at least as many pixels as it needs
            raise DataError("the reference's stain vectors could not be estimated")
        matrix = np.array(vectors, dtype=np.float64)  # (2, 3): haematoxylin, eosin
        amounts, *_ = np.linalg.lstsq(matrix.T, od.T, rcond=None)
        maxima = np.percentile(amounts, 99.0, axis=1)
        if not np.all(maxima > 1e-3):
            raise DataError(
                "the reference's tissue holds almost no haematoxylin or eosin (99th percentile "
                f"amounts {maxima.round(4).tolist()})"
            )
        return {
            "stain_matrix": [[float(v) for v in row] for row in matrix],
            "max_concentrations": [float(v) for v in maxima],
        }

    def layer(self, parameters: Mapping[str, Any]) -> Any:
        """Return a :class:`~breastcls.stain.layer.MacenkoNormalisation` layer."""
        from breastcls.stain.layer import MacenkoNormalisation

        return MacenkoNormalisation(
            stain_matrix=[list(row) for row in parameters["stain_matrix"]],
            max_concentrations=list(parameters["max_concentrations"]),
            name="stain_normalisation",
        )
