"""Keras callbacks that keep a run folder complete and consistent."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from breastcls.errors import ConfigError
from breastcls.io import atomic_path
from breastcls.plugins.host import PluginHost
from breastcls.runs.checkpoint import (
    TrainState,
    commit_train_state,
    is_improvement,
    publish_best,
)
from breastcls.runs.folder import RunFolder, write_history_csv

__all__ = [
    "EpochCounter",
    "HistoryWriter",
    "HookForwarder",
    "NaNGuard",
    "StatefulReduceLROnPlateau",
    "TrainingCheckpoint",
    "restore_seed_generators",
    "seed_generator_states",
]


class TrainingCheckpoint(keras.callbacks.Callback):  # type: ignore[misc]
    """Commit a resumable checkpoint at the end of every epoch (:mod:`breastcls.runs.checkpoint`).

    Saves the full model (optimizer included) as ``checkpoints/epoch-NNNN.keras``, records the
    epoch counter, the best ``monitor`` value, the trainer's state, the seed generators and the
    history in ``train_state.json`` (the commit), then publishes ``best.keras`` when the epoch
    is the best so far. An epoch whose loss is not finite is never checkpointed.

    Args:
        run_dir: The run folder.
        monitor: Metric that picks the best model (lower is better for losses).
        trainer_state: The dictionary the trainer keeps its state in; saved as it is at each
            epoch end (the trainer's callbacks run before this one).
        resume_from: The state a resumed run starts from (``None`` for a new run).
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        monitor: str,
        trainer_state: dict[str, Any],
        resume_from: TrainState | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.monitor = monitor
        self.trainer_state = trainer_state
        self.state = resume_from

    @property
    def history(self) -> tuple[Mapping[str, float], ...]:
        """Every committed epoch's row (those of the interrupted run included)."""
        return self.state.history if self.state else ()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        values = {key: float(value) for key, value in (logs or {}).items()}
        if not math.isfinite(values.get("loss", 0.0)):
            return
        previous = self.state
        rows = tuple(row for row in self.history if int(row["epoch"]) != epoch + 1)
        current = values.get(self.monitor)
        best_value = previous.best_value if previous else None
        best_epoch = previous.best_epoch if previous else None
        best_checkpoint = previous.best_checkpoint if previous else None
        name = RunFolder.checkpoint_name(epoch + 1)
        improved = (
            current is not None
            and math.isfinite(current)
            and is_improvement(self.monitor, current, best_value)
        )
        if improved:
            best_value, best_epoch, best_checkpoint = current, epoch + 1, name
        with atomic_path(self.run_dir / name) as temporary:
            self.model.save(temporary)
        self.state = TrainState(
            completed_epochs=epoch + 1,
            checkpoint=name,
            monitor=self.monitor,
            best_value=best_value,
            best_epoch=best_epoch,
            best_checkpoint=best_checkpoint,
            trainer=json.loads(json.dumps(self.trainer_state)),
            seed_generators=seed_generator_states(self.model),
            history=(*rows, {"epoch": float(epoch + 1), **values}),
        )
        commit_train_state(self.run_dir, self.state)
        if improved:
            publish_best(self.run_dir, self.state)


def seed_generator_states(model: Any) -> tuple[tuple[int, ...], ...]:
    """Return the state of every Keras seed generator in ``model``, in model order."""
    return tuple(
        tuple(int(v) for v in np.asarray(variable).ravel())
        for variable in model.variables
        if variable.path.endswith("seed_generator_state")
    )


def restore_seed_generators(model: Any, states: tuple[tuple[int, ...], ...]) -> None:
    """Set ``model``'s seed generators back to ``states`` (from :func:`seed_generator_states`).

    Raises:
        ConfigError: The model has a different number of seed generators (another architecture).
    """
    variables = [v for v in model.variables if v.path.endswith("seed_generator_state")]
    if len(variables) != len(states):
        raise ConfigError(
            f"The checkpoint's model has {len(variables)} seed generator(s) but the training "
            f"state records {len(states)}: the run folder is inconsistent; start a new run."
        )
    for variable, state in zip(variables, states, strict=True):
        variable.assign(np.asarray(state, dtype=variable.dtype).reshape(variable.shape))


class HistoryWriter(keras.callbacks.Callback):  # type: ignore[misc]
    """Rewrite ``history.csv`` (atomically) after every epoch, one row per epoch.

    Args:
        path: The CSV file.
        rows: Rows of epochs trained before (a resumed run); a row for the same epoch is
            replaced, so no epoch is listed twice.
    """

    def __init__(self, path: Path, *, rows: Sequence[Mapping[str, float]] = ()) -> None:
        super().__init__()
        self.path = path
        self.rows: list[Mapping[str, float]] = list(rows)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = {"epoch": float(epoch + 1)}
        row.update({key: float(value) for key, value in (logs or {}).items()})
        self.rows = [r for r in self.rows if int(r["epoch"]) != epoch + 1] + [row]
        write_history_csv(self.path, self.rows)


class StatefulReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):  # type: ignore[misc]
    """Keras' ``ReduceLROnPlateau`` whose counters survive a restart.

    At each epoch end it copies ``wait``, ``cooldown_counter``, ``best`` and the learning rate
    into ``state["reduce_lr_on_plateau"]``; when training begins with that entry present (a
    resumed run) it takes the counters back, so the schedule goes on as if never stopped. The
    learning rate itself lives in the optimizer, which the checkpoint restores.

    Args:
        state: The trainer state dictionary breastcls checkpoints.
        monitor: Metric to watch.
        patience: Epochs without improvement before the learning rate is reduced.
        factor: Factor the learning rate is multiplied by.
        min_lr: Lowest learning rate.
        verbose: 1 prints a line when the learning rate is reduced.
    """

    _KEY = "reduce_lr_on_plateau"

    def __init__(
        self,
        *,
        state: dict[str, Any],
        monitor: str,
        patience: int,
        factor: float,
        min_lr: float,
        verbose: int = 0,
    ) -> None:
        super().__init__(
            monitor=monitor, patience=patience, factor=factor, min_lr=min_lr, verbose=verbose
        )
        self.state = state

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        saved = self.state.get(self._KEY)
        if saved:
            self.wait = int(saved["wait"])
            self.cooldown_counter = int(saved["cooldown_counter"])
            self.best = None if saved["best"] is None else float(saved["best"])

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        self.state[self._KEY] = {
            "wait": int(self.wait),
            "cooldown_counter": int(self.cooldown_counter),
            "best": None if self.best is None else float(self.best),
            "learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
        }


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


class EpochCounter(keras.callbacks.Callback):  # type: ignore[misc]
    """Set a ``tf.Variable`` to the current epoch at each epoch's start (see ``make_dataset``)."""

    def __init__(self, variable: Any) -> None:
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.variable.assign(epoch)
