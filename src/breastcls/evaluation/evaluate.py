"""``breastcls.evaluate``, ``breastcls.predict`` and ``breastcls.build_report``, and the
evaluation that ends a training run.

A model's folder (a run folder, or wherever ``best.keras`` lives) may hold, beside the model:
``class_names.json`` (class order), ``config.json`` (the run configuration), ``split.csv``
(every image the run used, with its role) and the model record (:mod:`breastcls.inference.record`)
with the temperature and thresholds fitted on the selection set. Evaluation and prediction apply
the calibration unchanged and write nothing into the model's folder but their own evaluation
folder, and ``evaluate`` refuses data the model has seen.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.config import DataConfig
from breastcls.data.images import ImageInfo
from breastcls.data.overlap import Overlap, find_overlap
from breastcls.data.split import Leak, Split, find_leak, group_key
from breastcls.environment import prepare_tensorflow
from breastcls.errors import ConfigError, DataError, ModelLoadError
from breastcls.evaluation.looks import record_test_look
from breastcls.evaluation.robustness import StainShift, check_stain_shift
from breastcls.inference.calibrate import fit_run_domain, score_selection
from breastcls.inference.calibration import Calibration, apply_calibration, fit_calibration
from breastcls.inference.domain import DOMAIN_COLUMNS
from breastcls.inference.model import InferenceModel
from breastcls.inference.record import folder_calibration, training_record, write_record
from breastcls.interfaces import DataRole, MetricSection, Predictions, Sample, SkippedFile
from breastcls.io import atomic_write_json, csv_rows, ensure_writable_dir, read_json_file
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.checkpoint import kept_epoch_line, read_train_state
from breastcls.runs.folder import RunFolder, read_split_csv, write_skipped_csv
from breastcls.runs.lock import exclusive_folder

__all__ = [
    "EvaluationResult",
    "RunEvaluation",
    "build_report",
    "evaluate",
    "evaluate_pooled",
    "evaluate_run",
    "headline_figures",
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
    metrics: dict[str, Any]
    report: Path
    n_images: int
    role: DataRole | None
    skipped: tuple[SkippedFile, ...] = ()


def _read_json(path: Path) -> Any:
    try:
        return read_json_file(path)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path} is not readable JSON ({error}): fix or delete it.") from error


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

    metrics: dict[str, Any]
    role: DataRole
    selection_metrics: dict[str, Any]
    report: Path
    headline: dict[str, Any]


def headline_figures(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The figures a run is summarised by: the set they come from (and its ``LEAKY: ...``
    label, if any), accuracy and AUC [95% CI]."""
    evaluated = metrics.get("evaluated_on", {})
    auc = metrics.get("bootstrap", {}).get("intervals", {}).get("auc", {})
    return {
        "role": evaluated.get("role"),
        "set": evaluated.get("set"),
        "leak": evaluated.get("leak"),
        "accuracy": metrics.get("classification", {}).get("accuracy"),
        "auc": auc.get("estimate"),
        "auc_low": auc.get("low"),
        "auc_high": auc.get("high"),
    }


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
    calibrated_selection = apply_calibration(_with_split_groups(selection, split), calibration)
    write_predictions(calibrated_selection, run.selection.predictions)
    selection_set = describe_set(DataRole.SELECTION, split.leak_of(DataRole.SELECTION))
    compute_metrics(
        calibrated_selection, run.selection.path, host=host, set_description=selection_set
    )
    reported = (
        model.labelled(
            split.test,
            model.score_files(
                split.test, batch_size=batch_size, host=host, image_info=image_info
            ),
            role=DataRole.TEST,
        )
        if split.test
        else calibrated_selection
    )
    _write_run_figures(
        run,
        _with_split_groups(reported, split),
        model,
        calibration,
        set_description=_training_look(
            run_dir, split, describe_set(split.reported_role, split.leak)
        ),
        host=host,
    )
    return read_run_evaluation(run_dir)


def _write_run_figures(
    run: RunFolder,
    reported: Predictions,
    model: InferenceModel,
    calibration: Calibration,
    *,
    set_description: str | None,
    host: PluginHost | None,
) -> None:
    """Write a run's reported predictions, metrics (with the domain-shift sections), figures
    and report; ``set_description`` names a leaky set
    (:func:`~breastcls.evaluation.metrics.describe_set`)."""
    from breastcls.evaluation.metrics import compute_metrics, metrics_document, write_predictions

    write_predictions(reported, run.predictions)
    sections = compute_metrics(reported, run.path, host=host, set_description=set_description)
    domain_sections = _domain_sections(
        reported, model, run.path, set_description=set_description
    )
    if domain_sections:
        sections += domain_sections
        document = metrics_document(sections, reported, set_description=set_description)
        atomic_write_json(run.metrics, document)
    _write_report(
        sections,
        reported,
        run.path,
        title=f"breastcls run {run.path.name}",
        settings=_run_settings(run.path),
        training_figures=[p for p in run.curves if p.exists()],
        calibration=calibration,
        set_description=set_description,
    )


def _with_split_groups(predictions: Predictions, split: Split) -> Predictions:
    """``predictions`` with each image's group in ``split``: patient-level figures count,
    aggregate and resample by the split's groups (biopsies), not by slide."""
    group_of = {
        str(s.path): group_key(s, split.group_by) for _, part in split.parts() for s in part
    }
    return dataclasses.replace(
        predictions, groups=tuple(group_of.get(p) for p in predictions.paths)
    )


def _training_look(run_dir: Path, split: Split, description: str | None) -> str | None:
    """Record training's look at the run's test set; return ``description`` (``None``: the
    role says enough) with the look, unchanged without a test set."""
    if not split.test:
        return description
    return record_test_look(
        run_dir, description or "test set", data=None, tta="none", options={}, evaluation=run_dir
    )


def evaluate_pooled(
    out_dir: Path, fold_dirs: Sequence[Path], *, host: PluginHost | None = None
) -> dict[str, Any]:
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

    folds = [_read_predictions_csv(RunFolder(fold).predictions) for fold in fold_dirs]
    pooled, set_description = pool_fold_predictions(
        folds, images=len(read_split_csv(fold_dirs[0]))
    )
    pooled = dataclasses.replace(pooled, thresholds={"default": 0.5}, role=DataRole.TEST)
    ensure_writable_dir(out_dir)
    write_predictions(pooled, RunFolder(out_dir).predictions)
    sections = fold_calibration_section(
        compute_metrics(pooled, out_dir, host=host, set_description=set_description),
        [RunFolder(fold).read_metrics() for fold in fold_dirs],
    )
    atomic_write_json(
        RunFolder(out_dir).metrics,
        metrics_document(sections, pooled, set_description=set_description),
    )
    _write_report(
        sections,
        pooled,
        out_dir,
        title=f"breastcls cross-validation {out_dir.parent.name}",
        settings=_run_settings(fold_dirs[0]),
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
    role = metrics.get("evaluated_on", {}).get("role")
    return RunEvaluation(
        metrics=metrics,
        role=DataRole(role) if role else DataRole.SELECTION,
        selection_metrics=run.selection.read_metrics(),
        report=run.report,
        headline=headline_figures(metrics),
    )


def _run_set(run_dir: Path) -> _EvaluationData:
    """The run's test images from ``split.csv`` (or its selection images when it has none),
    with their recorded groups and the patients of theirs that trained or selected the model."""
    rows = read_split_csv(run_dir)
    for role in (DataRole.TEST, DataRole.SELECTION):
        chosen = [sample for sample, _ in rows if sample.split == role.value]
        if chosen:
            return _EvaluationData(
                samples=chosen,
                class_names=None,
                name=role.value,
                role=role,
                overlap=Overlap(),
                leak=find_leak(((seen.role, seen.group) for _, seen in rows), role),
                group_of={sample.path: seen.group for sample, seen in rows},
            )
    raise DataError(
        f"{RunFolder(run_dir).split} lists no test or selection images: pass --data to evaluate on."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _EvaluationData:
    """The images ``evaluate`` scores, and what they are to the model."""

    samples: list[Sample]
    class_names: tuple[str, ...] | None
    name: str
    role: DataRole | None
    overlap: Overlap
    image_info: Mapping[Path, ImageInfo] = dataclasses.field(default_factory=dict)
    skipped: tuple[SkippedFile, ...] = ()
    caveat: str | None = None
    leak: Leak | None = None
    group_of: Mapping[Path, str | None] = dataclasses.field(default_factory=dict)

    def grouped(self, predictions: Predictions) -> Predictions:
        """``predictions`` of :attr:`samples` with each image's group: patient-level figures
        count, aggregate and resample by the run's groups (biopsies), not by slide."""
        groups = tuple(self.group_of.get(s.path) for s in self.samples)
        return dataclasses.replace(predictions, groups=groups)


def _evaluation_data(
    data: Path | None,
    model: InferenceModel,
    host: PluginHost,
    *,
    allow_overlap: bool,
    skip_bad_images: bool = False,
) -> _EvaluationData:
    """Return what to evaluate: the run's test set (``data`` is ``None``) or ``data``, checked
    against the images and patients that trained or selected the model. Every image is
    decoded once here, before anything is written: an unreadable one stops the evaluation,
    or is left out (listed) with ``skip_bad_images``."""
    from breastcls.data.images import describe_unreadable, scan_samples

    chosen = _chosen_data(data, model, host, allow_overlap=allow_overlap)
    if chosen.image_info or chosen.skipped:
        info, skipped = dict(chosen.image_info), list(chosen.skipped)  # scanned for overlap
    else:
        info, skipped = scan_samples(chosen.samples)
    if skipped and not skip_bad_images:
        raise DataError(
            f"{describe_unreadable(skipped)} Fix or remove them, then run again. "
            "--skip-bad-images (skip_bad_images=True) evaluates the others and lists them in "
            "skipped.csv."
        )
    if skipped and len(skipped) == len(chosen.samples):
        raise DataError(f"No image could be read: {describe_unreadable(skipped)}")
    if not skipped:
        return dataclasses.replace(chosen, image_info=info)
    unreadable = {item.path for item in skipped}
    return dataclasses.replace(
        chosen,
        samples=[s for s in chosen.samples if s.path not in unreadable],
        image_info=info,
        skipped=tuple(skipped),
    )


def _chosen_data(
    data: Path | None,
    model: InferenceModel,
    host: PluginHost,
    *,
    allow_overlap: bool,
) -> _EvaluationData:
    from breastcls.data.images import scan_samples
    from breastcls.data.loading import load_dataset

    model_dir = model.folder.path
    if data is None:
        run_set = _run_set(model_dir)
        foreign = sorted({s.label for s in run_set.samples} - set(model.class_names))
        if foreign and model.record.class_names_known:
            raise DataError(
                f"{model.folder.split} lists images of class(es) {foreign}, which the model "
                f"({list(model.class_names)}) does not have: the split and the model do not "
                "belong to one run; restore them, or pass --data to evaluate on."
            )
        return run_set
    settings: dict[str, Any] = {}
    model_folder = RunFolder(model_dir)
    if model_folder.config.is_file():
        saved = model_folder.read_config_record().get("data", {})
        kept = ("task", "magnification", "group_by")
        settings = {key: saved[key] for key in kept if key in saved}
    config = DataConfig(path=Path(data), image_size=model.image_size, **settings)
    dataset = load_dataset(config, host=host)
    samples = [s for s in dataset.samples if s.split == "test"] or list(dataset.samples)
    checked = model_folder.split.is_file()
    overlap = Overlap()
    info: dict[Path, ImageInfo] = {}
    bad: list[SkippedFile] = []
    if checked:
        seen = [image for _, image in read_split_csv(model_dir)]
        info, bad = scan_samples(samples)  # unreadable ones: see _evaluation_data
        overlap = find_overlap(seen, samples, info, group_by=settings.get("group_by"))
    if overlap and not allow_overlap:
        raise DataError(
            f"{data}: {overlap.describe()} Figures on them would not estimate performance on new "
            "patients: evaluate on other patients, or pass --allow-overlap to score them anyway "
            "(the report is then labelled as overlapping)."
        )
    return _EvaluationData(
        samples=samples,
        class_names=dataset.class_names,
        name=Path(data).stem or "data",
        # Without the run's split.csv nothing says what the model has seen.
        role=DataRole.TEST if checked and not overlap else None,
        overlap=overlap,
        image_info=info,
        skipped=tuple(bad),
        caveat=_patients_unknown(samples, settings.get("group_by")) if checked else None,
        group_of={s.path: group_key(s, settings.get("group_by")) for s in samples},
    )


def _patients_unknown(samples: Sequence[Sample], group_by: str | None) -> str | None:
    """The caveat of data whose patients are unknown: new images of a patient who trained the
    model pass the copy checks, and only patient ids would catch them."""
    if all(group_key(sample, group_by) is not None for sample in samples):
        return None
    return "test set: checked for exact and near copies only (patients unknown)"


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
    chosen = _evaluation_data(
        data, loaded, host, allow_overlap=allow_overlap, skip_bad_images=skip_bad_images
    )
    loaded = _with_class_names(loaded, chosen, data)
    out_dir = Path(out_dir or loaded.folder.evaluation_folder(f"{chosen.name}-{tta}").path)
    how = _EvaluationSettings(
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
        metrics, report = _write_evaluation(
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


def _model_to_evaluate(
    model: Path, tta: str, host: PluginHost, *, gradcam: bool
) -> InferenceModel:
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


def _with_class_names(
    loaded: InferenceModel, chosen: _EvaluationData, data: Path | None
) -> InferenceModel:
    """The model with its class names checked against the data's (a bare model file whose
    class names are unknown takes the data's)."""
    if chosen.class_names is None:
        return loaded
    record = loaded.record
    if not record.class_names_known and len(chosen.class_names) == len(record.class_names):
        return loaded.with_record(
            dataclasses.replace(record, class_names=chosen.class_names, class_names_known=True)
        )
    if list(chosen.class_names) != list(loaded.class_names):
        raise ModelLoadError(
            f"The model {loaded.source} was trained on classes {list(loaded.class_names)} but "
            f"{data} has {list(chosen.class_names)}: evaluate it on data with the same classes."
        )
    return loaded


@dataclass(frozen=True, slots=True, kw_only=True)
class _EvaluationSettings:
    data: Path | None
    chosen: _EvaluationData
    tta: str
    gradcam: bool
    stain_shift: StainShift = "none"
    stain_reference: Path | None = None
    stain_transfer: str = "macenko"
    batch_size: int = 32
    verbose: int = 0


def _write_evaluation(
    out_dir: Path,
    loaded: InferenceModel,
    predictions: Predictions,
    calibration: Calibration,
    how: _EvaluationSettings,
    host: PluginHost,
) -> tuple[dict[str, Any], Path]:
    """Write an evaluation folder: predictions, metrics, figures, Grad-CAM, settings, report."""
    from breastcls.evaluation.metrics import compute_metrics, metrics_document, write_predictions

    folder, chosen = RunFolder(out_dir), how.chosen
    predictions = chosen.grouped(predictions)
    set_description = _looked_set(loaded.folder.path, how, out_dir)
    write_predictions(predictions, folder.predictions)
    if chosen.skipped:
        write_skipped_csv(folder.skipped, chosen.skipped)
    sections = compute_metrics(predictions, out_dir, host=host, set_description=set_description)
    sections += _model_sections(
        out_dir, loaded, predictions, calibration, how, host, set_description=set_description
    )
    sections += _domain_sections(predictions, loaded, out_dir, set_description=set_description)
    metrics = metrics_document(sections, predictions, set_description=set_description)
    atomic_write_json(folder.metrics, metrics)
    model_dir = loaded.folder.path
    settings = _settings_record(loaded, calibration, how, metrics, folder)
    atomic_write_json(folder.evaluation, settings)
    report = _write_report(
        sections,
        predictions,
        out_dir,
        title=f"breastcls evaluation: {model_dir.name} on {chosen.name} (TTA {how.tta})",
        settings={"evaluation": settings, **_run_settings(model_dir)},
        calibration=calibration,
        set_description=set_description,
    )
    return metrics, report


def _looked_set(model_dir: Path, how: _EvaluationSettings, out_dir: Path) -> str | None:
    """How the evaluated set is named (overlapping, leaky, patients unknown); a test set's
    look is recorded in the model's ledger."""
    from breastcls.evaluation.metrics import describe_set

    chosen = how.chosen
    if chosen.overlap:
        return f"overlapping data (optimistic): {chosen.overlap.describe()}"
    if chosen.role is not DataRole.TEST:
        return describe_set(chosen.role, chosen.leak)
    options = {
        "stain_shift": how.stain_shift,
        "stain_reference": str(how.stain_reference) if how.stain_reference else None,
        "stain_transfer": how.stain_transfer if how.stain_reference else None,
        "skipped_images": len(chosen.skipped),
    }
    return record_test_look(
        model_dir,
        chosen.caveat or describe_set(chosen.role, chosen.leak) or "test set",
        data=how.data,
        tta=how.tta,
        options=options,
        evaluation=out_dir,
    )


def _domain_sections(
    predictions: Predictions,
    model: InferenceModel,
    out_dir: Path,
    *,
    set_description: str | None,
) -> list[MetricSection]:
    """The ``domain`` section, when the model has a domain reference and scored the images."""
    from breastcls.evaluation.domain import domain_section
    from breastcls.evaluation.metrics import describe_role

    reference = model.record.domain
    if reference is None:
        return []
    section = domain_section(
        predictions,
        reference,
        out_dir,
        set_name=set_description or describe_role(predictions.role),
    )
    return [section] if section is not None else []


def _model_sections(
    out_dir: Path,
    loaded: InferenceModel,
    predictions: Predictions,
    calibration: Calibration,
    how: _EvaluationSettings,
    host: PluginHost,
    *,
    set_description: str | None,
) -> list[MetricSection]:
    """The sections that need the model again (Grad-CAM, the stain-shift curves), as asked."""
    chosen = how.chosen
    sections: list[MetricSection] = []
    if how.gradcam:
        from breastcls.evaluation.gradcam import gradcam_section

        sections.append(
            gradcam_section(loaded.keras_model, predictions, out_dir, image_size=loaded.image_size)
        )
    if how.stain_shift == "hed":
        from breastcls.evaluation.robustness import robustness_section

        sections.append(
            robustness_section(
                loaded,
                predictions,
                chosen.samples,
                calibration,
                out_dir,
                tta=how.tta,
                batch_size=how.batch_size,
                host=host,
                image_info=chosen.image_info,
                set_description=set_description,
                verbose=how.verbose,
            )
        )
    if how.stain_reference is not None:
        from breastcls.evaluation.robustness import reference_shift_section

        sections.append(
            reference_shift_section(
                loaded,
                predictions,
                chosen.samples,
                calibration,
                out_dir,
                reference=how.stain_reference,
                normaliser=how.stain_transfer,
                tta=how.tta,
                batch_size=how.batch_size,
                host=host,
                image_info=chosen.image_info,
                set_description=set_description,
                verbose=how.verbose,
            )
        )
    return sections


def _settings_record(
    loaded: InferenceModel,
    calibration: Calibration,
    how: _EvaluationSettings,
    metrics: Mapping[str, Any],
    folder: RunFolder,
) -> dict[str, Any]:
    """``evaluation.json``: what was evaluated, on which set, and how."""
    chosen = how.chosen
    model_dir = loaded.folder.path
    return {
        "model": str(loaded.source),
        "data": str(how.data) if how.data is not None else f"{chosen.name} set of {model_dir}",
        "set": metrics["evaluated_on"]["set"],
        "tta": how.tta,
        "stain_shift": how.stain_shift,
        "stain_reference": (
            f"{how.stain_reference} ({how.stain_transfer})" if how.stain_reference else None
        ),
        "image_size": loaded.image_size,
        "class_names": list(loaded.class_names),
        "skipped images": (
            f"{len(chosen.skipped)} unreadable, left out (listed in {folder.skipped.name})"
            if chosen.skipped
            else 0
        ),
        "calibration": calibration.to_dict(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _run_settings(model_dir: Path) -> dict[str, Any]:
    run = RunFolder(model_dir)
    return {"training run": run.read_config_record()} if run.config.is_file() else {}


def _write_report(
    sections: Sequence[MetricSection],
    predictions: Predictions,
    folder: Path,
    *,
    title: str,
    settings: dict[str, Any],
    calibration: Calibration | None,
    training_figures: Sequence[Path] = (),
    set_description: str | None = None,
) -> Path:
    from breastcls.evaluation.metrics import metrics_document
    from breastcls.evaluation.report import data_summary, render_report

    metrics = metrics_document(sections, predictions, set_description=set_description)
    return render_report(
        sections,
        RunFolder(folder).report,
        title=f"{title}: {metrics['evaluated_on']['set']}",
        summary=data_summary(predictions),
        settings=settings,
        training_figures=training_figures,
        headline=metrics,
        calibration=calibration.to_dict() if calibration else None,
        # Curves mean the folder is a training run's, whose train_state.json names its epoch.
        kept_epoch=kept_epoch_line(read_train_state(folder)) if training_figures else None,
    )


def _read_predictions_csv(path: Path) -> Predictions:
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: run `breastcls evaluate` (or train) to create it first."
        )
    with path.open(newline="", encoding="utf-8") as handle:
        table = csv_rows(handle)
    header, rows = (table[0], table[1:]) if table else (None, [])
    required = ["path", "patient_id", "magnification", "true", "predicted"]
    # Files written before the group column have the probabilities right after "predicted".
    first = 6 if header is not None and header[5:6] == ["group"] else 5
    if header is None or header[:5] != required or len(header) < first + 2:
        raise DataError(
            f"{path} is not a breastcls predictions file (columns {required}, group, p_<class>)."
        )
    class_names = tuple(name.removeprefix("p_") for name in header[first:] if name.startswith("p_"))
    n = len(class_names)
    has_raw = header[first + n : first + 2 * n] == [f"raw_p_{name}" for name in class_names]
    has_domain = tuple(header[-3:]) == DOMAIN_COLUMNS
    index = {name: i for i, name in enumerate(class_names)}
    try:
        return Predictions(
            class_names=class_names,
            y_true=np.array([index[row[3]] for row in rows], dtype=np.int64),
            probabilities=np.array(
                [[float(v) for v in row[first : first + n]] for row in rows], dtype=np.float64
            ).reshape(-1, n),
            raw_probabilities=(
                np.array(
                    [[float(v) for v in row[first + n : first + 2 * n]] for row in rows],
                    dtype=np.float64,
                ).reshape(-1, n)
                if has_raw
                else None
            ),
            paths=tuple(row[0] for row in rows),
            patient_ids=tuple(row[1] or None for row in rows),
            magnifications=tuple(int(row[2]) if row[2].isdigit() else None for row in rows),
            groups=tuple(row[5] or None for row in rows) if first == 6 else (),
            domain_score=(
                np.array([float(row[-3]) for row in rows], dtype=np.float64)
                if has_domain
                else None
            ),
            in_distribution=(
                np.array([row[-2] == "yes" for row in rows], dtype=bool) if has_domain else None
            ),
            domain_reason=tuple(row[-1] for row in rows) if has_domain else None,
        )
    except (KeyError, ValueError, IndexError) as error:
        raise DataError(f"{path} has a malformed row ({error}): re-run the evaluation.") from error


def build_report(folder: Path, *, host: PluginHost | None = None) -> Path:
    """(Re)build ``report.html`` of a run or evaluation folder from its ``predictions.csv``.

    Every registered metric runs again on the saved predictions (so ``metrics.json`` and the
    figures are rewritten, and newly installed metric plugins contribute); saved Grad-CAM
    overlays are kept. The set the predictions come from is read from the old ``metrics.json``.

    Raises:
        DataError: The folder has no readable ``predictions.csv``.
    """
    from breastcls.evaluation.metrics import compute_metrics, metrics_document

    folder = Path(folder)
    run = RunFolder(folder)
    saved = _read_predictions_csv(run.predictions)
    previous = run.read_metrics()
    evaluated_on = previous.get("evaluated_on", {})
    context = _report_context(run)
    role = evaluated_on.get("role")
    predictions = dataclasses.replace(
        saved,
        thresholds=dict(context.calibration.thresholds),
        temperature=context.calibration.temperature,
        role=DataRole(role) if role else None,
    )
    set_description = evaluated_on.get("set")
    sections = compute_metrics(predictions, folder, host=host, set_description=set_description)
    kept = _kept_model_sections(folder, previous)
    if kept:
        sections.extend(kept)
        atomic_write_json(
            run.metrics,
            metrics_document(sections, predictions, set_description=set_description),
        )
    return _write_report(
        sections,
        predictions,
        folder,
        title=context.title,
        settings=context.settings,
        calibration=context.calibration,
        training_figures=context.figures,
        set_description=set_description,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _ReportContext:
    calibration: Calibration
    title: str
    settings: dict[str, Any]
    figures: list[Path]


def _report_context(run: RunFolder) -> _ReportContext:
    """What a rebuilt report says besides the metrics: an evaluation folder's recorded settings
    and calibration, or a run folder's configuration, calibration and training curves."""
    if not run.evaluation.is_file():
        return _ReportContext(
            calibration=folder_calibration(run.path),
            title=f"breastcls run {run.path.name}",
            settings=_run_settings(run.path),
            figures=[p for p in run.curves if p.exists()],
        )
    settings = _read_json(run.evaluation)
    model_dir = Path(settings.get("model", "")).parent
    tta = str(settings.get("tta", "none"))
    return _ReportContext(
        calibration=Calibration.from_dict(settings.get("calibration") or {}, tta=tta),
        title=f"breastcls evaluation: {model_dir.name} (TTA {tta})",
        settings={"evaluation": settings, **_run_settings(model_dir)},
        figures=[],
    )


def _kept_model_sections(folder: Path, previous: Mapping[str, Any]) -> list[MetricSection]:
    """The sections of an earlier evaluation that needed the model (Grad-CAM, stain-shift and
    reference-stain robustness), kept as they were with their figures: a rebuild has only the
    predictions."""
    from breastcls.evaluation.domain import DOMAIN_FIGURE
    from breastcls.evaluation.gradcam import GRADCAM_FIGURES
    from breastcls.evaluation.robustness import REFERENCE_FIGURE, ROBUSTNESS_FIGURE

    titles = {
        "domain": ("Domain shift: images unlike the training images", (DOMAIN_FIGURE,)),
        "gradcam": ("Grad-CAM: where the model looked", GRADCAM_FIGURES),
        "robustness": ("Robustness to stain shifts", (ROBUSTNESS_FIGURE,)),
        "stain_reference": (
            "Robustness to a shift towards a reference stain",
            (REFERENCE_FIGURE,),
        ),
    }
    return [
        MetricSection(
            name=name,
            title=title,
            values=previous[name],
            figures=tuple(folder / f for f in figures if (folder / f).is_file()),
        )
        for name, (title, figures) in titles.items()
        if name in previous
    ]
