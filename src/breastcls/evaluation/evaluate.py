"""``breastcls.evaluate``, ``breastcls.predict`` and ``breastcls.build_report``, and the
evaluation that ends a training run.

A model's folder (a run folder, or wherever ``best.keras`` lives) may hold, beside the model:
``class_names.json`` (class order), ``config.json`` (the run configuration), ``split.csv``
(every image the run used, with its role) and the temperature and thresholds fitted on the
selection set (:mod:`breastcls.evaluation.calibration`). Evaluation and prediction apply the
calibration unchanged, and ``evaluate`` refuses data the model has seen.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.config import DataConfig
from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.images import IMAGE_EXTENSIONS, ImageInfo
from breastcls.data.overlap import Overlap, find_overlap
from breastcls.data.split import Split
from breastcls.environment import prepare_tensorflow
from breastcls.errors import ConfigError, DataError, ModelLoadError
from breastcls.evaluation.calibration import (
    Calibration,
    apply_calibration,
    fit_calibration,
    has_calibration,
    read_calibration,
    write_calibration,
)
from breastcls.evaluation.clinical import apply_temperature, positive_group
from breastcls.interfaces import DataRole, MetricSection, Predictions, Sample
from breastcls.io import atomic_path, atomic_write_json, ensure_writable_dir, read_json_file
from breastcls.model import model_file
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.runs.folder import RunFolder, read_split_csv

__all__ = [
    "EvaluationResult",
    "PredictResult",
    "RunEvaluation",
    "build_report",
    "calibration_for",
    "evaluate",
    "evaluate_pooled",
    "evaluate_run",
    "headline_figures",
    "predict",
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
    """

    out_dir: Path
    metrics: dict[str, Any]
    report: Path
    n_images: int
    role: DataRole | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PredictResult:
    """What :func:`breastcls.predict` returns.

    Attributes:
        path: The predictions CSV.
        n_images: Number of images predicted.
        class_names: Class names, in the order of the probability columns.
    """

    path: Path
    n_images: int
    class_names: tuple[str, ...]


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
    """The figures a run is summarised by: the set they come from, accuracy and AUC [95% CI]."""
    evaluated = metrics.get("evaluated_on", {})
    auc = metrics.get("bootstrap", {}).get("intervals", {}).get("auc", {})
    return {
        "role": evaluated.get("role"),
        "set": evaluated.get("set"),
        "accuracy": metrics.get("classification", {}).get("accuracy"),
        "auc": auc.get("estimate"),
        "auc_low": auc.get("low"),
        "auc_high": auc.get("high"),
    }


def evaluate_run(
    run_dir: Path,
    keras_model: Any,
    split: Split,
    class_names: Sequence[str],
    *,
    image_size: int,
    batch_size: int,
    image_info: Mapping[Path, ImageInfo],
    host: PluginHost | None = None,
) -> RunEvaluation:
    """Finish a training run: calibrate on the selection set, then score the test set once.

    Fits the temperature and chooses the thresholds on the selection set's predictions
    (``temperature.json``, ``thresholds.json``), writes the selection set's calibrated
    predictions and metrics into ``selection/`` (optimistic: that set chose the model), then
    predicts the test set once, applies the calibration unchanged and writes
    ``predictions.csv``, ``metrics.json``, the figures and ``report.html`` into the run folder.
    Without a test set the run folder's figures are the selection set's, labelled optimistic.
    No Grad-CAM here, to keep the end of training cheap; ``breastcls evaluate`` adds it.
    """
    from breastcls.evaluation.metrics import compute_metrics, predict_samples, write_predictions

    def predicted(samples: Sequence[Sample], role: DataRole) -> Predictions:
        return predict_samples(
            keras_model,
            samples,
            class_names,
            image_size=image_size,
            batch_size=batch_size,
            image_info=image_info,
            role=role,
        )

    selection = predicted(split.selection, DataRole.SELECTION)
    calibration = fit_calibration(selection)
    write_calibration(run_dir, calibration)
    run = RunFolder(run_dir)
    run.selection.path.mkdir(exist_ok=True)
    calibrated_selection = apply_calibration(selection, calibration)
    write_predictions(calibrated_selection, run.selection.predictions)
    compute_metrics(calibrated_selection, run.selection.path, host=host)
    reported = (
        apply_calibration(predicted(split.test, DataRole.TEST), calibration)
        if split.test
        else calibrated_selection
    )
    write_predictions(reported, run.predictions)
    sections = compute_metrics(reported, run_dir, host=host)
    _write_report(
        sections,
        reported,
        run_dir,
        title=f"breastcls run {run_dir.name}",
        settings=_run_settings(run_dir),
        training_figures=[p for p in run.curves if p.exists()],
        calibration=calibration,
    )
    return read_run_evaluation(run_dir)


def evaluate_pooled(
    out_dir: Path, fold_dirs: Sequence[Path], *, host: PluginHost | None = None
) -> dict[str, Any]:
    """Evaluate the folds' test predictions together and write ``out_dir`` (predictions,
    metrics, figures, report); return its ``metrics.json``.

    Every image is predicted once, by the fold whose model never trained or selected on its
    patient, with that fold's calibration. Each fold chose its own thresholds, so the pooled
    operating point is the plain top-class decision; the folds' reports give their own.

    Raises:
        DataError: A fold has no readable ``predictions.csv``.
    """
    from breastcls.evaluation.metrics import compute_metrics, write_predictions

    folds = [_read_predictions_csv(RunFolder(fold).predictions) for fold in fold_dirs]
    pooled = dataclasses.replace(
        folds[0],
        y_true=np.concatenate([fold.y_true for fold in folds]),
        probabilities=np.concatenate([fold.probabilities for fold in folds]),
        paths=tuple(path for fold in folds for path in fold.paths),
        patient_ids=tuple(patient for fold in folds for patient in fold.patient_ids),
        magnifications=tuple(m for fold in folds for m in fold.magnifications),
        thresholds={"default": 0.5},
        role=DataRole.TEST,
    )
    set_description = f"test sets of {len(folds)} folds, pooled out of fold"
    ensure_writable_dir(out_dir)
    write_predictions(pooled, RunFolder(out_dir).predictions)
    sections = compute_metrics(pooled, out_dir, host=host, set_description=set_description)
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


def _run_images(run_dir: Path) -> tuple[list[Sample], DataRole]:
    """The run's test images from ``split.csv``, or its selection images when it has none."""
    images = [sample for sample, _ in read_split_csv(run_dir)]
    for role in (DataRole.TEST, DataRole.SELECTION):
        chosen = [sample for sample in images if sample.split == role.value]
        if chosen:
            return chosen, role
    raise DataError(
        f"{RunFolder(run_dir).split} lists no test or selection images: pass --data to evaluate "
        "on."
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _EvaluationData:
    """The images ``evaluate`` scores, and what they are to the model."""

    samples: list[Sample]
    class_names: tuple[str, ...] | None
    name: str
    role: DataRole | None
    overlap: Overlap


def _evaluation_data(
    data: Path | None,
    model_dir: Path,
    image_size: int,
    host: PluginHost,
    *,
    allow_overlap: bool,
) -> _EvaluationData:
    """Return what to evaluate: the run's test set (``data`` is ``None``) or ``data``, checked
    against the images and patients that trained or selected the model."""
    from breastcls.data.loading import load_dataset

    if data is None:
        samples, role = _run_images(model_dir)
        return _EvaluationData(
            samples=samples, class_names=None, name=role.value, role=role, overlap=Overlap()
        )
    settings: dict[str, Any] = {}
    model_folder = RunFolder(model_dir)
    if model_folder.config.is_file():
        saved = model_folder.read_config_record().get("data", {})
        kept = ("task", "magnification", "group_by")
        settings = {key: saved[key] for key in kept if key in saved}
    dataset = load_dataset(
        DataConfig(path=Path(data), image_size=image_size, **settings), host=host
    )
    samples = [s for s in dataset.samples if s.split == "test"] or list(dataset.samples)
    checked = model_folder.split.is_file()
    overlap = Overlap()
    if checked:
        seen = [image for _, image in read_split_csv(model_dir)]
        overlap = find_overlap(seen, samples, _scan(samples), group_by=settings.get("group_by"))
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
    )


def _scan(samples: Sequence[Sample]) -> dict[Path, Any]:
    from breastcls.data.images import describe_unreadable, scan_samples

    info, bad = scan_samples(samples)
    if bad:
        raise DataError(f"{describe_unreadable(bad)} Fix or remove them, then run again.")
    return info


def _predict(
    keras_model: Any,
    samples: Sequence[Sample],
    class_names: Sequence[str],
    *,
    image_size: int,
    batch_size: int,
    tta: str,
    host: PluginHost,
    verbose: int,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    from breastcls.data.pipeline import make_dataset
    from breastcls.evaluation.inference import predict_probabilities

    component = host.tta.get(tta)
    info = _scan(samples)
    for sample in samples:
        if sample.label not in class_names:
            raise DataError(
                f"{sample.path} has class {sample.label!r}, which the model does not know "
                f"(its classes: {list(class_names)})."
            )
    dataset = make_dataset(
        samples, class_names, image_size=image_size, batch_size=batch_size, image_info=info
    )
    return predict_probabilities(
        keras_model,
        dataset.map(lambda images, _: images),
        tta=component,
        total=len(samples),
        verbose=verbose,
    )


def _image_size(keras_model: Any) -> int:
    shape = keras_model.input_shape
    if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] and shape[1] == shape[2]):
        raise ModelLoadError(
            f"Model {keras_model.name!r} takes inputs of shape {shape}: breastcls models take "
            "square (size, size, 3) images."
        )
    return int(shape[1])


def calibration_for(
    model_dir: Path,
    tta: str,
    *,
    keras_model: Any,
    class_names: Sequence[str],
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 0,
) -> Calibration:
    """Return the calibration that fits predictions made with ``tta``.

    A run folder keeps the calibration of its plain predictions; the first time another TTA is
    asked for, it is fitted on the run's selection set predicted with that TTA and kept beside
    the first (``temperature-<tta>.json``): a temperature fitted on plain predictions does not
    fit averaged ones.

    Raises:
        ConfigError: The folder has a calibration for plain predictions but no selection set to
            fit one for ``tta`` on (a bare model file).
    """
    if has_calibration(model_dir, tta) or not has_calibration(model_dir):
        return read_calibration(model_dir, tta)
    if not RunFolder(model_dir).split.is_file():
        raise ConfigError(
            f"The calibration beside {model_dir} was fitted on predictions without TTA, and "
            f"there is no split.csv to refit it for --tta {tta} on the selection set: use "
            "--tta none, or evaluate the run folder itself."
        )
    selection = [s for s, _ in read_split_csv(model_dir) if s.split == DataRole.SELECTION.value]
    probabilities = _predict(
        keras_model,
        selection,
        class_names,
        image_size=_image_size(keras_model),
        batch_size=batch_size,
        tta=tta,
        host=ensure_host(host),
        verbose=verbose,
    )
    calibration = fit_calibration(
        _labelled(selection, class_names, probabilities, role=DataRole.SELECTION), tta=tta
    )
    write_calibration(model_dir, calibration)
    return calibration


def _labelled(
    samples: Sequence[Sample],
    class_names: Sequence[str],
    probabilities: np.ndarray[Any, np.dtype[np.float64]],
    *,
    role: DataRole | None,
) -> Predictions:
    index = {name: i for i, name in enumerate(class_names)}
    return Predictions(
        class_names=tuple(class_names),
        y_true=np.array([index[s.label] for s in samples], dtype=np.int64),
        probabilities=probabilities,
        paths=tuple(str(s.path) for s in samples),
        patient_ids=tuple(s.patient_id for s in samples),
        magnifications=tuple(s.magnification for s in samples),
        role=role,
    )


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
) -> EvaluationResult:
    """Evaluate a model on labelled images and write an evaluation folder.

    The folder holds ``predictions.csv``, ``metrics.json`` (every registered metric), the
    metrics' PNG figures, Grad-CAM overlays, ``evaluation.json`` (what was evaluated, how) and
    ``report.html``. The temperature and thresholds fitted on the run's selection set (with the
    same TTA) are applied unchanged.

    Args:
        model: A run folder or a ``.keras`` file.
        data: Labelled images (folder or manifest); a ``test`` split is used when the data has
            one, else every image. When ``None``, the run's test set (``split.csv``), or its
            selection set, labelled optimistic, when it kept no test set.
        tta: Test-time augmentation id (``none``, ``flips``, ``d8`` or a plugin's).
        out_dir: The evaluation folder (default: ``<model folder>/evaluations/<data>-<tta>``).
        batch_size: Images per model call (TTA multiplies it by the number of copies).
        gradcam: Write Grad-CAM overlays.
        allow_overlap: Score ``data`` even when some of its images (by pixels) or patients
            trained or selected the model; the report then says so.
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows a progress bar.

    Raises:
        BreastclsError: Unknown TTA, unreadable model or images, classes that differ from the
            model's, images the model has seen (without ``allow_overlap``), unwritable output
            folder.
    """
    prepare_tensorflow()
    from breastcls.evaluation.metrics import compute_metrics, metrics_document, write_predictions
    from breastcls.model import load_model

    host = ensure_host(host)
    host.tta.info(tta)
    model_path = model_file(model)
    model_dir = model_path.parent
    keras_model = load_model(model_path)
    image_size = _image_size(keras_model)
    chosen = _evaluation_data(data, model_dir, image_size, host, allow_overlap=allow_overlap)
    class_names = _class_names(
        model_path, keras_model, chosen.class_names or _labels(chosen.samples)
    )
    if chosen.class_names is not None and list(chosen.class_names) != list(class_names):
        raise ModelLoadError(
            f"The model {model_path} was trained on classes {list(class_names)} but {data} has "
            f"{list(chosen.class_names)}: evaluate it on data with the same classes."
        )
    out_dir = Path(out_dir or RunFolder(model_dir).evaluation_folder(f"{chosen.name}-{tta}").path)
    folder = RunFolder(out_dir)
    ensure_writable_dir(out_dir)
    calibration = calibration_for(
        model_dir, tta, keras_model=keras_model, class_names=class_names, host=host
    )
    probabilities = _predict(
        keras_model,
        chosen.samples,
        class_names,
        image_size=image_size,
        batch_size=batch_size,
        tta=tta,
        host=host,
        verbose=verbose,
    )
    predictions = apply_calibration(
        _labelled(chosen.samples, class_names, probabilities, role=chosen.role), calibration
    )
    set_description = (
        f"overlapping data (optimistic): {chosen.overlap.describe()}" if chosen.overlap else None
    )
    write_predictions(predictions, folder.predictions)
    sections = compute_metrics(predictions, out_dir, host=host, set_description=set_description)
    if gradcam:
        from breastcls.evaluation.gradcam import gradcam_section

        sections.append(gradcam_section(keras_model, predictions, out_dir, image_size=image_size))
    metrics = metrics_document(sections, predictions, set_description=set_description)
    atomic_write_json(folder.metrics, metrics)
    settings = {
        "model": str(model_path),
        "data": str(data) if data is not None else f"{chosen.name} set of {model_dir}",
        "set": metrics["evaluated_on"]["set"],
        "tta": tta,
        "image_size": image_size,
        "class_names": list(class_names),
        "calibration": calibration.to_dict(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(folder.evaluation, settings)
    report = _write_report(
        sections,
        predictions,
        out_dir,
        title=f"breastcls evaluation: {model_dir.name} on {chosen.name} (TTA {tta})",
        settings={"evaluation": settings, **_run_settings(model_dir)},
        calibration=calibration,
        set_description=set_description,
    )
    return EvaluationResult(
        out_dir=out_dir,
        metrics=metrics,
        report=report,
        n_images=len(chosen.samples),
        role=chosen.role,
    )


def _labels(samples: Sequence[Sample]) -> tuple[str, ...]:
    return tuple(sorted({s.label for s in samples}))


def _class_names(model_path: Path, keras_model: Any, fallback: Sequence[str]) -> tuple[str, ...]:
    from breastcls.model import model_class_names

    names = model_class_names(model_path)
    n_outputs = int(keras_model.output_shape[-1])
    chosen = tuple(names) if names is not None else tuple(fallback)
    if len(chosen) != n_outputs:
        raise ModelLoadError(
            f"The model {model_path} has {n_outputs} outputs but {len(chosen)} class names "
            f"({list(chosen)}): put the right class_names.json beside the model."
        )
    return chosen


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
    )


def _read_predictions_csv(path: Path) -> Predictions:
    if not path.is_file():
        raise DataError(
            f"{path} does not exist: run `breastcls evaluate` (or train) to create it first."
        )
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        rows = list(reader)
    required = ["path", "patient_id", "magnification", "true", "predicted"]
    if header is None or header[:5] != required or len(header) < 7:
        raise DataError(
            f"{path} is not a breastcls predictions file (columns {required} + p_<class>)."
        )
    class_names = tuple(name.removeprefix("p_") for name in header[5:])
    index = {name: i for i, name in enumerate(class_names)}
    try:
        return Predictions(
            class_names=class_names,
            y_true=np.array([index[row[3]] for row in rows], dtype=np.int64),
            probabilities=np.array([[float(v) for v in row[5:]] for row in rows], dtype=np.float64),
            paths=tuple(row[0] for row in rows),
            patient_ids=tuple(row[1] or None for row in rows),
            magnifications=tuple(int(row[2]) if row[2].isdigit() else None for row in rows),
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
    evaluation_file = run.evaluation
    if evaluation_file.is_file():
        settings = _read_json(evaluation_file)
        recorded = settings.get("calibration") or {}
        calibration = Calibration(
            temperature=recorded.get("temperature"),
            thresholds=recorded.get("thresholds") or {},
            positive=recorded.get("positive_class"),
            rule=recorded.get("rule"),
            tta=str(settings.get("tta", "none")),
            n_images=int(recorded.get("n_images", 0)),
            notes=tuple(recorded.get("notes", ())),
        )
        model_dir = Path(settings.get("model", "")).parent
        title = f"breastcls evaluation: {model_dir.name} (TTA {settings.get('tta', 'none')})"
        all_settings = {"evaluation": settings, **_run_settings(model_dir)}
        figures: list[Path] = []
    else:
        calibration = read_calibration(folder)
        title = f"breastcls run {folder.name}"
        all_settings = _run_settings(folder)
        figures = [p for p in run.curves if p.exists()]
    role = evaluated_on.get("role")
    predictions = dataclasses.replace(
        saved,
        thresholds=dict(calibration.thresholds),
        temperature=calibration.temperature,
        role=DataRole(role) if role else None,
    )
    set_description = evaluated_on.get("set")
    sections = compute_metrics(predictions, folder, host=host, set_description=set_description)
    if "gradcam" in previous:
        sections.append(
            MetricSection(
                name="gradcam",
                title="Grad-CAM: where the model looked",
                values=previous["gradcam"],
                figures=tuple(
                    folder / name
                    for name in ("gradcam_correct.png", "gradcam_errors.png")
                    if (folder / name).is_file()
                ),
            )
        )
        atomic_write_json(
            run.metrics,
            metrics_document(sections, predictions, set_description=set_description),
        )
    return _write_report(
        sections,
        predictions,
        folder,
        title=title,
        settings=all_settings,
        calibration=calibration,
        training_figures=figures,
        set_description=set_description,
    )


def _expand_inputs(inputs: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for directory, subdirectories, names in os.walk(path):
                subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
                files.extend(
                    Path(directory, name)
                    for name in sorted(names)
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
                )
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"Input {str(path)!r} does not exist: pass image files or folders.")
    if not files:
        raise DataError(
            f"No image ({', '.join(sorted(IMAGE_EXTENSIONS))}) found in "
            f"{', '.join(str(p) for p in inputs)}."
        )
    return files


def predict(
    model: Path,
    inputs: Sequence[Path],
    *,
    out: Path,
    tta: str = "none",
    batch_size: int = 32,
    host: PluginHost | None = None,
    verbose: int = 1,
) -> PredictResult:
    """Predict the class of unlabelled images and write one CSV row per image.

    Columns: ``path``, ``patient_id`` and ``magnification`` (parsed from BreakHis file names,
    empty otherwise), ``predicted`` (the top class), ``p_<class>`` per class and, for each
    operating threshold chosen on the run's selection set, ``at_<threshold name>``: the
    positive side (``malignant``; for subtype models the malignant subtypes, scored by the sum
    of their probabilities) when its score reaches that threshold, else the negative side.
    The temperature saved beside the model is applied. Images
    stream through the model in batches; the CSV appears whole at the end (atomically).

    Args:
        model: A run folder or a ``.keras`` file.
        inputs: Image files and/or folders (searched recursively).
        out: The CSV file to write.
        tta: Test-time augmentation id.
        batch_size: Images per model call.
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows a progress bar.

    Raises:
        BreastclsError: Missing inputs, unreadable images, unknown TTA, unreadable model.
    """
    prepare_tensorflow()
    from breastcls.data.pipeline import make_dataset
    from breastcls.evaluation.inference import iter_probabilities
    from breastcls.model import load_model

    host = ensure_host(host)
    component = host.tta.get(tta)
    files = _expand_inputs(inputs)
    model_path = model_file(model)
    keras_model = load_model(model_path)
    image_size = _image_size(keras_model)
    n_outputs = int(keras_model.output_shape[-1])
    class_names = _class_names(
        model_path, keras_model, tuple(f"class_{i}" for i in range(n_outputs))
    )
    calibration = calibration_for(
        model_path.parent, tta, keras_model=keras_model, class_names=class_names, host=host
    )
    thresholds = calibration.thresholds
    positive = positive_group(class_names)
    samples = [Sample(path=path, label=class_names[0]) for path in files]
    info = _scan(samples)
    batches = make_dataset(
        samples, class_names, image_size=image_size, batch_size=batch_size, image_info=info
    ).map(lambda images, _: images)
    ensure_writable_dir(Path(out).parent)
    with (
        atomic_path(Path(out)) as temporary,
        temporary.open("w", newline="", encoding="utf-8") as handle,
    ):
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            [
                "path",
                "patient_id",
                "magnification",
                "predicted",
                *(f"p_{name}" for name in class_names),
                *(f"at_{name}" for name in thresholds),
            ]
        )
        position = 0
        for probabilities in iter_probabilities(
            keras_model, batches, tta=component, total=len(files), verbose=verbose
        ):
            if calibration.temperature is not None:
                probabilities = apply_temperature(probabilities, calibration.temperature)
            scores = positive.score(probabilities)
            for row, score in zip(probabilities, scores, strict=True):
                path = files[position]
                parsed = parse_breakhis_name(path.name)
                writer.writerow(
                    [
                        str(path),
                        parsed.patient_id if parsed else "",
                        parsed.magnification if parsed else "",
                        class_names[int(np.argmax(row))],
                        *(repr(float(p)) for p in row),
                        *(
                            positive.name if score >= threshold else positive.negative
                            for threshold in thresholds.values()
                        ),
                    ]
                )
                position += 1
    return PredictResult(path=Path(out), n_images=len(files), class_names=class_names)
