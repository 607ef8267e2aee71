"""The text of ``breastcls data check``: a :class:`~breastcls.data.check.DataReport` as tables,
then every error and warning (``--json`` prints the report itself)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from breastcls.data.check import DataReport
from breastcls.stain.survey import StainReport

__all__ = ["format_report"]


def _table(title: str, rows: Mapping[str, Any]) -> list[str]:
    if not rows:
        return []
    width = max(len(str(key)) for key in rows)
    return [title, *(f"  {key!s:<{width}}  {value}" for key, value in rows.items())]


def _stain_lines(stain: StainReport) -> list[str]:
    def vector(values: tuple[float, ...] | None) -> str:
        return "(" + ", ".join(f"{v:.2f}" for v in values) + ")" if values else "n/a"

    rows = {
        name: f"{stats.images} images, tissue {stats.tissue_fraction:.0%}, mean OD "
        f"{vector(stats.mean_od)}, H {vector(stats.haematoxylin)}, E {vector(stats.eosin)}"
        for name, stats in (
            *((f"role {role}", stats) for role, stats in stain.per_role.items()),
            *((f"class {label}", stats) for label, stats in stain.per_class.items()),
        )
    }
    lines = _table("stain (Macenko, mean OD of the tissue, H and E vectors in RGB OD):", rows)
    if stain.role_distance is not None and stain.class_distance is not None:
        lines.append(
            f"  stain distance between roles (within a class) {stain.role_distance:.3f}, "
            f"furthest {' vs '.join(stain.roles_apart)}; between classes (within a role) "
            f"{stain.class_distance:.3f}"
        )
        # The distance has no unit a reader knows (optical densities and stain vectors,
        # stacked): the classes' own difference is its scale.
        if stain.class_distance > 0:
            ratio = stain.role_distance / stain.class_distance
            lines.append(
                f"  the roles' stain lies {ratio:.2f} times as far apart as the classes' "
                "(above 1: a batch effect between the roles, which a model can learn instead "
                "of the tissue)"
            )
    return lines


def _magnification_lines(per_magnification: Mapping[str, int]) -> list[str]:
    """A note when the images mix magnifications: a model trained across them has no single
    scale, which ``breastcls slide predict`` needs."""
    known = [m for m in per_magnification if m != "unknown"]
    if len(known) < 2:
        return []
    return [
        f"  mixed magnifications ({', '.join(known)}): a model trained on all of them has no "
        "single scale, so `breastcls slide predict` will ask for --model-mpp; train at one "
        "(--magnification) for slides"
    ]


def format_report(report: DataReport, *, max_issues: int = 50, width: int | None = None) -> str:
    """Render a report as human-readable text (tables, then every error and warning).

    Args:
        report: The report.
        max_issues: Errors and warnings listed (``--json`` has them all).
        width: Wrap lines to this many columns (continuation lines indented); ``None``: no
            wrapping.
    """
    lines = [
        f"data check: {report.root}",
        f"  {report.n_images} images, {len(report.class_names)} classes, "
        f"{report.n_slides} patients (slides) in {report.n_accessions} accessions; "
        f"split: {report.split_method} ({report.split_source})",
    ]
    lines += _table("per class:", report.per_class)
    per_split = {
        split: ", ".join(f"{label} {count}" for label, count in row.items())
        for split, row in report.per_split.items()
    }
    lines += _table("per role:", per_split)
    lines += _table("per magnification:", report.per_magnification)
    lines += _magnification_lines(report.per_magnification)
    if report.per_patient:
        counts = list(report.per_patient.values())
        lines.append(
            f"per patient: {len(counts)} patients, {min(counts)} to {max(counts)} images each"
        )
    lines += _table(
        "suffix siblings (slides of one accession):",
        {accession: ", ".join(slides) for accession, slides in report.suffix_siblings.items()},
    )
    lines += _table("image sizes:", report.sizes)
    lines += _table("modes:", report.modes)
    lines += _table("formats:", report.formats)
    if report.stain is not None:
        lines += _stain_lines(report.stain)
    lines.append(
        f"result: {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
        + (" - OK" if report.ok else " - FAILED")
    )
    for issue in report.issues[:max_issues]:
        lines.append(f"  {issue.severity.upper():7} [{issue.kind}] {issue.message}")
    if len(report.issues) > max_issues:
        lines.append(f"  ... and {len(report.issues) - max_issues} more (use --json for all)")
    if width is None:
        return "\n".join(lines)
    wrapped = []
    for line in lines:
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        wrapped += textwrap.wrap(
            line,
            width=max(width, 40),
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        ) or [""]
    return "\n".join(wrapped)
