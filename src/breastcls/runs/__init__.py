"""Run folders: their layout and files (:class:`RunFolder`), their typed records, checkpoints and
listing."""

from __future__ import annotations

from breastcls.runs.folder import RunFolder, RunResult
from breastcls.runs.listing import RunSummary, list_runs, writer_state
from breastcls.runs.records import ConfigRecord, EpochRecord, ExportRecord, MetricsRecord

__all__ = [
    "ConfigRecord",
    "EpochRecord",
    "ExportRecord",
    "MetricsRecord",
    "RunFolder",
    "RunResult",
    "RunSummary",
    "list_runs",
    "writer_state",
]
