"""Listing run folders: status, progress and headline metric of every run under a folder."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from breastcls.errors import BreastclsError, ConfigError
from breastcls.io import open_regular
from breastcls.records import StatusRecord
from breastcls.runs.folder import RunFolder, read_test_looks
from breastcls.runs.lock import lock_state, process_state

__all__ = ["RunSummary", "list_runs", "writer_state"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSummary:
    """One run folder, as ``breastcls runs`` shows it.

    Attributes:
        run_dir: The run folder.
        status: ``running``, ``finished``, ``failed`` or ``interrupted`` as recorded in
            ``status.json``; ``killed`` when it says ``running`` but the process that wrote it
            (on this machine) is gone; ``unknown`` without a readable ``status.json`` (then
            ``reason`` says what is wrong with it).
        reason: Why the run failed or stopped, or why its ``status.json`` could not be read
            (``None`` otherwise).
        epochs: Epochs completed (rows of ``history.csv``; for a cross-validation folder, the
            total over its folds).
        folds: The fold folders of a cross-validation folder (``None`` for a single run).
        accuracy: The headline accuracy: a finished run's final figure (test set, or the pooled
            test sets of a cross-validation), otherwise the best epoch's ``val_accuracy`` so
            far, which is a selection-set figure (``None`` when unknown).
        auc: A finished run's ROC AUC on the same set (``None`` when unknown).
        figures_from: The role ``accuracy`` and ``auc`` come from: ``test`` or ``selection``
            (optimistic: that set chose the model); ``None`` when there are none.
        leak: ``LEAKY: N of M test patients also trained or selected (optimistic)`` when that
            set's patients also trained or selected the model, else ``None``.
        updated: When the status was last written (ISO 8601, UTC).
        backbone: The backbone id its ``config.json`` names (for a cross-validation folder,
            its first fold's); ``None`` when there is no readable configuration.
        test_looks: How many times a test set of the run was evaluated (its ledger,
            ``test_looks.jsonl``; for a cross-validation folder, the most of any fold): a test
            figure looked at more than once, or compared across runs, is no longer unbiased.
    """

    run_dir: Path
    status: str
    reason: str | None
    epochs: int
    accuracy: float | None
    auc: float | None
    figures_from: str | None
    updated: str | None
    folds: int | None = None
    test_looks: int = 0
    leak: str | None = None
    backbone: str | None = None


def list_runs(folder: Path) -> list[RunSummary]:
    """Summarise every run folder directly under ``folder`` (or ``folder`` itself if it is one).

    A run folder is one holding ``status.json`` or ``config.json``. Unreadable files never stop
    the listing: the run is shown with what could be read.

    Raises:
        ConfigError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(
            f"{str(folder)!r} is not a folder: pass the folder that holds run folders "
            "(the --out of `breastcls train`, by default runs)."
        )
    if RunFolder(folder).is_run:
        return [_summarise(RunFolder(folder))]
    candidates = [RunFolder(p) for p in sorted(folder.iterdir()) if p.is_dir()]
    return [_summarise(run) for run in candidates if run.is_run]


def _status_record(run: RunFolder) -> tuple[StatusRecord, str | None]:
    """``status.json`` checked field by field, or an ``unknown`` status and why it cannot be
    shown."""
    try:
        return run.read_status(), None
    except ConfigError as error:
        return StatusRecord(status="unknown"), str(error)


def _history(path: Path) -> list[dict[str, str]]:
    try:
        with io.TextIOWrapper(open_regular(path), encoding="utf-8", newline="") as handle:
            return list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def writer_state(record: Mapping[str, Any]) -> Literal["alive", "gone", "unknown"]:
    """Tell whether the process that wrote a ``status.json`` record still exists.

    ``unknown`` when the record names no process or another machine wrote it.
    """
    return process_state(record)


def _status(run: RunFolder, record: StatusRecord) -> str:
    """The recorded status, ``killed`` for a run that says ``running`` but whose process is gone.

    The folder's lock decides when there is one (a process id can be reused after a reboot);
    otherwise the process id and host in the record.
    """
    status = record.status
    if status != "running":
        return status
    state = lock_state(run.path)
    if state == "held":
        return status
    if state == "stale" or writer_state(record.document) == "gone":
        return "killed"
    return status


def _summarise(run: RunFolder) -> RunSummary:
    record, problem = _status_record(run)
    status = _status(run, record)
    folds = run.folds() if run.is_cross_validation else None
    histories = [run.history] if folds is None else [fold.history for fold in folds]
    rows = [row for history in histories for row in _history(history)]
    values = [v for v in (_float(row.get("val_accuracy")) for row in rows) if v is not None]
    reported = record.headline
    accuracy, auc = _float(reported.get("accuracy")), _float(reported.get("auc"))
    figures_from = reported.get("role") if accuracy is not None else None
    if accuracy is None and values:
        accuracy, figures_from = max(values), "selection"
    reason = problem or record.reason
    looks = [_looks(folder) for folder in ([run] if folds is None else folds)]
    leak = reported.get("leak") if accuracy is not None else None
    return RunSummary(
        run_dir=run.path,
        status=status,
        reason=str(reason) if reason else None,
        epochs=len(rows),
        accuracy=accuracy,
        auc=auc,
        figures_from=str(figures_from) if figures_from else None,
        updated=record.updated,
        folds=None if folds is None else len(folds),
        test_looks=max(looks, default=0),
        leak=str(leak) if leak else None,
        backbone=_backbone(run if not folds else folds[0]),
    )


def _backbone(run: RunFolder) -> str | None:
    try:
        return run.read_config_record().run_config.model.backbone
    except BreastclsError:
        return None  # the status column already says what is wrong with the run


def _looks(run: RunFolder) -> int:
    try:
        return len(read_test_looks(run.path))
    except BreastclsError:
        return 0  # an unreadable ledger never stops the listing
