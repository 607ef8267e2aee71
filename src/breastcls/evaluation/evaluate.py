"""``breastcls.evaluate``, ``breastcls.predict`` and ``breastcls.build_report``.

A model's folder (a run folder, or wherever ``best.keras`` lives) may hold, beside the model:
``class_names.json`` (class order), ``config.json`` (the run configuration),
``temperature.json`` (temperature scaling fitted on validation data) and ``thresholds.json``
(operating thresholds chosen on validation data). Evaluation and prediction apply the last two
unchanged.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.config import DataConfig
from breastcls.data.breakhis import parse_breakhis_name
from breastcls.data.images import IMAGE_EXTENSIONS
from breastcls.errors import ConfigError, DataError, ModelLoadError
from breastcls.evaluation.clinical import (
    apply_temperature,
    binary_view,
    choose_thresholds,
    fit_temperature,
    positive_class_index,
)
from breastcls.interfaces import MetricSection, Predictions, Sample
from breastcls.io import atomic_path, atomic_write_json, ensure_writable_dir
from breastcls.model import model_file
from breastcls.plugins.host import PluginHost, ensure_host

__all__ = [
    "EvaluationResult",
    "PredictResult",
    "build_report",
    "calibrate_validation",
    "evaluate",
    "predict",
    "write_validation_report",
]

TEMPERATURE_FILE = "temperature.json"
THRESHOLDS_FILE = "thresholds.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class EvaluationResult:
    """What :func:`breastcls.evaluate` returns.

    Attributes:
        out_dir: The evaluation folder.
        metrics: The ``metrics.json`` content.
        report: The HTML report.
        n_images: Number of images evaluated.
    """

    out_dir: Path
    metrics: dict[str, Any]
    report: Path
    n_images: int


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
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path} is not readable JSON ({error}): fix or delete it.") from error


def _calibration_of(folder: Path) -> tuple[float | None, dict[str, float]]:
    """Return the temperature and thresholds saved in ``folder`` (``None``/empty when absent)."""
    temperature = None
    thresholds: dict[str, float] = {}
    try:
        if (folder / TEMPERATURE_FILE).is_file():
            temperature = float(_read_json(folder / TEMPERATURE_FILE)["temperature"])
            if not temperature > 0:
                raise ValueError(f"temperature {temperature} is not positive")
        if (folder / THRESHOLDS_FILE).is_file():
            raw = _read_json(folder / THRESHOLDS_FILE)["thresholds"]
            thresholds = {str(k): float(v) for k, v in raw.items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ModelLoadError(
            f"The calibration files in {folder} ({TEMPERATURE_FILE}, {THRESHOLDS_FILE}) are "
            f"malformed ({type(error).__name__}: {error}): delete them, or retrain."
        ) from error
    return temperature, thresholds


def calibrate_validation(
    predictions: Predictions,
    folder: Path,
    *,
    target_specificity: float = 0.95,
    target_sensitivity: float = 0.95,
) -> Predictions:
    """Fit temperature scaling and choose operating thresholds on validation predictions.

    Writes ``temperature.json`` and ``thresholds.json`` into ``folder`` (the model's folder),
    where :func:`evaluate` and :func:`predict` find them, and returns the predictions with the
    temperature applied and the thresholds attached. Thresholds are chosen on the
    temperature-scaled probabilities, which is what evaluation applies them to.
    """
    raw = predictions.probabilities
    temperature = fit_temperature(raw, predictions.y_true)
    calibrated = Predictions(
        class_names=predictions.class_names,
        y_true=predictions.y_true,
        probabilities=apply_temperature(raw, temperature),
        paths=predictions.paths,
        patient_ids=predictions.patient_ids,
        magnifications=predictions.magnifications,
        temperature=temperature,
    )
    view = binary_view(calibrated)
    thresholds = choose_thresholds(
        view.y_true,
        view.score,
        target_specificity=target_specificity,
        target_sensitivity=target_sensitivity,
    )
    atomic_write_json(
        folder / TEMPERATURE_FILE,
        {
            "temperature": temperature,
            "fitted_on": "validation",
            "n_images": len(predictions.y_true),
            "method": "temperature scaling (Guo et al., 2017): softmax(log p / T), T minimises NLL",
        },
    )
    atomic_write_json(
        folder / THRESHOLDS_FILE,
        {
            "positive_class": view.positive,
            "chosen_on": "validation",
            "rule": f"an image is {view.positive} when its probability >= threshold",
            "thresholds": thresholds,
        },
    )
    return Predictions(
        class_names=calibrated.class_names,
        y_true=calibrated.y_true,
        probabilities=calibrated.probabilities,
        paths=calibrated.paths,
        patient_ids=calibrated.patient_ids,
        magnifications=calibrated.magnifications,
        thresholds=thresholds,
        temperature=temperature,
    )


def _read_split_csv(run_dir: Path) -> list[Sample]:
    path = run_dir / "split.csv"
    if not path.is_file():
        raise ConfigError(
            f"{run_dir} has no split.csv, so it has no validation split to evaluate on: pass "
            "--data with the images to evaluate."
        )
    samples = []
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"path", "label", "split"} <= set(rows[0]):
        raise DataError(f"{path} lacks the columns path, label and split: it is not a split.csv.")
    for row in rows:
        if row.get("split") == "validation":
            magnification = row.get("magnification") or ""
            samples.append(
                Sample(
                    path=Path(row["path"]),
                    label=row["label"],
                    patient_id=row.get("patient_id") or None,
                    magnification=int(magnification) if magnification.isdigit() else None,
                    split="validation",
                )
            )
    if not samples:
        raise DataError(f"{path} lists no validation images: pass --data to evaluate on.")
    return samples


def _evaluation_samples(
    data: Path | None, model_dir: Path, image_size: int, host: PluginHost
) -> tuple[list[Sample], tuple[str, ...] | None, str]:
    """Return the samples, the data's class names (``None``: take the model's) and a name."""
    from breastcls.data.loading import load_dataset

    if data is None:
        return _read_split_csv(model_dir), None, "validation"
    settings: dict[str, Any] = {}
    if (model_dir / "config.json").is_file():
        saved = _read_json(model_dir / "config.json").get("data", {})
        settings = {key: saved[key] for key in ("task", "magnification") if key in saved}
    dataset = load_dataset(
        DataConfig(path=Path(data), image_size=image_size, **settings), host=host
    )
    test = [s for s in dataset.samples if s.split == "test"]
    return test or list(dataset.samples), dataset.class_names, Path(data).stem or "data"


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


def evaluate(
    model: Path,
    *,
    data: Path | None = None,
    tta: str = "none",
    out_dir: Path | None = None,
    batch_size: int = 32,
    gradcam: bool = True,
    host: PluginHost | None = None,
    verbose: int = 1,
) -> EvaluationResult:
    """Evaluate a model on labelled images and write an evaluation folder.

    The folder holds ``predictions.csv``, ``metrics.json`` (every registered metric), the
    metrics' PNG figures, Grad-CAM overlays, ``evaluation.json`` (what was evaluated, how) and
    ``report.html``. The temperature and thresholds saved beside the model (fitted on
    validation data at training time) are applied unchanged.

    Args:
        model: A run folder or a ``.keras`` file.
        data: Labelled images (folder or manifest); a ``test`` split is used when the data has
            one, else every image. When ``None``, the run's validation split (``split.csv``).
        tta: Test-time augmentation id (``none``, ``flips``, ``d8`` or a plugin's).
        out_dir: The evaluation folder (default: ``<model folder>/evaluations/<data>-<tta>``).
        batch_size: Images per model call (TTA multiplies it by the number of copies).
        gradcam: Write Grad-CAM overlays.
        host: Plugin host (the default host when ``None``).
        verbose: 1 shows a progress bar.

    Raises:
        BreastclsError: Unknown TTA, unreadable model or images, classes that differ from the
            model's, unwritable output folder.
    """
    from breastcls.evaluation.metrics import compute_metrics, metrics_document, write_predictions
    from breastcls.model import load_model

    host = ensure_host(host)
    host.tta.info(tta)
    model_path = model_file(model)
    model_dir = model_path.parent
    if out_dir is None:
        stem = Path(data).stem if data is not None else "validation"
        out_dir = model_dir / "evaluations" / f"{stem}-{tta}"
    out_dir = Path(out_dir)
    ensure_writable_dir(out_dir)
    keras_model = load_model(model_path)
    image_size = _image_size(keras_model)
    samples, data_classes, data_name = _evaluation_samples(data, model_dir, image_size, host)
    class_names = _class_names(model_path, keras_model, data_classes or _labels(samples))
    if data_classes is not None and list(data_classes) != list(class_names):
        raise ModelLoadError(
            f"The model {model_path} was trained on classes {list(class_names)} but {data} has "
            f"{list(data_classes)}: evaluate it on data with the same classes."
        )
    temperature, thresholds = _calibration_of(model_dir)
    probabilities = _predict(
        keras_model,
        samples,
        class_names,
        image_size=image_size,
        batch_size=batch_size,
        tta=tta,
        host=host,
        verbose=verbose,
    )
    if temperature is not None:
        probabilities = apply_temperature(probabilities, temperature)
    index = {name: i for i, name in enumerate(class_names)}
    predictions = Predictions(
        class_names=tuple(class_names),
        y_true=np.array([index[s.label] for s in samples], dtype=np.int64),
        probabilities=probabilities,
        paths=tuple(str(s.path) for s in samples),
        patient_ids=tuple(s.patient_id for s in samples),
        magnifications=tuple(s.magnification for s in samples),
        thresholds=thresholds,
        temperature=temperature,
    )
    write_predictions(predictions, out_dir / "predictions.csv")
    sections = compute_metrics(predictions, out_dir, host=host)
    if gradcam:
        from breastcls.evaluation.gradcam import gradcam_section

        sections.append(gradcam_section(keras_model, predictions, out_dir, image_size=image_size))
    metrics = metrics_document(sections)
    atomic_write_json(out_dir / "metrics.json", metrics)
    settings = {
        "model": str(model_path),
        "data": str(data) if data is not None else f"validation split of {model_dir}",
        "tta": tta,
        "image_size": image_size,
        "class_names": list(class_names),
        "temperature": temperature,
        "thresholds": thresholds or None,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(out_dir / "evaluation.json", settings)
    report = _write_report(
        sections,
        predictions,
        out_dir,
        title=f"breastcls evaluation: {model_dir.name} on {data_name} (TTA {tta})",
        settings={"evaluation": settings, **_run_settings(model_dir)},
    )
    return EvaluationResult(out_dir=out_dir, metrics=metrics, report=report, n_images=len(samples))


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
    path = model_dir / "config.json"
    return {"training run": _read_json(path)} if path.is_file() else {}


def _write_report(
    sections: Sequence[MetricSection],
    predictions: Predictions,
    folder: Path,
    *,
    title: str,
    settings: dict[str, Any],
    training_figures: Sequence[Path] = (),
) -> Path:
    from breastcls.evaluation.report import data_summary, render_report

    return render_report(
        sections,
        folder / "report.html",
        title=title,
        summary=data_summary(predictions),
        settings=settings,
        training_figures=training_figures,
    )


def write_validation_report(
    run_dir: Path, predictions: Predictions, *, host: PluginHost | None = None
) -> list[MetricSection]:
    """Finish a training run's validation outputs (called by :func:`breastcls.train`).

    Fits temperature scaling and chooses thresholds on the validation predictions
    (:func:`calibrate_validation`), then writes ``predictions.csv``, ``metrics.json``, the
    metrics' figures and ``report.html`` into the run folder. No Grad-CAM here, to keep the end
    of training cheap; ``breastcls evaluate`` adds it.
    """
    from breastcls.evaluation.metrics import compute_metrics, write_predictions

    calibrated = calibrate_validation(predictions, run_dir)
    write_predictions(calibrated, run_dir / "predictions.csv")
    sections = compute_metrics(calibrated, run_dir, host=host)
    _write_report(
        sections,
        calibrated,
        run_dir,
        title=f"breastcls run {run_dir.name}: validation",
        settings=_run_settings(run_dir),
        training_figures=[
            p for p in (run_dir / "loss.png", run_dir / "accuracy.png") if p.exists()
        ],
    )
    return sections


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
    overlays are kept.

    Raises:
        DataError: The folder has no readable ``predictions.csv``.
    """
    from breastcls.evaluation.metrics import compute_metrics, metrics_document

    folder = Path(folder)
    saved = _read_predictions_csv(folder / "predictions.csv")
    evaluation_file = folder / "evaluation.json"
    if evaluation_file.is_file():
        settings = _read_json(evaluation_file)
        temperature = settings.get("temperature")
        thresholds = settings.get("thresholds") or {}
        model_dir = Path(settings.get("model", "")).parent
        title = f"breastcls evaluation: {model_dir.name} (TTA {settings.get('tta', 'none')})"
        all_settings = {"evaluation": settings, **_run_settings(model_dir)}
        figures: list[Path] = []
    else:
        temperature, thresholds = _calibration_of(folder)
        title = f"breastcls run {folder.name}: validation"
        all_settings = _run_settings(folder)
        figures = [p for p in (folder / "loss.png", folder / "accuracy.png") if p.exists()]
    predictions = Predictions(
        class_names=saved.class_names,
        y_true=saved.y_true,
        probabilities=saved.probabilities,
        paths=saved.paths,
        patient_ids=saved.patient_ids,
        magnifications=saved.magnifications,
        thresholds={str(k): float(v) for k, v in thresholds.items()},
        temperature=None if temperature is None else float(temperature),
    )
    previous = _read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
    sections = compute_metrics(predictions, folder, host=host)
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
        atomic_write_json(folder / "metrics.json", metrics_document(sections))
    return _write_report(
        sections, predictions, folder, title=title, settings=all_settings, training_figures=figures
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
    operating threshold chosen on the run's validation data, ``at_<threshold name>``: the
    positive class when its probability reaches that threshold, else ``not <positive>`` (the
    other class when there are two). The temperature saved beside the model is applied. Images
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
    temperature, thresholds = _calibration_of(model_path.parent)
    positive = positive_class_index(class_names)
    negative = (
        class_names[1 - positive] if len(class_names) == 2 else f"not {class_names[positive]}"
    )
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
            if temperature is not None:
                probabilities = apply_temperature(probabilities, temperature)
            for row in probabilities:
                path = files[position]
                parsed = parse_breakhis_name(path.name)
                writer.writerow(
                    [
                        str(path),
                        parsed.patient_id if parsed else "",
                        parsed.magnification if parsed else "",
                        class_names[int(np.argmax(row))],
                        *(f"{p:.6f}" for p in row),
                        *(
                            class_names[positive] if row[positive] >= threshold else negative
                            for threshold in thresholds.values()
                        ),
                    ]
                )
                position += 1
    return PredictResult(path=Path(out), n_images=len(files), class_names=class_names)
