"""The run stage of a training job: the run folder's records written before training (the
configuration record, classes, split, data check, sample grid), its status kept on every failure,
the checks before a resume, and a finished run read back."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.config import RunConfig
from breastcls.data.images import decode_image
from breastcls.data.scale import training_scale
from breastcls.errors import BreastclsError, ConfigError, ObserverError, OutputError
from breastcls.interfaces import Sample
from breastcls.io import atomic_write_json
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.checkpoint import TrainState, history_columns, read_train_state
from breastcls.runs.folder import (
    RunFolder,
    RunResult,
    RunStatus,
    environment,
    read_status,
    write_skipped_csv,
    write_split_csv,
    write_status,
)
from breastcls.runs.lock import FolderLock, held_lock, lock_folder
from breastcls.stain.fit import StainFit
from breastcls.training.data import PreparedData, ScannedData, check_same_data, prepare_data
from breastcls.training.distribute import describe_strategy

__all__ = [
    "MIN_FREE_BYTES",
    "STATUS_RESERVE",
    "check_config_fits_checkpoint",
    "check_resumable",
    "config_record",
    "finished_run",
    "lock_run",
    "read_run_config",
    "record_run",
    "recorded_policy",
    "recording_status",
]

_GRID_SIZE = 12
MIN_FREE_BYTES = 50_000_000
"""Free disk space a run needs before it starts or resumes, beyond its checkpoints."""
STATUS_RESERVE = 1 << 16
"""Disk space kept aside in a run's lock file, given back to write a failed status on a full
disk."""


@contextlib.contextmanager
def recording_status(run_dir: Path) -> Iterator[None]:
    """Record any failure of the work inside in ``run_dir``'s ``status.json``, and re-raise it
    (an :class:`OSError` as the :class:`~breastcls.errors.OutputError` that names the folder).

    Raises:
        OutputError: Writing the run folder failed.
    """
    try:
        yield
    except KeyboardInterrupt:
        state = read_train_state(run_dir)
        done = state.completed_epochs if state else 0
        _record_status(
            run_dir,
            "interrupted",
            f"interrupted after {done} completed epoch(s); continue with "
            f"`breastcls train --resume {run_dir}`",
        )
        raise
    except ObserverError:
        raise  # a train_end observer failed after status.json recorded the finished run
    except BreastclsError as error:
        _record_status(run_dir, "failed", str(error))
        raise
    except OSError as error:
        output_error = OutputError(
            f"Writing the run folder {run_dir} failed: {error}. Free space or fix the folder, "
            f"then continue with `breastcls train --resume {run_dir}`."
        )
        _record_status(run_dir, "failed", str(output_error))
        raise output_error from error
    except BaseException as error:
        _record_status(run_dir, "failed", f"{type(error).__name__}: {error}")
        raise


def _record_status(run_dir: Path, status: RunStatus, reason: str) -> None:
    # A full disk must not hide the error that stopped the run, nor leave status.json saying
    # `running`: when the write fails, the space reserved in the folder's lock file is given
    # back and the status written again.
    try:
        write_status(run_dir, status, reason=reason)
        return
    except OSError:
        lock = held_lock(run_dir)
        if lock is None or not lock.free_reserve():
            return
    with contextlib.suppress(OSError):
        write_status(run_dir, status, reason=reason)


def check_config_fits_checkpoint(
    run_dir: Path, config: RunConfig, state: TrainState | None
) -> None:
    """Refuse a ``config.json`` that no longer describes the model its checkpoint holds (an
    edited backbone, head or image size), before any data is decoded.

    Raises:
        ConfigError: The checkpoint's model differs from the configuration's.
    """
    if state is None:
        return  # killed before its first epoch: no checkpoint, the run starts again
    from breastcls.model import archived_model

    found = archived_model(run_dir / state.checkpoint)
    size = config.data.image_size
    expected_name = f"breastcls_{config.model.backbone}_{config.model.head}"
    expected_shape = (None, size, size, 3)
    if found.name == expected_name and found.input_shape == expected_shape:
        return
    raise ConfigError(
        f"{RunFolder(run_dir).config} describes a {config.model.backbone} + {config.model.head} "
        f"model at {size} px, but the checkpoint {state.checkpoint} holds {found.name} taking "
        f"{found.input_shape}: config.json was changed after training started. Restore it, or "
        "start a new run with the new settings."
    )


def lock_run(run_dir: Path, *, purpose: str, reserve: int = 0) -> FolderLock:
    """Take an existing run folder for this process (to resume it).

    Raises:
        OutputError: Another process is training or resuming it (named).
    """
    return lock_folder(
        run_dir,
        purpose=purpose,
        hint="a run is trained or resumed by one process at a time; wait for that process to "
        "end (or stop it), then resume.",
        reserve=reserve,
    )


def check_resumable(run_dir: Path) -> None:
    """Refuse to resume a run that has finished, or whose training process is still alive.

    Raises:
        ConfigError: Saying which of the two it is.
    """
    from breastcls.runs import writer_state

    status = read_status(run_dir)
    if status.status == "finished":
        raise ConfigError(
            f"The run {run_dir} has finished already: nothing to resume (start a new run)."
        )
    if status.status == "running" and writer_state(status.document) == "alive":
        raise ConfigError(
            f"The run {run_dir} is still training (process {status.pid} on this machine): "
            "stop that process first, or let it finish."
        )


def finished_run(
    run_dir: Path, *, host: PluginHost | None = None, scanned: ScannedData | None = None
) -> RunResult:
    """Return the result of a finished run folder, read back from its files.

    Raises:
        DataError: The run's data changed since (other class names or another split).
    """
    from breastcls.evaluation.evaluate import read_run_evaluation

    config = read_run_config(run_dir)
    check_same_data(run_dir, prepare_data(config, host=ensure_host(host), scanned=scanned))
    state = read_train_state(run_dir)
    evaluation = read_run_evaluation(run_dir)
    return RunResult(
        run_dir=run_dir,
        class_names=RunFolder(run_dir).read_class_names(),
        history=history_columns(state.history) if state else {},
        metrics=evaluation.metrics,
        role=evaluation.role,
        selection_metrics=evaluation.selection_metrics,
        best_model=RunFolder(run_dir).best_model,
        report=evaluation.report,
    )


def read_run_config(run_dir: Path) -> RunConfig:
    """Read the ``config.json`` of a run folder."""
    return RunFolder(run_dir).read_config_record().run_config


def config_record(
    config: RunConfig,
    data: PreparedData,
    *,
    strategy: Any,
    policy: str,
    class_weight: dict[int, float] | None,
) -> dict[str, Any]:
    """What ``config.json`` records: the configuration, and what training derived from it and
    the data (split, distribution, precision, scale, class weights)."""
    return {
        **config.to_dict(),
        "split": data.split.describe(),
        "distribution": describe_strategy(strategy, config.train.batch_size),
        "dtype_policy": policy,
        # What `breastcls slide predict` tiles slides at (breastcls.data.scale).
        "scale": training_scale(
            data.split.train,
            data.image_info,
            image_size=config.data.image_size,
            image_mpp=config.data.image_mpp,
        ).to_dict(),
        "class_weights_used": (
            {data.class_names[i]: w for i, w in class_weight.items()} if class_weight else None
        ),
    }


def recorded_policy(run_dir: Path) -> str | None:
    """The Keras dtype policy a run folder's ``config.json`` records (older runs record none)."""
    return RunFolder(run_dir).read_config_record().dtype_policy


def record_run(
    run_dir: Path,
    config: RunConfig,
    data: PreparedData,
    config_dict: dict[str, Any],
    stain: StainFit | None,
) -> None:
    """Write what describes a new run before training: configuration, classes, split, data,
    the fitted stain normaliser."""
    run = RunFolder(run_dir)
    if stain is not None:
        atomic_write_json(run.stain_normalisation, stain.to_dict())
    atomic_write_json(run.config, config_dict)
    atomic_write_json(run.class_names, list(data.class_names))
    atomic_write_json(run.environment, environment())
    write_split_csv(run_dir, data.split, image_info=data.image_info, group_by=config.data.group_by)
    if data.skipped or data.bad:
        write_skipped_csv(run.skipped, [*data.bad, *data.skipped])
    if data.data_check is not None:
        atomic_write_json(run.data_check, data.data_check.to_dict())
    _write_sample_grid(data.split.train, config.data.image_size, run.samples, config.train.seed)


def _grid_title(sample: Sample) -> str:
    parts = [sample.label]
    if sample.patient_id:
        parts.append(sample.patient_id)
    if sample.magnification:
        parts.append(f"{sample.magnification}X")
    return " · ".join(parts)


def _write_sample_grid(samples: Sequence[Sample], image_size: int, path: Path, seed: int) -> None:
    import cv2

    from breastcls.evaluation.plots import plot_sample_grid

    chosen = np.random.default_rng(seed).permutation(len(samples))[:_GRID_SIZE]
    picked = [samples[i] for i in chosen]
    images: list[npt.NDArray[np.uint8]] = [
        np.asarray(cv2.resize(decode_image(s.path), (image_size, image_size)), dtype=np.uint8)
        for s in picked
    ]
    plot_sample_grid(images, [_grid_title(s) for s in picked], path)
