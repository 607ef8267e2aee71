"""The HTML report: one self-contained file (figures embedded, no network access, printable).

The page reads as a document: the summary card, the contents, then one labelled section per
:class:`~breastcls.interfaces.MetricSection`. Each section is worded into a
:class:`~breastcls.htmlpage.PageSection` (human headings, tables of 3-decimal figures with their
intervals, notes saying where the figures come from); a section this module does not know (a
metric plugin's) is shown with its keys worded the same way, so a plugin adds a section by
existing. Every warning is shown once, sections with nothing to say are left out, and every
string that comes from data, a configuration or a plugin is HTML-escaped.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from breastcls.evaluation.clinical import unit_ids
from breastcls.evaluation.domain import domain_line, domain_warning
from breastcls.htmlpage import (
    PageSection,
    Table,
    anchor,
    escape,
    render_page_section,
    render_section,
    render_table,
    write_page,
)
from breastcls.interfaces import MetricSection, Predictions

__all__ = [
    "data_summary",
    "page_section",
    "render_report",
    "render_section",
    "summary_card",
]

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

_WORDS = {
    "auc": "AUC",
    "ece": "ECE",
    "nll": "NLL",
    "npv": "NPV",
    "f1": "F1",
    "roc": "ROC",
    "tta": "TTA",
    "id": "id",
    "n": "number of",
}
"""How a ``metrics.json`` key's words read in a heading (``n_images``: number of images)."""

_HIDDEN_KEYS = frozenset({"available", "positive_classes", "interval_method", "warnings"})
"""Keys whose content a section says in words (its notes and warnings), not as a row."""


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


# --- Wording of values ------------------------------------------------------------------------


def humanise(key: object) -> str:
    """A ``metrics.json`` key as a heading: ``n_images`` reads ``Number of images``,
    ``ece_before_temperature`` ``ECE before temperature``."""
    words = [_WORDS.get(word.lower(), word) for word in str(key).replace("_", " ").split(" ")]
    text = " ".join(word for word in words if word)
    return text[:1].upper() + text[1:]


def number(value: Any) -> str:
    """A figure as the report shows it: 3 decimals, whole numbers as they are, ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # A learning rate of 3e-4 is not 0.000.
        return f"{value:.3g}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"
    return str(value)


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


def _cell_interval(record: Any) -> str:
    """An interval for a table cell: ``0.912 [0.850, 0.960]``, ``(zero width)`` marked."""
    if not isinstance(record, Mapping) or record.get("estimate") is None:
        return "n/a"
    text = f"{record['estimate']:.3f}"
    if record.get("low") is not None and record.get("high") is not None:
        text += f" [{record['low']:.3f}, {record['high']:.3f}]"
        if record["low"] == record["high"]:
            text += " (zero width)"
    return text


def _exact_cell(record: Any) -> str:
    if not isinstance(record, Mapping) or record.get("low") is None:
        return ""
    return (
        f"[{record['low']:.3f}, {record['high']:.3f}] "
        f"({record.get('successes')} of {record.get('trials')} patients)"
    )


def _sentence(text: str) -> str:
    """A warning as one comparable sentence: no ``Warning:`` prefix, no final full stop."""
    return text.strip().removeprefix("Warning:").strip().rstrip(".")


def _text_parts(text: str | None) -> tuple[list[str], list[str]]:
    """A section's text split into its notes and its ``Warning:`` lines."""
    notes, warnings = [], []
    for line in (text or "").splitlines():
        if line.strip().startswith("Warning:"):
            warnings.append(_sentence(line))
        elif line.strip():
            notes.append(line.strip())
    return notes, warnings


def _warnings_of(section: MetricSection) -> tuple[str, ...]:
    """Every warning a section records (its text's and its values'), each once."""
    listed = section.values.get("warnings", ())
    from_values = [_sentence(str(w)) for w in listed] if isinstance(listed, list) else []
    return tuple(dict.fromkeys([*_text_parts(section.text)[1], *from_values]))


# --- Generic wording of any JSON-shaped values -------------------------------------------------


def _is_flat(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        v is None or isinstance(v, (str, int, float, bool)) for v in value.values()
    )


def _records_table(records: Sequence[Mapping[str, Any]], caption: str, first: str) -> Table:
    """A list of flat records (or a mapping of them, keys as ``first`` column) as a table."""
    columns = list(dict.fromkeys(key for record in records for key in record))
    return Table(
        columns=tuple(humanise(c) for c in columns),
        rows=tuple(tuple(number(record.get(c)) for c in columns) for record in records),
        caption=caption,
    )


def _value_text(value: Any) -> str:
    if isinstance(value, Mapping):
        if {"estimate", "low", "high"} <= set(value):
            return _cell_interval(value)
        return "; ".join(f"{humanise(k)}: {_value_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(v) for v in value)
    return number(value)


def generic_tables(values: Mapping[str, Any], *, caption: str = "") -> tuple[Table, ...]:
    """Any JSON-shaped ``values`` as tables with worded headings: the single figures in one
    two-column table, each list of records and each mapping of records in a table of its own."""
    rows: list[tuple[str, str]] = []
    tables: list[Table] = []
    for key, value in values.items():
        if key in _HIDDEN_KEYS:
            continue
        if isinstance(value, list) and value and all(_is_flat(v) for v in value):
            tables.append(_records_table(value, humanise(key), humanise(key)))
        elif isinstance(value, Mapping) and value and all(_is_flat(v) for v in value.values()):
            records = [{"": name, **record} for name, record in value.items()]
            tables.append(_records_table(records, humanise(key), ""))
        else:
            rows.append((humanise(key), _value_text(value)))
    if rows:
        tables.insert(0, Table(columns=("", "Value"), rows=tuple(rows), caption=caption))
    return tuple(tables)


# --- The built-in sections ----------------------------------------------------------------------


def _classification(section: MetricSection) -> PageSection:
    values = section.values
    rows = [
        (
            name,
            number(r.get("precision")),
            number(r.get("recall")),
            number(r.get("f1")),
            number(r.get("support")),
        )
        for name, r in values.get("per_class", {}).items()
    ]
    for key, label in (("macro_avg", "Macro average"), ("weighted_avg", "Weighted average")):
        r = values.get(key, {})
        rows.append(
            (label, number(r.get("precision")), number(r.get("recall")), number(r.get("f1")), "")
        )
    table = Table(
        columns=("Class", "Precision", "Recall (sensitivity)", "F1", "Images"),
        rows=tuple(rows),
    )
    note = (
        f"Accuracy {number(values.get('accuracy'))} over {number(values.get('n_images'))} "
        "images; each image called its most probable class."
    )
    return PageSection(key=section.name, title=section.title, notes=(note,), tables=(table,))


def _confusion(section: MetricSection) -> PageSection:
    labels = [str(label) for label in section.values.get("labels", [])]
    counts = section.values.get("matrix", [])
    shares = section.values.get("normalised", counts)
    rows = tuple(
        (label, *(f"{c} ({s:.0%})" for c, s in zip(counts[i], shares[i], strict=True)))
        for i, label in enumerate(labels)
    )
    table = Table(
        columns=("True class \\ predicted", *labels),
        rows=rows,
        caption="Images per true and predicted class (share of the true class)",
    )
    return PageSection(
        key=section.name, title=section.title, figures=section.figures, tables=(table,)
    )


def _roc(section: MetricSection) -> PageSection:
    values = section.values
    positive = values.get("positive_class", "the positive class")
    note = (
        f"Positive class: {positive} ({number(values.get('n_positive'))} images against "
        f"{number(values.get('n_negative'))}). AUC {number(values.get('auc'))}, average "
        f"precision {number(values.get('average_precision'))}."
    )
    notes, _ = _text_parts(section.text)
    return PageSection(
        key=section.name, title=section.title, notes=(note, *notes), figures=section.figures
    )


def _point_name(name: str) -> str:
    """An operating point's name in words: ``sensitivity_at_specificity_0.95`` reads
    ``Highest sensitivity with specificity ≥ 0.95``."""
    found = re.fullmatch(r"(\w+?)_at_(\w+?)_([0-9.]+)", name)
    if found:
        return f"Highest {found[1]} with {found[2]} ≥ {found[3]}"
    return {"default": "Default decision", "youden": "Youden (best sensitivity + specificity)"}.get(
        name, humanise(name)
    )


def thresholds_origin(chosen_on: object) -> str:
    """The line that says where a section's thresholds came from."""
    if str(chosen_on).startswith("selection set"):
        return (
            "Thresholds chosen on the selection set and applied unchanged to these images: a "
            "target reached there (such as specificity ≥ 0.95) may be missed here."
        )
    return "Thresholds chosen on these images themselves: the figures below are optimistic."


def operating_points_table(points: Sequence[Mapping[str, Any]], caption: str) -> Table:
    """Operating points with their thresholds and, where recorded, 95% intervals."""
    extra = [k for k in ("precision", "npv", "accuracy", "f1") if any(k in p for p in points)]
    rows = []
    for point in points:
        intervals = point.get("intervals", {})
        rates = [
            _cell_interval(intervals[k]) if k in intervals else number(point.get(k))
            for k in ("sensitivity", "specificity")
        ]
        rows.append(
            (
                _point_name(str(point.get("name"))),
                number(point.get("threshold")),
                *rates,
                *(number(point.get(k)) for k in extra),
            )
        )
    return Table(
        columns=(
            "Operating point",
            "Threshold",
            "Sensitivity",
            "Specificity",
            *(humanise(k) for k in extra),
        ),
        rows=tuple(rows),
        caption=caption,
    )


def _thresholds(section: MetricSection) -> PageSection:
    points = section.values.get("operating_points", [])
    names = {str(p.get("name")) for p in points}
    notes = [
        line
        for line in _text_parts(section.text)[0]
        if line.split(":", 1)[0] not in names  # each point's meaning is its row's name
    ]
    return PageSection(
        key=section.name,
        title="Operating points",
        notes=(thresholds_origin(section.values.get("chosen_on")), *notes),
        tables=(operating_points_table(points, "Brackets: 95% bootstrap intervals"),),
    )


def _statistics_table(intervals: Mapping[str, Any], exact: Mapping[str, Any]) -> Table:
    return Table(
        columns=("Statistic", "Estimate [95% interval]", "Exact per patient"),
        rows=tuple(
            (humanise(name), _cell_interval(record), _exact_cell(exact.get(name)))
            for name, record in intervals.items()
        ),
    )


def _bootstrap(section: MetricSection) -> PageSection:
    values = section.values
    counts = values.get("resampled_per_class", {})
    unit = values.get("resampled", "images")
    notes = _text_parts(section.text)[0]
    if counts:
        notes.append(
            f"{humanise(unit)} resampled per class: "
            + ", ".join(f"{name} {count}" for name, count in counts.items())
            + "."
        )
    table = _statistics_table(values.get("intervals", {}), values.get("exact_per_patient", {}))
    return PageSection(key=section.name, title=section.title, notes=tuple(notes), tables=(table,))


def _calibration(section: MetricSection) -> PageSection:
    values = dict(section.values)
    bins = values.pop("bins", [])
    tables = list(generic_tables(values))
    if bins:
        tables.append(
            Table(
                columns=("Confidence", "Images", "Mean confidence", "Accuracy"),
                rows=tuple(
                    (
                        f"{number(b.get('lower'))}–{number(b.get('upper'))}",
                        number(b.get("count")),
                        number(b.get("confidence")),
                        number(b.get("accuracy")),
                    )
                    for b in bins
                ),
                caption="Reliability: images per confidence bin",
            )
        )
    return PageSection(
        key=section.name,
        title=section.title,
        notes=tuple(_text_parts(section.text)[0]),
        figures=section.figures,
        tables=tuple(tables),
    )


def _patient(section: MetricSection) -> PageSection:
    values = section.values
    tables = [_statistics_table(values.get("intervals", {}), values.get("exact", {}))]
    if values.get("operating_points"):
        tables.append(
            operating_points_table(
                values["operating_points"], "Operating points applied to the patient score"
            )
        )
    if values.get("patients"):
        tables.append(_records_table(values["patients"], "Patients", "Patient"))
    notes = [
        f"{number(values.get('n_patients'))} patients, {number(values.get('n_images'))} images.",
        *_text_parts(section.text)[0],
    ]
    return PageSection(
        key=section.name,
        title=section.title,
        notes=tuple(notes),
        tables=tuple(tables),
        figures=section.figures,
        level=section.level,
    )


def _magnification(section: MetricSection) -> PageSection:
    breakdown = section.values.get("breakdown", [])
    statistics = ("accuracy", "sensitivity", "specificity", "auc", "patient_recognition_rate")
    rows = tuple(
        (
            str(part.get("magnification")),
            number(part.get("n_images")),
            number(part.get("n_patients")),
            *(
                _cell_interval(part.get("intervals", {}).get(s, {"estimate": part.get(s)}))
                for s in statistics
            ),
        )
        for part in breakdown
    )
    table = Table(
        columns=("Magnification", "Images", "Patients", *(humanise(s) for s in statistics)),
        rows=rows,
        caption="Brackets: 95% bootstrap intervals",
    )
    return PageSection(
        key=section.name,
        title=section.title,
        notes=tuple(_text_parts(section.text)[0]),
        figures=section.figures,
        tables=(table,),
        level=section.level,
    )


def _shift(section: MetricSection) -> PageSection:
    """A stain-shift robustness section: its description, figure and curve table."""
    values = dict(section.values)
    curve = values.pop("curve", [])
    values.pop("reference_parameters", None)
    description = (section.text or "").split("\n\n", 1)[0]
    rows = tuple(
        (
            number(p.get("strength")),
            _cell_interval(p.get("auc")),
            _cell_interval(p.get("accuracy")),
            _cell_interval(p.get("auc_change")),
            _cell_interval(p.get("accuracy_change")),
        )
        for p in curve
    )
    curve_table = Table(
        columns=("Strength", "AUC", "Accuracy", "AUC change", "Accuracy change"),
        rows=rows,
        caption="Brackets: 95% bootstrap intervals; changes paired with strength 0",
    )
    return PageSection(
        key=section.name,
        title=section.title,
        notes=(description,) if description else (),
        figures=section.figures,
        tables=(curve_table, *generic_tables(values, caption="How the images were shifted")),
    )


def _gradcam(section: MetricSection) -> PageSection:
    rows = tuple(
        (
            kind,
            Path(str(image.get("path"))).name,
            str(image.get("true")),
            str(image.get("predicted")),
            number(image.get("confidence")),
        )
        for kind, key in (("correct", "correct"), ("error", "errors"))
        for image in section.values.get(key, [])
    )
    tables = (
        (Table(columns=("Shown as", "Image", "True", "Predicted", "Confidence"), rows=rows),)
        if rows
        else ()
    )
    return PageSection(
        key=section.name,
        title=section.title,
        notes=tuple(_text_parts(section.text)[0]),
        figures=section.figures,
        tables=tables,
    )


def _domain(section: MetricSection) -> PageSection:
    """The domain-shift section, worded from its values (a rebuilt report has no text)."""
    values = section.values
    n_images, flagged = values.get("n_images", 0), values.get("n_flagged", 0)
    reasons = ", ".join(f"{k}: {v}" for k, v in values.get("reasons", {}).items()) or "none"
    kept = values.get("in_distribution", {})
    rows = [
        ("Images flagged", f"{flagged} of {n_images} ({values.get('flagged_fraction', 0):.1%})"),
        ("Flagged by", reasons),
        ("Score fitted on", str(values.get("fitted_on", "n/a"))),
        ("Thresholds chosen on", str(values.get("thresholds_chosen_on", "n/a"))),
        *((f"Images not flagged: {humanise(k)}", number(v)) for k, v in kept.items()),
    ]
    note = (
        f"An image scoring above {number(values.get('threshold'))} is unlike the training "
        f"images (thresholds at the {values.get('quantile', 0.99):.0%} quantile of the "
        f"{values.get('thresholds_chosen_on', 'selection set')})."
    )
    return PageSection(
        key=section.name,
        title=section.title,
        notes=(note,),
        figures=section.figures,
        tables=(
            Table(columns=("", "Value"), rows=tuple(rows), caption=str(values.get("set", ""))),
        ),
    )


def _generic(section: MetricSection) -> PageSection:
    """A section this module has no wording for (a plugin's): its keys worded, its text as it
    is (minus warnings, shown once as warnings)."""
    text = "\n".join(
        line for line in (section.text or "").splitlines() if not line.startswith("Warning:")
    )
    return PageSection(
        key=section.name,
        title=section.title,
        figures=section.figures,
        tables=generic_tables(section.values),
        text=text or None,
        level=section.level,
    )


_BUILDERS: Mapping[str, Callable[[MetricSection], PageSection]] = {
    "classification": _classification,
    "confusion_matrix": _confusion,
    "roc": _roc,
    "thresholds": _thresholds,
    "bootstrap": _bootstrap,
    "calibration": _calibration,
    "patient": _patient,
    "magnification": _magnification,
    "robustness": _shift,
    "stain_reference": _shift,
    "gradcam": _gradcam,
    "domain": _domain,
}


def page_section(section: MetricSection) -> PageSection:
    """``section`` worded for the report (see the module's description); a section that does
    not apply (``available: no``) becomes an empty one, which the page leaves out."""
    if section.values.get("available", True) is False:
        return PageSection(key=section.name, title=section.title, level=section.level)
    built = _BUILDERS.get(section.name, _generic)(section)
    return replace(built, warnings=_warnings_of(section), level=section.level)


# --- The page ----------------------------------------------------------------------------------


def _ordered(sections: Sequence[MetricSection]) -> list[MetricSection]:
    def key(section: MetricSection) -> tuple[int, str]:
        rank = _ORDER.index(section.name) if section.name in _ORDER else len(_ORDER)
        return rank, section.name

    return sorted(sections, key=key)


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
            intervals = point.get("intervals", {})
            rates = " / ".join(
                _interval(intervals[key]) if key in intervals else number(point.get(key))
                for key in ("sensitivity", "specificity")
            )
            return f"Sensitivity / specificity at {where} ({point['threshold']:.3f})", rates
    return None


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
            rows.append((label, number(patient[key])))
    return rows


def _card_rows(metrics: Mapping[str, Any]) -> list[tuple[str, str]]:
    intervals = metrics.get("bootstrap", {}).get("intervals", {})
    exact = metrics.get("bootstrap", {}).get("exact_per_patient", {})
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
    evaluated = metrics.get("evaluated_on", {})
    patients = evaluated.get("patients")
    rows.append(
        ("Images / patients", f"{evaluated.get('images', 'n/a')} / {patients or 'unknown'}")
    )
    return rows


def card_warnings(metrics: Mapping[str, Any]) -> tuple[str, ...]:
    """The warnings the summary card shows (the headline intervals'), as comparable sentences."""
    return tuple(_sentence(str(w)) for w in metrics.get("bootstrap", {}).get("warnings", []))


def summary_card(
    metrics: Mapping[str, Any],
    calibration: Mapping[str, Any] | None,
    *,
    kept_epoch: str | None = None,
) -> str:
    """The report's first screen: the headline figures with 95% intervals, the set they come
    from (``metrics`` is a ``metrics.json`` document) and, for a run, the epoch it kept."""
    evaluated = metrics.get("evaluated_on", {})
    bootstrap = metrics.get("bootstrap", {})
    level = bootstrap.get("level", 0.95)
    table = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _card_rows(metrics)
    )
    notes = [
        f'<p class="set">Figures from the {escape(evaluated.get("set", "unknown set"))}.</p>',
        f'<p class="note" id="kept-epoch">Model: {escape(kept_epoch)}.</p>' if kept_epoch else "",
        f'<p class="note">Brackets: {level:.0%} bootstrap confidence intervals '
        f"({escape(bootstrap.get('method', 'percentile bootstrap'))})"
        + (
            "; exact per patient: the Clopper-Pearson binomial bound, one trial per patient, "
            "where a rate is 0 or 1 or rests on fewer than 10 patients"
            if bootstrap.get("exact_per_patient")
            else ""
        )
        + ".</p>",
    ]
    if calibration:
        notes.append(f'<p class="note">{escape(calibration.get("description", ""))}</p>')
        notes.extend(f'<p class="warning">{escape(n)}.</p>' for n in calibration.get("notes", ()))
    notes.extend(f'<p class="warning">Warning: {escape(w)}.</p>' for w in card_warnings(metrics))
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
        f'<div class="table-wrap"><table><tbody>{table}</tbody></table></div>'
        f"{''.join(notes)}</section>"
    )


def _shown_once(sections: Iterable[PageSection], seen: set[str]) -> list[PageSection]:
    """``sections`` without the warnings an earlier part of the page (``seen``) already shows."""
    kept = []
    for section in sections:
        fresh = tuple(w for w in section.warnings if w not in seen)
        seen.update(fresh)
        kept.append(replace(section, warnings=fresh))
    return kept


def _data_section(summary: Mapping[str, Any]) -> PageSection:
    """The data summary (:func:`data_summary`, plus anything describing the data) as a table."""
    rows = []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k}: {number(v)}" for k, v in value.items())
        rows.append((humanise(key), number(value)))
    return PageSection(
        key="data", title="Data", tables=(Table(columns=("", "Value"), rows=tuple(rows)),)
    )


def _flat_settings(settings: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested settings as ``Section › setting`` rows."""
    rows = []
    for key, value in settings.items():
        label = f"{prefix}{humanise(key)}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flat_settings(value, f"{label} › "))
        else:
            rows.append((label, _value_text(value)))
    return rows


def _contents(parts: Sequence[tuple[str, Sequence[PageSection]]], settings: bool) -> str:
    items = [
        f"<li><a href='#{escape(anchor(s.key))}'>{escape(part + s.title)}</a></li>"
        for part, members in parts
        for s in members
    ]
    if settings:
        items.append("<li><a href='#settings'>Configuration</a></li>")
    return f"<nav><h2>Contents</h2><ul>{''.join(items)}</ul></nav>"


def _unavailable_reasons(sections: Sequence[MetricSection]) -> list[str]:
    """Why the patient part is empty: the reasons its sections give for not applying."""
    return [
        line
        for s in sections
        if s.level == "patient" and s.values.get("available", True) is False
        for line in _text_parts(s.text)[0]
    ]


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
    seen = set(card_warnings(headline)) if headline is not None else set()
    built = [b for b in map(page_section, _ordered(sections)) if not b.empty]
    front = [_data_section(summary)]
    if training_figures:
        front.append(
            PageSection(
                key="training",
                title="Training curves",
                notes=("Loss and accuracy per epoch on the training and selection sets.",),
                figures=tuple(Path(p) for p in training_figures),
            )
        )
    image_level = _shown_once([b for b in built if b.level != "patient"], seen)
    patient_level = _shown_once([b for b in built if b.level == "patient"], seen)
    reasons = _unavailable_reasons(sections) or ["No patient-level section."]
    body = [
        summary_card(headline, calibration, kept_epoch=kept_epoch) if headline is not None else "",
        _contents(
            [("", front), ("Image level: ", image_level), ("Patient level: ", patient_level)],
            bool(settings),
        ),
        '<h2 id="data">Data and training</h2>',
        *map(render_page_section, front),
        '<h2 id="image-level">Image level</h2>',
        *map(render_page_section, image_level),
        '<h2 id="patient-level">Patient level</h2>',
        *(
            map(render_page_section, patient_level)
            if patient_level
            else (f'<p class="note">{escape(reason)}</p>' for reason in reasons)
        ),
    ]
    if settings:
        table = Table(columns=("Setting", "Value"), rows=tuple(_flat_settings(settings)))
        body.append(
            '<details id="settings"><summary>Configuration</summary>'
            f"{render_table(table)}</details>"
        )
    return write_page(path, title=title, body=body)
