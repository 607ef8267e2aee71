"""Self-contained HTML pages: the page shell and the rendering of values, figures and sections
that every breastcls report shares (the evaluation report, the slide report).

Figures are embedded, nothing is fetched (the page works offline and printed), and every string
that comes from data, a configuration or a plugin is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from breastcls._version import __version__
from breastcls.errors import ConfigError
from breastcls.interfaces import MetricSection
from breastcls.io import atomic_write_text, printable

__all__ = [
    "CSS",
    "RESEARCH_USE",
    "PageSection",
    "Table",
    "anchor",
    "escape",
    "figure",
    "render_page_section",
    "render_section",
    "render_table",
    "render_value",
    "scalar",
    "write_page",
]

RESEARCH_USE = "Research software: not a medical device, not for diagnosis."
"""The line at the top of every page: what the figures below may and may not be used for."""

CSS = """
:root { --ink: #1d2430; --muted: #5b6676; --line: #d7dce3; --accent: #8a1c4a; }
* { box-sizing: border-box; }
/* Long file names, paths and ids wrap instead of widening the page. */
body { overflow-wrap: anywhere; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1100px; }
h1 { color: var(--accent); margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid var(--accent); padding-bottom: 0.2rem; margin-top: 2.5rem; }
h3 { margin-top: 1.8rem; }
.meta, .note { color: var(--muted); }
nav ul { columns: 2; padding-left: 1.2rem; }
section.metric { break-inside: avoid-page; }
/* A wide table scrolls inside its own box; the page itself never scrolls sideways. */
.table-wrap { max-width: 100%; overflow-x: auto; margin: 0.5rem 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 13px; }
.table-wrap > table { margin: 0; }
caption { text-align: left; color: var(--muted); padding-bottom: 0.2rem; }
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
.research-use { font-weight: 600; color: #8a4b00; }
details > summary { cursor: pointer; font-weight: 600; margin-top: 2rem; }
pre { background: #f6f8fa; padding: 0.75rem; overflow-x: auto; font-size: 12px;
      white-space: pre-wrap; }
h2, h3 { overflow-wrap: break-word; }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  nav { display: none; }
  h2 { break-before: page; }
  figure, table { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def escape(value: object) -> str:
    """``value`` as HTML text, quotes included."""
    # The page stays valid UTF-8 whatever the file names.
    return html.escape(printable(value), quote=True)


def scalar(value: Any) -> str:
    """A number, text, flag or missing value as escaped HTML."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4f}"
    return escape(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _cell(value: Any) -> str:
    css = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td{css}>{render_value(value)}</td>"


def _records_table(
    records: Sequence[Mapping[str, Any]], row_labels: Sequence[str] | None = None
) -> str:
    columns = list(dict.fromkeys(key for record in records for key in record))
    head = ["<th></th>"] if row_labels is not None else []
    head += [f"<th>{escape(c)}</th>" for c in columns]
    rows = []
    for i, record in enumerate(records):
        cells = [f"<th>{escape(row_labels[i])}</th>"] if row_labels is not None else []
        cells += [_cell(record.get(c)) for c in columns]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="table-wrap"><table><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _is_flat_record(value: Any) -> bool:
    return isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values())


def render_value(value: Any) -> str:
    """Any JSON-shaped value as HTML: mappings and records become tables, all text escaped."""
    if _is_scalar(value):
        return scalar(value)
    if isinstance(value, Mapping):
        if value and all(_is_flat_record(v) for v in value.values()):
            # A mapping of flat records (per class, per statistic...): one row per key.
            return _records_table(list(value.values()), [str(k) for k in value])
        rows = "".join(
            f"<tr><th>{escape(key)}</th>{_cell(item)}</tr>" for key, item in value.items()
        )
        return f'<div class="table-wrap"><table><tbody>{rows}</tbody></table></div>'
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if value and all(isinstance(v, Mapping) for v in value):
            return _records_table(value)
        if all(_is_scalar(v) for v in value):
            return ", ".join(scalar(v) for v in value)
        return "<br>".join(render_value(v) for v in value)
    return escape(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    """A table of a page, its cells already worded (plain text, escaped when rendered).

    Attributes:
        columns: The column headings; the first column holds each row's label.
        rows: One tuple of cells per row, as many as ``columns``.
        caption: What the table shows, above it (optional).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        if not self.columns:
            raise ConfigError(f"Table {self.caption!r} has no columns: give at least one.")
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ConfigError(
                    f"Table {self.caption!r}: row {row!r} has {len(row)} cells, the table "
                    f"{len(self.columns)} columns {self.columns!r}; give one cell per column."
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class PageSection:
    """One labelled section of a page: its heading, then notes, warnings, figures, tables.

    Attributes:
        key: The section's id (its ``metrics.json`` name), for links from the contents.
        title: The heading a reader sees.
        notes: Sentences that say what the figures are and where they come from.
        warnings: Sentences a reader must not miss (each shown once per page).
        figures: PNG files embedded in the page.
        tables: The section's tables.
        text: Preformatted text, when there is no better form (a plugin's own text).
        level: ``image`` or ``patient``: the part of the report the section goes in.
    """

    key: str
    title: str
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    figures: tuple[Path, ...] = ()
    tables: tuple[Table, ...] = ()
    text: str | None = None
    level: Literal["image", "patient"] = "image"

    @property
    def empty(self) -> bool:
        """Whether the section has nothing to show (it is then left out of the page)."""
        return not (self.notes or self.warnings or self.figures or self.tables or self.text)


def _looks_numeric(cell: str) -> bool:
    return bool(cell) and (cell[0].isdigit() or cell[:2] in ("-0", "+0", "-1", "+1"))


def render_table(table: Table) -> str:
    """``table`` as HTML inside a box that scrolls sideways when the table is wider than the
    page; numbers right-aligned, every cell escaped."""
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in table.columns)
    rows = []
    for label, *cells in table.rows:
        tds = "".join(
            f'<td class="num">{escape(c)}</td>' if _looks_numeric(c) else f"<td>{escape(c)}</td>"
            for c in cells
        )
        rows.append(f'<tr><th scope="row">{escape(label)}</th>{tds}</tr>')
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    return (
        f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def render_page_section(section: PageSection) -> str:
    """One :class:`PageSection` as HTML (all text escaped)."""
    parts = [
        f'<section class="metric" id="{escape(anchor(section.key))}">',
        f"<h3>{escape(section.title)}</h3>",
        *(f'<p class="note">{escape(note)}</p>' for note in section.notes),
        *(f'<p class="warning">Warning: {escape(w)}.</p>' for w in section.warnings),
        *(figure(Path(path)) for path in section.figures),
        *(render_table(table) for table in section.tables),
    ]
    if section.text:
        parts.append(f"<pre>{escape(section.text)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def figure(path: Path) -> str:
    """A PNG file embedded in the page, with its name as caption."""
    if not path.is_file():
        return f'<p class="note">Figure {escape(path.name)} is missing.</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    name = escape(path.name)
    return (
        f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def anchor(name: str) -> str:
    """An ``id`` for a section named ``name``."""
    return "section-" + "".join(c if c.isalnum() else "-" for c in name)


def render_section(section: MetricSection) -> str:
    """Return one section as HTML: title, values table, figures and text (all escaped)."""
    parts = [f'<section class="metric" id="{escape(anchor(section.name))}">']
    parts.append(f"<h3>{escape(section.title)}</h3>")
    if section.text:
        parts.append(f"<pre>{escape(section.text)}</pre>")
    parts.extend(figure(Path(path)) for path in section.figures)
    if section.values:
        parts.append(render_value(section.values))
    parts.append("</section>")
    return "\n".join(parts)


def write_page(path: Path, *, title: str, body: Sequence[str]) -> Path:
    """Write a page (atomically): ``title`` as its heading, the research-use line
    (:data:`RESEARCH_USE`), the version and time it was made, then ``body``, HTML already
    escaped. Return ``path``."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    document = (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        # No script, style or font is fetched: the page works offline and when printed.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n"
        f'<p class="research-use" id="research-use">{escape(RESEARCH_USE)}</p>\n'
        f'<p class="meta">breastcls {escape(__version__)} · generated {escape(stamp)}</p>\n'
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    atomic_write_text(path, document)
    return path
