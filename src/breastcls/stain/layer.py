"""The in-model stain normalisation layers, and the shift towards a reference stain.

Each layer holds its fitted reference as plain numbers in its configuration, so a saved model
carries its normalisation, loads in Keras safe mode and exports with it. Both layers compute in
float32 whatever the model's precision, measure every image's own statistics over its tissue
(optical density at least :data:`~breastcls.stain.optics.TISSUE_OD` in every channel), and
pass an image they cannot measure (too little tissue, a flat colour, one stain direction) through
unchanged: never a NaN.

The statistics are measured on a regular grid of about :data:`STATISTIC_PIXELS` pixels of each
image (every pixel of a small image), and each image is then changed by one map per pixel (a
3x3 matrix on the logarithm of its values): sorting every pixel of a 224 px image for the
percentiles would cost ten times more than decoding it.

Both layers are written for few operations as well as few passes over the pixels: inside a
``tf.data`` map every TensorFlow op costs several times what it costs in a ``tf.function`` (about
0.1 ms each on a 2-core machine, against 0.02), so the statistics take a fixed handful of ops
(repeated squaring instead of power iteration, one ``top_k`` for two percentiles, angles
ranked by a pseudo-angle instead of ``atan2``), constants are prepared in Python, and every
pixel goes through one logarithm, one 3x3 product, one clipped exponential and one per-image
choice (on a ``(batch, values)`` view: a select broadcast over a 4-D image costs four times as
much).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import keras
from keras import ops

from breastcls.layers import _LIGHT, _affine, _optical_density
from breastcls.stain.optics import (
    ANGLE_PERCENTILE,
    LAB_FROM_LOG_LMS,
    LMS_FROM_RGB,
    MIN_TISSUE_FRACTION,
    TISSUE_OD,
)

__all__ = [
    "STATISTIC_PIXELS",
    "MacenkoNormalisation",
    "ReinhardNormalisation",
    "pipeline_function",
    "shift_towards",
]

STATISTIC_PIXELS = 4096
"""About how many pixels of each image (a regular grid) its statistics are measured on."""

_MIN_IMAGE_TISSUE = 16.0  # with MIN_TISSUE_FRACTION: the least tissue an image is normalised on
_MIN_STD = 1e-3  # a flatter lαβ channel gives no scale to match
_MIN_DETERMINANT = 1e-3  # sin² of the angle between H and E: below, one stain direction only
_MIN_AMOUNT = 1e-3  # a 99th-percentile stain amount below this: no stain to scale
_AMOUNT_PERCENTILE = 99.0
_SQUARINGS = 6  # the OD covariance squared 6 times: 64 steps of power iteration, in 24 ops
_NOT_TISSUE = 1e9  # ranks background below every tissue value
_LOG_LIGHT = math.log(_LIGHT)
# The largest exponent of the rebuilt light (I + 1): exp of it, less 1, stays below 255 in float32
# (256 · (1 - 1e-6) - 1, 2.6e-4 grey levels under 255), so no clip is needed after it.
_TOP_EXPONENT = _LOG_LIGHT - 1e-6


def _inverse(matrix: tuple[tuple[float, ...], ...]) -> list[list[float]]:
    import numpy as np

    return [[float(v) for v in row] for row in np.linalg.inv(np.array(matrix))]


def _transposed(matrix: Any, factor: float = 1.0) -> list[list[float]]:
    return [[factor * float(matrix[j][i]) for j in range(3)] for i in range(3)]


_RGB_FROM_LMS = _inverse(LMS_FROM_RGB)
_LOG_LMS_FROM_LAB = _inverse(LAB_FROM_LOG_LMS)
# Right operands (pixels are rows), prepared once: a constant costs one op per call.
_TO_LMS = _transposed(LMS_FROM_RGB)
_TO_LAB = _transposed(LAB_FROM_LOG_LMS)
_FROM_LAB = _transposed(_LOG_LMS_FROM_LAB)
_TO_RGB_LIGHT = _transposed(_RGB_FROM_LMS, _LIGHT)  # LMS to 256 · (I + 1) / 256 = I + 1
_LMS_OF_ONE = [sum(row) for row in LMS_FROM_RGB]  # (1, 1, 1) @ _TO_LMS: the "+ 1" in LMS


def _grid(x: Any) -> Any:
    """The ``(batch, pixels, 3)`` grid of float32 images ``x`` that statistics are measured on."""
    height, width = x.shape[1], x.shape[2]
    batch = ops.shape(x)[0]
    if height is None or width is None:  # an image size known only at run time: every pixel
        return ops.reshape(x, (batch, -1, 3))
    stride = max(1, round(math.sqrt(height * width / STATISTIC_PIXELS)))
    # The static pixel count keeps the grid's shape known, which _percentiles' top_k needs.
    return ops.reshape(
        x[:, ::stride, ::stride, :], (batch, -(-height // stride) * -(-width // stride), 3)
    )


def _tissue(od: Any) -> tuple[Any, Any, Any]:
    """Each pixel's tissue mask (1/0), each image's tissue count and whether it is enough."""
    mask = ops.cast(ops.all(od >= TISSUE_OD, axis=-1), "float32")
    count = ops.sum(mask, axis=1)
    pixels = ops.cast(ops.shape(od)[1], "float32")
    enough = count >= ops.maximum(_MIN_IMAGE_TISSUE, MIN_TISSUE_FRACTION * pixels)
    return mask, count, enough


def _percentiles(values: Any, mask: Any, count: Any, qs: tuple[float, ...]) -> Any:
    """The ``qs[r]``-th percentile (nearest rank) of each image's tissue values in row ``r`` of
    ``values`` (``(batch, rows, pixels)``): ``(batch, rows)``.

    Only the ranks near the extreme that each ``q`` lies by are needed, so one partial ``top_k``
    of a ``min(q, 100 - q)`` share of every row (the lower rows negated) replaces a full sort.
    """
    upper = [q >= 50.0 for q in qs]
    sign = ops.convert_to_tensor([1.0 if u else -1.0 for u in upper], dtype="float32")
    signed = ops.where(mask[:, None, :] > 0, values * sign[None, :, None], -_NOT_TISSUE)
    last = ops.maximum(count - 1.0, 0.0)[:, None]  # (batch, 1)
    rank = ops.round(ops.convert_to_tensor([q / 100.0 for q in qs], dtype="float32") * last)
    columns = values.shape[2]
    if columns is None:  # the row length is known only at run time: a full sort
        ordered = ops.flip(ops.sort(signed, axis=-1), axis=-1)
        k_last = ops.cast(ops.shape(values)[2], "float32") - 1.0
    else:
        k = min(columns, max(math.ceil(min(q, 100.0 - q) / 100.0 * columns) + 1 for q in qs))
        ordered, _ = ops.top_k(signed, k)  # descending
        k_last = float(k - 1)
    # Ranks counted from the top of the signed row: the largest for an upper q, the smallest
    # (negated) for a lower one.
    is_upper = ops.convert_to_tensor([1.0 if u else 0.0 for u in upper], dtype="float32")
    from_top = is_upper * ops.maximum(last - rank, 0.0) + (1.0 - is_upper) * rank
    index = ops.cast(ops.minimum(from_top, k_last), "int32")
    return ops.take_along_axis(ordered, index[:, :, None], axis=2)[:, :, 0] * sign


def _unit(vectors: Any) -> Any:
    return vectors / ops.maximum(ops.norm(vectors, axis=-1, keepdims=True), 1e-12)


def _cross(a: Any, b: Any) -> Any:
    """Row-wise cross products, written out: TFLite has no Cross op and ONNX converters mishandle
    its broadcasting."""
    a0, a1, a2 = a[:, 0], a[:, 1], a[:, 2]
    b0, b1, b2 = b[:, 0], b[:, 1], b[:, 2]
    return ops.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-1)


def _pseudo_angle(points: Any) -> Any:
    """A number that orders ``(..., 2)`` plane points as their angle ``atan2(y, x)`` does.

    ``y / (|x| + |y|)`` for ``x >= 0`` (from -1 to 1), ``±2`` minus it beyond: monotone in the
    angle over (-π, π], so the same pixel sits at every percentile, for a division and two
    selects per pixel where ``atan2`` costs about 30 ns on a CPU (a third of the layer's
    statistics). :func:`_plane_direction` turns one back into a direction.
    """
    x, y = points[..., 0], points[..., 1]
    diamond = y / ops.maximum(ops.abs(x) + ops.abs(y), 1e-12)
    beyond = ops.where(y >= 0, 2.0, -2.0) - diamond
    return ops.where(x >= 0, diamond, beyond)


def _plane_direction(pseudo_angles: Any) -> Any:
    """The ``(batch, 2, n)`` plane points, on the diamond ``|x| + |y| = 1``, at the
    :func:`_pseudo_angle` values ``(batch, n)``: not unit length, in their angles' directions."""
    beyond = ops.abs(pseudo_angles) > 1.0
    y = ops.where(beyond, ops.where(pseudo_angles > 0, 2.0, -2.0) - pseudo_angles, pseudo_angles)
    x = (1.0 - ops.abs(y)) * ops.where(beyond, -1.0, 1.0)
    return ops.stack([x, y], axis=1)


def _log_light_map(
    log_light: Any, matrix: Any, offset: Any, low: float, high: float, *, compiled: bool
) -> Any:
    """``clip(log_light @ matrix + offset, low, high)`` per image, in the images' 4-D shape.

    ``compiled``: written for XLA, as three broadcast products of channel slices, which XLA fuses
    with the logarithm before and the exponential after into two passes over the batch instead
    of four (0.13 ms of CPU less per 224 px image). TensorFlow's own kernels run that form at
    half the speed of one batched product, which is the other form.
    """
    if compiled:
        rows = matrix[:, None, None, :, :]
        mapped = (
            log_light[..., 0:1] * rows[..., 0, :]
            + log_light[..., 1:2] * rows[..., 1, :]
            + log_light[..., 2:3] * rows[..., 2, :]
            + offset[:, None, None, :]
        )
    else:
        mapped = _affine(log_light, matrix, offset)
    return ops.minimum(ops.maximum(mapped, low), high)


def _restore(x: Any, normalised: Any, ok: Any, dtype: Any) -> Any:
    """The normalised images where ``ok``, the images ``x`` (float32) elsewhere, as ``dtype``."""
    batch = ops.shape(x)[0]
    chosen = ops.where(
        ok[:, None], ops.reshape(normalised, (batch, -1)), ops.reshape(x, (batch, -1))
    )
    return ops.cast(ops.reshape(chosen, ops.shape(x)), dtype)


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

    def call(self, inputs: Any, compiled: bool = False) -> Any:
        """Normalise a batch; ``compiled``: the form for XLA (see :func:`pipeline_function`)."""
        x = ops.cast(inputs, "float32")
        grid = _grid(x)
        mask, count, enough = _tissue(_optical_density(grid))
        to_lms = ops.convert_to_tensor(_TO_LMS, dtype="float32")
        to_lab = ops.convert_to_tensor(_TO_LAB, dtype="float32")
        from_lab = ops.convert_to_tensor(_FROM_LAB, dtype="float32")
        lab = ops.matmul(ops.log(ops.matmul((grid + 1.0) / _LIGHT, to_lms)), to_lab)
        weight = mask[:, :, None]
        total = ops.maximum(count, 1.0)[:, None, None]
        mean = ops.sum(lab * weight, axis=1, keepdims=True) / total
        std = ops.sqrt(ops.sum(ops.square(lab - mean) * weight, axis=1, keepdims=True) / total)
        ok = ops.logical_and(enough, ops.all(std[:, 0, :] > _MIN_STD, axis=-1))
        reference_mean = ops.convert_to_tensor(self.mean, dtype="float32")
        scale = ops.convert_to_tensor(self.std, dtype="float32") / ops.maximum(std, _MIN_STD)
        # (lab - mean) * scale + reference mean, back in log-LMS: one 3x3 map and an offset,
        # applied to ln((I + 1) @ to_lms) (the 1/256 of the LMS moves into the offset).
        matrix = ops.matmul(to_lab[None, :, :] * scale, from_lab)
        offset = ops.matmul(reference_mean - mean * scale, from_lab)[:, 0, :]
        offset = offset - _LOG_LIGHT * ops.sum(matrix, axis=1)
        lms = ops.matmul(x, to_lms) + ops.convert_to_tensor(_LMS_OF_ONE, dtype="float32")
        # Bounded before exp: an outlying pixel of a low-contrast image must not overflow.
        matched = _log_light_map(ops.log(lms), matrix, offset, -20.0, 2.0, compiled=compiled)
        to_light = ops.convert_to_tensor(_TO_RGB_LIGHT, dtype="float32")
        rebuilt = ops.clip(ops.matmul(ops.exp(matched), to_light), 1.0, _LIGHT) - 1.0
        return _restore(x, rebuilt, ok, inputs.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="breastcls")
class MacenkoNormalisation(_StainLayer):
    """Rebuild each image with a reference's stain vectors and maximum stain amounts.

    Per image, over its tissue: the two main directions of its optical density (the
    covariance's 64th power by repeated squaring for the first, the 2x2 eigenproblem orthogonal
    to it for the second), the
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
        # The main direction: the covariance's 64th power (six squarings, each rescaled by its
        # largest entry) applied to (1, 1, 1), i.e. 64 steps of power iteration.
        power = covariance
        for _ in range(_SQUARINGS):
            power = ops.matmul(power, power)
            power = power / ops.maximum(ops.max(power, axis=(1, 2), keepdims=True), 1e-30)
        first = _unit(ops.sum(power, axis=-1))
        # Any unit vector orthogonal to the first (its cross product with the z or the x axis,
        # whichever is longer), then the second's angle from the 2x2 problem in that plane.
        f0, f1, f2 = first[:, 0], first[:, 1], first[:, 2]
        zeros = ops.zeros_like(f0)
        with_z = ops.stack([f1, -f0, zeros], axis=-1)
        with_x = ops.stack([zeros, f2, -f1], axis=-1)
        larger = ops.norm(with_z, axis=-1, keepdims=True) > ops.norm(with_x, axis=-1, keepdims=True)
        u = _unit(ops.where(larger, with_z, with_x))
        basis = ops.stack([u, _cross(first, u)], axis=-1)  # (batch, 3, 2)
        small = ops.matmul(ops.matmul(ops.transpose(basis, (0, 2, 1)), covariance), basis)
        angle = 0.5 * ops.arctan2(2.0 * small[:, 0, 1], small[:, 0, 0] - small[:, 1, 1])
        rotation = ops.stack([ops.cos(angle), ops.sin(angle)], axis=-1)
        second = ops.matmul(basis, rotation[:, :, None])[:, :, 0]
        second = second * ops.where(ops.sum(second, axis=-1, keepdims=True) < 0, -1.0, 1.0)
        return ops.stack([first, second], axis=-1)

    def call(self, inputs: Any, compiled: bool = False) -> Any:
        """Normalise a batch; ``compiled``: the form for XLA (see :func:`pipeline_function`)."""
        x = ops.cast(inputs, "float32")
        od = _optical_density(_grid(x))
        mask, count, enough = _tissue(od)
        tissue_od = od * mask[:, :, None]
        covariance = (
            ops.matmul(ops.transpose(tissue_od, (0, 2, 1)), od)
            / ops.maximum(count, 1.0)[:, None, None]
        )
        plane = self._plane(covariance)
        angles = _pseudo_angle(ops.matmul(od, plane))
        low_high = _percentiles(
            ops.stack([angles, angles], axis=1),
            mask,
            count,
            (ANGLE_PERCENTILE, 100.0 - ANGLE_PERCENTILE),
        )  # (batch, 2)
        # (batch, 3, 2): the directions at the two angles, as columns.
        directions = ops.matmul(plane, _plane_direction(low_high))
        directions = directions / ops.maximum(ops.norm(directions, axis=1, keepdims=True), 1e-12)
        # Which of the two is haematoxylin: the pairing closer to the reference's vectors. The
        # usual rule (more red OD) flips on images whose two stains are both purplish.
        matrix = ops.convert_to_tensor(self.stain_matrix, dtype="float32")
        cosines = ops.matmul(ops.transpose(directions, (0, 2, 1)), ops.transpose(matrix))
        one_is_h = cosines[:, 0, 0] + cosines[:, 1, 1] >= cosines[:, 0, 1] + cosines[:, 1, 0]
        stains = ops.where(
            one_is_h[:, None, None], directions, ops.flip(directions, axis=2)
        )  # (batch, 3, 2): haematoxylin, eosin
        gram = ops.matmul(ops.transpose(stains, (0, 2, 1)), stains)
        g00, g01, g11 = gram[:, 0, 0], gram[:, 0, 1], gram[:, 1, 1]
        determinant = g00 * g11 - g01 * g01
        inverse = (
            ops.stack([ops.stack([g11, -g01], axis=-1), ops.stack([-g01, g00], axis=-1)], axis=-2)
            / ops.maximum(determinant, _MIN_DETERMINANT)[:, None, None]
        )
        to_amounts = ops.matmul(stains, inverse)  # (batch, 3, 2): OD to stain amounts
        amounts = ops.matmul(ops.transpose(to_amounts, (0, 2, 1)), ops.transpose(od, (0, 2, 1)))
        maxima = _percentiles(amounts, mask, count, (_AMOUNT_PERCENTILE, _AMOUNT_PERCENTILE))
        ok = ops.logical_and(enough, determinant > _MIN_DETERMINANT)
        ok = ops.logical_and(ok, ops.all(maxima > _MIN_AMOUNT, axis=-1))
        reference = ops.convert_to_tensor(self.max_concentrations, dtype="float32")
        scale = reference / ops.maximum(maxima, _MIN_AMOUNT)
        # Amounts, scaled, rebuilt with the reference's vectors: one 3x3 map C of optical
        # density, OD' = OD @ C. With OD = ln 256 - ln(I + 1), the new light's logarithm is
        # ln(I' + 1) = ln 256 - OD' = ln(I + 1) @ C + ln 256 · (1 - column sums of C).
        change = ops.matmul(to_amounts * scale[:, None, :], matrix)
        offset = _LOG_LIGHT * (1.0 - ops.sum(change, axis=1))
        # Bounded before exp: OD' in [0, ln 256] is I' in [0, 255] (negative amounts, colours
        # outside the stain plane, would give OD' < 0).
        # (log1p and expm1 would save two passes, but tf2onnx converts neither.)
        light = _log_light_map(
            ops.log(x + 1.0), change, offset, 0.0, _TOP_EXPONENT, compiled=compiled
        )
        return _restore(x, ops.exp(light) - 1.0, ok, inputs.dtype)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "stain_matrix": self.stain_matrix,
            "max_concentrations": self.max_concentrations,
        }


def pipeline_function(layer: Any) -> Any:
    """A function of a batch that applies a stain layer in a ``tf.data`` map, fast.

    On TensorFlow it is the layer's call compiled with XLA (``jit_compile=True``): inside a
    ``tf.data`` map every TensorFlow op is dispatched by the map's own function runtime, several
    times slower than in a ``tf.function``, and XLA fuses the per-pixel map (the breastcls
    layers' ``compiled`` form) into two passes over the batch. Each batch shape is compiled once
    (the first batch, and a smaller last one). On other backends it is the layer itself.

    Build the dataset that maps it once and iterate over it for every epoch: each new iterator
    instantiates the compiled function again (0.1-0.15 s on 2 cores), and rebuilding the
    dataset traces the map again as well.

    Args:
        layer: A :class:`ReinhardNormalisation` or :class:`MacenkoNormalisation` (or any layer).
    """
    if keras.backend.backend() != "tensorflow":
        return layer
    import tensorflow as tf

    call = (
        functools.partial(layer.call, compiled=True)
        if isinstance(layer, _StainLayer)
        else layer.call
    )
    return tf.function(call, jit_compile=True, autograph=False)


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
