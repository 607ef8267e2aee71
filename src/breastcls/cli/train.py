"""``breastcls train``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from breastcls.cli.common import reports_errors
from breastcls.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.crossval import CROSS_VALIDATION_FILE, CrossValidationResult
from breastcls.distribute import parse_devices
from breastcls.errors import ConfigError
from breastcls.evaluation.metrics import describe_role
from breastcls.interfaces import DataRole
from breastcls.run import RunResult


@reports_errors
def train_command(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder root/<class>/* or root/{train,validation}/<class>/*, or a CSV manifest."
        ),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue this killed or interrupted run folder from its last completed epoch "
            "(its own configuration is used; no other option may be given). A cross-validation "
            "run keeps its finished folds, continues the interrupted one and trains the rest."
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="Train on the bundled synthetic demo images (no data needed).")
    ] = False,
    backbone: Annotated[
        str, typer.Option(help="Backbone id (see `breastcls plugins`).")
    ] = "densenet201",
    head: Annotated[str, typer.Option(help="Head id.")] = "seed",
    augmentation: Annotated[
        str, typer.Option(help="Augmentation id: default, seed or none.")
    ] = "default",
    weights: Annotated[
        str, typer.Option(help="imagenet, none, or a local weights file.")
    ] = "imagenet",
    preprocessing: Annotated[
        str,
        typer.Option(
            help="backbone (the backbone's input scaling) or none (raw pixels, as the seed)."
        ),
    ] = "backbone",
    epochs: Annotated[int, typer.Option(min=1)] = 20,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    learning_rate: Annotated[float, typer.Option()] = 1e-4,
    image_size: Annotated[int, typer.Option(help="Input side in pixels.")] = 224,
    seed: Annotated[int, typer.Option(help="Seed of init, shuffling and augmentation.")] = 11,
    split_seed: Annotated[
        int, typer.Option(help="Seed of the training/selection/test split.")
    ] = 11,
    test_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the patients held out as the test set, scored once by the final model "
            "(0: no test set; every figure is then the selection set's, labelled optimistic). "
            "Data with validation/ or test/ folders keeps its own test set."
        ),
    ] = 0.2,
    selection_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the remaining patients held out as the selection set (checkpoint, "
            "learning-rate schedule, temperature, thresholds)."
        ),
    ] = 0.2,
    out: Annotated[Path, typer.Option(help="Parent folder of run folders.")] = Path("runs"),
    name: Annotated[str | None, typer.Option(help="Run folder name (default: timestamp).")] = None,
    skip_bad_images: Annotated[
        bool, typer.Option(help="Train without unreadable images (listed in skipped.csv).")
    ] = False,
    class_weight: Annotated[
        str | None, typer.Option(help="balanced: weight classes by inverse frequency.")
    ] = None,
    precision: Annotated[str, typer.Option(help="float32 or mixed.")] = "float32",
    jit: Annotated[
        bool, typer.Option(help="Compile with XLA (GPU option; slower on CPU).")
    ] = False,
    deterministic: Annotated[
        bool, typer.Option(help="Deterministic TensorFlow ops (slower).")
    ] = False,
    tensorboard: Annotated[
        bool, typer.Option(help="Write TensorBoard logs into RUN/tensorboard/.")
    ] = False,
    cache: Annotated[
        str | None, typer.Option(help="Cache decoded images: memory or a folder.")
    ] = None,
    devices: Annotated[
        str | None,
        typer.Option(
            help="Devices to train on: a count (first N GPUs) or names (GPU:0,GPU:1); default: "
            "every local GPU. --batch-size is per device."
        ),
    ] = None,
    magnification: Annotated[
        int | None, typer.Option(help="Train only on images at 40, 100, 200 or 400X.")
    ] = None,
    task: Annotated[
        str, typer.Option(help="binary (benign/malignant) or subtype (8 BreakHis subtypes).")
    ] = "binary",
    split_by: Annotated[
        str, typer.Option(help="patient (default: no patient on both sides) or image.")
    ] = "patient",
    group_by: Annotated[
        str | None,
        typer.Option(help="Keep groups of this column together instead of patient_id."),
    ] = None,
    allow_leaky_split: Annotated[
        bool,
        typer.Option(help="Allow --split-by image on data with patient ids (recorded as leaky)."),
    ] = False,
    folds: Annotated[
        int | None,
        typer.Option(min=2, help="Stratified group k-fold: one run per fold + aggregate.json."),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(help="spanhol: 5 repeated patient-wise 70/30 splits + aggregate.json."),
    ] = None,
) -> None:
    """Train a classifier and write a run folder (model, history, curves, metrics).

    The data is split by patient into a training set, a selection set (checkpoint, schedule,
    calibration) and a test set scored once at the end; the figures printed are the test set's.
    """
    import breastcls

    if resume is not None:
        if data is not None or demo:
            raise ConfigError(
                "--resume continues a run with its own configuration: do not pass --data or "
                "--demo with it."
            )
        if (resume / CROSS_VALIDATION_FILE).is_file():
            _report_cross_validation(breastcls.resume_cross_validation(resume))
            return
        _report_run(breastcls.resume(resume))
        return
    if demo:
        config = breastcls.demo_config(out)
    elif data is None:
        raise ConfigError("Pass --data DIR (a folder of class folders or a manifest), or --demo.")
    else:
        if precision not in ("float32", "mixed"):
            raise ConfigError(f"--precision {precision!r} is not float32 or mixed.")
        if preprocessing not in ("backbone", "none"):
            raise ConfigError(f"--preprocessing {preprocessing!r} is not backbone or none.")
        if class_weight not in (None, "balanced"):
            raise ConfigError(f"--class-weight {class_weight!r}: only 'balanced' is supported.")
        if task not in ("binary", "subtype"):
            raise ConfigError(f"--task {task!r} is not binary or subtype.")
        if split_by not in ("patient", "image"):
            raise ConfigError(f"--split-by {split_by!r} is not patient or image.")
        if protocol not in (None, "spanhol"):
            raise ConfigError(f"--protocol {protocol!r} is unknown: the known protocol is spanhol.")
        config = RunConfig(
            data=DataConfig(
                path=data,
                image_size=image_size,
                split_seed=split_seed,
                test_fraction=test_fraction,
                selection_fraction=selection_fraction,
                skip_bad_images=skip_bad_images,
                cache=cache,
                magnification=magnification,
                task=task,  # type: ignore[arg-type]
                split_by=split_by,  # type: ignore[arg-type]
                group_by=group_by,
                allow_leaky_split=allow_leaky_split,
                folds=folds,
                protocol=protocol,  # type: ignore[arg-type]
            ),
            model=ModelConfig(
                backbone=backbone,
                head=head,
                augmentation=augmentation,
                weights=weights,
                preprocessing=preprocessing,  # type: ignore[arg-type]
            ),
            train=TrainConfig(
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                seed=seed,
                class_weight=class_weight,  # type: ignore[arg-type]
                precision=precision,  # type: ignore[arg-type]
                jit=jit,
                deterministic=deterministic,
                tensorboard=tensorboard,
                devices=parse_devices(devices) if devices is not None else None,
            ),
            out_dir=out,
            name=name,
        )
    if config.data.folds is not None or config.data.protocol is not None:
        _report_cross_validation(breastcls.cross_validate(config))
        return
    _report_run(breastcls.train(config))


def _report_run(result: RunResult) -> None:
    from breastcls.train import summarise

    typer.echo(f"run folder: {result.run_dir}")
    typer.echo(f"{describe_role(result.role)}: {summarise(result.metrics)}")
    if result.role is DataRole.TEST and result.selection_metrics:
        typer.echo(
            f"{describe_role(DataRole.SELECTION)}: {summarise(result.selection_metrics)}"
        )
    typer.echo(f"report: {result.report}")


def _report_cross_validation(cv: CrossValidationResult) -> None:
    from breastcls.train import summarise

    typer.echo(f"run folder: {cv.run_dir} ({len(cv.folds)} folds, aggregate.json)")
    for index, fold in enumerate(cv.folds, start=1):
        typer.echo(f"fold {index}: {summarise(fold.metrics)}")
    accuracy = cv.aggregate.get("classification.accuracy", {})
    if accuracy.get("mean") is not None:
        typer.echo(f"accuracy: {accuracy['mean']:.4f} ± {accuracy['std']:.4f}")
