"""breastcls.io's CSV cells: no formula starts a cell, numbers stay numbers, text reads back."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from breastcls.io import NotRegularFileError, SafeCsvWriter, csv_cell, csv_rows, open_regular


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-x", "'-x"),
        ("-1+2", "'-1+2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tq", "'\tq"),
        ("\rq", "'\rq"),
        ("'quoted", "''quoted"),  # so that reading back can always drop one quote
        ("benign", "benign"),
        ("-0.5", "-0.5"),
        ("-1e-05", "-1e-05"),
        ("-inf", "-inf"),
        ("+3", "+3"),
        (-0.5, -0.5),
        (7, 7),
        (Path("-a.png"), "'-a.png"),
    ],
)
def test_a_cell_that_could_start_a_formula_gets_a_quote(value: object, written: object) -> None:
    assert csv_cell(value) == written


def test_every_cell_reads_back_as_written() -> None:
    rows = [["=1+2", "'q", "-0.5", "plain", "@x", "\tt", "a,b\nc"], ["-x", "", "''", "+1e3"]]
    buffer = io.StringIO(newline="")
    SafeCsvWriter(buffer).writerows(rows)
    assert csv_rows(io.StringIO(buffer.getvalue(), newline="")) == rows


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "status.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(NotRegularFileError, match="is a FIFO, not a regular file"):
        open_regular(fifo)
    assert time.monotonic() - started < 5
    with pytest.raises(NotRegularFileError, match="is a folder, not a regular file"):
        open_regular(tmp_path)
    (tmp_path / "file").write_bytes(b"{}")
    with open_regular(tmp_path / "file") as handle:
        assert handle.read() == b"{}"
