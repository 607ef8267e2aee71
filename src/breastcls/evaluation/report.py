"""The HTML report: one self-contained file (figures embedded, no network access, printable).

Every section comes from a :class:`~breastcls.interfaces.MetricSection` and is rendered the same
generic way (title, values table, figures, text), so a metric plugin adds a section by existing.
Every string that comes from data, a configuration or a plugin is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from breastcls._version import __version__
from breastcls.interfaces import MetricSection, Predictions
from breastcls.io import atomic_write_text, printable

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

_CSS = """
:root { --ink: #1d2430; --muted: #5b6676; --line: #d7dce3; --accent: #8a1c4a; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1100px; }
h1 { color: var(--accent); margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid var(--accent); padding-bottom: 0.2rem; margin-top: 2.5rem; }
h3 { margin-top: 1.8rem; }
.meta, .note { color: var(--muted); }
nav ul { columns: 2; padding-left: 1.2rem; }
section.metric { break-inside: avoid-page; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 13px; }
th, td { border: 1px solid var(--line); padding: 0.25rem 0.55rem; text-align: left;
         vertical-align: top; }
th { background: #f3f5f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12px; }
.card { border: 2px solid var(--accent); border-radius: 6px; padding: 0.6rem 1.2rem 0.8rem;
        margin: 1rem 0 1.5rem; background: #fcf7f9; }
.card h2 { margin-top: 0.4rem; border: none; }
.card .set { font-weight: 600; }
.card table { font-size: 15px; }
.warning { color: #8a4b00; }
details > summary { cursor: pointer; font-weight: 600; margin-top: 2rem; }
pre { background: #f6f8fa; padding: 0.75rem; overflow-x: auto; font-size: 12px;
      white-space: pre-wrap; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  nav { display: none; }
  h2 { break-before: page; }
  figure, table { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def _escape(value: object) -> str:
    # The page stays valid UTF-8 whatever the file names.
    return html.escape(printable(value), quote=True)


def _scalar(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return _escape(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _cell(value: Any) -> str:
    css = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td{css}>{_render_value(value)}</td>"


def _records_table(
    records: Sequence[Mapping[str, Any]], row_labels: Sequence[str] | None = None
) -> str:
    columns = list(dict.fromkeys(key for record in records for key in record))
    head = ["<th></th>"] if row_labels is not None else []
    head += [f"<th>{_escape(c)}</th>" for c in columns]
    rows = []
    for i, record in enumerate(records):
        cells = [f"<th>{_escape(row_labels[i])}</th>"] if row_labels is not None else []
        cells += [_cell(record.get(c)) for c in columns]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _is_flat_record(value: Any) -> bool:
    return isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values())


def _render_value(value: Any) -> str:
    if _is_scalar(value):
        return _scalar(value)
    if isinstance(value, Mapping):
        if value and all(_is_flat_record(v) for v in value.values()):
            # A mapping of flat records (per class, per statistic...): one row per key.
            return _records_table(list(value.values()), [str(k) for k in value])
        rows = "".join(
            f"<tr><th>{_escape(key)}</th>{_cell(item)}</tr>" for key, item in value.items()
        )
        return f"<table><tbody>{rows}</tbody></table>"
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if value and all(isinstance(v, Mapping) for v in value):
            return _records_table(value)
        if all(_is_scalar(v) for v in value):
            return ", ".join(_scalar(v) for v in value)
        return "<br>".join(_render_value(v) for v in value)
    return _escape(value)


def _figure(path: Path) -> str:
    if not path.is_file():
        return f'<p class="note">Figure {_escape(path.name)} is missing.</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = _escape(path.name)
    return (
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def _anchor(name: str) -> str:
    return "section-" + "".join(c if c.isalnum() else "-" for c in name)


def render_section(section: MetricSection) -> str:
    """Return one section as HTML: title, values table, figures and text (all escaped)."""
    parts = [f'<section class="metric" id="{_escape(_anchor(section.name))}">']
    parts.append(f"<h3>{_escape(section.title)}</h3>")
    if section.text:
        parts.append(f"<pre>{_escape(section.text)}</pre>")
    parts.extend(_figure(Path(path)) for path in section.figures)
    if section.values:
        parts.append(_render_value(section.values))
    parts.append("</section>")
    return "\n".join(parts)


def data_summary(predictions: Predictions) -> dict[str, Any]:
    """Return the image, class, patient and magnification counts of ``predictions``."""
    names = predictions.class_names
    per_class = Counter(names[int(i)] for i in predictions.y_true)
    patients = {p for p in predictions.patient_ids if p}
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


def _interval(record: Any) -> str:
    """``0.912 [0.850, 0.960]`` from a bootstrap record (``estimate``, ``low``, ``high``)."""
    if not isinstance(record, Mapping) or record.get("estimate") is None:
        return "n/a"
    text = f"{record['estimate']:.3f}"
    if record.get("low") is not None and record.get("high") is not None:
        text += f" [{record['low']:.3f}, {record['high']:.3f}]"
    return text


def _operating_point(metrics: Mapping[str, Any]) -> tuple[str, str] | None:
    """Sensitivity and specificity at the Youden threshold chosen on the selection set."""
    points = metrics.get("thresholds", {}).get("operating_points", [])
    for point in points:
        if point.get("name") == "youden":
            return (
                f"Sensitivity / specificity at the selection set's Youden threshold "
                f"({point['threshold']:.3f})",
                f"{_scalar(point.get('sensitivity'))} / {_scalar(point.get('specificity'))}",
            )
    return None


def _patient_figures(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    patient = metrics.get("patient", {})
    intervals = patient.get("intervals", {})
    rows = []
    for key, label in (
        ("accuracy", "Patient-level accuracy"),
        ("auc", "Patient-level AUC"),
        ("patient_recognition_rate", "Patient recognition rate (Spanhol et al.)"),
    ):
        if key in intervals:
            rows.append((label, _interval(intervals[key])))
        elif isinstance(patient.get(key), (int, float)):
            rows.append((label, _scalar(patient[key])))
    return rows


def summary_card(metrics: Mapping[str, Any], calibration: Mapping[str, Any] | None) -> str:
    """The report's first screen: the headline figures with 95% intervals, and the set they
    come from (``metrics`` is a ``metrics.json`` document)."""
    evaluated = metrics.get("evaluated_on", {})
    intervals = metrics.get("bootstrap", {}).get("intervals", {})
    level = metrics.get("bootstrap", {}).get("level", 0.95)
    rows = [
        ("Accuracy", _interval(intervals.get("accuracy"))),
        ("ROC AUC", _interval(intervals.get("auc"))),
        ("Sensitivity (default decision)", _interval(intervals.get("sensitivity"))),
        ("Specificity (default decision)", _interval(intervals.get("specificity"))),
    ]
    point = _operating_point(metrics)
    if point:
        rows.append(point)
    rows.extend(_patient_figures(metrics))
    patients = evaluated.get("patients")
    rows.append(
        ("Images / patients", f"{evaluated.get('images', 'n/a')} / {patients or 'unknown'}")
    )
    table = "".join(f"<tr><th>{_escape(k)}</th><td>{_escape(v)}</td></tr>" for k, v in rows)
    notes = [
        f'<p class="set">Figures from the {_escape(evaluated.get("set", "unknown set"))}.</p>',
        f'<p class="note">Brackets: {level:.0%} bootstrap confidence intervals '
        f"({_escape(metrics.get('bootstrap', {}).get('method', 'percentile bootstrap'))}).</p>",
    ]
    if calibration:
        temperature = calibration.get("temperature")
        notes.append(
            '<p class="note">Temperature '
            + (f"{temperature:.3f}" if temperature is not None else "not applied")
            + " and thresholds fitted on the "
            f"{_escape(calibration.get('fitted_on', 'selection set'))}"
            f" ({_escape(calibration.get('n_images', '?'))} images, TTA "
            f"{_escape(calibration.get('tta', 'none'))}), applied unchanged here.</p>"
        )
        notes.extend(
            f'<p class="warning">{_escape(note)}.</p>' for note in calibration.get("notes", ())
        )
    warnings = metrics.get("bootstrap", {}).get("warnings", [])
    notes.extend(f'<p class="warning">Warning: {_escape(w)}.</p>' for w in warnings)
    return (
        '<section class="card" id="summary"><h2>Summary</h2>'
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
    """
    # A section that does not apply and says nothing (the subtype section of a binary model).
    ordered = [
        s
        for s in _ordered(sections)
        if s.text or s.values.get("available", True) is not False
    ]
    image_level = [s for s in ordered if s.level != "patient"]
    patient_level = [s for s in ordered if s.level == "patient"]
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    toc = ["<li><a href='#data'>Data</a></li>"]
    if training_figures:
        toc.append("<li><a href='#training'>Training curves</a></li>")
    for part, members in (("Image level", image_level), ("Patient level", patient_level)):
        for section in members:
            toc.append(
                f"<li><a href='#{_escape(_anchor(section.name))}'>{_escape(part)}: "
                f"{_escape(section.title)}</a></li>"
            )
    if settings:
        toc.append("<li><a href='#settings'>Configuration</a></li>")
    body = [
        f"<h1>{_escape(title)}</h1>",
        f'<p class="meta">breastcls {_escape(__version__)} · generated {_escape(stamp)}</p>',
        summary_card(headline, calibration) if headline is not None else "",
        f"<nav><h2>Contents</h2><ul>{''.join(toc)}</ul></nav>",
        f'<h2 id="data">Data</h2>{_render_value(dict(summary))}',
    ]
    if training_figures:
        figures = "".join(_figure(Path(p)) for p in training_figures)
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
            f"{_render_value(dict(settings))}</details>"
        )
    document = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        # No script, style or font is fetched: the page works offline and when printed.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">\n"
        f"<title>{_escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    atomic_write_text(path, document)
    return path
