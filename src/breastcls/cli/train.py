"""``breastcls train``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from breastcls.cli.common import parse_options, reports_errors, say, say_domain
from breastcls.cli.defaults import DATA, MODEL, RUN, TRAIN
from breastcls.config import (
    ClassWeight,
    DataConfig,
    Magnification,
    ModelConfig,
    Precision,
    Preprocessing,
    RunConfig,
    SplitBy,
    SplitProtocol,
    Task,
    TrainConfig,
)
from breastcls.errors import ConfigError
from breastcls.evaluation.metrics import describe_role
from breastcls.interfaces import DataRole
from breastcls.records import MetricsRecord
from breastcls.runs.folder import RunFolder, RunResult
from breastcls.training.crossval import CrossValidationResult
from breastcls.training.distribute import parse_devices

DATA_PANEL = "Data"
MODEL_PANEL = "Model"
TRAINING_PANEL = "Training"
EVALUATION_PANEL = "Evaluation"
SPEED_PANEL = "Speed"
OUTPUT_PANEL = "Output"


@reports_errors
def train_command(
    ctx: typer.Context,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder root/<class>/* or root/{train,validation}/<class>/*, or a CSV manifest.",
            rich_help_panel=DATA_PANEL,
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            help="Train on the bundled synthetic demo images (no data needed): the small CNN "
            "from scratch at 96 px for 8 epochs, unless the options say otherwise.",
            rich_help_panel=DATA_PANEL,
        ),
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue this killed or interrupted run folder from its last completed epoch "
            "(its own configuration is used; no other option may be given). A cross-validation "
            "run keeps its finished folds, continues the interrupted one and trains the rest.",
            rich_help_panel=DATA_PANEL,
        ),
    ] = None,
    task: Annotated[
        Task,
        typer.Option(
            help="binary (benign/malignant) or subtype (the 8 BreakHis subtypes).",
            rich_help_panel=DATA_PANEL,
        ),
    ] = DATA.task,
    magnification: Annotated[
        Magnification | None,
        typer.Option(
            help="Train only on images at this magnification (default: all).",
            rich_help_panel=DATA_PANEL,
        ),
    ] = DATA.magnification,
    image_size: Annotated[
        int,
        typer.Option(help="Side in pixels the images are resized to.", rich_help_panel=DATA_PANEL),
    ] = DATA.image_size,
    train_mpp: Annotated[
        float | None,
        typer.Option(
            help="Microns per pixel of the images as stored, recorded so that `breastcls slide "
            "predict` knows the model's scale (default: from BreakHis names' magnification).",
            rich_help_panel=DATA_PANEL,
        ),
    ] = DATA.image_mpp,
    skip_bad_images: Annotated[
        bool,
        typer.Option(
            help="Train without unreadable images (listed in skipped.csv) instead of stopping.",
            rich_help_panel=DATA_PANEL,
        ),
    ] = DATA.skip_bad_images,
    backbone: Annotated[
        str,
        typer.Option(
            metavar="<id>",
            help="Backbone id (`breastcls plugins` describes them).",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = MODEL.backbone,
    backbone_option: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<name=value>",
            help="An option of the backbone, repeatable, e.g. --backbone-option file=uni.onnx "
            "(a frozen extractor's: file, input_size, mean, std, embedding, output, mpp).",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = None,
    head: Annotated[
        str,
        typer.Option(
            metavar="<id>", help="Head id (`breastcls plugins`).", rich_help_panel=MODEL_PANEL
        ),
    ] = MODEL.head,
    augmentation: Annotated[
        str,
        typer.Option(
            metavar="<id>",
            help="Augmentation id (`breastcls plugins`); none disables augmentation.",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = MODEL.augmentation,
    weights: Annotated[
        str | None,
        typer.Option(
            help="imagenet, none (random init) or the path of a local weights file.",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = MODEL.weights,
    preprocessing: Annotated[
        Preprocessing,
        typer.Option(
            help="backbone (the backbone's own input scaling, inside the model) or none (raw "
            "0-255 pixels, as the seed blog).",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = MODEL.preprocessing,
    stain_normalisation: Annotated[
        str,
        typer.Option(
            metavar="<id>",
            help="Stain normaliser id (`breastcls plugins`): reinhard or macenko map every image "
            "to one reference stain inside the model; none leaves colours as they are.",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = MODEL.stain_normalisation,
    stain_reference: Annotated[
        str | None,
        typer.Option(
            metavar="<path>",
            help="Image or folder the stain normaliser is fitted to (default: the training "
            "images; never the selection or test images).",
            rich_help_panel=MODEL_PANEL,
        ),
    ] = MODEL.stain_reference,
    trainer: Annotated[
        str,
        typer.Option(
            metavar="<id>",
            help="Trainer id (`breastcls plugins` describes them).",
            rich_help_panel=TRAINING_PANEL,
        ),
    ] = TRAIN.trainer,
    trainer_option: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<name=value>",
            help="An option of the trainer, repeatable, e.g. --trainer-option min_lr=1e-6 "
            "(the keras trainer: lr_patience, lr_factor, min_lr).",
            rich_help_panel=TRAINING_PANEL,
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option(help="Number of epochs.", rich_help_panel=TRAINING_PANEL)
    ] = TRAIN.epochs,
    batch_size: Annotated[
        int,
        typer.Option(
            help="Images per step on one device (--devices multiplies it).",
            rich_help_panel=TRAINING_PANEL,
        ),
    ] = TRAIN.batch_size,
    learning_rate: Annotated[
        float,
        typer.Option(help="Adam's initial learning rate.", rich_help_panel=TRAINING_PANEL),
    ] = TRAIN.learning_rate,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of weight init, shuffling and augmentation.",
            rich_help_panel=TRAINING_PANEL,
        ),
    ] = TRAIN.seed,
    class_weight: Annotated[
        ClassWeight | None,
        typer.Option(
            help="balanced: weight the classes by inverse frequency (default: unweighted).",
            rich_help_panel=TRAINING_PANEL,
        ),
    ] = TRAIN.class_weight,
    test_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the patients held out as the test set, scored once by the final model "
            "(0: no test set; every figure is then the selection set's, labelled optimistic). "
            "Data with validation/ or test/ folders keeps its own test set.",
            rich_help_panel=EVALUATION_PANEL,
        ),
    ] = DATA.test_fraction,
    selection_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the remaining patients held out as the selection set (checkpoint, "
            "learning-rate schedule, temperature, thresholds).",
            rich_help_panel=EVALUATION_PANEL,
        ),
    ] = DATA.selection_fraction,
    split_seed: Annotated[
        int,
        typer.Option(
            help="Seed of the training/selection/test split.", rich_help_panel=EVALUATION_PANEL
        ),
    ] = DATA.split_seed,
    split_by: Annotated[
        SplitBy,
        typer.Option(
            help="patient: no patient on both sides of a split; image: images independently "
            "(on data with patient ids it needs --allow-leaky-split).",
            rich_help_panel=EVALUATION_PANEL,
        ),
    ] = DATA.split_by,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Keep groups of this manifest column together instead of patient_id.",
            rich_help_panel=EVALUATION_PANEL,
        ),
    ] = DATA.group_by,
    allow_leaky_split: Annotated[
        bool,
        typer.Option(
            help="Allow --split-by image on data with patient ids (recorded as leaky).",
            rich_help_panel=EVALUATION_PANEL,
        ),
    ] = DATA.allow_leaky_split,
    folds: Annotated[
        int | None,
        typer.Option(
            help="Stratified group k-fold with this many folds: one run per fold and "
            "aggregate.json.",
            rich_help_panel=EVALUATION_PANEL,
        ),
    ] = DATA.folds,
    protocol: Annotated[
        SplitProtocol | None,
        typer.Option(
            help="spanhol: 5 repeated patient-wise 70/30 splits and aggregate.json.",
            rich_help_panel=EVALUATION_PANEL,
        ),
    ] = DATA.protocol,
    precision: Annotated[
        Precision,
        typer.Option(
            help="mixed: float16 on a GPU, bfloat16 on a CPU.", rich_help_panel=SPEED_PANEL
        ),
    ] = TRAIN.precision,
    jit: Annotated[
        bool,
        typer.Option(
            help="Compile with XLA (a GPU option; slower on a CPU).", rich_help_panel=SPEED_PANEL
        ),
    ] = TRAIN.jit,
    cache: Annotated[
        str | None,
        typer.Option(
            help="Cache decoded images: memory, or a folder (default: decode every epoch).",
            rich_help_panel=SPEED_PANEL,
        ),
    ] = DATA.cache,
    devices: Annotated[
        str | None,
        typer.Option(
            help="Devices to train on: a count (first N GPUs) or names (GPU:0,GPU:1); default: "
            "every local GPU. --batch-size is per device.",
            rich_help_panel=SPEED_PANEL,
        ),
    ] = None,
    deterministic: Annotated[
        bool,
        typer.Option(
            help="Deterministic TensorFlow ops (reproducible, slower).",
            rich_help_panel=SPEED_PANEL,
        ),
    ] = TRAIN.deterministic,
    out: Annotated[
        Path, typer.Option(help="Parent folder of run folders.", rich_help_panel=OUTPUT_PANEL)
    ] = RUN.out_dir,
    name: Annotated[
        str | None,
        typer.Option(help="Run folder name (default: a timestamp).", rich_help_panel=OUTPUT_PANEL),
    ] = RUN.name,
    tensorboard: Annotated[
        bool,
        typer.Option(
            help="Also write TensorBoard logs into RUN/tensorboard/.", rich_help_panel=OUTPUT_PANEL
        ),
    ] = TRAIN.tensorboard,
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
        if RunFolder(resume).is_cross_validation:
            _report_cross_validation(breastcls.resume_cross_validation(resume))
            return
        _report_run(breastcls.resume(resume))
        return
    demo_run: RunConfig | None = None
    if demo:
        if data is not None:
            raise ConfigError(
                "--demo trains on the bundled demo images: pass --data DIR or --demo, not both."
            )
        demo_run = breastcls.demo_config(out)
        data = demo_run.data.path
    elif data is None:
        raise ConfigError("Pass --data DIR (a folder of class folders or a manifest), or --demo.")
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
            image_mpp=train_mpp,
            task=task,
            split_by=split_by,
            group_by=group_by,
            allow_leaky_split=allow_leaky_split,
            folds=folds,
            protocol=protocol,
        ),
        model=ModelConfig(
            backbone=backbone,
            backbone_options=parse_options(backbone_option or [], flag="--backbone-option"),
            head=head,
            augmentation=augmentation,
            weights=weights,
            preprocessing=preprocessing,
            stain_normalisation=stain_normalisation,
            stain_reference=stain_reference,
        ),
        train=TrainConfig(
            trainer=trainer,
            trainer_options=parse_options(trainer_option or [], flag="--trainer-option"),
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            class_weight=class_weight,
            precision=precision,
            jit=jit,
            deterministic=deterministic,
            tensorboard=tensorboard,
            devices=parse_devices(devices) if devices is not None else None,
        ),
        out_dir=out,
        name=name,
    )
    if demo_run is not None:
        config = _with_demo_settings(config, demo_run, given=_given_options(ctx))
    if config.data.folds is not None or config.data.protocol is not None:
        _report_cross_validation(breastcls.cross_validate(config))
        return
    _report_run(breastcls.train(config))


def _given_options(ctx: typer.Context) -> set[str]:
    """The parameters the user set (on the command line or through the environment)."""
    return {
        name
        for name in ctx.params
        if (source := ctx.get_parameter_source(name)) is not None
        and source.name in ("COMMANDLINE", "ENVIRONMENT")
    }


def _with_demo_settings(config: RunConfig, demo: RunConfig, *, given: set[str]) -> RunConfig:
    """``config`` with the demo's own choices (each field where :func:`breastcls.demo_config`
    differs from the defaults: image size, backbone, weights, epochs...) except those whose
    option the user gave, so that ``--demo --epochs 2`` trains 2 epochs."""
    sections: dict[str, Any] = {}
    for section, default in (("data", DATA), ("model", MODEL), ("train", TRAIN)):
        chosen, own = getattr(demo, section), getattr(config, section)
        choices = {
            field.name: getattr(chosen, field.name)
            for field in dataclasses.fields(chosen)
            if field.name not in given
            and getattr(chosen, field.name) != getattr(default, field.name)
        }
        sections[section] = dataclasses.replace(own, **choices)
    return dataclasses.replace(config, **sections)


def _report_run(result: RunResult) -> None:
    from breastcls.runs.checkpoint import kept_epoch_line, read_train_state
    from breastcls.training.train import summarise

    say(f"run folder: {result.run_dir}")
    kept = kept_epoch_line(read_train_state(result.run_dir))
    if kept:
        say(kept)
    say_domain(result.metrics, first=True)
    say(f"{_set_of(result.metrics, result.role)}: {summarise(result.metrics)}")
    say_domain(result.metrics, first=False)
    if result.role is DataRole.TEST and result.selection_metrics:
        selection = _set_of(result.selection_metrics, DataRole.SELECTION)
        say(f"{selection}: {summarise(result.selection_metrics)}")
    say(f"report: {result.report}")


def _set_of(metrics: MetricsRecord, role: DataRole) -> str:
    """The set the figures come from as ``metrics.json`` records it (with any LEAKY label)."""
    return metrics.evaluated_on.set if metrics.evaluated_on else describe_role(role)


def _report_cross_validation(cv: CrossValidationResult) -> None:
    from breastcls.training.train import summarise

    say(f"run folder: {cv.run_dir} ({len(cv.folds)} folds, aggregate.json)")
    for index, fold in enumerate(cv.folds, start=1):
        say(f"fold {index}: {summarise(fold.metrics)}")
    accuracy = cv.aggregate.get("classification.accuracy", {})
    if accuracy.get("mean") is not None:
        say(
            f"test set accuracy over {accuracy['n']} folds: {accuracy['mean']:.4f} ± "
            f"{accuracy['std']:.4f} (mean ± SD of the folds' test sets)"
        )
