"""Keras callbacks that keep a run folder complete and consistent."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import keras

from breastcls.io import atomic_path, atomic_write_text
from breastcls.plugins.host import PluginHost

__all__ = ["AtomicBestCheckpoint", "HistoryWriter", "HookForwarder", "NaNGuard"]


class AtomicBestCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Save the model when ``monitor`` improves (higher is better), atomically."""

    def __init__(self, path: Path, *, monitor: str, best: float = -math.inf) -> None:
        super().__init__()
        self.path = path
        self.monitor = monitor
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)) or float(value) <= self.best:
            return
        self.best = float(value)
        with atomic_path(self.path) as temporary:
            self.model.save(temporary)


class HistoryWriter(keras.callbacks.Callback):  # type: ignore[misc]
    """Rewrite ``history.csv`` (atomically) after every epoch, one row per epoch."""

    def __init__(self, path: Path, *, rows: list[dict[str, float]] | None = None) -> None:
        super().__init__()
        self.path = path
        self.rows: list[dict[str, float]] = list(rows or [])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = {"epoch": float(epoch + 1)}
        row.update({key: float(value) for key, value in (logs or {}).items()})
        self.rows = [r for r in self.rows if int(r["epoch"]) != epoch + 1] + [row]
        columns = list(dict.fromkeys(key for r in self.rows for key in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: (int(v) if k == "epoch" else v) for k, v in r.items()})
        atomic_write_text(self.path, buffer.getvalue())


class HookForwarder(keras.callbacks.Callback):  # type: ignore[misc]
    """Forward each epoch's logs to the plugins' ``breastcls_epoch_end`` hook."""

    def __init__(self, host: PluginHost, run_dir: Path) -> None:
        super().__init__()
        self.host = host
        self.run_dir = run_dir

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.host.epoch_end(
            self.run_dir, epoch, {key: float(value) for key, value in (logs or {}).items()}
        )


class NaNGuard(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop training at the first NaN or infinite loss and remember the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.failure: str | None = None

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = f"the loss became {float(loss)} at batch {batch + 1}"
            self.model.stop_training = True
