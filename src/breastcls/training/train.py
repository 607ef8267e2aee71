"""``breastcls.train``: from a configuration to a complete run folder (:func:`train`,
:func:`resume`), as stages: the data (:mod:`~breastcls.training.data`), the run folder's
records and status (:mod:`~breastcls.training.run`), the fit
(:mod:`~breastcls.training.fit`), then the final model evaluated and reported."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from breastcls.config import RunConfig
from breastcls.embeddings.probe import fit_probe_run, frozen_extractor
from breastcls.environment import prepare_tensorflow
from breastcls.errors import ConfigError, TrainingError
from breastcls.io import check_writable_dir
from breastcls.model_card import write_model_card
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.checkpoint import TrainState, read_train_state
from breastcls.runs.folder import (
    RunFolder,
    RunResult,
    check_free_space,
    create_run_dir,
    write_status,
)
from breastcls.stain.fit import StainFit, fit_run_stain
from breastcls.training.checks import check_run_config
from breastcls.training.data import (
    PreparedData,
    ScannedData,
    balanced_class_weights,
    check_same_data,
    prepare_data,
)
from breastcls.training.distribute import check_devices, select_strategy, worker_out_dir
from breastcls.training.fit import FitPlan, dtype_policy, fit
from breastcls.training.run import (
    MIN_FREE_BYTES,
    STATUS_RESERVE,
    check_config_fits_checkpoint,
    check_resumable,
    config_record,
    lock_run,
    read_run_config,
    record_run,
    recording_status,
)

__all__ = ["balanced_class_weights", "prepare_data", "resume", "train"]


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
    check_free_space(out_dir, needed_bytes=MIN_FREE_BYTES)
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
        out_dir, config.name, default_stem=config.model.backbone, reserve=STATUS_RESERVE
    ) as lock:
        return _train_recording_status(lock.path, config, data, host, resume_from=None, stain=stain)


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
    with recording_status(run_dir):
        return _train_in(run_dir, config, data, host, resume_from=resume_from, stain=stain)


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
    with lock_run(run_dir, purpose="resume", reserve=STATUS_RESERVE):
        check_resumable(run_dir)
        host = ensure_host(host)
        config = read_run_config(run_dir)
        state = read_train_state(run_dir)
        check_config_fits_checkpoint(run_dir, config, state)
        data = prepare_data(config, host=host, scanned=scanned)
        check_same_data(run_dir, data)
        check_free_space(run_dir, needed_bytes=MIN_FREE_BYTES)
        prepare_resume(run_dir, state)
        return _train_recording_status(run_dir, config, data, host, resume_from=state)


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
    policy = dtype_policy(run_dir, config, resume_from)
    config_dict = config_record(
        config, data, strategy=strategy, policy=policy, class_weight=class_weight
    )
    if resume_from is None:
        record_run(run_dir, config, data, config_dict, stain)
    # The plugins' run hooks, all called from here: train_start once the model and its data are
    # ready, epoch_end by the fit stage's callbacks, train_end once the run has finished.
    plan = FitPlan(
        strategy=strategy,
        policy=policy,
        class_weight=class_weight,
        resume_from=resume_from,
        started=lambda: host.train_start(run_dir, RunFolder(run_dir).read_config_record()),
        stain=stain,
    )
    extractor = frozen_extractor(config.model, host)
    if extractor is None:
        history = fit(run_dir, config, data, host, plan)
    else:  # a probe on the cached embeddings of a frozen extractor
        plan.started()
        history = fit_probe_run(
            run_dir, config, data.split, class_names=data.class_names,
            image_info=data.image_info, extractor=extractor, class_weight=class_weight,
        )  # fmt: skip
    result = _finish(run_dir, config, data, host, history, resumed_at=resumed_at)
    host.train_end(run_dir, result.metrics)
    return result


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
    write the curves, report and model card, and record the headline (the caller calls the
    ``train_end`` hook)."""
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


def summarise(values: Mapping[str, Any]) -> str:
    """Return a one-line summary of a metrics document: accuracy, macro F1 and AUC [95% CI]."""
    classification = values.get("classification", {})
    line = (
        f"accuracy {classification.get('accuracy', float('nan')):.4f}, "
        f"macro F1 {classification.get('macro_avg', {}).get('f1', float('nan')):.4f}"
    )
    auc = values.get("bootstrap", {}).get("intervals", {}).get("auc", {})
    if auc.get("estimate") is not None:
        interval = f" [{auc['low']:.3f}, {auc['high']:.3f}]" if auc.get("low") is not None else ""
        line += f", AUC {auc['estimate']:.3f}{interval}"
    return line
