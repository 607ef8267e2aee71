"""Resumable training checkpoints: what ``train_state.json`` records and how it is committed.

At the end of every epoch breastcls saves the full model (weights, optimizer state, learning
rate) as ``checkpoints/epoch-NNNN.keras`` and then rewrites ``train_state.json``, which names that
file. Rewriting ``train_state.json`` (atomically) is the commit: a crash before it leaves the
previous state, whose checkpoint is still on disk, so a resumed run always starts from a
complete, consistent epoch. ``best.keras`` is a hard link (or copy) of the best epoch's
checkpoint, published after the commit. Only the checkpoints the state names are kept.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breastcls.errors import ConfigError, OutputError
from breastcls.io import atomic_path, atomic_write_json, read_regular_text
from breastcls.runs.folder import RunFolder, write_history_csv

__all__ = [
    "TrainState",
    "commit_train_state",
    "history_columns",
    "is_improvement",
    "kept_epoch_line",
    "prepare_resume",
    "publish_best",
    "read_train_state",
    "remove_stale_files",
]

_FORMAT = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainState:
    """Everything needed to continue training after the last completed epoch.

    Attributes:
        completed_epochs: Number of epochs completed (the next epoch's zero-based index).
        checkpoint: The full checkpoint of that epoch, relative to the run folder.
        monitor: The metric that picks the best model.
        best_value: Best ``monitor`` value so far (``None`` before any finite value).
        best_epoch: Epoch (from 1) of that value.
        best_checkpoint: Checkpoint of that epoch, relative to the run folder.
        trainer: The trainer's own JSON state (e.g. its learning-rate schedule's counters).
        seed_generators: State of every Keras seed generator in the model (augmentation,
            dropout), in model order; Keras does not save them in ``.keras`` files.
        history: One row per completed epoch (``epoch`` from 1, then the Keras logs).
    """

    completed_epochs: int
    checkpoint: str
    monitor: str
    best_value: float | None = None
    best_epoch: int | None = None
    best_checkpoint: str | None = None
    trainer: Mapping[str, Any] = field(default_factory=dict)
    seed_generators: tuple[tuple[int, ...], ...] = ()
    history: tuple[Mapping[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document written as ``train_state.json``."""
        record = dataclasses.asdict(self)
        record["trainer"] = dict(self.trainer)
        record["seed_generators"] = [list(s) for s in self.seed_generators]
        record["history"] = [dict(row) for row in self.history]
        return {"format": _FORMAT, **record}


def is_improvement(monitor: str, value: float, best: float | None) -> bool:
    """Return whether ``value`` beats ``best`` (lower is better for losses, higher otherwise)."""
    if best is None:
        return True
    return value < best if "loss" in monitor else value > best


def kept_epoch_line(state: TrainState | None) -> str | None:
    """Say which epoch's model a run kept and why, e.g. ``kept epoch 2 of 10: best selection
    accuracy 0.9300`` (``None`` before an epoch with a finite monitored value)."""
    if state is None or state.best_epoch is None or state.best_value is None:
        return None
    metric = state.monitor.removeprefix("val_").replace("_", " ")
    best = "lowest" if "loss" in state.monitor else "best"
    return (
        f"kept epoch {state.best_epoch} of {state.completed_epochs}: {best} selection "
        f"{metric} {state.best_value:.4f}"
    )


def history_columns(rows: tuple[Mapping[str, float], ...]) -> dict[str, list[float]]:
    """Turn history rows into ``{metric: [value per epoch]}`` (the ``epoch`` column left out)."""
    names = list(dict.fromkeys(key for row in rows for key in row if key != "epoch"))
    return {name: [float(row.get(name, float("nan"))) for row in rows] for name in names}


def read_train_state(run_dir: Path) -> TrainState | None:
    """Read ``train_state.json``; ``None`` when the run never completed an epoch.

    Raises:
        ConfigError: The file exists but is not a breastcls training state, or the checkpoint
            it names is missing.
    """
    path = RunFolder(run_dir).train_state
    if not path.is_file():
        return None
    try:
        raw = json.loads(read_regular_text(path))
        if raw.pop("format") != _FORMAT:
            raise ValueError("unknown format version")
        state = TrainState(
            completed_epochs=int(raw["completed_epochs"]),
            checkpoint=str(raw["checkpoint"]),
            monitor=str(raw["monitor"]),
            best_value=raw.get("best_value"),
            best_epoch=raw.get("best_epoch"),
            best_checkpoint=raw.get("best_checkpoint"),
            trainer=dict(raw.get("trainer", {})),
            seed_generators=tuple(tuple(int(v) for v in s) for s in raw["seed_generators"]),
            history=tuple(dict(row) for row in raw["history"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"{path} is not a breastcls training state ({type(error).__name__}: {error}); the "
            "run cannot be resumed: start a new run."
        ) from error
    if not (Path(run_dir) / state.checkpoint).is_file():
        raise ConfigError(
            f"{path} names the checkpoint {state.checkpoint}, which is missing; the run cannot "
            "be resumed: start a new run."
        )
    return state


def commit_train_state(run_dir: Path, state: TrainState) -> None:
    """Write ``train_state.json`` atomically (the commit), then drop unreferenced checkpoints."""
    folder = RunFolder(run_dir)
    atomic_write_json(folder.train_state, state.to_dict())
    keep = {state.checkpoint, state.best_checkpoint}
    for stale in folder.checkpoints.glob("epoch-*.keras"):
        if f"{folder.checkpoints.name}/{stale.name}" not in keep:
            stale.unlink(missing_ok=True)


def publish_best(run_dir: Path, state: TrainState) -> None:
    """Make ``best.keras`` the best epoch's checkpoint (a hard link, else a copy), atomically."""
    if state.best_checkpoint is None:
        return
    source = Path(run_dir) / state.best_checkpoint
    target = RunFolder(run_dir).best_model
    handle, name = tempfile.mkstemp(prefix=".best.", suffix=".tmp.keras", dir=run_dir)
    os.close(handle)
    temporary = Path(name)
    temporary.unlink()
    try:
        os.link(source, temporary)
        os.replace(temporary, target)
    except OSError:
        with atomic_path(target) as copy:
            shutil.copyfile(source, copy)
    finally:
        # rename() leaves both names when they already are links to the same file.
        temporary.unlink(missing_ok=True)


def remove_stale_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed process left (``.NAME.XXXX.tmp.SUFFIX``)."""
    removed = []
    for folder in (Path(run_dir), RunFolder(run_dir).checkpoints):
        for path in folder.glob(".*.tmp*"):
            if path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def prepare_resume(run_dir: Path, state: TrainState | None) -> None:
    """Bring a run folder back to its last committed state before training continues.

    Removes leftover temporary files and checkpoints newer than the state, rewrites
    ``history.csv`` from the state's rows (an epoch that finished after the last commit is
    trained again, never listed twice) and re-publishes ``best.keras``.

    Raises:
        OutputError: The run folder cannot be written.
    """
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    try:
        remove_stale_files(run_dir)
        if state is None:
            for path in folder.checkpoints.glob("epoch-*.keras"):
                path.unlink()
            folder.history.unlink(missing_ok=True)
            folder.best_model.unlink(missing_ok=True)
            return
        commit_train_state(run_dir, state)
        write_history_csv(folder.history, state.history)
        publish_best(run_dir, state)
    except OSError as error:
        raise OutputError(
            f"Cannot prepare {run_dir} for resuming: {error}. Check the folder is writable."
        ) from error
