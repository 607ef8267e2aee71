"""CSV manifest datasets: ``path,label[,patient_id][,magnification][,subtype][,split]``.

A manifest lists one image per row. ``path`` is relative to the manifest's folder and may not
leave it; any column beyond the known ones is kept, as a string, in
:attr:`~breastcls.interfaces.Sample.extra` (a biopsy column, a scanner id...). When a row leaves
``patient_id``, ``magnification`` or ``subtype`` empty and its file has a BreakHis name, the
name fills them in.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from breastcls.config import DataConfig
from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.folder import SPLIT_FOLDERS, LoadedDataset
from breastcls.errors import DataError
from breastcls.interfaces import Sample
from breastcls.progress import ProgressReporter, active_reporter

__all__ = ["KNOWN_COLUMNS", "ManifestFormat", "read_csv_rows", "read_manifest"]

KNOWN_COLUMNS = ("path", "label", "patient_id", "magnification", "subtype", "split")
_SHOWN = 5


def _listing(problems: Sequence[str]) -> str:
    more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    return "; ".join(problems[:_SHOWN]) + more


def _records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """Each CSV record of ``text`` with the line it starts on.

    The whole text is parsed as CSV (a line break inside quotes stays inside its value), and a
    value holding a line break is refused: a label or path is one line, and splitting or
    joining it would name another class or another file.
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for values in reader:
            broken = next((v for v in values if "".join(v.splitlines()) != v), None)
            if broken is not None:
                raise DataError(
                    f"Manifest {str(path)!r}, line {start}: the value {broken!r} holds a line "
                    "break; labels, paths and other values are one line: remove it."
                )
            yield start, values
            start = reader.line_num + 1
    except csv.Error as error:
        raise DataError(
            f"Manifest {str(path)!r}, line {start}: not valid CSV ({error}): fix the row."
        ) from error


def read_csv_rows(
    path: Path,
    *,
    first: Sequence[str] = ("path", "label"),
    layout: str = (
        "path,label[,patient_id][,magnification][,subtype][,split]; other columns are kept as "
        "extra fields"
    ),
    unit: str = "image",
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows (with the line each starts on) of a CSV manifest whose header
    starts with the columns ``first``; blank rows are left out, values stripped.

    Args:
        path: The ``.csv`` file.
        first: The columns the header must start with.
        layout: The columns a manifest may have, for the messages.
        unit: What one row lists, for the messages.

    Raises:
        DataError: The file is not UTF-8 text or not readable, not valid CSV, its header does
            not start with ``first`` or repeats a column, a row has another number of fields
            than the header, or it has no rows.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(
            f"Manifest {str(path)!r} is not UTF-8 text ({error.reason} at byte {error.start}): "
            "save it as UTF-8 CSV."
        ) from error
    except PermissionError as error:
        raise DataError(f"Manifest {str(path)!r}: permission denied; make it readable.") from error
    records = _records(path, text)
    _, header = next(records, (1, None))
    if header is None:
        raise DataError(
            f"Manifest {str(path)!r} is empty: write a header line {','.join(first)!r} then one "
            f"row per {unit}."
        )
    header = [column.strip() for column in header]
    if header[: len(first)] != list(first):
        raise DataError(
            f"Manifest {str(path)!r} has the header {','.join(header)!r}: it must start with "
            f"{','.join(first)!r} (columns: {layout})."
        )
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated or "" in header:
        what = f"repeated column(s) {repeated}" if repeated else "an empty column name"
        raise DataError(
            f"Manifest {str(path)!r} has {what} in its header: give every column one unique name."
        )
    rows: list[tuple[int, dict[str, str]]] = []
    for line, values in records:
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            raise DataError(
                f"Manifest {str(path)!r}, line {line}: {len(values)} field(s) for "
                f"{len(header)} column(s) ({','.join(header)}): fix the row (quote values that "
                "contain commas)."
            )
        rows.append(
            (line, {column: value.strip() for column, value in zip(header, values, strict=True)})
        )
    if not rows:
        raise DataError(f"Manifest {str(path)!r} has a header but no rows: add one row per {unit}.")
    return header, rows


def _inside(relative: str) -> bool:
    """Whether a manifest path stays inside the manifest's folder (checked on the text).

    Absolute POSIX or Windows paths (``/x``, ``\\x``, ``C:x``, ``\\\\server\\share``) and
    paths that climb out (``..``) are not.
    """
    text = relative.replace("\\", "/")
    if not text or text.startswith("/") or text[1:2] == ":":
        return False
    normal = os.path.normpath(text)
    return normal != ".." and not normal.startswith("../") and normal != "."


def read_manifest(path: Path, *, labels: Sequence[str] | None = None) -> LoadedDataset:
    """Read a CSV manifest.

    Args:
        path: The ``.csv`` file.
        labels: The allowed labels, in class order; ``None`` accepts every label (classes are
            then the labels found, sorted).

    Returns:
        The dataset; classes are ``labels`` (those present) or the sorted labels found.

    Raises:
        DataError: Wrong header, a malformed row, an empty label, a path that is absolute or
            escapes the manifest's folder, a duplicate path, a missing file, an unknown label, a
            bad magnification or split value, or a split column filled on some rows only.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Manifest {str(path)!r} does not exist: pass an existing CSV file.")
    reporter = active_reporter()
    if reporter is not None:
        reporter.task_started(f"reading {path.name}", total=None, unit="rows")
    _, rows = read_csv_rows(path)
    if reporter is not None:
        # A manifest of many rows says so before their check, which takes seconds per 10^5.
        many = len(rows) >= _ANNOUNCED_ROWS
        reporter.task_finished(f"{path.name}: {len(rows)} rows; checking them…" if many else "")
    checker = _RowChecker(path.parent, labels)
    samples = checker.samples(rows, reporter, what=path.name)
    _raise_problems(f"Manifest {str(path)!r}", path.parent, labels, checker.problems)
    with_split = sum(1 for s in samples if s.split)
    if 0 < with_split < len(samples):
        raise DataError(
            f"Manifest {str(path)!r} gives a split on {with_split} of {len(samples)} rows: fill "
            "the split column on every row, or leave it empty everywhere to let breastcls split."
        )
    found = {s.label for s in samples}
    class_names = (
        tuple(name for name in labels if name in found)
        if labels is not None
        else tuple(sorted(found))
    )
    if len(class_names) < 2:
        raise DataError(
            f"Manifest {str(path)!r} has {len(class_names)} label(s) "
            f"({', '.join(class_names)}); a classifier needs at least two."
        )
    return LoadedDataset(root=path, class_names=class_names, samples=tuple(samples))


_PROBLEMS = ("escape", "duplicate", "label", "missing", "value")
_ANNOUNCED_ROWS = 10_000  # a manifest of this many rows says so before their check
_REPORT_EVERY = 10_000  # rows between two progress reports while checking


class _RowChecker:
    """Turns the rows of one manifest into samples, recording each row's problem by kind.

    Each folder a row names is resolved once (symbolic links followed), not once per row: a
    manifest of 10^6 rows in two class folders resolves two.
    """

    def __init__(self, folder: Path, labels: Sequence[str] | None) -> None:
        self.folder = folder
        self.labels = labels
        self.problems: dict[str, list[str]] = {kind: [] for kind in _PROBLEMS}
        self._real_folder = os.path.join(os.path.realpath(folder), "")
        self._real_parents: dict[str, str] = {}

    def samples(
        self,
        rows: Sequence[tuple[int, dict[str, str]]],
        reporter: ProgressReporter | None,
        *,
        what: str,
    ) -> list[Sample]:
        """The samples of ``rows``, reporting the check's progress to ``reporter`` (if any)."""
        if reporter is not None:
            reporter.task_started(f"checking {what}", total=len(rows), unit="rows")
        samples: list[Sample] = []
        first_line: dict[str, int] = {}
        for done, (line, row) in enumerate(rows, start=1):
            key = os.path.normpath(row["path"].replace("\\", "/"))
            inside = _inside(row["path"])
            if inside and key in first_line:
                self.problems["duplicate"].append(
                    f"line {line} repeats line {first_line[key]}: {key!r}"
                )
            else:
                first_line.setdefault(key, line)
                sample = self._sample(row, line, key, inside=inside)
                if sample is not None:
                    samples.append(sample)
            if reporter is not None and (done % _REPORT_EVERY == 0 or done == len(rows)):
                reporter.task_advanced(done)
        if reporter is not None:
            reporter.task_finished()
        return samples

    def _resolves_inside(self, image: str) -> bool:
        """Whether ``image`` is inside the folder once symbolic links are resolved."""
        parent, name = os.path.split(image)
        real_parent = self._real_parents.get(parent)
        if real_parent is None:
            real_parent = self._real_parents[parent] = os.path.realpath(parent)
        real = os.path.join(real_parent, name)
        if os.path.islink(real):
            real = os.path.realpath(real)
        return os.path.join(real, "").startswith(self._real_folder)

    def _sample(self, row: dict[str, str], line: int, key: str, *, inside: bool) -> Sample | None:
        """The sample of one row, or ``None`` with the row's problem recorded."""
        image = os.path.join(self.folder, key)
        # Resolved, symbolic links included: a link inside the folder may point anywhere.
        if not inside or not self._resolves_inside(image):
            self.problems["escape"].append(f"line {line}: {row['path']!r}")
            return None
        label = row["label"]
        if not label or (self.labels is not None and label not in self.labels):
            self.problems["label"].append(f"line {line}: {label!r}")
            return None
        if not os.path.isfile(image):
            self.problems["missing"].append(f"line {line}: {key!r}")
            return None
        return _with_values(row, line, Path(image), self.problems)


def _with_values(
    row: dict[str, str], line: int, image: Path, problems: dict[str, list[str]]
) -> Sample | None:
    """The sample of a row whose path and label are good, or ``None`` with a bad value
    (magnification, split) recorded."""
    magnification: int | None = None
    if row.get("magnification"):
        text = row["magnification"].upper().removesuffix("X")
        if not text.isdigit():
            problems["value"].append(
                f"line {line}: magnification {row['magnification']!r} is not a number"
            )
            return None
        magnification = int(text)
    split: str | None = None
    if row.get("split"):
        split = SPLIT_FOLDERS.get(row["split"].lower())
        if split is None:
            problems["value"].append(
                f"line {line}: split {row['split']!r} is not train, validation, val or test"
            )
            return None
    parsed = parse_breakhis_name(image.name)
    return Sample(
        path=image,
        label=row["label"],
        patient_id=row.get("patient_id") or (parsed.patient_id if parsed else None),
        magnification=magnification or (parsed.magnification if parsed else None),
        subtype=row.get("subtype") or (parsed.subtype if parsed else None),
        split=split,
        extra={k: v for k, v in row.items() if k not in KNOWN_COLUMNS},
    )


def _raise_problems(
    where: str, folder: Path, labels: Sequence[str] | None, problems: dict[str, list[str]]
) -> None:
    """Raise one error for the first kind of problem the rows have, listing the rows."""
    messages = {
        "escape": f"{where} has path(s) that are absolute or leave its folder: {{rows}}. Paths "
        f"must be relative to {str(folder)!r} and stay inside it, symbolic links followed.",
        "duplicate": f"{where} lists the same image more than once: {{rows}}. Keep one row per "
        "image.",
        "label": f"{where} has empty or unknown label(s): {{rows}} ("
        + (f"allowed: {', '.join(labels)}" if labels is not None else "labels must be set")
        + "). Fix the label column.",
        "missing": f"{where} names {len(problems['missing'])} file(s) that do not exist: "
        f"{{rows}}. Paths are relative to {str(folder)!r}; fix or remove those rows.",
        "value": f"{where}: {{rows}}. Fix those values.",
    }
    for kind in _PROBLEMS:
        if problems[kind]:
            raise DataError(messages[kind].replace("{rows}", _listing(problems[kind])))


class ManifestFormat:
    """CSV manifests (``*.csv``): one row per image, paths relative to the manifest's folder.

    Args:
        labels: Allowed labels in class order (``None``: every label found, sorted).
    """

    def __init__(self, labels: Sequence[str] | None = None) -> None:
        self.labels = tuple(labels) if labels is not None else None

    def accepts(self, path: Path) -> bool:
        """Return whether ``path`` is a ``.csv`` file."""
        return path.is_file() and path.suffix.lower() == ".csv"

    def load(self, path: Path, *, config: DataConfig) -> LoadedDataset:
        """Read the manifest at ``path`` (see :func:`read_manifest`)."""
        return read_manifest(path, labels=self.labels)
