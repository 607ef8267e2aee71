"""``breastcls.train``: from a configuration to a complete run folder (:func:`train`,
:func:`resume`)."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.config import DataConfig, RunConfig
from breastcls.data.check import DataReport, check_dataset
from breastcls.data.images import ImageInfo, decode_image, describe_unreadable, scan_samples
from breastcls.data.loading import load_dataset
from breastcls.data.overlap import SeenImage, find_overlap
from breastcls.data.scale import training_scale
from breastcls.data.split import Split, split_for_config
from breastcls.embeddings.probe import check_probe_config, fit_probe_run, frozen_extractor
from breastcls.environment import prepare_tensorflow
from breastcls.errors import (
    BreastclsError,
    ConfigError,
    DataError,
    ObserverError,
    OutputError,
    PluginError,
    TrainingError,
)
from breastcls.interfaces import Dataset, Sample, SkippedFile
from breastcls.io import atomic_write_json, check_writable_dir
from breastcls.limits import check_batch_memory
from breastcls.model import check_weights
from breastcls.model_card import write_model_card
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.checkpoint import TrainState, history_columns, read_train_state
from breastcls.runs.folder import (
    RunFolder,
    RunResult,
    RunStatus,
    check_free_space,
    create_run_dir,
    environment,
    read_split_csv,
    read_status,
    write_skipped_csv,
    write_split_csv,
    write_status,
)
from breastcls.runs.lock import FolderLock, held_lock, lock_folder
from breastcls.stain.fit import StainFit, fit_run_stain
from breastcls.training.distribute import (
    check_devices,
    describe_strategy,
    distribute_dataset,
    select_strategy,
    worker_out_dir,
    worker_role,
)

__all__ = ["balanced_class_weights", "prepare_data", "resume", "train"]

_GRID_SIZE = 12
_MIN_FREE_BYTES = 50_000_000
# Disk space kept aside in a run's lock file, given back to write a failed status on a full disk.
_STATUS_RESERVE = 1 << 16


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PreparedData:
    """A dataset checked and split, ready for training."""

    class_names: tuple[str, ...]
    split: Split
    image_info: dict[Path, ImageInfo]
    skipped: tuple[SkippedFile, ...]
    bad: tuple[SkippedFile, ...]
    data_check: DataReport | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScannedData:
    """A dataset loaded and decoded once, before it is split: every fold of a cross-validation
    reuses it.

    Attributes:
        dataset: The dataset as its format read it.
        samples: Its readable images.
        image_info: What decoding each readable image found.
        bad: The unreadable images (only with ``skip_bad_images``).
    """

    dataset: Dataset
    samples: tuple[Sample, ...]
    image_info: dict[Path, ImageInfo]
    bad: tuple[SkippedFile, ...]


def scan_data(config: RunConfig, *, host: PluginHost | None = None) -> ScannedData:
    """Load the data of ``config`` and decode every image once.

    Between the two, the backbone is built once and checked (:func:`check_backbone_output`;
    not in a worker of a multi-worker run, whose strategy must come first),
    with the memory a training step needs: after the cheap checks of the data, before the long
    decoding. A frozen extractor's file is opened and checked instead (its input size and
    output), built into nothing.

    Raises:
        DataError: The data is unusable, or holds unreadable images and
            ``config.data.skip_bad_images`` is false (the message lists them).
        PluginError: The backbone does not build one 4-D feature map.
        ConfigError: The batch and image size need more memory than the machine has.
    """
    dataset = load_dataset(config.data, host=host)
    host = ensure_host(host)
    # A worker of a multi-worker run must create its strategy before TensorFlow runs anything
    # (building a model would); its model is built, and checked, under the strategy.
    extractor = frozen_extractor(config.model, host)
    if extractor is not None:
        extractor.load()  # its file, input size and output checked before decoding
    elif worker_role() is None:
        features = check_backbone_output(config.model.backbone, config.data.image_size, host)
        _check_training_memory(features, config)
    image_info, bad = scan_samples(dataset.samples)
    if bad and not config.data.skip_bad_images:
        raise DataError(
            f"{dataset.root}: {describe_unreadable(bad)} Fix or remove them, or pass "
            "--skip-bad-images to train without them (they are listed in the run folder)."
        )
    bad_paths = {item.path for item in bad}
    return ScannedData(
        dataset=dataset,
        samples=tuple(s for s in dataset.samples if s.path not in bad_paths),
        image_info=image_info,
        bad=tuple(bad),
    )


def prepare_data(
    config: RunConfig, *, host: PluginHost | None = None, scanned: ScannedData | None = None
) -> PreparedData:
    """Split the data of ``config`` into its roles, after loading and decoding it
    (:func:`scan_data`) unless ``scanned`` already holds it.

    The full :func:`~breastcls.check_data` report (duplicates and patients across the split,
    suspicious files) is kept in ``data_check``; only unreadable files stop training.

    Raises:
        DataError: The data is unusable, holds unreadable images and
            ``config.data.skip_bad_images`` is false, or cannot be split.
    """
    scanned = scanned or scan_data(config, host=host)
    split = split_for_config(scanned.samples, config.data)
    check_split(split, scanned.image_info, config.data)
    return PreparedData(
        class_names=scanned.dataset.class_names,
        split=split,
        image_info=scanned.image_info,
        skipped=scanned.dataset.skipped,
        bad=scanned.bad,
        data_check=check_dataset(
            scanned.dataset, config.data, image_info=scanned.image_info, unreadable=scanned.bad
        ),
    )


def check_split(split: Split, image_info: Mapping[Path, ImageInfo], data: DataConfig) -> None:
    """Refuse a split that cannot be scored honestly: a test image whose pixels are in the
    training or selection set under another name, or nearly so (a re-saved or slightly cropped
    copy, :mod:`breastcls.data.perceptual`; the split itself already holds every class
    in every role, and no group in two).

    Raises:
        DataError: Listing the duplicated images.
    """
    seen = [
        SeenImage(
            path=str(s.path), role=role, group=None, pixel_sha1=info.pixel_sha1, dhash=info.dhash
        )
        for role, part in split.parts()[:2]
        for s in part
        if (info := image_info.get(s.path)) is not None
    ]
    overlap = find_overlap(seen, split.test, image_info)
    if overlap and not data.allow_leaky_split:
        raise DataError(
            f"{overlap.describe()} Test figures would be inflated: remove the duplicates "
            "(`breastcls data check` lists them), or pass --allow-leaky-split (recorded as leaky)."
        )


def balanced_class_weights(
    samples: Sequence[Sample], class_names: Sequence[str]
) -> dict[int, float]:
    """Return ``n_samples / (n_classes * n_class)`` per class index (scikit-learn's
    ``compute_class_weight("balanced")``)."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.array([s.label for s in samples])
    weights = compute_class_weight("balanced", classes=np.array(class_names), y=labels)
    return {i: float(w) for i, w in enumerate(weights)}

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


def _precision_policy(precision: str) -> str:
    import tensorflow as tf

    if precision == "float32":
        return "float32"
    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def _recorded_policy(run_dir: Path) -> str | None:
    """The Keras dtype policy a run folder's ``config.json`` records (older runs record none)."""
    policy = RunFolder(run_dir).read_config_record().get("dtype_policy")
    return str(policy) if policy else None


def check_run_config(config: RunConfig, host: PluginHost) -> None:
    """Refuse, before any folder is created, a configuration that cannot train: an unknown
    component, a trainer option it does not take, unusable weights, or ``tensorboard`` without
    its package.

    Raises:
        UnknownComponentError: A backbone, head, augmentation or trainer id is not registered.
        ConfigError: A bad trainer option, weights that do not suit the backbone, or
            tensorboard is missing.
    """
    for kind, name in (
        ("backbone", config.model.backbone),
        ("head", config.model.head),
        ("augmentation", config.model.augmentation),
    ):
        host.registry(kind).info(name)
    host.trainers.get(config.train.trainer, config.train.trainer_options)
    extractor = frozen_extractor(config.model, host)
    if extractor is not None:
        check_probe_config(config, extractor)
    check_weights(
        config.model.weights,
        backbone_name=config.model.backbone,
        backbone=host.backbones.get(config.model.backbone, config.model.backbone_options),
    )
    if config.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "--tensorboard needs the tensorboard package, which is not installed: "
            "pip install 'breastcls[tensorboard]', or train without --tensorboard."
        )


def check_backbone_output(backbone: str, image_size: int, host: PluginHost) -> Any:
    """Build ``backbone`` (without weights: they do not change shapes) and check that it is a
    Keras model with one ``(batch, height, width, channels)`` output, every size positive;
    return that model.

    A plugin's backbone that returns something else would otherwise fail inside the head, after
    all the data is decoded.

    Raises:
        PluginError: It fails to build, or builds something else (named, with its plugin).
    """
    import keras

    info = host.backbones.info(backbone)
    what = f"Backbone {backbone!r} (plugin {info.plugin!r})"
    shape = (image_size, image_size, 3)
    try:
        features = info.component.build(input_shape=shape, weights=None)
    except Exception as error:
        raise PluginError(
            f"{what} failed to build at {shape}: {type(error).__name__}: {error}."
        ) from error
    problem: str | None
    if not isinstance(features, keras.Model):
        problem = f"returns {type(features).__name__}, not a keras.Model"
    elif len(features.outputs) != 1:
        problem = f"has {len(features.outputs)} outputs, not one feature map"
    else:
        output = tuple(features.outputs[0].shape)
        valid = len(output) == 4 and all(isinstance(d, int) and d > 0 for d in output[1:])
        problem = None if valid else f"outputs shape {output}, not (batch, h, w, channels > 0)"
    if problem is not None:
        raise PluginError(
            f"{what} {problem} at input {shape}: fix the plugin's factory, or choose another "
            "--backbone."
        )
    return features


def _check_training_memory(features: Any, config: RunConfig) -> None:
    """Refuse a batch and image size whose training memory exceeds the machine's (per device).

    Per image, the pixels and every activation of the backbone, twice (kept for the backward
    pass, and its gradient); whatever the batch, the weights with their gradients and Adam's
    two moments. The head and augmentation add little; so this is an estimate from below.
    """
    activations = sum(
        math.prod(int(d) for d in tensor.shape[1:] if d is not None)
        for layer in features.layers
        for tensor in _outputs(layer)
    )
    size = config.data.image_size
    check_batch_memory(
        batch_size=config.train.batch_size,  # per device: each holds its own batch
        image_size=size,
        floats_per_image=size * size * 3 + 2 * activations,
        fixed_bytes=16 * features.count_params(),
        what=f"training {config.model.backbone}",
    )


def _outputs(layer: Any) -> list[Any]:
    output = layer.output
    return list(output) if isinstance(output, list | tuple) else [output]


def train(
    config: RunConfig, *, host: PluginHost | None = None, scanned: ScannedData | None = None
) -> RunResult:
    """Train a model as ``config`` says and write a complete run folder.

    The data is split into training, selection and test sets (:mod:`breastcls.data.split`):
    the model trains on the training set; the best checkpoint, the learning-rate schedule, the
    temperature and the thresholds are chosen on the selection set; the final model is scored
    once on the test set. The run folder holds ``config.json``, ``class_names.json``,
    ``environment.json``, ``status.json``, ``split.csv`` (every image with its role),
    ``skipped.csv`` (when files were left out), ``samples.png``, ``history.csv``, ``loss.png``,
    ``accuracy.png``, ``best.keras``, ``temperature.json`` and ``thresholds.json`` (fitted on the
    selection set, reused by ``evaluate`` and ``predict``), ``metrics.json``, ``predictions.csv``,
    every metric's plots and ``report.html`` (test set, or the selection set labelled optimistic
    when the run keeps none), ``selection/`` (the same figures on the selection set, for
    comparison), ``model_card.md`` and, with ``tensorboard``, ``tensorboard/``. Every file is
    written atomically.

    Args:
        config: The run configuration.
        host: Plugin host (the default host with every installed plugin when ``None``).
        scanned: The data of ``config``, already loaded and decoded (:func:`scan_data`);
            cross-validation passes the same to every fold.

    Returns:
        The run's folder, history and metrics (test set, see ``RunResult.role``).

    Raises:
        BreastclsError: Any bad input (unknown component, bad data, unwritable output...), raised
            before the run folder is created whenever it can be detected up front.
    """
    prepare_tensorflow()
    host = ensure_host(host)
    check_run_config(config, host)
    # Non-chief workers of a multi-worker cluster write into a temporary folder.
    out_dir = worker_out_dir(config.out_dir)
    check_writable_dir(out_dir)
    check_free_space(out_dir, needed_bytes=_MIN_FREE_BYTES)
    data = prepare_data(config, host=host, scanned=scanned)
    # Fitted to the training images (or the given reference) before the folder exists: a
    # reference without tissue stops the run up front.
    stain = fit_run_stain(
        config.model,
        data.split.train,
        host=host,
        held_out=[(role, s) for role, part in data.split.parts()[1:] for s in part],
        image_info=data.image_info,
    )
    check_devices(config.train.devices)
    # The folder is this process's until training ends: a second `train --name` of the same
    # name, or a `--resume` of it, is refused meanwhile.
    with create_run_dir(
        out_dir, config.name, default_stem=config.model.backbone, reserve=_STATUS_RESERVE
    ) as lock:
        return _train_recording_status(
            lock.path, config, data, host, resume_from=None, stain=stain
        )


def _train_recording_status(
    run_dir: Path,
    config: RunConfig,
    data: PreparedData,
    host: PluginHost,
    *,
    resume_from: TrainState | None,
    stain: StainFit | None = None,
) -> RunResult:
    """Train in ``run_dir``; on any failure record it in ``status.json`` and re-raise."""
    try:
        return _train_in(run_dir, config, data, host, resume_from=resume_from, stain=stain)
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


def resume(
    run_dir: Path, *, host: PluginHost | None = None, scanned: ScannedData | None = None
) -> RunResult:
    """Continue a run that was killed or interrupted, from its last completed epoch.

    The run's own ``config.json`` is used. Training goes on with the saved model, optimizer
    state, learning-rate schedule state, epoch counter, best-so-far value and random-number
    state (seed generators and shuffle order), so with ``deterministic`` the result is what the
    uninterrupted run would have given; ``history.csv`` ends with one row per epoch, none twice.
    A run killed before its first epoch ended starts again from epoch 1 in the same folder.

    Args:
        run_dir: The run folder.
        host: Plugin host (the default host when ``None``).
        scanned: The run's data, already loaded and decoded (:func:`scan_data`).

    Returns:
        The completed run, as :func:`train` returns it.

    Raises:
        ConfigError: ``run_dir`` is not a run folder, the run has finished already, or its
            training state is unreadable.
        OutputError: Another process is training or resuming the run.
        DataError: The data no longer matches the run (other class names or another split).
    """
    prepare_tensorflow()
    from breastcls.runs.checkpoint import prepare_resume

    run_dir = Path(run_dir)
    if not RunFolder(run_dir).config.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a breastcls run folder (no config.json): pass the folder "
            "`breastcls train` created."
        )
    # One process at a time: two resumes started together, or a resume of a run still
    # training, find the folder taken.
    with lock_run(run_dir, purpose="resume", reserve=_STATUS_RESERVE):
        check_resumable(run_dir)
        host = ensure_host(host)
        config = read_run_config(run_dir)
        state = read_train_state(run_dir)
        _check_config_fits_checkpoint(run_dir, config, state)
        data = prepare_data(config, host=host, scanned=scanned)
        _check_same_data(run_dir, data)
        check_free_space(run_dir, needed_bytes=_MIN_FREE_BYTES)
        prepare_resume(run_dir, state)
        return _train_recording_status(run_dir, config, data, host, resume_from=state)


def _check_config_fits_checkpoint(
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
    if status.get("status") == "finished":
        raise ConfigError(
            f"The run {run_dir} has finished already: nothing to resume (start a new run)."
        )
    if status.get("status") == "running" and writer_state(status) == "alive":
        raise ConfigError(
            f"The run {run_dir} is still training (process {status['pid']} on this machine): "
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
    _check_same_data(run_dir, prepare_data(config, host=ensure_host(host), scanned=scanned))
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


def _check_same_data(run_dir: Path, data: PreparedData) -> None:
    trained = RunFolder(run_dir).read_class_names()
    if list(trained) != list(data.class_names):
        raise DataError(
            f"The run {run_dir} was trained on classes {list(trained)} but its data now has "
            f"{list(data.class_names)}: restore the data, or start a new run."
        )
    recorded = sorted((str(s.path), str(s.split)) for s, _ in read_split_csv(run_dir))
    current = sorted(
        (str(s.path), role.value) for role, part in data.split.parts() for s in part
    )
    if recorded != current:
        raise DataError(
            f"The images of {run_dir}'s data or their roles changed since the run started "
            "(split.csv differs): restore the data, or start a new run."
        )


def _train_in(
    run_dir: Path,
    config: RunConfig,
    data: PreparedData,
    host: PluginHost,
    *,
    resume_from: TrainState | None,
    stain: StainFit | None = None,
) -> RunResult:
    """The training job as stages: record the run, fit, then evaluate the final model.

    ``stain`` is the fitted stain normaliser of a new run (a resumed run's model holds it).
    """
    # First: a multi-worker strategy must start before TensorFlow runs anything else.
    strategy = select_strategy(config.train.devices)
    resumed_at = resume_from.completed_epochs if resume_from else None
    write_status(run_dir, "running", resumed_at_epoch=resumed_at)
    class_weight = (
        balanced_class_weights(data.split.train, data.class_names)
        if config.train.class_weight == "balanced"
        else None
    )
    # A resumed run keeps the precision it was trained with, whatever device it resumes on: its
    # checkpoint's layers and loss-scaled optimizer state are in that precision.
    policy = (_recorded_policy(run_dir) if resume_from else None) or _precision_policy(
        config.train.precision
    )
    plan = _FitPlan(
        strategy=strategy,
        policy=policy,
        class_weight=class_weight,
        resume_from=resume_from,
        stain=stain,
        config_dict={
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
        },
    )
    if resume_from is None:
        _record_run(run_dir, config, data, plan.config_dict, stain)
    extractor = frozen_extractor(config.model, host)
    if extractor is None:
        history = _fit(run_dir, config, data, host, plan)
    else:  # a probe on the cached embeddings of a frozen extractor
        history = fit_probe_run(
            run_dir, config, data.split, class_names=data.class_names,
            image_info=data.image_info, extractor=extractor, class_weight=class_weight,
        )  # fmt: skip
    return _finish(run_dir, config, data, host, history, resumed_at=resumed_at)


def _record_run(
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
    _write_sample_grid(
        data.split.train, config.data.image_size, run.samples, config.train.seed
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _FitPlan:
    """What the fit stage needs beyond the configuration."""

    strategy: Any
    policy: str
    class_weight: dict[int, float] | None
    config_dict: dict[str, Any]
    resume_from: TrainState | None
    stain: StainFit | None = None


def _fit(
    run_dir: Path, config: RunConfig, data: PreparedData, host: PluginHost, plan: _FitPlan
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
            train_data, selection_data = _training_datasets(
                config, data, plan.strategy, epoch_variable
            )
            host.train_start(run_dir, plan.config_dict)
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
    # The checkpoint's history holds the epochs of an interrupted run too; the trainer's own
    # return value covers this process's epochs only.
    return history_columns(checkpoint.history)


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
        callbacks.append(
            keras.callbacks.TensorBoard(log_dir=str(RunFolder(run_dir).tensorboard))
        )
    return callbacks


def _build_or_restore(
    run_dir: Path,
    config: RunConfig,
    data: PreparedData,
    host: PluginHost,
    resume_from: TrainState | None,
    stain: StainFit | None,
) -> Any:
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
    check_free_space(run_dir, needed_bytes=3 * 12 * model.count_params() + _MIN_FREE_BYTES)
    return model


def _training_datasets(
    config: RunConfig, data: PreparedData, strategy: Any, epoch_variable: Any
) -> tuple[Any, Any]:
    """The shuffled training batches and the selection batches, distributed over devices."""
    from breastcls.data.pipeline import make_dataset

    def batches(samples: Sequence[Sample], *, training: bool) -> Any:
        dataset = make_dataset(
            samples,
            data.class_names,
            image_size=config.data.image_size,
            batch_size=config.train.batch_size * strategy.num_replicas_in_sync,
            image_info=data.image_info,
            shuffle=training,
            seed=config.train.seed,
            cache=config.data.cache,
            epoch=epoch_variable if training else None,
        )
        return distribute_dataset(dataset, strategy)

    return batches(data.split.train, training=True), batches(data.split.selection, training=False)


def _finish(
    run_dir: Path,
    config: RunConfig,
    data: PreparedData,
    host: PluginHost,
    history: dict[str, list[float]],
    *,
    resumed_at: int | None,
) -> RunResult:
    """Evaluate the best model (calibrated on the selection set, scored once on the test set),
    write the curves, report and model card, and record the headline."""
    from breastcls.evaluation.evaluate import evaluate_run
    from breastcls.evaluation.plots import plot_history
    from breastcls.inference import InferenceModel

    plot_history(history, *RunFolder(run_dir).curves)
    best_model_path = RunFolder(run_dir).best_model
    if not best_model_path.exists():
        raise TrainingError(
            f"No epoch produced a finite {config.train.monitor}; no model was saved in {run_dir}."
        )
    evaluation = evaluate_run(
        run_dir,
        InferenceModel.load(best_model_path),
        data.split,
        batch_size=config.train.batch_size,
        image_info=data.image_info,
        host=host,
    )
    write_model_card(run_dir)
    write_status(run_dir, "finished", headline=evaluation.headline, resumed_at_epoch=resumed_at)
    host.train_end(run_dir, evaluation.metrics)
    return RunResult(
        run_dir=run_dir,
        class_names=data.class_names,
        history=history,
        metrics=evaluation.metrics,
        role=evaluation.role,
        selection_metrics=evaluation.selection_metrics,
        best_model=best_model_path,
        report=evaluation.report,
    )


def read_run_config(run_dir: Path) -> RunConfig:
    """Read the ``config.json`` of a run folder."""
    raw = RunFolder(run_dir).read_config_record()
    return RunConfig.from_dict(
        {k: v for k, v in raw.items() if k in ("data", "model", "train", "out_dir", "name")}
    )


def summarise(values: Mapping[str, Any]) -> str:
    """Return a one-line summary of a metrics document: accuracy, macro F1 and AUC [95% CI]."""
    classification = values.get("classification", {})
    line = (
        f"accuracy {classification.get('accuracy', float('nan')):.4f}, "
        f"macro F1 {classification.get('macro_avg', {}).get('f1', float('nan')):.4f}"
    )
    auc = values.get("bootstrap", {}).get("intervals", {}).get("auc", {})
    if auc.get("estimate") is not None:
        interval = (
            f" [{auc['low']:.3f}, {auc['high']:.3f}]" if auc.get("low") is not None else ""
        )
        line += f", AUC {auc['estimate']:.3f}{interval}"
    return line
