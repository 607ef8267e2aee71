"""Grad-CAM (Selvaraju et al., 2017): where in an image the model looked for its decision.

The feature map is found through the model's structure, never by a layer name: breastcls models
are ``Input -> augmentation -> preprocessing -> backbone -> head``, and the backbone (whatever
plugin built it) is the last layer whose output is 4-D ``(batch, h, w, channels)``.

The gradient is that of the class *score* before the softmax (Selvaraju et al., section 3), not
of the probability: the probability's gradient is the score's times ``p (1 - p)``-like factors,
which vanish on confident predictions (a saturated softmax gives an all-zero map) and mix in the
other classes' evidence. The score is rebuilt from the model's last layer: the pre-activation of
a final ``Dense`` with a softmax or sigmoid activation, or the input of a final ``Softmax`` or
``Activation`` layer. A model whose output is none of these is explained by its output as is.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.errors import ModelLoadError
from breastcls.interfaces import MetricSection, Predictions
from breastcls.io import printable

__all__ = ["GRADCAM_FIGURES", "find_feature_layer", "gradcam_heatmaps", "gradcam_section"]

GRADCAM_FIGURES = ("gradcam_correct.png", "gradcam_errors.png")
"""The overlays :func:`gradcam_section` writes: correct predictions, then the errors."""


def find_feature_layer(model: Any) -> Any:
    """Return the last layer of ``model`` whose output is a 4-D feature map.

    Raises:
        ModelLoadError: No layer after the input has a 4-D output.
    """
    for layer in reversed(model.layers[1:]):
        shape = getattr(_layer_output(model, layer), "shape", ())
        if len(shape) == 4:
            return layer
    raise ModelLoadError(
        f"Model {model.name!r} has no layer with a 4-D (batch, height, width, channels) output: "
        "Grad-CAM needs a convolutional feature map."
    )


def _layer_output(model: Any, layer: Any) -> Any:
    # A nested model's ``.output`` is its own inner output; the tensor it produced in *this*
    # model's graph is the output of the node that this model's graph created when calling it.
    inputs = {id(t) for t in model.inputs}
    for node in reversed(layer._inbound_nodes):
        tensors = node.output_tensors
        if tensors and _connected(tensors[0], inputs):
            return tensors[0]
    return None


def _connected(tensor: Any, inputs: set[int]) -> bool:
    seen: set[int] = set()
    stack = [tensor]
    while stack:
        current = stack.pop()
        if id(current) in inputs:
            return True
        if id(current) in seen:
            continue
        seen.add(id(current))
        history = getattr(current, "_keras_history", None)
        if history is None:
            continue
        node = history.operation._inbound_nodes[history.node_index]
        stack.extend(node.input_tensors)
    return False


_SQUASHING = ("softmax", "sigmoid")


def _activation_name(layer: Any) -> str | None:
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


def _score_graph(model: Any) -> tuple[Any, Any]:
    """Return the tensor to read the class scores from and the final ``Dense`` to apply to it.

    The tensor lies in ``model``'s graph. The layer is ``None`` when the tensor holds the
    pre-softmax scores itself (or when no softmax could be found: the output is used as is).
    """
    import keras

    output = model.outputs[0]
    history = getattr(output, "_keras_history", None)
    if history is None:
        return output, None
    layer = history.operation
    inputs = layer._inbound_nodes[history.node_index].input_tensors
    if len(inputs) != 1:
        return output, None
    if isinstance(layer, keras.layers.Softmax):
        return inputs[0], None
    if isinstance(layer, keras.layers.Activation) and _activation_name(layer) in _SQUASHING:
        return inputs[0], None
    if isinstance(layer, keras.layers.Dense) and _activation_name(layer) in _SQUASHING:
        return inputs[0], layer
    return output, None


def _dense_scores(layer: Any, inputs: Any) -> Any:
    """The final ``Dense`` layer's output before its activation, computed in float32."""
    import tensorflow as tf

    scores = tf.matmul(
        tf.cast(inputs, tf.float32), tf.cast(tf.convert_to_tensor(layer.kernel), tf.float32)
    )
    if layer.bias is not None:
        scores = scores + tf.cast(tf.convert_to_tensor(layer.bias), tf.float32)
    return scores


def gradcam_heatmaps(
    model: Any, images: npt.NDArray[np.float32], class_indices: Sequence[int]
) -> npt.NDArray[np.float32]:
    """Return Grad-CAM heatmaps in ``[0, 1]``, one per image, at the images' size.

    The heat is the feature map weighted by the gradient of the explained class's pre-softmax
    score (see the module documentation); an image whose map has no positive evidence for
    the class gets an all-zero heatmap.

    Args:
        model: A Keras model taking ``(batch, h, w, 3)`` images and returning probabilities.
        images: The model inputs (0-255 images for breastcls models).
        class_indices: The class explained for each image (usually the predicted one).
    """
    import keras
    import tensorflow as tf

    layer = find_feature_layer(model)
    score_input, dense = _score_graph(model)
    grad_model = keras.Model(model.inputs, [_layer_output(model, layer), score_input])
    batch = tf.convert_to_tensor(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        features, head = grad_model(batch, training=False)
        tape.watch(features)
        scores = tf.cast(head, tf.float32) if dense is None else _dense_scores(dense, head)
        target = tf.gather(scores, tf.constant(list(class_indices), dtype=tf.int32), batch_dims=1)
    # Differentiate with respect to the tensor the model computed with: in a mixed-precision
    # model the features are float16 or bfloat16, and a float32 copy lies on no path to the
    # scores. The scores and the heatmap are computed in float32.
    gradients = tf.cast(tape.gradient(target, features), tf.float32)
    features = tf.cast(features, tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1, keepdims=True))
    cam = tf.image.resize(cam, tf.shape(batch)[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)
    return np.asarray(cam.numpy(), dtype=np.float32)


TITLE_WIDTH = 26
"""Characters per line of an overlay's title (a 2.6-inch column at 7 points)."""


def overlay_title(name: str, verdict: str) -> str:
    """An overlay's title: the file name, wrapped (at its hyphens where it can) rather than
    cut, then the verdict."""
    return "\n".join([*textwrap.wrap(name, TITLE_WIDTH), verdict])


def _overlay_figure(
    images: npt.NDArray[np.float32],
    heatmaps: npt.NDArray[np.float32],
    titles: Sequence[str],
    path: Path,
) -> Path:
    from breastcls.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    columns = len(images)
    figure, axes = plt.subplots(2, columns, figsize=(2.6 * columns, 5.6), squeeze=False)
    for i in range(columns):
        picture = np.clip(images[i], 0, 255).astype(np.uint8)
        axes[0, i].imshow(picture)
        axes[0, i].set_title(titles[i], fontsize=7)
        axes[1, i].imshow(picture)
        axes[1, i].imshow(heatmaps[i], cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
        axes[0, i].axis("off")
        axes[1, i].axis("off")
    return save_figure(figure, path)


def gradcam_section(
    model: Any,
    predictions: Predictions,
    out_dir: Path,
    *,
    image_size: int,
    n_correct: int = 4,
    n_errors: int = 4,
    seed: int = 0,
) -> MetricSection:
    """Write Grad-CAM overlays for a seeded sample of correct predictions and the most confident
    errors (``gradcam_correct.png``, ``gradcam_errors.png``) and return the report section."""
    y_pred = predictions.y_pred
    confidence = predictions.probabilities.max(axis=1)
    correct = np.flatnonzero(y_pred == predictions.y_true)
    errors = np.flatnonzero(y_pred != predictions.y_true)
    picked_correct = sorted(np.random.default_rng(seed).permutation(correct)[:n_correct].tolist())
    picked_errors = errors[np.argsort(-confidence[errors], kind="stable")][:n_errors].tolist()
    names = predictions.class_names
    figures = []
    listed: dict[str, list[dict[str, Any]]] = {}
    for kind, rows, figure in zip(
        ("correct", "errors"), (picked_correct, picked_errors), GRADCAM_FIGURES, strict=True
    ):
        listed[kind] = []
        if not rows:
            continue
        images = _load_images([predictions.paths[i] for i in rows], image_size)
        heatmaps = gradcam_heatmaps(model, images, [int(y_pred[i]) for i in rows])
        titles = [
            overlay_title(
                printable(Path(predictions.paths[i]).name),
                f"true {names[predictions.y_true[i]]}, pred {names[y_pred[i]]} {confidence[i]:.2f}",
            )
            for i in rows
        ]
        figures.append(_overlay_figure(images, heatmaps, titles, out_dir / figure))
        listed[kind] = [_listed(predictions, i) for i in rows]
    return MetricSection(
        name="gradcam",
        title="Grad-CAM: where the model looked",
        values={"correct": listed["correct"], "errors": listed["errors"]},
        figures=tuple(figures),
        text=(
            "Top row: the image; bottom row: Grad-CAM heat for the predicted class (red = most "
            f"influential). Up to {n_correct} correct predictions (seeded sample) and the "
            f"{n_errors} most confident errors."
        ),
    )


def _load_images(paths: Sequence[str], image_size: int) -> npt.NDArray[np.float32]:
    """The images at ``paths`` as the model sees them: ``(n, size, size, 3)`` 0-255 floats."""
    import tensorflow as tf

    from breastcls.data.pipeline import load_image_tensor

    return np.stack(
        [
            load_image_tensor(
                tf.constant(os.fsencode(path)), tf.constant(False), image_size
            ).numpy()
            for path in paths
        ]
    ).astype(np.float32)


def _listed(predictions: Predictions, row: int) -> dict[str, Any]:
    """How ``metrics.json`` lists one image shown: its file, true and predicted class, and the
    confidence of the prediction."""
    names = predictions.class_names
    predicted = int(predictions.probabilities[row].argmax())  # as Predictions.y_pred
    return {
        "path": predictions.paths[row],
        "true": names[predictions.y_true[row]],
        "predicted": names[predicted],
        "confidence": round(float(predictions.probabilities[row].max()), 6),
    }
