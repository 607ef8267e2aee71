"""The text of ``breastcls data check``: what it adds to the numbers so a reader can act."""

from __future__ import annotations

from breastcls.cli.data_report import _magnification_lines


def test_mixed_magnifications_are_flagged_before_slides_refuse_them() -> None:
    (line,) = _magnification_lines({"40X": 2, "200X": 252, "unknown": 3})
    assert line.startswith("  mixed magnifications (40X, 200X): ")
    assert "--model-mpp" in line and "--magnification" in line
    assert _magnification_lines({"200X": 252, "unknown": 3}) == []
    assert _magnification_lines({}) == []
