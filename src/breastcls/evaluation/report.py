"""The HTML report: one self-contained file (figures embedded, no network access, printable).

Every section comes from a :class:`~breastcls.interfaces.MetricSection` and is rendered the same
generic way (title, values table, figures, text; :mod:`breastcls.htmlpage`), so a metric plugin
adds a section by existing. Every string that comes from data, a configuration or a plugin is
HTML-escaped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from breastcls.evaluation.clinical import unit_ids
from breastcls.evaluation.domain import domain_line, domain_warning
from breastcls.htmlpage import (
    anchor,
    escape,
    figure,
    render_section,
    render_value,
    scalar,
    write_page,
)
from breastcls.interfaces import MetricSection, Predictions

__all__ = ["data_summary", "render_report", "render_section", "summary_card"]

_ORDER = (
    "classification",
    "confusion_matrix",
    "roc",
    "thresholds",
    "bootstrap",
    "subtype",
    "calibration",
    "gradcam",
    "patient",
    "magnification",
)


def data_summary(predictions: Predictions) -> dict[str, Any]:
    """Return the image, class, patient and magnification counts of ``predictions`` (patients
    as the split groups them: two slides of one biopsy are one patient)."""
    names = predictions.class_names
    per_class = Counter(names[int(i)] for i in predictions.y_true)
    patients = {p for p in unit_ids(predictions) if p}
    magnifications = Counter(f"{m}X" for m in predictions.magnifications if m is not None)
    return {
        "images": len(predictions.y_true),
        "images per class": {name: per_class.get(name, 0) for name in names},
        "patients": len(patients) if patients else None,
        "images per magnification": dict(sorted(magnifications.items())) or None,
        "temperature applied": predictions.temperature,
    }


def _ordered(sections: Sequence[MetricSection]) -> list[MetricSection]:
    def key(section: MetricSection) -> tuple[int, str]:
        rank = _ORDER.index(section.name) if section.name in _ORDER else len(_ORDER)
        return rank, section.name

    return sorted(sections, key=key)


def _interval(record: Any, exact: Any = None) -> str:
    """``0.912 [0.850, 0.960]`` from a bootstrap record (``estimate``, ``low``, ``high``), marked
    when it has zero width, and followed by an exact per-patient bound when there is one."""
    if not isinstance(record, Mapping) or record.get("estimate") is None:
        return "n/a"
    text = f"{record['estimate']:.3f}"
    if record.get("low") is not None and record.get("high") is not None:
        text += f" [{record['low']:.3f}, {record['high']:.3f}]"
        if record["low"] == record["high"]:
            text += " (zero width: too few patients to vary, not certainty)"
    if isinstance(exact, Mapping) and exact.get("low") is not None:
        text += (
            f"; exact per patient [{exact['low']:.3f}, {exact['high']:.3f}] "
            f"({exact.get('successes')} of {exact.get('trials')} patients)"
        )
    return text


def _operating_point(metrics: Mapping[str, Any]) -> tuple[str, str] | None:
    """Sensitivity and specificity at the Youden threshold, worded from where it was chosen
    (the selection set, or the scored data itself for a model without a calibration)."""
    thresholds = metrics.get("thresholds", {})
    chosen_on = str(thresholds.get("chosen_on", ""))
    where = (
        "the selection set's Youden threshold"
        if chosen_on.startswith("selection set")
        else "the Youden threshold chosen on these images (optimistic)"
    )
    for point in thresholds.get("operating_points", []):
        if point.get("name") == "youden":
            return (
                f"Sensitivity / specificity at {where} ({point['threshold']:.3f})",
                _point_rates(point),
            )
    return None


def _point_rates(point: Mapping[str, Any]) -> str:
    """An operating point's sensitivity / specificity, with their intervals when recorded."""
    intervals = point.get("intervals", {})
    return " / ".join(
        _interval(intervals[key]) if key in intervals else scalar(point.get(key))
        for key in ("sensitivity", "specificity")
    )


def _patient_figures(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    patient = metrics.get("patient", {})
    intervals = patient.get("intervals", {})
    exact = patient.get("exact", {})
    rows = []
    for key, label in (
        ("accuracy", "Patient-level accuracy"),
        ("auc", "Patient-level AUC"),
        ("patient_recognition_rate", "Patient recognition rate (Spanhol et al.)"),
    ):
        if key in intervals:
            rows.append((label, _interval(intervals[key], exact.get(key))))
        elif isinstance(patient.get(key), (int, float)):
            rows.append((label, scalar(patient[key])))
    return rows


def _calibration_notes(calibration: Mapping[str, Any] | None) -> list[str]:
    """The calibration applied, worded from the model record: where it was fitted, on how many
    images and patients, or that the model is uncalibrated; then its notes."""
    if not calibration:
        return []
    return [
        f'<p class="note">{escape(calibration.get("description", ""))}</p>',
        *(f'<p class="warning">{escape(note)}.</p>' for note in calibration.get("notes", ())),
    ]


def summary_card(
    metrics: Mapping[str, Any],
    calibration: Mapping[str, Any] | None,
    *,
    kept_epoch: str | None = None,
) -> str:
    """The report's first screen: the headline figures with 95% intervals, the set they come
    from (``metrics`` is a ``metrics.json`` document) and, for a run, the epoch it kept."""
    evaluated = metrics.get("evaluated_on", {})
    intervals = metrics.get("bootstrap", {}).get("intervals", {})
    exact = metrics.get("bootstrap", {}).get("exact_per_patient", {})
    level = metrics.get("bootstrap", {}).get("level", 0.95)
    rows = [
        ("Accuracy", _interval(intervals.get("accuracy"))),
        ("ROC AUC", _interval(intervals.get("auc"))),
        *(
            (f"{name.title()} (default decision)", _interval(intervals.get(name), exact.get(name)))
            for name in ("sensitivity", "specificity")
        ),
    ]
    point = _operating_point(metrics)
    if point:
        rows.append(point)
    rows.extend(_patient_figures(metrics))
    patients = evaluated.get("patients")
    rows.append(
        ("Images / patients", f"{evaluated.get('images', 'n/a')} / {patients or 'unknown'}")
    )
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    notes = [
        f'<p class="set">Figures from the {escape(evaluated.get("set", "unknown set"))}.</p>',
        f'<p class="note" id="kept-epoch">Model: {escape(kept_epoch)}.</p>' if kept_epoch else "",
        f'<p class="note">Brackets: {level:.0%} bootstrap confidence intervals '
        f"({escape(metrics.get('bootstrap', {}).get('method', 'percentile bootstrap'))})"
        + (
            "; exact per patient: the Clopper-Pearson binomial bound, one trial per patient, "
            "where a rate is 0 or 1 or rests on fewer than 10 patients"
            if exact
            else ""
        )
        + ".</p>",
    ]
    notes.extend(_calibration_notes(calibration))
    warnings = metrics.get("bootstrap", {}).get("warnings", [])
    notes.extend(f'<p class="warning">Warning: {escape(w)}.</p>' for w in warnings)
    # A leaky set's label is the card's first line: every figure below it is optimistic.
    leak = evaluated.get("leak")
    first = f'<p class="warning leak">{escape(leak)}</p>' if leak else ""
    domain = metrics.get("domain")
    shifted = domain_warning(domain)
    if shifted:
        first += f'<p class="warning" id="domain-warning">{escape(shifted)}</p>'
    line = domain_line(domain)
    if line:
        notes.append(f'<p class="note">{escape(line[0].upper() + line[1:])}.</p>')
    return (
        f'<section class="card" id="summary"><h2>Summary</h2>{first}'
        f"<table><tbody>{table}</tbody></table>{''.join(notes)}</section>"
    )


def render_report(
    sections: Sequence[MetricSection],
    path: Path,
    *,
    title: str,
    summary: Mapping[str, Any],
    settings: Mapping[str, Any] | None = None,
    training_figures: Sequence[Path] = (),
    headline: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    kept_epoch: str | None = None,
) -> Path:
    """Write the report to ``path`` (atomically) and return it.

    Args:
        sections: The metric sections; ``level == "patient"`` ones go in the patient part.
        path: The HTML file to write.
        title: The page heading.
        summary: Data summary (see :func:`data_summary`), plus anything describing the data.
        settings: The run configuration or evaluation settings, shown as a table.
        training_figures: Loss and accuracy curves, when the report belongs to a run.
        headline: The ``metrics.json`` document the summary card at the top is drawn from.
        calibration: The calibration applied (``Calibration.to_dict()``), named in the card.
        kept_epoch: Which epoch's model a run kept and why
            (:func:`~breastcls.runs.checkpoint.kept_epoch_line`), named in the card.
    """
    # A section that does not apply and says nothing (the subtype section of a binary model).
    ordered = [
        s for s in _ordered(sections) if s.text or s.values.get("available", True) is not False
    ]
    image_level = [s for s in ordered if s.level != "patient"]
    patient_level = [s for s in ordered if s.level == "patient"]
    toc = ["<li><a href='#data'>Data</a></li>"]
    if training_figures:
        toc.append("<li><a href='#training'>Training curves</a></li>")
    for part, members in (("Image level", image_level), ("Patient level", patient_level)):
        for section in members:
            toc.append(
                f"<li><a href='#{escape(anchor(section.name))}'>{escape(part)}: "
                f"{escape(section.title)}</a></li>"
            )
    if settings:
        toc.append("<li><a href='#settings'>Configuration</a></li>")
    body = [
        summary_card(headline, calibration, kept_epoch=kept_epoch) if headline is not None else "",
        f"<nav><h2>Contents</h2><ul>{''.join(toc)}</ul></nav>",
        f'<h2 id="data">Data</h2>{render_value(dict(summary))}',
    ]
    if training_figures:
        figures = "".join(figure(Path(p)) for p in training_figures)
        body.append(f'<h2 id="training">Training curves</h2>{figures}')
    body.append('<h2 id="image-level">Image level</h2>')
    body.extend(render_section(s) for s in image_level)
    body.append('<h2 id="patient-level">Patient level</h2>')
    if patient_level:
        body.extend(render_section(s) for s in patient_level)
    else:
        body.append('<p class="note">No patient-level section.</p>')
    if settings:
        body.append(
            '<details id="settings"><summary>Configuration</summary>'
            f"{render_value(dict(settings))}</details>"
        )
    return write_page(path, title=title, body=body)
