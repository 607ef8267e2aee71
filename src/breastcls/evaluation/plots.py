"""Plots, always written as PNG files (atomically), never shown."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.io import atomic_path

__all__ = [
    "plot_confusion_matrix",
    "plot_history",
    "plot_sample_grid",
    "pyplot",
    "save_figure",
]


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> Path:
    """Save a matplotlib figure as a PNG at ``path`` atomically and close it."""
    with atomic_path(path) as temporary, warnings.catch_warnings():
        # matplotlib says so when placing a legend took over a second (a busy machine): a
        # timing, nothing the user can act on, and a line that would come and go in the output.
        warnings.filterwarnings("ignore", 'Creating legend with loc="best" can be slow')
        figure.savefig(temporary, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    return path


def plot_confusion_matrix(
    matrix: npt.NDArray[np.int64], class_names: Sequence[str], path: Path, *, normalise: bool
) -> Path:
    """Plot a confusion matrix (rows: true class) as the seed does, raw counts or row shares."""
    plt = pyplot()
    values = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1) if normalise else matrix
    figure, axes = plt.subplots(figsize=(4.8, 4.2))
    image = axes.imshow(values, interpolation="nearest", cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set_title("Confusion matrix (normalised)" if normalise else "Confusion matrix")
    ticks = np.arange(len(class_names))
    axes.set_xticks(ticks, list(class_names), rotation=55)
    axes.set_yticks(ticks, list(class_names))
    threshold = values.max() / 2.0 if values.size else 0
    for row, column in itertools.product(range(values.shape[0]), range(values.shape[1])):
        value = values[row, column]
        axes.text(
            column,
            row,
            f"{value:.2f}" if normalise else f"{int(value)}",
            horizontalalignment="center",
            color="white" if value > threshold else "black",
        )
    axes.set_ylabel("True label")
    axes.set_xlabel("Predicted label")
    return save_figure(figure, path)


def plot_history(
    history: Mapping[str, Sequence[float]], loss_path: Path, accuracy_path: Path
) -> list[Path]:
    """Plot the loss and the accuracy per epoch (training and selection set) into the two
    files."""
    plt = pyplot()
    written = []
    for metric, path in (("loss", loss_path), ("accuracy", accuracy_path)):
        if metric not in history:
            continue
        figure, axes = plt.subplots(figsize=(6, 4))
        epochs = np.arange(1, len(history[metric]) + 1)
        axes.plot(epochs, history[metric], marker="o", label=f"train {metric}")
        if f"val_{metric}" in history:
            axes.plot(epochs, history[f"val_{metric}"], marker="o", label=f"selection set {metric}")
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.set_title(f"{metric.capitalize()} per epoch")
        axes.grid(alpha=0.3)
        axes.legend()
        written.append(save_figure(figure, path))
    return written


def plot_sample_grid(
    images: Sequence[npt.NDArray[np.uint8]],
    titles: Sequence[str],
    path: Path,
    *,
    columns: int = 4,
) -> Path:
    """Plot labelled images in a grid (the seed's 4 x 3 sample figure)."""
    plt = pyplot()
    rows = max(1, -(-len(images) // columns))
    figure = plt.figure(figsize=(3.2 * columns, 3.4 * rows))
    for position, (image, title) in enumerate(zip(images, titles, strict=True), start=1):
        axes = figure.add_subplot(rows, columns, position)
        axes.imshow(image, interpolation="nearest")
        axes.set_title(title, fontsize=9)
        axes.axis("off")
    return save_figure(figure, path)
