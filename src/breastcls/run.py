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
from breastcls.data.images import ImageInfo
from breastcls.data.overlap import SeenImage
from breastcls.data.split import Split, group_key
from breastcls.errors import ConfigError, DataError, OutputError
from breastcls.interfaces import DataRole, Sample, SkippedFile
from breastcls.io import atomic_write_json, atomic_write_text, ensure_writable_dir

__all__ = [
    "SPLIT_FILE",
    "RunResult",
    "RunStatus",
    "create_run_dir",
    "read_split_csv",
    "read_status",
    "write_history_csv",
    "write_split_csv",
    "write_status",
]

RunStatus = Literal["running", "finished", "failed", "interrupted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """What :func:`breastcls.train` returns.

    Attributes:
        run_dir: The run folder.
        class_names: Class names in label order.
        history: Per-epoch values (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``...;
            ``val_`` values are measured on the selection set).
        metrics: The best model's ``metrics.json``, measured on the set ``role`` names.
        role: The set ``metrics`` come from: the test set, or the selection set (optimistic)
            when the run keeps no test set.
        selection_metrics: The same metrics on the selection set (``selection/metrics.json``),
            which chose the model: optimistic, for comparison only.
        best_model: Path of the best model (``best.keras``).
        report: The HTML report.
    """

    run_dir: Path
    class_names: tuple[str, ...]
    history: dict[str, list[float]]
    metrics: dict[str, Any]
    role: DataRole
    selection_metrics: dict[str, Any]
    best_model: Path
    report: Path


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


SPLIT_FILE = "split.csv"
"""Every image of a run with its role: the run's record of what the model has seen."""
_SPLIT_COLUMNS = ("path", "label", "patient_id", "group", "magnification", "role", "pixel_sha1")


def write_split_csv(
    run_dir: Path,
    split: Split,
    *,
    image_info: Mapping[Path, ImageInfo],
    group_by: str | None,
) -> None:
    """Write ``split.csv``: every image, its group key, its role and the hash of its pixels."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_SPLIT_COLUMNS)
    for role, samples in split.parts():
        for s in samples:
            info = image_info.get(s.path)
            writer.writerow(
                [
                    s.path,
                    s.label,
                    s.patient_id or "",
                    group_key(s, group_by) or "",
                    s.magnification or "",
                    role.value,
                    info.pixel_sha1 if info is not None else "",
                ]
            )
    atomic_write_text(run_dir / SPLIT_FILE, buffer.getvalue())


def read_split_csv(run_dir: Path) -> list[tuple[Sample, SeenImage]]:
    """Read ``split.csv`` back: each image as a sample (``split`` holding its role) and as
    :class:`~breastcls.data.overlap.SeenImage`.

    Raises:
        ConfigError: The run has no ``split.csv``.
        DataError: It is not a ``split.csv`` written by this version (columns, roles).
    """
    path = run_dir / SPLIT_FILE
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} has no {SPLIT_FILE}, so it names no test or selection images: pass "
            "--data with the images to evaluate."
        )
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not set(_SPLIT_COLUMNS) <= set(rows[0]):
        raise DataError(
            f"{path} lacks the columns {', '.join(_SPLIT_COLUMNS)}: it was written by an older "
            "breastcls (no test set); pass --data with the images to evaluate."
        )
    images = []
    for line, row in enumerate(rows, start=2):
        try:
            role = DataRole(row["role"])
        except ValueError as error:
            raise DataError(f"{path}, line {line}: unknown role {row['role']!r}.") from error
        magnification = row["magnification"]
        sample = Sample(
            path=Path(row["path"]),
            label=row["label"],
            patient_id=row["patient_id"] or None,
            magnification=int(magnification) if magnification.isdigit() else None,
            split=role.value,
        )
        seen = SeenImage(
            path=row["path"], role=role, group=row["group"] or None, pixel_sha1=row["pixel_sha1"]
        )
        images.append((sample, seen))
    return images


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
