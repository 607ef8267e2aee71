"""Stain optics: optical density, the tissue threshold, Reinhard's lαβ and Macenko's estimate.

The numbers every stain computation shares, in NumPy: the normalisers fit with them, the
in-model layers (:mod:`breastcls.stain.layer`) use the same constants, and the stain survey of
``breastcls data check`` (:mod:`breastcls.stain.survey`) measures with them. Background is left
out of every statistic: a pixel is tissue when its optical density ``-ln((I + 1) / 256)`` is at
least :data:`TISSUE_OD` in every channel (Macenko's β). Importing this module imports no
TensorFlow.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "ANGLE_PERCENTILE",
    "LAB_FROM_LOG_LMS",
    "LMS_FROM_RGB",
    "MIN_TISSUE_FRACTION",
    "MIN_TISSUE_PIXELS",
    "TISSUE_OD",
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
