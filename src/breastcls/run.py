"""Run folders: creation, status and the environment record."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from breastcls._version import __version__
from breastcls.errors import OutputError
from breastcls.interfaces import Sample, SkippedFile
from breastcls.io import atomic_write_json, atomic_write_text, ensure_writable_dir

__all__ = [
    "RunResult",
    "RunStatus",
    "create_run_dir",
    "read_status",
    "write_history_csv",
    "write_status",
]

RunStatus = Literal["running", "finished", "failed", "interrupted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What :func:`breastcls.train` returns.

    Attributes:
        run_dir: The run folder.
        class_names: Class names in label order.
        history: Per-epoch values (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``...).
        metrics: The validation ``metrics.json`` content of the best model.
        best_model: Path of the best model (``best.keras``).
    """

    run_dir: Path
    class_names: tuple[str, ...]
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    best_model: Path


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def create_run_dir(out_dir: Path, name: str | None, *, default_stem: str) -> Path:
    """Create a new, empty run folder under ``out_dir``.

    Raises:
        OutputError: ``out_dir`` is not writable, or the named run folder exists already.
    """
    ensure_writable_dir(out_dir)
    if name is not None:
        run_dir = out_dir / name
        if run_dir.exists() and any(run_dir.iterdir()):
            raise OutputError(
                f"Run folder {str(run_dir)!r} exists already: choose another --name, or "
                "--resume it."
            )
    else:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = out_dir / f"{stamp}-{default_stem}"
        suffix = 1
        while run_dir.exists():
            suffix += 1
            run_dir = out_dir / f"{stamp}-{default_stem}-{suffix}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_status(
    run_dir: Path, status: RunStatus, *, reason: str | None = None, **extra: Any
) -> None:
    """Record the run's status in ``status.json`` (atomically), with the writing process's id
    and host (so a listing can tell a live run from one whose process was killed)."""
    record: dict[str, Any] = {
        "status": status,
        "updated": _now(),
        "pid": os.getpid(),
        "host": platform.node(),
    }
    if reason:
        record["reason"] = reason
    record.update(extra)
    atomic_write_json(run_dir / "status.json", record)


def read_status(run_dir: Path) -> dict[str, Any]:
    """Read ``status.json``; a folder without one reports ``unknown``."""
    path = run_dir / "status.json"
    if not path.is_file():
        return {"status": "unknown"}
    status: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return status


CROSS_VALIDATION_FILE = "cross_validation.json"
"""Written first into a cross-validation run folder: the number of folds and the configuration."""

# Environment variables that change TensorFlow's speed, numerics or devices.
TENSORFLOW_SETTINGS = (
    "TF_CPU_ALLOCATOR_USE_BFC",
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "TF_XLA_FLAGS",
    "XLA_FLAGS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "CUDA_VISIBLE_DEVICES",
)


def environment() -> dict[str, Any]:
    """Return the versions, Keras backend, devices and TensorFlow settings a run used
    (``environment.json``)."""
    import keras
    import numpy
    import tensorflow as tf

    return {
        "breastcls": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": numpy.__version__,
        "devices": [device.name for device in tf.config.list_logical_devices()],
        "settings": {name: os.environ[name] for name in TENSORFLOW_SETTINGS if name in os.environ},
        "created": _now(),
    }


def write_samples_csv(path: Path, splits: Sequence[tuple[str, Sequence[Sample]]]) -> None:
    """Write which image went to which split (``split.csv``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "patient_id", "magnification", "split"])
    for split, samples in splits:
        for s in samples:
            writer.writerow([s.path, s.label, s.patient_id or "", s.magnification or "", split])
    atomic_write_text(path, buffer.getvalue())


def write_history_csv(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    """Write one row per epoch (``epoch`` from 1, then every logged metric) to ``history.csv``."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(v) if k == "epoch" else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


def write_skipped_csv(path: Path, skipped: Sequence[SkippedFile]) -> None:
    """Write every file left out of the run, with its reason (``skipped.csv``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    for item in skipped:
        writer.writerow([item.path, item.reason])
    atomic_write_text(path, buffer.getvalue())


def check_free_space(folder: Path, *, needed_bytes: int) -> None:
    """Fail before training when ``folder``'s disk cannot hold the run's checkpoints.

    Raises:
        OutputError: Less than ``needed_bytes`` are free.
    """
    import shutil

    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise OutputError(
            f"Only {free / 1e6:.0f} MB free in {folder}, the run needs about "
            f"{needed_bytes / 1e6:.0f} MB for its checkpoints: free space or choose --out."
        )
