"""Keras callbacks that keep a run folder complete and consistent."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from breastcls.data.scale import TrainingScale
from breastcls.errors import ConfigError
from breastcls.io import atomic_path
from breastcls.plugins.host import PluginHost
from breastcls.progress import ProgressReporter, TrainingSummary, active_reporter
from breastcls.records import EpochRecord
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
    "ProgressCallback",
    "StatefulReduceLROnPlateau",
    "TrainingCheckpoint",
    "progress_callbacks",
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

    Not Keras' ``CSVLogger``: that one appends to an open file, so a run killed mid-write
    leaves a torn row, and a resumed run would list the epoch it repeats twice.

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
    """Keras' ``ReduceLROnPlateau`` whose counters survive a restart, and which reports each
    drop through breastcls's printer rather than printing Keras' own line.

    At each epoch end it copies ``wait``, ``cooldown_counter``, ``best`` and the learning rate
    into ``state["reduce_lr_on_plateau"]``; when training begins with that entry present (a
    resumed run) it takes the counters back, so the schedule goes on as if never stopped. The
    learning rate itself lives in the optimizer, which the checkpoint restores.

    A drop is said (``learning rate 1e-04 → 2e-05 (no better selection accuracy for 5
    epochs)``) to the active :class:`~breastcls.progress.ProgressReporter` when the next epoch
    begins or training ends: after the epoch's own line, which the reporter prints in a
    callback that runs after this one.

    Args:
        state: The trainer state dictionary breastcls checkpoints.
        monitor: Metric to watch.
        patience: Epochs without improvement before the learning rate is reduced.
        factor: Factor the learning rate is multiplied by.
        min_lr: Lowest learning rate.
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
    ) -> None:
        super().__init__(
            monitor=monitor, patience=patience, factor=factor, min_lr=min_lr, verbose=0
        )
        self.state = state
        self._drop: str | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self._drop = None
        saved = self.state.get(self._KEY)
        if saved:
            self.wait = int(saved["wait"])
            self.cooldown_counter = int(saved["cooldown_counter"])
            self.best = None if saved["best"] is None else float(saved["best"])

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._say_drop()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        before = self._learning_rate()
        super().on_epoch_end(epoch, logs)
        after = self._learning_rate()
        if after < before:
            self._drop = _learning_rate_drop(
                before, after, monitor=self.monitor, epochs=max(int(self.patience), 1)
            )
        self.state[self._KEY] = {
            "wait": int(self.wait),
            "cooldown_counter": int(self.cooldown_counter),
            "best": None if self.best is None else float(self.best),
            "learning_rate": after,
        }

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._say_drop()

    def _learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def _say_drop(self) -> None:
        reporter = active_reporter()
        if self._drop is not None and reporter is not None:
            reporter.task_finished(self._drop)
        self._drop = None


def _learning_rate_drop(before: float, after: float, *, monitor: str, epochs: int) -> str:
    """``learning rate 1e-04 → 2e-05 (no better selection accuracy for 5 epochs)``: the line
    that says the learning rate was reduced. ``monitor`` is a selection-set metric (``val_``
    and a logged metric: ``TrainConfig`` accepts no other)."""
    return (
        f"learning rate {_rate(before)} → {_rate(after)} (no better selection "
        f"{monitor.removeprefix('val_')} for {epochs} epoch{'s' if epochs != 1 else ''})"
    )


def _rate(value: float) -> str:
    """A learning rate to 3 significant digits, as 2e-05 or 2.5e-04 (a float32 variable
    holds 2e-05 as 1.9999999e-05)."""
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"


class HookForwarder(keras.callbacks.Callback):  # type: ignore[misc]
    """Forward each epoch's logs to the plugins' ``breastcls_epoch_end`` hook."""

    def __init__(self, host: PluginHost, run_dir: Path) -> None:
        super().__init__()
        self.host = host
        self.run_dir = run_dir

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.host.epoch_end(self.run_dir, epoch, EpochRecord.from_logs(epoch, logs))


class NaNGuard(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop training at the first NaN or infinite loss and remember the batch.

    Not Keras' ``TerminateOnNaN``, which only prints: the run must record why it stopped (in
    ``status.json`` and the error) and keep the last good checkpoint as ``best.keras``.
    """

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


class ProgressCallback(keras.callbacks.ProgbarLogger):  # type: ignore[misc]
    """Report training to a :class:`~breastcls.progress.ProgressReporter`: a summary before the
    first epoch, every batch of every epoch, and one line per epoch.

    It is a ``ProgbarLogger`` so that Keras, finding one among the callbacks, adds none of its
    own: Keras' bar writes to stdout, this reporter decides where progress goes.

    Args:
        reporter: Where progress goes.
        run_dir: The run folder (its ``split.csv`` gives the images and patients per role).
        config: The run's :class:`~breastcls.config.RunConfig`.
    """

    def __init__(self, reporter: ProgressReporter, *, run_dir: Path, config: Any) -> None:
        super().__init__()
        self.reporter = reporter
        self.run_dir = run_dir
        self.config = config
        self._epochs = 0
        self._steps: int | None = None
        self._in_fit = False
        self._started = False
        self._epoch_started = 0.0

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params
        self._epochs = int(params.get("epochs") or 0)
        self._steps = params.get("steps") or self._steps

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = True
        self._started = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import time

        if not self._started:
            self._started = True
            self.reporter.training_started(self._summary(first_epoch=epoch + 1))
        self._epoch_started = time.monotonic()
        self.reporter.task_started(
            f"epoch {epoch + 1}/{self._epochs}", total=self._steps, unit="batches"
        )

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.reporter.task_advanced(batch + 1, detail=_figures(logs or {}, prefix=""))

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:
            self.reporter.task_advanced(self._steps or 0, detail="scoring the selection set")

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import time

        values = logs or {}
        if self._steps is None and self.params.get("steps"):
            self._steps = int(self.params["steps"])
        seconds = time.monotonic() - self._epoch_started
        selection = _figures(values, prefix="val_")
        line = f"epoch {epoch + 1}/{self._epochs}: {_figures(values, prefix='')}"
        if selection:
            line += f"; selection set: {selection}"
        self.reporter.task_finished(f"{line} ({seconds:.0f}s)")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = False
        # The held-out sets are scored and the report written next, which takes seconds: say so
        # rather than fall silent (not when a guard stopped the run, which is about to fail).
        if not getattr(self.model, "stop_training", False):
            self.reporter.task_finished(
                "training done: scoring the held-out sets with the kept epoch's model, then the "
                "report…"
            )

    # Keras' ProgbarLogger prints in these; this reporter does not.
    def on_test_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        pass

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        pass

    def _summary(self, *, first_epoch: int) -> TrainingSummary:
        images: dict[str, int] = {}
        patients: dict[str, set[str]] = {}
        try:
            from breastcls.runs.folder import read_split_csv

            for sample, seen in read_split_csv(self.run_dir):
                role = str(seen.role.value)
                images[role] = images.get(role, 0) + 1
                if sample.patient_id:
                    patients.setdefault(role, set()).add(sample.patient_id)
        except Exception:  # a summary never stops a run
            images = {}
        model = self.model
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        return TrainingSummary(
            run_dir=self.run_dir,
            backbone=self.config.model.backbone,
            head=self.config.model.head,
            images=images,
            patients={role: len(ids) for role, ids in patients.items()} if patients else None,
            parameters=int(model.count_params()),
            trainable=trainable,
            device=_device(model),
            epochs=self._epochs,
            first_epoch=first_epoch,
            steps=self._steps,
            warnings=scale_warnings(self.run_dir),
        )


def scale_warnings(run_dir: Path) -> tuple[str, ...]:
    """A warning when the run's ``config.json`` records no training scale (a model trained
    across magnifications, or on images of unknown scale): slides then need ``--model-mpp``."""
    try:
        record = RunFolder(run_dir).read_config_record()
    except ConfigError:
        return ()  # a summary never stops a run
    scale = TrainingScale.from_entry(record.scale)
    if scale is None or scale.model_mpp is not None:
        return ()
    return (
        f"this run records no training scale ({scale.note}); `breastcls slide predict` will "
        "need --model-mpp.",
    )


def progress_callbacks(run_dir: Path, config: Any) -> list[ProgressCallback]:
    """Return the Keras callbacks that report a run's training progress: none outside a
    :func:`~breastcls.progress.reporting` block. ``config`` is the run's
    :class:`~breastcls.config.RunConfig`."""
    reporter = active_reporter()
    if reporter is None:
        return []
    return [ProgressCallback(reporter, run_dir=run_dir, config=config)]


def _figures(logs: Mapping[str, Any], *, prefix: str) -> str:
    """``loss 0.4123, accuracy 0.8125`` from the logs whose keys start with ``prefix``."""
    parts = []
    for key in ("loss", "accuracy"):
        value = logs.get(prefix + key)
        if value is not None:
            parts.append(f"{key} {float(value):.4f}")
    return ", ".join(parts)


def _device(model: Any) -> str:
    import tensorflow as tf

    strategy = getattr(model, "distribute_strategy", None)
    replicas = int(getattr(strategy, "num_replicas_in_sync", 1))
    gpus = tf.config.list_logical_devices("GPU")
    kind = "GPU" if gpus else "CPU"
    return kind if replicas == 1 else f"{replicas} x {kind}"
