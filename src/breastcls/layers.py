"""Keras layers of breastcls, registered for (safe-mode) serialisation.

Importing this module registers the layers; :func:`breastcls.load_model` does so before loading.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

__all__ = ["ImagePreprocessing", "SeedAugmentation"]

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
