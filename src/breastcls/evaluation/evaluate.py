"""``breastcls.evaluate``, the evaluation that ends a training run, and the pooled evaluation
of a cross-validation's folds.

The choice of data is :mod:`breastcls.evaluation.evaluated_set`'s, what an evaluation folder
holds :mod:`breastcls.evaluation.folder`'s, and what goes into a report (and
``breastcls.build_report``) :mod:`breastcls.evaluation.reporting`'s.

A model's folder (a run folder, or wherever ``best.keras`` lives) may hold, beside the model:
``class_names.json`` (class order), ``config.json`` (the run configuration), ``split.csv``
(every image the run used, with its role) and the model record (:mod:`breastcls.inference.record`)
with the temperature and thresholds fitted on the selection set. Evaluation and prediction apply
the calibration unchanged and write nothing into the model's folder but their own evaluation
folder, and ``evaluate`` refuses data the model has seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from breastcls.data.images import ImageInfo
from breastcls.data.split import Split
from breastcls.environment import prepare_tensorflow
from breastcls.errors import ConfigError
from breastcls.evaluation.evaluated_set import (
    EvaluationSettings,
    evaluation_data,
    training_look,
    with_class_names,
    with_split_groups,
)
from breastcls.evaluation.folder import write_evaluation, write_run_figures
from breastcls.evaluation.metrics import read_predictions
from breastcls.evaluation.reporting import headline_figures, run_settings, write_report
from breastcls.evaluation.robustness import StainShift, check_stain_shift
from breastcls.inference.calibrate import fit_run_domain, score_selection
from breastcls.inference.calibration import apply_calibration, fit_calibration
from breastcls.inference.model import InferenceModel
from breastcls.inference.record import training_record, write_record
from breastcls.interfaces import DataRole, SkippedFile
from breastcls.io import atomic_write_json, ensure_writable_dir
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.records import Headline, MetricsRecord
from breastcls.runs.folder import RunFolder, read_split_csv
from breastcls.runs.lock import exclusive_folder

__all__ = [
    "EvaluationResult",
    "RunEvaluation",
    "evaluate",
    "evaluate_pooled",
    "evaluate_run",
    "read_run_evaluation",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationResult:
    """What :func:`breastcls.evaluate` returns.

    Attributes:
        out_dir: The evaluation folder.
        metrics: The ``metrics.json`` content.
        report: The HTML report.
        n_images: Number of images evaluated.
        role: The set the images are to the model: ``test`` (a run's test set, or data checked
            against the run's images), ``selection`` (optimistic), ``None`` (not checked, or
            overlapping and scored with ``allow_overlap``).
        skipped: Unreadable images left out with ``skip_bad_images`` (also in ``skipped.csv``).
    """

    out_dir: Path
    metrics: MetricsRecord
    report: Path
    n_images: int
    role: DataRole | None
    skipped: tuple[SkippedFile, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvaluation:
    """The evaluation that ends a training run (see :func:`evaluate_run`).

    Attributes:
        metrics: The reported ``metrics.json``.
        role: The set ``metrics`` come from.
        selection_metrics: ``selection/metrics.json``: the same metrics on the selection set.
        report: The run's ``report.html``.
        headline: The figures ``status.json`` and ``breastcls runs`` show.
    """

    metrics: MetricsRecord
    role: DataRole
    selection_metrics: MetricsRecord
    report: Path
    headline: Headline


def evaluate(
    model: Path,
    *,
    data: Path | None = None,
    tta: str = "none",
    out_dir: Path | None = None,
    batch_size: int = 32,
    gradcam: bool = True,
    allow_overlap: bool = False,
    host: PluginHost | None = None,
    verbose: int = 1,
    skip_bad_images: bool = False,
    stain_shift: StainShift = "hed",
    stain_reference: Path | None = None,
    stain_transfer: str = "macenko",
) -> EvaluationResult:
    """Evaluate a model on labelled images and write an evaluation folder.

    The folder holds ``predictions.csv``, ``metrics.json`` (every registered metric), the
    metrics' PNG figures, Grad-CAM overlays, the stain-shift robustness curve, ``evaluation.json``
    (what was evaluated, how) and ``report.html``. The temperature and thresholds fitted on the
    run's selection set (with the same TTA) are applied unchanged. An evaluation of a test set
    is recorded in the model's test-look ledger, and its figures say which look they are
    (:mod:`breastcls.evaluation.looks`).

    Args:
        model: A run folder or a ``.keras`` file.
        data: Labelled images (folder or manifest); a ``test`` split is used when the data has
            one, else every image. When ``None``, the run's test set (``split.csv``), or its
            selection set, labelled optimistic, when it kept no test set.
        tta: Test-time augmentation id (``none``, ``flips``, ``d8`` or a plugin's).
        out_dir: The evaluation folder (default: ``<model folder>/evaluations/<data>-<tta>``).
        batch_size: Images per model call (TTA multiplies it by the number of copies).
        gradcam: Write Grad-CAM overlays.
        allow_overlap: Score ``data`` even when some of its images (identical pixels or near
            copies) or patients trained or selected the model; the report then says so.
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows a progress bar.
        skip_bad_images: Leave unreadable images out instead of stopping; they are listed in
            the folder's ``skipped.csv``, and ``evaluation.json`` and the report give their
            number.
        stain_shift: ``hed`` re-scores the set under HED stain shifts of increasing strength
            (:mod:`breastcls.evaluation.robustness`: 3 more passes over the set) into a
            ``robustness`` section; ``none`` leaves it out.
        stain_reference: An image or folder in a second stain: a ``stain_reference`` section
            re-scores the set moved towards that stain (0, 25, 50, 75 and 100% of the way; 4
            more passes over the set).
        stain_transfer: The stain normaliser that moves images to ``stain_reference``.

    Raises:
        BreastclsError: Unknown TTA or stain shift, unreadable model or images, classes that
            differ from the model's, images the model has seen (without ``allow_overlap``),
            unwritable output folder.
    """
    prepare_tensorflow()
    host = ensure_host(host)
    stain_shift = _checked_stain_options(host, stain_shift, stain_reference, stain_transfer)
    loaded = _model_to_evaluate(Path(model), tta, host, gradcam=gradcam)
    chosen = evaluation_data(
        data, loaded, host, allow_overlap=allow_overlap, skip_bad_images=skip_bad_images
    )
    loaded = with_class_names(loaded, chosen, data)
    out_dir = Path(out_dir or loaded.folder.evaluation_folder(f"{chosen.name}-{tta}").path)
    how = EvaluationSettings(
        data=data,
        chosen=chosen,
        tta=tta,
        gradcam=gradcam,
        stain_shift=stain_shift,
        stain_reference=Path(stain_reference) if stain_reference is not None else None,
        stain_transfer=stain_transfer,
        batch_size=batch_size,
        verbose=verbose,
    )
    # The folder is this evaluation's until it ends; when it fails, a folder it created is
    # removed (a folder that existed before is left).
    with exclusive_folder(
        out_dir,
        purpose="evaluate",
        hint="wait for that evaluation to end, or choose another folder with --out.",
    ):
        scores = loaded.score_files(
            chosen.samples, tta=tta, batch_size=batch_size, host=host, verbose=verbose,
            image_info=chosen.image_info,
        )  # fmt: skip
        predictions = loaded.labelled(chosen.samples, scores, role=chosen.role)
        metrics, report = write_evaluation(
            out_dir, loaded, predictions, scores.calibration, how, host
        )
    return EvaluationResult(
        out_dir=out_dir,
        metrics=metrics,
        report=report,
        n_images=len(chosen.samples),
        role=chosen.role,
        skipped=chosen.skipped,
    )


def _checked_stain_options(
    host: PluginHost,
    stain_shift: StainShift,
    stain_reference: Path | None,
    stain_transfer: str,
) -> StainShift:
    """The stain-shift option, checked with the reference's, before any model is loaded."""
    checked = check_stain_shift(stain_shift)
    if stain_reference is not None:
        from breastcls.stain.fit import reference_images

        host.stain_normalisers.info(stain_transfer)
        reference_images(Path(stain_reference))  # a missing reference stops before any work
    return checked


def _model_to_evaluate(model: Path, tta: str, host: PluginHost, *, gradcam: bool) -> InferenceModel:
    """The model, loaded once the TTA is known to be registered, and checked to hold a
    calibration for it and, when Grad-CAM is asked for, a Keras model."""
    host.tta.info(tta)
    loaded = InferenceModel.load(model)
    loaded.calibration(tta)  # a TTA without calibration stops before any image is decoded
    if gradcam and loaded.record.extractor is not None:
        raise ConfigError(
            f"{loaded.source} is a probe on a frozen {loaded.record.extractor.extractor.kind} "
            "extractor: Grad-CAM is not available for this backbone. Pass --no-gradcam "
            "(gradcam=False)."
        )
    if gradcam and loaded.keras_model is None:
        raise ConfigError(
            f"{loaded.source} is an ONNX model: Grad-CAM needs the Keras model's gradients. "
            "Pass --no-gradcam (gradcam=False), or evaluate the run folder."
        )
    return loaded


def evaluate_run(
    run_dir: Path,
    model: InferenceModel,
    split: Split,
    *,
    batch_size: int,
    image_info: Mapping[Path, ImageInfo],
    host: PluginHost | None = None,
) -> RunEvaluation:
    """Finish a training run: calibrate on the selection set, then score the test set once.

    Fits the temperature and chooses the thresholds on the selection set's predictions, fits
    the domain-shift reference on the training images (its thresholds on the selection set),
    writes the model record (``model_record.json``) with them, writes the selection set's
    calibrated predictions and metrics into ``selection/`` (optimistic: that set chose the
    model), then predicts the test set once, applies the calibration unchanged and writes
    ``predictions.csv``, ``metrics.json``, the figures and ``report.html`` into the run folder.
    Without a test set the run folder's figures are the selection set's, labelled optimistic.
    No Grad-CAM here, to keep the end of training cheap; ``breastcls evaluate`` adds it.
    """
    from breastcls.evaluation.metrics import compute_metrics, describe_set, write_predictions

    selection, selection_scores = score_selection(
        model, split.selection, batch_size=batch_size, host=host, image_info=image_info,
        features=True,
    )  # fmt: skip
    calibration = fit_calibration(selection)
    domain = fit_run_domain(
        model, split.train, selection, selection_scores, batch_size=batch_size, host=host,
        image_info=image_info,
    )  # fmt: skip
    record = training_record(
        dataclasses.replace(model.record.with_calibration(calibration), domain=domain)
    )
    write_record(run_dir, record)
    model = model.with_record(record)
    run = RunFolder(run_dir)
    run.selection.path.mkdir(exist_ok=True)
    calibrated_selection = apply_calibration(with_split_groups(selection, split), calibration)
    write_predictions(calibrated_selection, run.selection.predictions)
    selection_set = describe_set(DataRole.SELECTION, split.leak_of(DataRole.SELECTION))
    compute_metrics(
        calibrated_selection, run.selection.path, host=host, set_description=selection_set
    )
    reported = (
        model.labelled(
            split.test,
            model.score_files(split.test, batch_size=batch_size, host=host, image_info=image_info),
            role=DataRole.TEST,
        )
        if split.test
        else calibrated_selection
    )
    write_run_figures(
        run,
        with_split_groups(reported, split),
        model,
        calibration,
        set_description=training_look(
            run_dir, split, describe_set(split.reported_role, split.leak)
        ),
        host=host,
    )
    return read_run_evaluation(run_dir)


def evaluate_pooled(
    out_dir: Path, fold_dirs: Sequence[Path], *, host: PluginHost | None = None
) -> MetricsRecord:
    """Evaluate the folds' test predictions together and write ``out_dir`` (predictions,
    metrics, figures, report); return its ``metrics.json``.

    Each image is one row, predicted by the folds whose model never trained or selected on its
    patient, with that fold's calibration: once for k folds (out of fold), or averaged over the
    repeats that tested it for overlapping repeats (:mod:`breastcls.evaluation.pooling`). Each
    fold chose its own thresholds, so the pooled operating point is the plain top-class
    decision; the folds' reports give their own.

    Raises:
        DataError: A fold has no readable ``predictions.csv``.
    """
    from breastcls.evaluation.metrics import compute_metrics, metrics_document, write_predictions
    from breastcls.evaluation.pooling import fold_calibration_section, pool_fold_predictions

    folds = [read_predictions(RunFolder(fold).predictions) for fold in fold_dirs]
    pooled, set_description = pool_fold_predictions(folds, images=len(read_split_csv(fold_dirs[0])))
    pooled = dataclasses.replace(pooled, thresholds={"default": 0.5}, role=DataRole.TEST)
    ensure_writable_dir(out_dir)
    write_predictions(pooled, RunFolder(out_dir).predictions)
    sections = fold_calibration_section(
        compute_metrics(pooled, out_dir, host=host, set_description=set_description),
        [RunFolder(fold).read_metrics() for fold in fold_dirs],
    )
    atomic_write_json(
        RunFolder(out_dir).metrics,
        metrics_document(sections, pooled, set_description=set_description).to_json(),
    )
    write_report(
        sections,
        pooled,
        out_dir,
        title=f"breastcls cross-validation {out_dir.parent.name}",
        settings=run_settings(fold_dirs[0]),
        calibration=None,
        set_description=set_description,
    )
    return RunFolder(out_dir).read_metrics()


def read_run_evaluation(run_dir: Path) -> RunEvaluation:
    """Read back the evaluation a finished run wrote (see :func:`evaluate_run`).

    Raises:
        ModelLoadError: A metrics file is unreadable.
    """
    run = RunFolder(run_dir)
    metrics = run.read_metrics()
    role = metrics.evaluated_on.role if metrics.evaluated_on else None
    return RunEvaluation(
        metrics=metrics,
        role=role or DataRole.SELECTION,
        selection_metrics=run.selection.read_metrics(),
        report=run.report,
        headline=headline_figures(metrics),
    )
