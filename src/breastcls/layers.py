"""Keras layers of breastcls, registered for (safe-mode) serialisation.

Importing this module registers the layers; :func:`breastcls.model.load_keras_model` does so
before loading.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

__all__ = [
    "HED_FROM_RGB",
    "RGB_FROM_HED",
    "ImagePreprocessing",
    "RandomColorJitter",
    "RandomHEDJitter",
    "SeedAugmentation",
    "adjust_hed",
    "hed_to_rgb",
    "rgb_to_hed",
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="breastcls")
class ImagePreprocessing(keras.layers.Layer):  # type: ignore[misc]
    """Scale 0-255 RGB pixels the way a backbone was trained (``tf``, ``torch``, ``caffe``).

    It holds no weights, so it adds no parameters, and it is saved inside the model: a loaded
    model takes raw pixels, whatever its backbone.
    """

    def __init__(self, mode: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("none", "tf", "torch", "caffe"):
            raise ValueError(f"Unknown preprocessing mode {mode!r}: use none, tf, torch or caffe.")
        self.mode = mode

    def call(self, inputs: Any) -> Any:
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_IMAGENET_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(_IMAGENET_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "caffe":
            mean = ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
            return ops.flip(x, axis=-1) - mean
        return x

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="breastcls")
class SeedAugmentation(keras.layers.Layer):  # type: ignore[misc]
    """The seed blog's ``ImageDataGenerator`` transform, faithfully, as an in-graph layer.

    ``ImageDataGenerator(zoom_range=2, rotation_range=90, horizontal_flip=True,
    vertical_flip=True)``: a rotation drawn from U(-90°, 90°), independent zoom factors for x and
    y drawn from U(1 - 2, 1 + 2) = U(-1, 3) (so negative factors mirror the image and factors near
    0 magnify it enormously), ``fill_mode="nearest"``, and each flip with probability 0.5. Active
    only when ``training=True``.
    """

    def __init__(
        self,
        rotation_degrees: float = 90.0,
        zoom_range: float = 2.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rotation_degrees = rotation_degrees
        self.zoom_range = zoom_range
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # On TensorFlow its affine transform (ImageProjectiveTransformV3) has no XLA kernel, as
        # in Keras' RandomRotation: the trainer then leaves this layer out of XLA
        # (auto-clustering). JAX's transform is plain XLA, so the whole step compiles there.
        self.supports_jit = keras.backend.backend() != "tensorflow"

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        images = ops.cast(inputs, "float32")
        shape = ops.shape(images)
        batch, height, width = (
            shape[0],
            ops.cast(shape[1], "float32"),
            ops.cast(shape[2], "float32"),
        )

        def uniform(low: float, high: float) -> Any:
            return keras.random.uniform(
                (batch,), low, high, seed=self.seed_generator, dtype="float32"
            )

        angle = uniform(-self.rotation_degrees, self.rotation_degrees) * (math.pi / 180.0)
        # Flipping the transformed image about its centre is the same as negating that axis'
        # zoom factor, so the seed's flips cost nothing beyond the single affine transform.
        flip_x = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
        flip_y = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
        zoom_x = uniform(1.0 - self.zoom_range, 1.0 + self.zoom_range) * flip_x
        zoom_y = uniform(1.0 - self.zoom_range, 1.0 + self.zoom_range) * flip_y
        cos, sin = ops.cos(angle), ops.sin(angle)
        # ImageDataGenerator maps output pixel o to input pixel R(theta) @ Z @ (o - c) + c.
        a0, a1 = cos * zoom_x, -sin * zoom_y
        b0, b1 = sin * zoom_x, cos * zoom_y
        cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
        a2 = cx - a0 * cx - a1 * cy
        b2 = cy - b0 * cx - b1 * cy
        zeros = ops.zeros_like(angle)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        images = ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="nearest"
        )
        return ops.cast(images, inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rotation_degrees": self.rotation_degrees,
            "zoom_range": self.zoom_range,
            "seed": self.seed,
        }


# Stain augmentation. HED jitter is an affine map of each image's optical density, colour jitter
# an affine map of its RGB values, so each costs a few element-wise ops and one 3x3 matrix product
# per pixel; RandomHEDJitter can run both in one pass (the `pathology` augmentation does).

#: Ruifrok & Johnston's H&E-DAB stain matrix, as ``skimage.color.rgb_from_hed``: each row is the
#: optical density (OD) of one unit of a stain in R, G and B (haematoxylin, eosin, DAB).
RGB_FROM_HED: tuple[tuple[float, float, float], ...] = (
    (0.65, 0.70, 0.29),
    (0.07, 0.99, 0.11),
    (0.27, 0.57, 0.78),
)


def _inverse(matrix: tuple[tuple[float, float, float], ...]) -> tuple[tuple[float, ...], ...]:
    import numpy as np

    return tuple(tuple(float(value) for value in row) for row in np.linalg.inv(matrix))


#: The inverse of :data:`RGB_FROM_HED` (``skimage.color.hed_from_rgb``): OD to stain amounts.
HED_FROM_RGB: tuple[tuple[float, ...], ...] = _inverse(RGB_FROM_HED)

# Transmitted light: a pixel of value I has OD -log((I + 1) / 256), so white (255) has OD 0 and
# black (0) a finite OD of log(256) instead of infinity.
_LIGHT = 256.0


def _optical_density(images: Any) -> Any:
    return -ops.log((ops.cast(images, "float32") + 1.0) / _LIGHT)


def rgb_to_hed(images: Any) -> Any:
    """Deconvolve 0-255 RGB images into haematoxylin, eosin and DAB amounts (Ruifrok–Johnston).

    The optical density ``-ln((I + 1) / 256)`` of each pixel times :data:`HED_FROM_RGB`, in
    float32 whatever the input's dtype. Amounts are not clipped at 0, so :func:`hed_to_rgb`
    inverts this exactly (up to float32 rounding).

    Args:
        images: ``(..., 3)`` RGB values in 0-255.

    Returns:
        ``(..., 3)`` float32 stain amounts (natural-log OD units).
    """
    matrix = ops.convert_to_tensor(HED_FROM_RGB, dtype="float32")
    return ops.matmul(_optical_density(images), matrix)


def hed_to_rgb(hed: Any) -> Any:
    """Reconstruct RGB images from stain amounts: the inverse of :func:`rgb_to_hed`.

    Args:
        hed: ``(..., 3)`` haematoxylin, eosin and DAB amounts.

    Returns:
        ``(..., 3)`` float32 RGB values, not clipped (amounts off the range of real images give
        values outside 0-255).
    """
    matrix = ops.convert_to_tensor(RGB_FROM_HED, dtype="float32")
    density = ops.matmul(ops.cast(hed, "float32"), matrix)
    return _LIGHT * ops.exp(-density) - 1.0


def _affine(pixels: Any, matrix: Any, offset: Any) -> Any:
    """Return ``pixels @ matrix + offset`` per image (``(batch, 3, 3)`` and ``(batch, 3)``).

    Measured on TensorFlow's CPU kernels (224 px, batch 16): a ``(batch, 1, 3, 3)`` right operand
    broadcast over rows is the fastest product, ahead of a reshape to ``(batch, pixels, 3)`` and
    of an einsum; and an offset broadcast over the last two axes costs three times one tiled
    along a row first and broadcast over rows only.
    """
    row = ops.tile(offset[:, None, None, :], (1, 1, ops.shape(pixels)[2], 1))
    return ops.matmul(pixels, matrix[:, None, :, :]) + row


def _clip(images: Any) -> Any:
    # Two element-wise ops: faster on the CPU than ops.clip (tf.clip_by_value).
    return ops.minimum(ops.maximum(images, 0.0), 255.0)


def _hed_light(images: Any, scale: Any, shift: Any) -> Any:
    """Return ``I + 1`` of the images with their stain amounts scaled and shifted, unclipped.

    The stain change is a change of optical density linear in the pixel's OD,
    ``ΔOD = OD @ C + shift @ RGB_FROM_HED`` with ``C = HED_FROM_RGB @ diag(scale - 1) @
    RGB_FROM_HED``, and the light is ``(I + 1) · exp(-ΔOD)``. As ``OD = ln 256 - ln(I + 1)``,
    ``-ΔOD = ln(I + 1) @ C - bias`` with a per-image ``bias``: one log, one 3x3 product, one exp
    and two products per pixel, and ``scale = 1, shift = 0`` gives ``exp(0) = 1`` exactly.
    """
    light = ops.cast(images, "float32") + 1.0
    scale, shift = ops.cast(scale, "float32"), ops.cast(shift, "float32")
    to_hed = ops.convert_to_tensor(HED_FROM_RGB, dtype="float32")
    to_rgb = ops.convert_to_tensor(RGB_FROM_HED, dtype="float32")
    change = ops.matmul(to_hed[None, :, :] * (scale - 1.0)[:, None, :], to_rgb)  # (batch, 3, 3)
    bias = math.log(_LIGHT) * ops.sum(change, axis=1) + ops.matmul(shift, to_rgb)  # (batch, 3)
    log_gain = _affine(ops.log(light), change, -bias)  # -ΔOD
    return light * ops.exp(log_gain)


def adjust_hed(images: Any, scale: Any, shift: Any) -> Any:
    """Scale and shift each image's stain amounts: ``hed_to_rgb(rgb_to_hed(x) * scale + shift)``.

    Computed as a change of optical density, ``(x + 1) * exp(-ΔOD) - 1`` with ``ΔOD`` linear in
    the pixel's OD, so ``scale = 1, shift = 0`` returns the images (up to the float32 rounding of
    ``x + 1 - 1``), and in float32.

    Args:
        images: ``(batch, height, width, 3)`` RGB values in 0-255.
        scale: ``(batch, 3)`` factors of the H, E and D amounts of each image.
        shift: ``(batch, 3)`` amounts added to H, E and D (natural-log OD units).

    Returns:
        The float32 images, clipped to 0-255.
    """
    return _clip(_hed_light(images, scale, shift) - 1.0)


def _check_strength(what: str, value: float, high: float, meaning: str) -> None:
    if not 0.0 <= value <= high:
        raise ValueError(
            f"{what}={value!r} is out of range: use 0 <= {what} <= {high} ({meaning}); "
            "0 turns it off."
        )


def _check_colour(brightness: float, contrast: float, saturation: float, hue: float) -> None:
    _check_strength("brightness", brightness, 1.0, "a fraction of 255 added or removed")
    _check_strength("contrast", contrast, 1.0, "factor U(1-contrast, 1+contrast)")
    _check_strength("saturation", saturation, 1.0, "factor U(1-saturation, 1+saturation)")
    _check_strength("hue", hue, 0.5, "a rotation of U(-hue, hue) turns")


# Rec. 601 luma: the grey a pixel is desaturated towards, and the mean that contrast keeps.
_LUMA = (0.299, 0.587, 0.114)


def _colour_map(
    mean: Any,
    strengths: tuple[float, float, float, float],
    seed_generator: Any,
) -> tuple[Any, Any]:
    """Draw one colour jitter per image: ``matrix`` and ``offset`` of ``x @ matrix + offset``.

    Args:
        mean: ``(batch, 3)`` mean RGB of each image (contrast keeps its luma).
        strengths: Brightness, contrast, saturation and hue, as :class:`RandomColorJitter`.
        seed_generator: Where the draws come from.

    Returns:
        ``(batch, 3, 3)`` matrices and ``(batch, 3)`` offsets, float32.
    """
    brightness, contrast_spread, saturation_spread, hue = strengths
    batch = ops.shape(mean)[0]

    def uniform(spread: float, centre: float = 0.0) -> Any:
        return keras.random.uniform(
            (batch, 1, 1), centre - spread, centre + spread, seed=seed_generator
        )

    delta = uniform(brightness) * 255.0
    contrast = uniform(contrast_spread, 1.0)
    saturation = uniform(saturation_spread, 1.0)
    angle = uniform(hue) * (2.0 * math.pi)
    luma = ops.convert_to_tensor(_LUMA, dtype="float32")
    eye = ops.eye(3, dtype="float32")
    # Row vectors: x @ (s I + (1 - s) luma 1ᵀ) moves each pixel towards its luma.
    desaturate = saturation * eye + (1.0 - saturation) * (luma[:, None] * ops.ones((1, 3)))
    # Rodrigues' rotation about the unit grey axis k, transposed for row vectors.
    k = 1.0 / math.sqrt(3.0)
    cross = ops.convert_to_tensor([[0.0, k, -k], [-k, 0.0, k], [k, -k, 0.0]], dtype="float32")
    cos, sin = ops.cos(angle), ops.sin(angle)
    rotate = cos * eye + sin * cross + (1.0 - cos) * (k * k) * ops.ones((3, 3))
    matrix = contrast * ops.matmul(desaturate, rotate)  # (batch, 3, 3)
    # Brightness and contrast move grey along the grey axis, which both maps keep; the image's
    # mean luma is its mean pixel's, as luma is linear.
    mean_luma = ops.sum(mean * luma, axis=-1)[:, None, None]
    offset = (delta + (1.0 - contrast) * mean_luma)[:, 0, :] * ops.ones((1, 3))  # (batch, 3)
    return matrix, offset


@keras.saving.register_keras_serializable(package="breastcls")
class RandomHEDJitter(keras.layers.Layer):  # type: ignore[misc]
    """Jitter each image's haematoxylin, eosin and DAB amounts (stain colour augmentation).

    Each image is deconvolved with Ruifrok & Johnston's matrix (:func:`rgb_to_hed`), each of its
    three stain amounts is multiplied by its own factor from U(1 - scale, 1 + scale) and shifted
    by its own amount from U(-shift, shift), and the image is reconstructed and clipped to 0-255.
    The defaults, 0.05 and 0.05, are Tellez et al.'s "HED-light" (Medical Image Analysis 58,
    2019), their best-performing colour augmentation with HSV; "HED-strong" was 0.2 and 0.2.

    ``brightness``, ``contrast``, ``saturation`` and ``hue`` (0, off, by default) add
    :class:`RandomColorJitter`'s jitter, drawn the same way, to the reconstructed image in the
    same pass, before the one clip: the same result as the two layers in turn wherever the HED
    step leaves a value within 0-255, for about two thirds of their cost.
    Active only when ``training=True``; it computes in float32 whatever the model's precision.
    """

    def __init__(
        self,
        scale: float = 0.05,
        shift: float = 0.05,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        # Pixels stay float32 here: a mixed-precision policy would otherwise round them first.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        _check_strength("scale", scale, 1.0, "stain amounts are multiplied by U(1-scale, 1+scale)")
        _check_strength("shift", shift, 1.0, "amounts U(-shift, shift) are added, in OD units")
        _check_colour(brightness, contrast, saturation, hue)
        self.scale = scale
        self.shift = shift
        self.colour = (brightness, contrast, saturation, hue)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        batch = ops.shape(inputs)[0]
        scale = keras.random.uniform(
            (batch, 3), 1.0 - self.scale, 1.0 + self.scale, seed=self.seed_generator
        )
        shift = keras.random.uniform((batch, 3), -self.shift, self.shift, seed=self.seed_generator)
        light = _hed_light(inputs, scale, shift)  # the jittered image + 1
        if any(self.colour):
            mean = ops.mean(light, axis=(1, 2)) - 1.0
            matrix, offset = _colour_map(mean, self.colour, self.seed_generator)
            # (light - 1) @ matrix + offset, with the - 1 folded into the offset.
            images = _affine(light, matrix, offset - ops.sum(matrix, axis=1))
        else:
            images = light - 1.0
        return ops.cast(_clip(images), inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        brightness, contrast, saturation, hue = self.colour
        return {
            **super().get_config(),
            "scale": self.scale,
            "shift": self.shift,
            "brightness": brightness,
            "contrast": contrast,
            "saturation": saturation,
            "hue": hue,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package="breastcls")
class RandomColorJitter(keras.layers.Layer):  # type: ignore[misc]
    """Jitter each image's brightness, contrast, saturation and hue, in one linear map.

    Per image, in this order: brightness adds U(-brightness, brightness) x 255 to every value;
    contrast scales the distance from the image's mean luma by U(1 - contrast, 1 + contrast);
    saturation scales each pixel's distance from its own luma by U(1 - saturation,
    1 + saturation); hue rotates colours about the grey axis by U(-hue, hue) turns (as SVG's
    ``hueRotate``, not an HSV round trip). The four compose into one 3x3 matrix and an offset per
    image, applied once and clipped to 0-255; strengths of 0 return the images unchanged.
    Active only when ``training=True``; it computes in float32 whatever the model's precision.
    """

    def __init__(
        self,
        brightness: float = 0.05,
        contrast: float = 0.1,
        saturation: float = 0.1,
        hue: float = 0.02,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        _check_colour(brightness, contrast, saturation, hue)
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs: Any, training: bool = False) -> Any:
        if not training:
            return inputs
        x = ops.cast(inputs, "float32")
        strengths = (self.brightness, self.contrast, self.saturation, self.hue)
        matrix, offset = _colour_map(ops.mean(x, axis=(1, 2)), strengths, self.seed_generator)
        return ops.cast(_clip(_affine(x, matrix, offset)), inputs.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "brightness": self.brightness,
            "contrast": self.contrast,
            "saturation": self.saturation,
            "hue": self.hue,
            "seed": self.seed,
        }
