"""The in-model stain normalisation layers, and the shift towards a reference stain.

Each layer holds its fitted reference as plain numbers in its configuration, so a saved model
carries its normalisation, loads in Keras safe mode and exports with it. Both layers compute in
float32 whatever the model's precision, measure every image's own statistics over its tissue
(optical density at least :data:`~breastcls.stain.normalisers.TISSUE_OD` in every channel), and
pass an image they cannot measure (too little tissue, a flat colour, one stain direction) through
unchanged: never a NaN.

The statistics are measured on a regular grid of about :data:`STATISTIC_PIXELS` pixels of each
image (every pixel of a small image), and each image is then changed by one map per pixel (a
3x3 matrix on the logarithm of its values): sorting every pixel of a 224 px image for the
percentiles would cost ten times more than decoding it.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from breastcls.layers import _LIGHT, _optical_density
from breastcls.stain.normalisers import (
    ANGLE_PERCENTILE,
    LAB_FROM_LOG_LMS,
    LMS_FROM_RGB,
    MIN_TISSUE_FRACTION,
    TISSUE_OD,
)

__all__ = ["STATISTIC_PIXELS", "MacenkoNormalisation", "ReinhardNormalisation", "shift_towards"]

STATISTIC_PIXELS = 4096
"""About how many pixels of each image (a regular grid) its statistics are measured on."""

_MIN_IMAGE_TISSUE = 16.0  # with MIN_TISSUE_FRACTION: the least tissue an image is normalised on
_MIN_STD = 1e-3  # a flatter lαβ channel gives no scale to match
_MIN_DETERMINANT = 1e-3  # sin² of the angle between H and E: below, one stain direction only
_MIN_AMOUNT = 1e-3  # a 99th-percentile stain amount below this: no stain to scale
_AMOUNT_PERCENTILE = 99.0
_POWER_STEPS = 24  # power iterations for the tissue OD's main direction (a 3x3 matrix)
_NOT_TISSUE = 1e9  # ranks background below every tissue value


def _inverse(matrix: tuple[tuple[float, ...], ...]) -> list[list[float]]:
    import numpy as np

    return [[float(v) for v in row] for row in np.linalg.inv(np.array(matrix))]


_RGB_FROM_LMS = _inverse(LMS_FROM_RGB)
_LOG_LMS_FROM_LAB = _inverse(LAB_FROM_LOG_LMS)


def _flatten(inputs: Any) -> tuple[Any, Any]:
    """Float32 ``(batch, pixels, 3)`` values, and the grid of them statistics are measured on."""
    x = ops.cast(inputs, "float32")
    height, width = inputs.shape[1], inputs.shape[2]
    batch = ops.shape(x)[0]
    if height is None or width is None:  # an image size known only at run time: every pixel
        flat = ops.reshape(x, (batch, -1, 3))
        return flat, flat
    stride = max(1, round(math.sqrt(height * width / STATISTIC_PIXELS)))
    # The static pixel count keeps the grid's shape known, which _percentile's top_k needs.
    grid = ops.reshape(
        x[:, ::stride, ::stride, :], (batch, -(-height // stride) * -(-width // stride), 3)
    )
    return ops.reshape(x, (batch, height * width, 3)), grid


def _tissue(od: Any) -> tuple[Any, Any, Any]:
    """Each pixel's tissue mask (1/0), each image's tissue count and whether it is enough."""
    mask = ops.cast(ops.all(od >= TISSUE_OD, axis=-1), "float32")
    count = ops.sum(mask, axis=1)
    pixels = ops.cast(ops.shape(od)[1], "float32")
    enough = count >= ops.maximum(_MIN_IMAGE_TISSUE, MIN_TISSUE_FRACTION * pixels)
    return mask, count, enough


def _percentile(values: Any, mask: Any, count: Any, q: float) -> Any:
    """The ``q``-th percentile (nearest rank) of each row's tissue values: ``(batch,)``.

    Only the ranks near the extreme that ``q`` lies by are needed, so a partial ``top_k`` of a
    ``min(q, 100 - q)`` share of the row replaces a full sort.
    """
    upper = q >= 50.0
    signed = values if upper else -values
    columns = values.shape[1]
    if columns is None:  # the row length is known only at run time: a full sort
        ordered = ops.sort(ops.where(mask > 0, values, _NOT_TISSUE), axis=1)
        rank = ops.cast(ops.round(q / 100.0 * ops.maximum(count - 1.0, 0.0)), "int32")
        return ops.take_along_axis(ordered, rank[:, None], axis=1)[:, 0]
    k = min(columns, math.ceil(min(q, 100.0 - q) / 100.0 * columns) + 1)
    top, _ = ops.top_k(ops.where(mask > 0, signed, -_NOT_TISSUE), k)  # descending
    rank = ops.round(q / 100.0 * ops.maximum(count - 1.0, 0.0))  # from the smallest
    from_top = ops.maximum(count - 1.0 - rank, 0.0) if upper else rank
    index = ops.cast(ops.minimum(from_top, k - 1.0), "int32")
    value = ops.take_along_axis(top, index[:, None], axis=1)[:, 0]
    return value if upper else -value


def _unit(vectors: Any) -> Any:
    return vectors / ops.maximum(ops.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _cross(a: Any, b: Any) -> Any:
    """Row-wise cross products, written out: TFLite has no Cross op and ONNX converters mishandle
    its broadcasting."""
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return ops.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _restore(inputs: Any, normalised: Any, flat: Any, ok: Any) -> Any:
    """The normalised images where ``ok``, the originals elsewhere, in the input's shape."""
    out = ops.where(ok[:, None, None], ops.clip(normalised, 0.0, 255.0), flat)
    return ops.cast(ops.reshape(out, ops.shape(inputs)), inputs.dtype)


class _StainLayer(keras.layers.Layer):  # type: ignore[misc]
    def __init__(self, **kwargs: Any) -> None:
        # Pixels stay float32: a mixed-precision policy would round them before the logarithms.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


@keras.saving.register_keras_serializable(package="breastcls")
class ReinhardNormalisation(_StainLayer):
    """Match each image's lαβ mean and standard deviation over its tissue to a reference's.

    Args:
        mean: The reference tissue's lαβ mean (three numbers).
        std: Its lαβ standard deviation.
    """

    def __init__(self, mean: list[float], std: list[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean={mean} and std={std} must be three numbers each, std > 0.")
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def call(self, inputs: Any) -> Any:
        flat, grid = _flatten(inputs)
        mask, count, enough = _tissue(_optical_density(grid))
        to_lms = ops.transpose(ops.convert_to_tensor(LMS_FROM_RGB, dtype="float32"))
        to_lab = ops.transpose(ops.convert_to_tensor(LAB_FROM_LOG_LMS, dtype="float32"))
        from_lab = ops.transpose(ops.convert_to_tensor(_LOG_LMS_FROM_LAB, dtype="float32"))

        def log_lms(values: Any) -> Any:
            return ops.log(ops.matmul((values + 1.0) / _LIGHT, to_lms))

        lab = ops.matmul(log_lms(grid), to_lab)
        weight = mask[:, :, None]
        total = ops.maximum(count, 1.0)[:, None, None]
        mean = ops.sum(lab * weight, axis=1, keepdims=True) / total
        std = ops.sqrt(ops.sum(ops.square(lab - mean) * weight, axis=1, keepdims=True) / total)
        ok = ops.logical_and(enough, ops.all(std[:, 0, :] > _MIN_STD, axis=-1))
        reference_mean = ops.convert_to_tensor(self.mean, dtype="float32")
        scale = ops.convert_to_tensor(self.std, dtype="float32") / ops.maximum(std, _MIN_STD)
        # (lab - mean) * scale + reference mean, back in log-LMS: one 3x3 map and an offset.
        matrix = ops.matmul(to_lab[None, :, :] * scale, from_lab)
        offset = ops.matmul(reference_mean - mean * scale, from_lab)
        # Bounded before exp: an outlying pixel of a low-contrast image must not overflow.
        matched = ops.clip(ops.matmul(log_lms(flat), matrix) + offset, -20.0, 2.0)
        to_rgb = ops.transpose(ops.convert_to_tensor(_RGB_FROM_LMS, dtype="float32"))
        return _restore(inputs, ops.matmul(ops.exp(matched), to_rgb) * _LIGHT - 1.0, flat, ok)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="breastcls")
class MacenkoNormalisation(_StainLayer):
    """Rebuild each image with a reference's stain vectors and maximum stain amounts.

    Per image, over its tissue: the two main directions of its optical density (power
    iteration for the first, the 2x2 eigenproblem orthogonal to it for the second), the
    directions at the 1st and 99th percentile angles in that plane as its haematoxylin and eosin
    vectors (paired with the reference's two by direction), each pixel's least-squares stain
    amounts, and their 99th percentiles. The amounts are scaled to the reference's percentiles
    and recombined with its vectors.

    Args:
        stain_matrix: The reference's unit haematoxylin and eosin OD vectors (two rows of three).
        max_concentrations: The reference's 99th-percentile haematoxylin and eosin amounts.
    """

    def __init__(
        self, stain_matrix: list[list[float]], max_concentrations: list[float], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if [len(row) for row in stain_matrix] != [3, 3] or len(max_concentrations) != 2:
            raise ValueError(
                f"stain_matrix={stain_matrix} must be two rows of three numbers and "
                f"max_concentrations={max_concentrations} two numbers."
            )
        self.stain_matrix = [[float(v) for v in row] for row in stain_matrix]
        self.max_concentrations = [float(v) for v in max_concentrations]

    def _plane(self, covariance: Any) -> Any:
        """The ``(batch, 3, 2)`` orthonormal basis of each image's main OD plane."""
        batch = ops.shape(covariance)[0]
        first = ops.ones((batch, 3, 1), dtype="float32") / math.sqrt(3.0)
        for _ in range(_POWER_STEPS):
            first = _unit(ops.matmul(covariance, first)[:, :, 0])[:, :, None]
        first = first[:, :, 0]
        # Any unit vector orthogonal to the first (its cross product with the z or the x axis,
        # whichever is longer), then the second's angle from the 2x2 problem in that plane.
        f0, f1, f2 = first[:, 0], first[:, 1], first[:, 2]
        zeros = ops.zeros_like(f0)
        with_z = ops.stack([f1, -f0, zeros], axis=-1)
        with_x = ops.stack([zeros, f2, -f1], axis=-1)
        larger = ops.norm(with_z, axis=-1, keepdims=True) > ops.norm(with_x, axis=-1, keepdims=True)
        u = _unit(ops.where(larger, with_z, with_x))
        w = _cross(first, u)

        def quadratic(a: Any, b: Any) -> Any:
            return ops.sum(a * ops.matmul(covariance, b[:, :, None])[:, :, 0], axis=-1)

        angle = 0.5 * ops.arctan2(2.0 * quadratic(u, w), quadratic(u, u) - quadratic(w, w))
        second = ops.cos(angle)[:, None] * u + ops.sin(angle)[:, None] * w
        second = second * ops.where(ops.sum(second, axis=-1, keepdims=True) < 0, -1.0, 1.0)
        return ops.stack([first, second], axis=-1)

    def call(self, inputs: Any) -> Any:
        flat, grid = _flatten(inputs)
        od = _optical_density(grid)
        mask, count, enough = _tissue(od)
        tissue_od = od * mask[:, :, None]
        covariance = (
            ops.matmul(ops.transpose(tissue_od, (0, 2, 1)), od)
            / ops.maximum(count, 1.0)[:, None, None]
        )
        plane = self._plane(covariance)
        projected = ops.matmul(od, plane)
        angles = ops.arctan2(projected[:, :, 1], projected[:, :, 0])
        low = _percentile(angles, mask, count, ANGLE_PERCENTILE)
        high = _percentile(angles, mask, count, 100.0 - ANGLE_PERCENTILE)
        one = ops.matmul(plane, ops.stack([ops.cos(low), ops.sin(low)], axis=-1)[:, :, None])
        other = ops.matmul(plane, ops.stack([ops.cos(high), ops.sin(high)], axis=-1)[:, :, None])
        one, other = _unit(one[:, :, 0]), _unit(other[:, :, 0])
        # Which of the two is haematoxylin: the pairing closer to the reference's vectors. The
        # usual rule (more red OD) flips on images whose two stains are both purplish.
        matrix = ops.convert_to_tensor(self.stain_matrix, dtype="float32")
        cosines = ops.matmul(ops.stack([one, other], axis=1), ops.transpose(matrix))
        one_is_h = (cosines[:, 0, 0] + cosines[:, 1, 1] >= cosines[:, 0, 1] + cosines[:, 1, 0])[
            :, None
        ]
        stains = ops.stack(
            [ops.where(one_is_h, one, other), ops.where(one_is_h, other, one)], axis=-1
        )  # (batch, 3, 2): haematoxylin, eosin
        gram = ops.matmul(ops.transpose(stains, (0, 2, 1)), stains)
        g00, g01, g11 = gram[:, 0, 0], gram[:, 0, 1], gram[:, 1, 1]
        determinant = g00 * g11 - g01 * g01
        inverse = (
            ops.stack([ops.stack([g11, -g01], axis=-1), ops.stack([-g01, g00], axis=-1)], axis=-2)
            / ops.maximum(determinant, _MIN_DETERMINANT)[:, None, None]
        )
        to_amounts = ops.matmul(stains, inverse)  # (batch, 3, 2): OD to stain amounts
        amounts = ops.matmul(od, to_amounts)
        maxima = ops.stack(
            [_percentile(amounts[:, :, i], mask, count, _AMOUNT_PERCENTILE) for i in (0, 1)],
            axis=-1,
        )
        ok = ops.logical_and(enough, determinant > _MIN_DETERMINANT)
        ok = ops.logical_and(ok, ops.all(maxima > _MIN_AMOUNT, axis=-1))
        reference = ops.convert_to_tensor(self.max_concentrations, dtype="float32")
        scale = reference / ops.maximum(maxima, _MIN_AMOUNT)
        # Amounts, scaled, rebuilt with the reference's vectors: one 3x3 map of optical density.
        change = ops.matmul(to_amounts * scale[:, None, :], matrix)
        # Bounded before exp: negative amounts (colours outside the stain plane) give OD < 0.
        density = ops.clip(ops.matmul(_optical_density(flat), change), -1.0, 20.0)
        return _restore(inputs, _LIGHT * ops.exp(-density) - 1.0, flat, ok)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "stain_matrix": self.stain_matrix,
            "max_concentrations": self.max_concentrations,
        }


def shift_towards(images: Any, normalised: Any, strength: float) -> Any:
    """Move images a share ``strength`` of the way to their normalised versions, in optical
    density: ``(x + 1)^(1 - s) · (y + 1)^s - 1``, so 0 returns ``images`` and 1 ``normalised``.

    Args:
        images: ``(..., 3)`` 0-255 RGB values.
        normalised: The same images normalised to a reference stain.
        strength: ``s`` in [0, 1].
    """
    x = ops.cast(images, "float32")
    y = ops.cast(normalised, "float32")
    blended = ops.exp((1.0 - strength) * ops.log(x + 1.0) + strength * ops.log(y + 1.0)) - 1.0
    return ops.clip(blended, 0.0, 255.0)
