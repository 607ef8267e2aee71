"""Progress of long operations, for whoever displays it (the CLI draws progress bars).

The library never prints: training and inference report to the :class:`ProgressReporter`
active in the current context, if any, and a caller chooses where progress goes::

    with breastcls.progress.reporting(my_reporter):
        breastcls.train(config)

Nothing is reported outside such a block. Importing this module imports no TensorFlow.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = [
    "ProgressReporter",
    "TrainingSummary",
    "active_reporter",
    "reporting",
    "reporting_prefixed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingSummary:
    """What a training run is about to do, reported once before its first epoch.

    Attributes:
        run_dir: The run folder.
        backbone: Backbone id.
        head: Head id.
        images: Images per data role (``train``, ``selection``, ``test``).
        patients: Patients (or groups) per role; ``None`` where the data has no patient ids.
        parameters: The model's parameters.
        trainable: The trainable ones among them.
        device: Where it trains, e.g. ``CPU`` or ``2 x GPU``.
        epochs: The last epoch number.
        first_epoch: The first epoch trained in this process (above 1 when resuming).
        steps: Batches per epoch, when known.
        warnings: What the run should know before it starts (e.g. that no training scale is
            recorded), one line each.
    """

    run_dir: Path
    backbone: str
    head: str
    images: Mapping[str, int]
    patients: Mapping[str, int] | None
    parameters: int
    trainable: int
    device: str
    epochs: int
    first_epoch: int
    steps: int | None
    warnings: tuple[str, ...] = ()


class ProgressReporter(Protocol):
    """Receives progress; one task (an epoch, a prediction pass) runs at a time."""

    def training_started(self, summary: TrainingSummary) -> None:
        """A training run starts (once per run; once per fold of a cross-validation)."""

    def task_started(self, description: str, *, total: int | None, unit: str) -> None:
        """A task of ``total`` units (``unit``: ``batches``, ``images``; ``None``: unknown)
        starts."""

    def task_advanced(self, completed: int, *, detail: str = "") -> None:
        """``completed`` units of the current task are done; ``detail``: e.g. the loss so far."""

    def task_finished(self, summary: str = "") -> None:
        """The current task is done; ``summary`` (possibly empty) is its one-line result."""


_ACTIVE: contextvars.ContextVar[ProgressReporter | None] = contextvars.ContextVar(
    "breastcls_progress", default=None
)

R = TypeVar("R", bound=ProgressReporter)


@contextlib.contextmanager
def reporting(reporter: R) -> Iterator[R]:
    """Send the progress of training and inference run inside the block to ``reporter``."""
    token = _ACTIVE.set(reporter)
    try:
        yield reporter
    finally:
        _ACTIVE.reset(token)


def active_reporter() -> ProgressReporter | None:
    """Return the reporter of the current context, or ``None`` (report nothing)."""
    return _ACTIVE.get()


@dataclass(frozen=True, slots=True)
class _Prefixed:
    """A reporter that hands everything to ``inner``, each task's description and summary
    starting with ``prefix``."""

    inner: ProgressReporter
    prefix: str

    def training_started(self, summary: TrainingSummary) -> None:
        self.inner.training_started(summary)

    def task_started(self, description: str, *, total: int | None, unit: str) -> None:
        self.inner.task_started(self.prefix + description, total=total, unit=unit)

    def task_advanced(self, completed: int, *, detail: str = "") -> None:
        self.inner.task_advanced(completed, detail=detail)

    def task_finished(self, summary: str = "") -> None:
        self.inner.task_finished(self.prefix + summary if summary else summary)


@contextlib.contextmanager
def reporting_prefixed(prefix: str) -> Iterator[None]:
    """Inside the block, the tasks reported to the active reporter (if any) are named with
    ``prefix`` first: e.g. ``slide 2 of 40: `` for each slide of a job."""
    reporter = active_reporter()
    if reporter is None:
        yield
        return
    with reporting(_Prefixed(reporter, prefix)):
        yield
