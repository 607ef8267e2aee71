"""A faithful reference of the seed blog's input pipeline, the baseline breastcls is measured
against.

The blog (``shared/seed/blog-breast-cancer-cnn.txt``) does, in order:

1. ``Dataset_loader``: a Python loop over the files of each class folder; each PNG is opened with
   PIL, converted to RGB, turned into an array with ``np.asarray`` and resized with
   ``cv2.resize(img, (224, 224))``; the list becomes one ``uint8`` array per class.
2. Labels of zeros and ones, ``np.concatenate`` of the classes, a shuffle by fancy indexing,
   ``to_categorical`` and ``train_test_split(test_size=0.2, random_state=11)``: each step copies
   the whole image array.
3. ``ImageDataGenerator(zoom_range=2, rotation_range=90, horizontal_flip=True,
   vertical_flip=True).flow(x_train, y_train, batch_size=16)``: ``flow`` keeps a ``float32`` copy
   of the array; every batch is augmented image by image on the host with
   ``scipy.ndimage.affine_transform`` (bilinear, ``fill_mode="nearest"``).
4. ``model.fit`` on that generator, in float32, with a ``Sequential`` model of the backbone and
   the seed head (GlobalAveragePooling2D, Dropout 0.5, BatchNormalization, Dense softmax),
   Adam 1e-4 and binary cross-entropy.

Keras 3 no longer ships ``ImageDataGenerator``, so :class:`SeedFlow` re-implements its ``flow``
with the same maths as ``keras_preprocessing.image`` 1.1 (``random_transform`` and
``apply_affine_transform``: rotation U(-90°, 90°), zoom factors U(1 - 2, 1 + 2) per axis, the
matrix centred with ``transform_matrix_offset_center``, then the flips) as a
``keras.utils.PyDataset``. Keras 2's ``fit_generator`` produced batches on one background thread;
Keras 3 runs a one-worker ``PyDataset`` through a prefetching ``tf.data`` generator, which is the
same: one host thread producing batches ahead of the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import numpy.typing as npt
from PIL import Image
from scipy import ndimage

__all__ = [
    "SeedFlow",
    "apply_affine_transform",
    "dataset_loader",
    "random_transform",
    "seed_model",
    "seed_prepare",
]

BATCH_SIZE = 16


def dataset_loader(paths: Sequence[Path], resize: int) -> list[npt.NDArray[np.uint8]]:
    """The blog's ``Dataset_loader`` on an explicit list of files (it lists a folder)."""
    images: list[npt.NDArray[np.uint8]] = []

    def read(name: Path) -> npt.NDArray[Any]:
        return np.asarray(Image.open(name).convert("RGB"))

    for path in paths:
        if Path(path).suffix == ".png":
            img = read(path)
            img = cv2.resize(img, (resize, resize))
            images.append(np.array(img))
    return images


def seed_prepare(
    benign: Sequence[Path], malignant: Sequence[Path], resize: int, *, shuffle_seed: int = 0
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    """Steps 1 and 2 of the blog: load both classes, label, shuffle, one-hot, split 80/20.

    Returns:
        ``x_train, y_train, x_val, y_val`` (images ``uint8``, labels one-hot ``float32``).
    """
    from sklearn.model_selection import train_test_split

    benign_train = np.array(dataset_loader(benign, resize))
    malign_train = np.array(dataset_loader(malignant, resize))
    benign_label = np.zeros(len(benign_train))
    malign_label = np.ones(len(malign_train))
    x_all = np.concatenate((benign_train, malign_train), axis=0)
    y_all = np.concatenate((benign_label, malign_label), axis=0)
    order = np.arange(x_all.shape[0])
    np.random.RandomState(shuffle_seed).shuffle(order)
    x_all = x_all[order]
    y_all = y_all[order]
    y_onehot = np.eye(2, dtype=np.float32)[y_all.astype(np.int64)]  # to_categorical
    x_train, x_val, y_train, y_val = train_test_split(
        x_all, y_onehot, test_size=0.2, random_state=11
    )
    return x_train, y_train, x_val, y_val


def _offset_center(matrix: npt.NDArray[Any], x: int, y: int) -> npt.NDArray[Any]:
    """``keras_preprocessing.image.transform_matrix_offset_center``."""
    o_x = float(x) / 2 + 0.5
    o_y = float(y) / 2 + 0.5
    offset_matrix = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset_matrix = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return np.dot(np.dot(offset_matrix, matrix), reset_matrix)  # type: ignore[no-any-return]


def apply_affine_transform(
    x: npt.NDArray[np.float32], theta: float, zx: float, zy: float
) -> npt.NDArray[np.float32]:
    """``keras_preprocessing.image.apply_affine_transform`` for rotation and zoom on an
    ``(h, w, c)`` image: channel by channel ``scipy.ndimage.affine_transform``, order 1,
    ``mode="nearest"``."""
    transform = None
    if theta != 0:
        t = np.deg2rad(theta)
        transform = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    if zx != 1 or zy != 1:
        zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
        transform = zoom if transform is None else np.dot(transform, zoom)
    if transform is None:
        return x
    h, w = x.shape[0], x.shape[1]
    transform = _offset_center(transform, h, w)
    channels = np.rollaxis(x, 2, 0)
    out = [
        ndimage.affine_transform(
            channel, transform[:2, :2], transform[:2, 2], order=1, mode="nearest", cval=0.0
        )
        for channel in channels
    ]
    return np.rollaxis(np.stack(out, axis=0), 0, 3)


def random_transform(
    x: npt.NDArray[np.float32], rng: np.random.RandomState
) -> npt.NDArray[np.float32]:
    """``ImageDataGenerator(zoom_range=2, rotation_range=90, horizontal_flip=True,
    vertical_flip=True).random_transform`` on one ``(h, w, c)`` image."""
    theta = rng.uniform(-90, 90)
    zx, zy = rng.uniform(1 - 2, 1 + 2, 2)
    flip_horizontal = rng.random_sample() < 0.5
    flip_vertical = rng.random_sample() < 0.5
    x = apply_affine_transform(x, theta, zx, zy)
    if flip_horizontal:
        x = np.asarray(x[:, ::-1, :])
    if flip_vertical:
        x = np.asarray(x[::-1, :, :])
    return x


class SeedFlow(keras.utils.PyDataset):  # type: ignore[misc]
    """``ImageDataGenerator(...).flow(x, y, batch_size=16)``: a float32 copy of ``x``, a new
    shuffle every epoch, and host-side augmentation of every image of every batch."""

    def __init__(
        self,
        x: npt.NDArray[Any],
        y: npt.NDArray[Any],
        *,
        batch_size: int = BATCH_SIZE,
        seed: int = 0,
        augment: Callable[[npt.NDArray[np.float32], np.random.RandomState], Any] = (
            random_transform
        ),
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=10)
        self.x = np.asarray(x, dtype=np.float32)  # NumpyArrayIterator keeps a floatx copy
        self.y = np.asarray(y)
        self.batch_size = batch_size
        self.rng = np.random.RandomState(seed)
        self.augment = augment
        self.index = self.rng.permutation(len(self.x))

    def __len__(self) -> int:
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, i: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any]]:
        chosen = self.index[i * self.batch_size : (i + 1) * self.batch_size]
        batch = np.zeros((len(chosen), *self.x.shape[1:]), dtype=np.float32)
        for j, k in enumerate(chosen):
            batch[j] = self.augment(self.x[k], self.rng)
        return batch, self.y[chosen]

    def on_epoch_end(self) -> None:
        self.index = self.rng.permutation(len(self.x))


def seed_model(
    backbone: Any, *, n_classes: int = 2, learning_rate: float = 1e-4, jit_compile: bool = False
) -> Any:
    """The blog's ``build_model``: Sequential backbone + head, compiled with Adam and binary
    cross-entropy, float32, without XLA (Keras 2 did not compile with XLA).

    ``jit_compile=True`` is for Keras backends without an uncompiled graph mode (JAX runs an
    uncompiled step op by op, which would make the reference unfairly slow)."""
    model = keras.Sequential(
        [
            backbone,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.5),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(n_classes, activation="softmax"),
        ]
    )
    model.compile(
        loss="binary_crossentropy",
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    return model
