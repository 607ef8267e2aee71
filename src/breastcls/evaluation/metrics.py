"""Running every registered metric on a set of predictions and writing the results."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from breastcls.data.split import Leak
from breastcls.errors import DataError, PluginError
from breastcls.evaluation.clinical import unit_ids
from breastcls.inference.domain import DOMAIN_COLUMNS, domain_cells
from breastcls.interfaces import DataRole, MetricSection, Predictions
from breastcls.io import SafeCsvWriter, atomic_write_json, atomic_write_text, csv_rows
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.records import EvaluatedOn, MetricsRecord
from breastcls.runs.folder import RunFolder

__all__ = [
    "LEAK_MARK",
    "compute_metrics",
    "describe_role",
    "describe_set",
    "metrics_document",
    "read_predictions",
    "write_predictions",
]


def describe_role(role: DataRole | None) -> str:
    """How every report and log line names the set its figures come from."""
    if role is DataRole.TEST:
        return "test set"
    if role is DataRole.SELECTION:
        return "selection set (optimistic: it chose the checkpoint, schedule and calibration)"
    if role is DataRole.TRAIN:
        return "training set (optimistic: the model was fitted on it)"
    return "data not checked against the images the model has seen"


LEAK_MARK = "LEAKY:"
"""How a set description starts the part that says the set's patients trained the model too."""


def describe_set(role: DataRole | None, leak: Leak | None) -> str | None:
    """The set description of figures from a leaky set (``None``: :func:`describe_role` says
    enough): ``test set, LEAKY: 24 of 31 test patients also trained or selected (optimistic)``."""
    return None if leak is None else f"{describe_role(role)}, {leak.label}"


def compute_metrics(
    predictions: Predictions,
    out_dir: Path,
    *,
    host: PluginHost | None = None,
    set_description: str | None = None,
) -> list[MetricSection]:
    """Run every registered metric; write ``metrics.json`` and the figures into ``out_dir``.

    ``set_description`` names the evaluated set when :func:`describe_role` of the predictions'
    role does not say enough (data that overlaps the model's training images, say).

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
    atomic_write_json(
        RunFolder(out_dir).metrics,
        metrics_document(sections, predictions, set_description=set_description).to_json(),
    )
    return sections


def metrics_document(
    sections: Sequence[MetricSection],
    predictions: Predictions,
    *,
    set_description: str | None = None,
) -> MetricsRecord:
    """Return the ``metrics.json`` record: the set evaluated, then each section's values under
    its name.

    ``evaluated_on`` names the set the figures come from, its image and patient counts
    (patients as the split groups them: one biopsy's slides are one patient, see
    :func:`~breastcls.evaluation.clinical.unit_ids`), and ``leak``: the ``LEAKY: ...`` words
    of a set whose patients also trained or selected the model, else ``None``."""
    patients = {p for p in unit_ids(predictions) if p}
    described = set_description or describe_role(predictions.role)
    evaluated_on = EvaluatedOn(
        role=predictions.role,
        set=described,
        leak=described[described.index(LEAK_MARK) :] if LEAK_MARK in described else None,
        images=len(predictions.y_true),
        patients=len(patients) if patients else None,
    )
    return MetricsRecord(
        evaluated_on=evaluated_on,
        sections={section.name: dict(section.values) for section in sections},
    )


def write_predictions(predictions: Predictions, path: Path) -> None:
    """Write one CSV row per image: path, patient (slide), magnification, true and predicted
    class, group (the patient as the split groups it, which patient-level figures count by:
    :func:`~breastcls.evaluation.clinical.unit_ids`), probabilities.

    Probabilities are written at full precision: reading a value back with ``float`` gives the
    same float64, bit for bit (a float32 probability gives its exact float64 value). When the
    probabilities are calibrated, the model's raw outputs follow as ``raw_p_<class>``; with
    domain-shift scores, :data:`DOMAIN_COLUMNS` come last.
    """
    buffer = io.StringIO()
    writer = SafeCsvWriter(buffer)
    names = predictions.class_names
    raw = predictions.raw_probabilities
    domain = predictions.domain_score
    writer.writerow(
        ["path", "patient_id", "magnification", "true", "predicted", "group"]
        + [f"p_{name}" for name in names]
        + ([f"raw_p_{name}" for name in names] if raw is not None else [])
        + (list(DOMAIN_COLUMNS) if domain is not None else [])
    )
    n = len(predictions.y_true)
    patients = predictions.patient_ids or (None,) * n
    groups = unit_ids(predictions)
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
                groups[i] or "",
                # Shortest text that reads back to the same float (``float(repr(x)) == x``), so
                # ``breastcls report`` rebuilds the same curves, AUC and thresholds.
                *(repr(float(p)) for p in predictions.probabilities[i]),
                *(repr(float(p)) for p in (raw[i] if raw is not None else ())),
                *(
                    domain_cells(domain, predictions.in_distribution, predictions.domain_reason, i)
                    if domain is not None
                    else ()
                ),
            ]
        )
    atomic_write_text(path, buffer.getvalue())


def read_predictions(path: Path) -> Predictions:
    """Read a ``predictions.csv`` written by :func:`write_predictions` (or by a breastcls
    that wrote no ``group`` column, no raw probabilities or no domain columns).

    Raises:
        DataError: The file is missing, is not a predictions file, or has a malformed row.
    """
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: run `breastcls evaluate` (or train) to create it first."
        )
    with path.open(newline="", encoding="utf-8") as handle:
        table = csv_rows(handle)
    header, rows = (table[0], table[1:]) if table else (None, [])
    required = ["path", "patient_id", "magnification", "true", "predicted"]
    # Files written before the group column have the probabilities right after "predicted".
    first = 6 if header is not None and header[5:6] == ["group"] else 5
    if header is None or header[:5] != required or len(header) < first + 2:
        raise DataError(
            f"{path} is not a breastcls predictions file (columns {required}, group, p_<class>)."
        )
    class_names = tuple(name.removeprefix("p_") for name in header[first:] if name.startswith("p_"))
    n = len(class_names)
    has_raw = header[first + n : first + 2 * n] == [f"raw_p_{name}" for name in class_names]
    has_domain = tuple(header[-3:]) == DOMAIN_COLUMNS
    index = {name: i for i, name in enumerate(class_names)}
    try:
        return Predictions(
            class_names=class_names,
            y_true=np.array([index[row[3]] for row in rows], dtype=np.int64),
            probabilities=np.array(
                [[float(v) for v in row[first : first + n]] for row in rows], dtype=np.float64
            ).reshape(-1, n),
            raw_probabilities=(
                np.array(
                    [[float(v) for v in row[first + n : first + 2 * n]] for row in rows],
                    dtype=np.float64,
                ).reshape(-1, n)
                if has_raw
                else None
            ),
            paths=tuple(row[0] for row in rows),
            patient_ids=tuple(row[1] or None for row in rows),
            magnifications=tuple(int(row[2]) if row[2].isdigit() else None for row in rows),
            groups=tuple(row[5] or None for row in rows) if first == 6 else (),
            domain_score=(
                np.array([float(row[-3]) for row in rows], dtype=np.float64) if has_domain else None
            ),
            in_distribution=(
                np.array([row[-2] == "yes" for row in rows], dtype=bool) if has_domain else None
            ),
            domain_reason=tuple(row[-1] for row in rows) if has_domain else None,
        )
    except (KeyError, ValueError, IndexError) as error:
        raise DataError(f"{path} has a malformed row ({error}): re-run the evaluation.") from error
