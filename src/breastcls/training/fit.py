"""The fit stage of a training run: the model built (or restored from its checkpoint) under the
distribution strategy and precision, fitted on the training set by the trainer plugin with the
callbacks that keep the run folder complete, the best epoch chosen on the selection set."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from breastcls.config import RunConfig
from breastcls.errors import TrainingError
from breastcls.plugins.host import PluginHost
from breastcls.runs.checkpoint import TrainState, history_columns
from breastcls.runs.folder import RunFolder, check_free_space
from breastcls.stain.fit import StainFit
from breastcls.training.data import PreparedData, training_datasets
from breastcls.training.run import MIN_FREE_BYTES, recorded_policy

__all__ = ["FitPlan", "dtype_policy", "fit", "precision_policy"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FitPlan:
    """What the fit stage needs beyond the configuration.

    Attributes:
        strategy: The ``tf.distribute`` strategy the model is built and fitted under.
        policy: The Keras dtype policy (:func:`dtype_policy`).
        class_weight: Loss weight per class index, or ``None``.
        resume_from: The training state of a resumed run, or ``None`` for a new one.
        started: Called once the model and its data are ready, just before the first epoch
            (the run's ``train_start`` hook).
        stain: The fitted stain normaliser a new model carries.
    """

    strategy: Any
    policy: str
    class_weight: dict[int, float] | None
    resume_from: TrainState | None
    started: Callable[[], None]
    stain: StainFit | None = None


def precision_policy(precision: str) -> str:
    """The Keras dtype policy of a precision: ``mixed`` is float16 on a GPU, else bfloat16."""
    import tensorflow as tf

    if precision == "float32":
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def dtype_policy(run_dir: Path, config: RunConfig, resume_from: TrainState | None) -> str:
    """The Keras dtype policy a run trains with.

    A resumed run keeps the precision it was trained with, whatever device it resumes on: its
    checkpoint's layers and loss-scaled optimizer state are in that precision.
    """
    return (recorded_policy(run_dir) if resume_from else None) or precision_policy(
        config.train.precision
    )


def fit(
    run_dir: Path, config: RunConfig, data: PreparedData, host: PluginHost, plan: FitPlan
) -> dict[str, list[float]]:
    """Build (or restore) the model under the strategy and fit it on the training set, choosing
    the checkpoint on the selection set; return the history of every epoch."""
    import keras
    import tensorflow as tf

    from breastcls.training.callbacks import NaNGuard, TrainingCheckpoint

    keras.utils.set_random_seed(config.train.seed)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    previous_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(plan.policy)
    resume_from = plan.resume_from
    start_epoch = resume_from.completed_epochs if resume_from else 0
    # The epoch counter the shuffle order follows: a plain host variable, outside the strategy.
    epoch_variable = tf.Variable(start_epoch, dtype=tf.int64, trainable=False)
    nan_guard = NaNGuard()
    trainer_state: dict[str, Any] = dict(resume_from.trainer) if resume_from else {}
    checkpoint = TrainingCheckpoint(
        run_dir, monitor=config.train.monitor, trainer_state=trainer_state, resume_from=resume_from
    )
    try:
        with plan.strategy.scope():
            model = _build_or_restore(run_dir, config, data, host, resume_from, plan.stain)
            train_data, selection_data = training_datasets(
                config, data, plan.strategy, epoch_variable
            )
            plan.started()
            host.trainers.get(config.train.trainer, config.train.trainer_options).fit(
                model,
                train_data,
                selection_data,
                config=config.train,
                run_dir=run_dir,
                callbacks=[
                    nan_guard,
                    *_run_callbacks(run_dir, config, host, checkpoint, epoch_variable),
                ],
                class_weight=plan.class_weight,
                initial_epoch=start_epoch,
                state=trainer_state,
            )
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    _check_finite(run_dir, nan_guard, checkpoint)
    # The checkpoint's history holds the epochs of an interrupted run too; the trainer's own
    # return value covers this process's epochs only.
    return history_columns(checkpoint.history)


def _check_finite(run_dir: Path, nan_guard: Any, checkpoint: Any) -> None:
    """Refuse a fit that the NaN guard stopped, saying which model is kept.

    Raises:
        TrainingError: The loss became NaN or infinite (when, and what to change).
    """
    if nan_guard.failure:
        kept = (
            "the last good model is kept as best.keras"
            if RunFolder(run_dir).best_model.exists()
            else "no model had been saved yet"
        )
        raise TrainingError(
            f"Training stopped: {nan_guard.failure} in epoch {len(checkpoint.history) + 1}; "
            f"{kept}. Lower the learning rate or check the data."
        )


def _run_callbacks(
    run_dir: Path, config: RunConfig, host: PluginHost, checkpoint: Any, epoch_variable: Any
) -> list[Any]:
    """The callbacks that keep the run folder complete: history, checkpoint, hooks, shuffle."""
    import keras

    from breastcls.training.callbacks import (
        EpochCounter,
        HistoryWriter,
        HookForwarder,
        progress_callbacks,
    )

    callbacks = [
        HistoryWriter(RunFolder(run_dir).history, rows=checkpoint.history),
        checkpoint,
        HookForwarder(host, run_dir),
        EpochCounter(epoch_variable),
        *progress_callbacks(run_dir, config),  # to the caller's progress display, if any
    ]
    if config.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(RunFolder(run_dir).tensorboard)))
    return callbacks


def _build_or_restore(
    run_dir: Path,
    config: RunConfig,
    data: PreparedData,
    host: PluginHost,
    resume_from: TrainState | None,
    stain: StainFit | None,
) -> Any:
    """A new run's model built from its components, or a resumed run's restored from its last
    checkpoint with its random-number state; then the disk space its checkpoints need checked."""
    from breastcls.model import build_model, load_checkpoint
    from breastcls.training.callbacks import restore_seed_generators

    if resume_from is None:
        model = build_model(
            config.model,
            n_classes=len(data.class_names),
            image_size=config.data.image_size,
            seed=config.train.seed,
            host=host,
            stain=stain,
        )
    else:
        model = load_checkpoint(run_dir / resume_from.checkpoint)
        restore_seed_generators(model, resume_from.seed_generators)
    # Room for two full checkpoints (weights + Adam's two moments) and one being written.
    check_free_space(run_dir, needed_bytes=3 * 12 * model.count_params() + MIN_FREE_BYTES)
    return model
