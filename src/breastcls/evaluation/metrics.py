"""Running every registered metric on a set of predictions and writing the results."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.errors import PluginError
from breastcls.interfaces import MetricSection, Predictions, Sample
from breastcls.io import atomic_write_json, atomic_write_text
from breastcls.plugins.host import PluginHost, ensure_host

__all__ = ["compute_metrics", "predict_samples", "write_predictions"]


def predict_samples(
    model: Any,
    samples: Sequence[Sample],
    class_names: Sequence[str],
    *,
    image_size: int,
    batch_size: int,
    image_info: Any = None,
    verbose: int = 0,
) -> Predictions:
    """Run ``model`` on ``samples`` (streamed in batches) and return :class:`Predictions`."""
    from breastcls.data.pipeline import make_dataset

    dataset = make_dataset(
        samples, class_names, image_size=image_size, batch_size=batch_size, image_info=image_info
    )
    probabilities = model.predict(dataset.map(lambda images, _: images), verbose=verbose)
    index = {name: i for i, name in enumerate(class_names)}
    return Predictions(
        class_names=tuple(class_names),
        y_true=np.array([index[s.label] for s in samples], dtype=np.int64),
        probabilities=np.asarray(probabilities, dtype=np.float64),
        paths=tuple(str(s.path) for s in samples),
        patient_ids=tuple(s.patient_id for s in samples),
        magnifications=tuple(s.magnification for s in samples),
    )


def compute_metrics(
    predictions: Predictions, out_dir: Path, *, host: PluginHost | None = None
) -> list[MetricSection]:
    """Run every registered metric; write ``metrics.json`` and the figures into ``out_dir``.

    Raises:
        PluginError: A metric plugin failed (the message names it).
    """
    host = ensure_host(host)
    sections = []
    for info in host.metrics:
        try:
            sections.append(info.component(predictions, out_dir=out_dir))
        except Exception as error:
            raise PluginError(
                f"Metric {info.name!r} (plugin {info.plugin!r}) failed: "
                f"{type(error).__name__}: {error}."
            ) from error
    atomic_write_json(out_dir / "metrics.json", metrics_document(sections))
    return sections


def metrics_document(sections: Sequence[MetricSection]) -> dict[str, Any]:
    """Return the ``metrics.json`` content: each section's values under its name."""
    return {section.name: dict(section.values) for section in sections}


def write_predictions(predictions: Predictions, path: Path) -> None:
    """Write one CSV row per image: path, patient, true and predicted class, probabilities.

    Probabilities are written at full precision: reading a value back with ``float`` gives the
    same float64, bit for bit (a float32 probability gives its exact float64 value).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = predictions.class_names
    writer.writerow(
        ["path", "patient_id", "magnification", "true", "predicted"]
        + [f"p_{name}" for name in names]
    )
    n = len(predictions.y_true)
    patients = predictions.patient_ids or (None,) * n
    magnifications = predictions.magnifications or (None,) * n
    paths = predictions.paths or ("",) * n
    for i in range(n):
        writer.writerow(
            [
                paths[i],
                patients[i] or "",
                magnifications[i] or "",
                names[predictions.y_true[i]],
                names[predictions.y_pred[i]],
                # Shortest text that reads back to the same float (``float(repr(x)) == x``), so
                # ``breastcls report`` rebuilds the same curves, AUC and thresholds.
                *(repr(float(p)) for p in predictions.probabilities[i]),
            ]
        )
    atomic_write_text(path, buffer.getvalue())
