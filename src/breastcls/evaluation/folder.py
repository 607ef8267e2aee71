"""What an evaluation folder (or the evaluation at the end of a run) writes: predictions,
``metrics.json`` with the sections that need the model again (Grad-CAM, stain shift, domain
shift), ``evaluation.json`` and the report (:mod:`breastcls.evaluation.reporting`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from breastcls.evaluation.evaluated_set import EvaluationSettings, looked_set
from breastcls.evaluation.reporting import run_settings, write_report
from breastcls.inference.calibration import Calibration
from breastcls.inference.model import InferenceModel
from breastcls.interfaces import MetricSection, Predictions
from breastcls.io import atomic_write_json
from breastcls.plugins.host import PluginHost
from breastcls.records import MetricsRecord
from breastcls.runs.folder import RunFolder, write_skipped_csv

__all__ = [
    "write_evaluation",
    "write_run_figures",
]


def write_evaluation(
    out_dir: Path,
    loaded: InferenceModel,
    predictions: Predictions,
    calibration: Calibration,
    how: EvaluationSettings,
    host: PluginHost,
) -> tuple[MetricsRecord, Path]:
    """Write an evaluation folder: predictions, metrics, figures, Grad-CAM, settings, report."""
    from breastcls.evaluation.metrics import compute_metrics, metrics_document, write_predictions

    folder, chosen = RunFolder(out_dir), how.chosen
    predictions = chosen.grouped(predictions)
    set_description = looked_set(loaded.folder.path, how, out_dir)
    write_predictions(predictions, folder.predictions)
    if chosen.skipped:
        write_skipped_csv(folder.skipped, chosen.skipped)
    sections = compute_metrics(predictions, out_dir, host=host, set_description=set_description)
    sections += _model_sections(
        out_dir, loaded, predictions, calibration, how, host, set_description=set_description
    )
    sections += _domain_sections(predictions, loaded, out_dir, set_description=set_description)
    metrics = metrics_document(sections, predictions, set_description=set_description)
    atomic_write_json(folder.metrics, metrics.to_json())
    model_dir = loaded.folder.path
    settings = _settings_record(loaded, calibration, how, metrics, folder)
    atomic_write_json(folder.evaluation, settings)
    report = write_report(
        sections,
        predictions,
        out_dir,
        title=f"breastcls evaluation: {model_dir.name} (TTA {how.tta})",
        settings={"evaluation": settings, **run_settings(model_dir)},
        calibration=calibration,
        set_description=set_description,
    )
    return metrics, report


def write_run_figures(
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
    domain_sections = _domain_sections(reported, model, run.path, set_description=set_description)
    if domain_sections:
        sections += domain_sections
        document = metrics_document(sections, reported, set_description=set_description)
        atomic_write_json(run.metrics, document.to_json())
    write_report(
        sections,
        reported,
        run.path,
        title=f"breastcls run {run.path.name}",
        settings=run_settings(run.path),
        training_figures=[p for p in run.curves if p.exists()],
        calibration=calibration,
        set_description=set_description,
    )


def _model_sections(
    out_dir: Path,
    loaded: InferenceModel,
    predictions: Predictions,
    calibration: Calibration,
    how: EvaluationSettings,
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


def _settings_record(
    loaded: InferenceModel,
    calibration: Calibration,
    how: EvaluationSettings,
    metrics: MetricsRecord,
    folder: RunFolder,
) -> dict[str, Any]:
    """``evaluation.json``: what was evaluated, on which set, and how."""
    chosen = how.chosen
    model_dir = loaded.folder.path
    return {
        "model": str(loaded.source),
        "data": str(how.data) if how.data is not None else f"{chosen.name} set of {model_dir}",
        "set": metrics.evaluated_on.set if metrics.evaluated_on else None,
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
