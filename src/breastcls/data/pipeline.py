"""The ``tf.data`` input pipeline: streamed from disk, decoded in parallel, prefetched."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.data.images import ImageInfo, decode_image
from breastcls.interfaces import Sample

__all__ = ["load_image_tensor", "make_dataset", "resize_image", "without_autotuning"]


def load_image_tensor(path: Any, native: Any, image_size: int) -> Any:
    """Decode one image file to a ``(size, size, 3)`` float32 tensor of 0-255 RGB values.

    Files TensorFlow decodes identically (``native``) take its fast decoder; the rest (TIFF,
    CMYK, 16-bit, EXIF-rotated, transparent) go through Pillow. Resizing is bilinear without
    antialiasing, as the seed's ``cv2.resize``.
    """
    import tensorflow as tf

    def pillow_decode(file_name: Any) -> Any:
        # A bytes scalar inside tf.data's graph; a 0-d object array when called eagerly. The
        # bytes are the file system's (os.fsencode), so a name that is not UTF-8 comes back.
        raw = file_name.item() if isinstance(file_name, np.ndarray) else file_name
        return decode_image(Path(os.fsdecode(raw)))

    def decode_native() -> Any:
        return tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False, dtype=tf.uint8
        )

    def decode_pillow() -> Any:
        return tf.numpy_function(pillow_decode, [path], tf.uint8, stateful=False)

    image = tf.cond(native, decode_native, decode_pillow)
    return resize_image(tf.ensure_shape(image, [None, None, 3]), image_size)


def resize_image(image: Any, image_size: int) -> Any:
    """Resize an ``(h, w, 3)`` 0-255 image tensor to ``(size, size, 3)`` float32, as training
    does: bilinear without antialiasing (the seed's ``cv2.resize``), within 0-255.

    A uint8 image is resized as it is: the resize computes in float32 and returns the same
    values as for the image cast first, without writing a float32 copy of the full-size image
    (about 0.2 ms of CPU per image of a ``tf.data`` pipeline). Its result needs no clip either:
    each output value interpolates between two inputs, ``a + (b - a) · t`` with ``t`` in [0, 1],
    and float32 rounding is monotone, so it cannot leave [min(a, b), max(a, b)]. A float image
    may hold values outside 0-255 and is clipped.
    """
    import tensorflow as tf

    resized = tf.image.resize(image, (image_size, image_size))
    if image.dtype == tf.uint8:
        return resized
    return tf.clip_by_value(resized, 0.0, 255.0)


def without_autotuning(dataset: Any) -> Any:
    """``dataset`` with ``tf.data``'s autotuning model switched off.

    With it on, a pass over a pipeline sometimes keeps a core idle from start to end (measured
    on a 2-core machine, see the performance guide): decoding with a map after ``batch`` (stain
    normalisation) ran at 337-373 images/s with 1.0 core busy in 4 passes of 8, against
    583-649 with 1.7 in the others; plain decoding at about 810 with 1.4 cores in 3 of 8,
    against 815-1076 with 1.8-1.9; a model called over a dataset at half speed in 1 call of 8.
    With it off, none of about 150 passes and 8 calls did. ``AUTOTUNE`` maps then run as many
    calls at once as there are cores (TensorFlow's default for them), and ``prefetch(AUTOTUNE)``
    buffers still grow while the consumer finds them empty.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def make_dataset(
    samples: Sequence[Sample],
    class_names: Sequence[str],
    *,
    image_size: int,
    batch_size: int,
    image_info: Mapping[Path, ImageInfo] | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    cache: str | None = None,
    epoch: Any = None,
) -> Any:
    """Return a batched ``tf.data.Dataset`` of ``(images, one_hot_labels)``.

    Args:
        samples: The images, in order (kept when ``shuffle`` is false).
        class_names: Class names in label order.
        image_size: Output side in pixels.
        batch_size: Images per batch (the last batch may be smaller).
        image_info: Results of :func:`~breastcls.data.images.scan_samples`; files without an
            entry take the Pillow decoder.
        shuffle: Reshuffle every epoch (seeded by ``seed``).
        seed: Shuffle seed.
        cache: ``None``, ``"memory"``, or a folder for a file cache of decoded, resized images.
        epoch: A ``tf.Variable`` (int64) holding the current epoch, set by the training loop
            before each epoch (:class:`~breastcls.training.callbacks.EpochCounter`). With it, and no
            ``cache``, each epoch's order depends only on ``seed`` and the epoch number, so a
            resumed run sees the batches the uninterrupted run would have. Without it (or with
            a cache), every epoch draws the next order from a seeded shuffle.
    """
    import tensorflow as tf

    index = {name: i for i, name in enumerate(class_names)}
    info = image_info or {}
    # File names travel as the file system's bytes: a name that is not valid UTF-8 (a lone
    # surrogate in Python) cannot become a TensorFlow string tensor otherwise.
    paths = [os.fsencode(sample.path) for sample in samples]
    native = [bool(info[s.path].tf_native) if s.path in info else False for s in samples]
    labels = np.eye(len(class_names), dtype=np.float32)[[index[s.label] for s in samples]]
    dataset = tf.data.Dataset.from_tensor_slices((paths, native, labels))
    if shuffle and cache is None and epoch is not None:
        dataset = _epoch_ordered((paths, native, labels), seed or 0, epoch)
    elif shuffle and cache is None:
        dataset = dataset.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(
        lambda path, is_native, label: (load_image_tensor(path, is_native, image_size), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if cache == "memory":
        dataset = dataset.cache()
    elif cache:
        # One cache file per distinct list of images and size: train and validation never clash.
        digest = hashlib.sha1(b"\n".join(paths)).hexdigest()[:16]
        Path(cache).mkdir(parents=True, exist_ok=True)
        dataset = dataset.cache(str(Path(cache) / f"images-{image_size}-{digest}"))
    if shuffle and cache is not None:
        dataset = dataset.shuffle(len(samples), seed=seed, reshuffle_each_iteration=True)
    return without_autotuning(dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def _epoch_ordered(columns: tuple[Any, ...], seed: int, epoch: Any) -> Any:
    """Serve the rows of ``columns`` in a permutation that is a pure function of (seed, epoch)."""
    import tensorflow as tf

    tensors = tuple(tf.constant(column) for column in columns)
    size = len(columns[0])

    def permutation(_: Any) -> Any:
        # Read when an epoch's iterator starts, i.e. after the epoch counter was set.
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(epoch, tf.int64)])
        order = tf.random.experimental.stateless_shuffle(tf.range(size, dtype=tf.int64), key)
        return tf.data.Dataset.from_tensor_slices(order)

    indices = tf.data.Dataset.range(1).flat_map(permutation)
    indices = indices.apply(tf.data.experimental.assert_cardinality(size))
    return indices.map(lambda i: tuple(tf.gather(column, i) for column in tensors))
