"""Run folders: their layout and files (:class:`RunFolder`), checkpoints and listing."""

from __future__ import annotations

from breastcls.runs.folder import RunFolder, RunResult
from breastcls.runs.listing import RunSummary, list_runs, writer_state

__all__ = ["RunFolder", "RunResult", "RunSummary", "list_runs", "writer_state"]
