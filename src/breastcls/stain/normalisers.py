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

Background is left out of every statistic: a pixel is tissue when its optical density
``-ln((I + 1) / 256)`` is at least :data:`TISSUE_OD` in every channel (Macenko's β, the
threshold ``breastcls data check`` uses). Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from breastcls.errors import DataError

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
FloatArray = npt.NDArray[np.float64]

TISSUE_OD = 0.15
"""A pixel is tissue when its optical density is at least this in every channel (Macenko's β)."""

ANGLE_PERCENTILE = 1.0
"""Macenko's α: the stain vectors are the directions at this and ``100 - α`` percentile angles."""

MIN_TISSUE_PIXELS = 100
"""The fewest tissue pixels a reference must hold (fitting refuses fewer, naming the files)."""

MIN_TISSUE_FRACTION = 0.01
"""An image with a smaller share of tissue pixels (or fewer than 16) is passed through
unnormalised: its statistics would be noise."""

#: Reinhard et al.'s RGB to LMS cone-response matrix (rows: L, M, S).
LMS_FROM_RGB: tuple[tuple[float, float, float], ...] = (
    (0.3811, 0.5783, 0.0402),
    (0.1967, 0.7244, 0.0782),
    (0.0241, 0.1288, 0.8444),
)
_S3, _S6, _S2 = 1.0 / math.sqrt(3.0), 1.0 / math.sqrt(6.0), 1.0 / math.sqrt(2.0)
#: log-LMS to lαβ (rows: l, α, β): decorrelated luminance and two opponent colour axes.
LAB_FROM_LOG_LMS: tuple[tuple[float, float, float], ...] = (
    (_S3, _S3, _S3),
    (_S6, _S6, -2.0 * _S6),
    (_S2, -_S2, 0.0),
)
# Pixels become (I + 1) / 256 before any logarithm, as in optical density: black stays finite.
_LIGHT = 256.0


def optical_density(pixels: npt.ArrayLike) -> FloatArray:
    """The optical density ``-ln((I + 1) / 256)`` of 0-255 RGB values (white is 0)."""
    return -np.log((np.asarray(pixels, dtype=np.float64) + 1.0) / _LIGHT)


def tissue_pixels(pixels: npt.ArrayLike) -> UInt8Array:
    """The ``(n, 3)`` pixels whose optical density is at least :data:`TISSUE_OD` everywhere."""
    flat = np.asarray(pixels, dtype=np.uint8).reshape(-1, 3)
    return flat[(optical_density(flat) >= TISSUE_OD).all(axis=1)]


def lab_from_rgb(pixels: npt.ArrayLike) -> FloatArray:
    """Reinhard's lαβ of 0-255 RGB values (natural logarithms; the base only scales lαβ)."""
    rgb = (np.asarray(pixels, dtype=np.float64) + 1.0) / _LIGHT
    return np.asarray(np.log(rgb @ np.array(LMS_FROM_RGB).T) @ np.array(LAB_FROM_LOG_LMS).T)


def _unit(vector: FloatArray) -> tuple[float, float, float]:
    unit = vector / np.linalg.norm(vector)
    return (float(unit[0]), float(unit[1]), float(unit[2]))


def estimate_stain(
    optical_density: FloatArray,
) -> tuple[tuple[float, float, float], tuple[float, float, float]] | None:
    """Estimate the haematoxylin and eosin OD vectors of tissue pixels (Macenko's method).

    The SVD of the ``(n, 3)`` optical densities gives the plane of their two largest singular
    directions; each pixel's angle in that plane is taken, and the directions at the 1st and 99th
    percentile angle are the two stains: haematoxylin is the one with more red OD.

    Args:
        optical_density: Tissue pixels' OD (background already removed), ``(n, 3)``.

    Returns:
        ``(haematoxylin, eosin)`` as unit RGB OD vectors, or ``None`` with fewer than
        :data:`MIN_TISSUE_PIXELS` pixels.
    """
    od = np.asarray(optical_density, dtype=np.float64)
    if len(od) < MIN_TISSUE_PIXELS:
        return None
    _, _, vt = np.linalg.svd(od, full_matrices=False)
    plane = vt[:2].T  # (3, 2)
    plane = plane * np.where(plane.sum(axis=0) < 0, -1.0, 1.0)  # point into positive OD
    projected = od @ plane
    angles = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angles, [ANGLE_PERCENTILE, 100.0 - ANGLE_PERCENTILE])
    first = plane @ np.array([np.cos(low), np.sin(low)])
    second = plane @ np.array([np.cos(high), np.sin(high)])
    haematoxylin, eosin = (first, second) if first[0] > second[0] else (second, first)
    return _unit(haematoxylin), _unit(eosin)


def _tissue_of(pixels: UInt8Array, method: str) -> UInt8Array:
    tissue = tissue_pixels(pixels)
    if len(tissue) < MIN_TISSUE_PIXELS:
        raise DataError(
            f"only {len(tissue)} of the {len(pixels)} reference pixels sampled are tissue "
            f"(optical density at least {TISSUE_OD} in every channel); {method} needs at least "
            f"{MIN_TISSUE_PIXELS}: the reference is background or blank"
        )
    return tissue


@runtime_checkable
class StainNormaliser(Protocol):
    """Fits a reference stain and builds the in-model layer that maps images to it."""

    def fit(self, pixels: UInt8Array) -> dict[str, Any]:
        """Return the reference's parameters, JSON-ready (stored in the run folder).

        Args:
            pixels: ``(n, 3)`` uint8 RGB pixels sampled from the reference images, background
                included (leave it out with :func:`tissue_pixels`).

        Raises:
            DataError: The pixels cannot define a stain (too little tissue); the message says
                why, and breastcls adds which files were the reference.
        """
        ...

    def layer(self, parameters: Mapping[str, Any]) -> Any:
        """Return a Keras layer that normalises a batch of 0-255 RGB images to the reference,
        in training and inference alike, or ``None`` when the normaliser changes nothing.

        The layer must survive a ``.keras`` save and a safe-mode load
        (``keras.saving.register_keras_serializable``), map an image to 0-255 values and never
        return NaN, whatever the image (blank, white, tissue-poor).
        """
        ...


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
