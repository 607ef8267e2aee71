"""Batched inference with optional test-time augmentation (TTA)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.interfaces import TTA
from breastcls.progress import active_reporter

__all__ = ["iter_probabilities", "predict_probabilities"]


def _make_step(model: Any, tta: TTA | None, batches: Any) -> Any:
    import tensorflow as tf

    # Traced once for any batch size: the last, partial batch of a dataset would otherwise
    # trace the whole model again (seconds for DenseNet201).
    spec = getattr(batches, "element_spec", None)
    signature = (
        [tf.TensorSpec([None, *spec.shape[1:]], spec.dtype)]
        if isinstance(spec, tf.TensorSpec)
        else None
    )

    def compile_step(step: Any) -> Any:
        if signature is None:
            return tf.function(step, reduce_retracing=True)
        return tf.function(step, input_signature=signature)

    if tta is None or tta.size == 1:

        def plain(images: Any) -> Any:
            return tf.cast(model(images, training=False), tf.float32)

        return compile_step(plain)

    def augmented(images: Any) -> Any:
        # All copies of the batch go through the model in one call; no per-image Python code.
        copies = tta(images)
        shape = tf.shape(copies)
        flat = tf.reshape(copies, tf.concat([[-1], shape[2:]], axis=0))
        probabilities = tf.cast(model(flat, training=False), tf.float32)
        per_copy = tf.reshape(probabilities, [shape[0], shape[1], -1])
        return tf.reduce_mean(per_copy, axis=0)

    return compile_step(augmented)


def iter_probabilities(
    model: Any, batches: Any, *, tta: TTA | None = None, total: int | None = None, verbose: int = 0
) -> Iterator[npt.NDArray[np.float64]]:
    """Yield the probabilities of each batch of a ``tf.data`` dataset of image batches.

    With ``tta``, every batch is expanded in-graph into ``tta.size`` transformed copies, the
    model runs once on all of them, and the probabilities are averaged over the copies.

    Args:
        model: A Keras model taking 0-255 images.
        batches: A batched ``tf.data.Dataset`` of images (no labels).
        tta: The test-time augmentation, or ``None``.
        total: Number of images, for the progress display.
        verbose: 1 reports progress to the active :mod:`breastcls.progress` reporter (nothing
            is printed: without a reporter, there is no progress).
    """
    step = _make_step(model, tta, batches)
    reporter = active_reporter() if verbose else None
    if reporter is not None:
        reporter.task_started("predicting", total=total, unit="images")
    seen = 0
    try:
        for images in batches:
            probabilities = np.asarray(step(images).numpy(), dtype=np.float64)
            seen += len(probabilities)
            if reporter is not None:
                reporter.task_advanced(seen)
            yield probabilities
    finally:
        if reporter is not None:
            reporter.task_finished()


def predict_probabilities(
    model: Any, batches: Any, *, tta: TTA | None = None, total: int | None = None, verbose: int = 0
) -> npt.NDArray[np.float64]:
    """Return the ``(n, n_classes)`` probabilities of every image (:func:`iter_probabilities`)."""
    parts = list(iter_probabilities(model, batches, tta=tta, total=total, verbose=verbose))
    if not parts:
        return np.zeros((0, int(model.output_shape[-1])), dtype=np.float64)
    return np.concatenate(parts, axis=0)
