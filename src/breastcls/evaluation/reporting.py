"""What goes into a report and its headline: the figures a run is summarised by, the settings
shown beside the metrics, and ``breastcls report``'s rebuild of a folder's metrics and report
from its ``predictions.csv``. :mod:`breastcls.evaluation.report` renders the page.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from breastcls.errors import ModelLoadError
from breastcls.evaluation.metrics import read_predictions
from breastcls.inference.calibration import Calibration
from breastcls.inference.record import folder_calibration
from breastcls.interfaces import MetricSection, Predictions
from breastcls.io import atomic_write_json, check_writable_dir, read_json_file
from breastcls.plugins.host import PluginHost
from breastcls.records import Headline, MetricsRecord
from breastcls.runs.checkpoint import kept_epoch_line, read_train_state
from breastcls.runs.folder import RunFolder

__all__ = [
    "build_report",
    "headline_figures",
    "run_settings",
    "write_report",
]


def headline_figures(metrics: MetricsRecord) -> Headline:
    """The figures a run is summarised by: the set they come from (and its ``LEAKY: ...``
    label, if any), accuracy and AUC [95% CI]."""
    evaluated = metrics.evaluated_on
    auc = metrics.section("bootstrap").get("intervals", {}).get("auc", {})
    return {
        "role": evaluated.role.value if evaluated and evaluated.role else None,
        "set": evaluated.set if evaluated else None,
        "leak": evaluated.leak if evaluated else None,
        "accuracy": metrics.section("classification").get("accuracy"),
        "auc": auc.get("estimate"),
        "auc_low": auc.get("low"),
        "auc_high": auc.get("high"),
    }


def run_settings(model_dir: Path) -> dict[str, Any]:
    """The settings a report shows of the run that trained the model in ``model_dir``: its
    ``config.json`` as written (none for a bare model file)."""
    run = RunFolder(model_dir)
    return {"training run": run.read_config_record().to_json()} if run.config.is_file() else {}


def write_report(
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
    """Write ``folder``'s ``report.html`` from the metric sections of ``predictions``, titled
    with the set they come from; ``settings`` are shown beside them, a training run's curves
    (``training_figures``) with the epoch its checkpoint kept."""
    from breastcls.evaluation.metrics import metrics_document
    from breastcls.evaluation.report import data_summary, render_report

    metrics = metrics_document(sections, predictions, set_description=set_description)
    return render_report(
        sections,
        RunFolder(folder).report,
        title=f"{title}: {metrics.evaluated_on.set if metrics.evaluated_on else 'unknown set'}",
        summary=data_summary(predictions),
        settings=settings,
        training_figures=training_figures,
        headline=metrics,
        calibration=calibration.to_dict() if calibration else None,
        # Curves mean the folder is a training run's, whose train_state.json names its epoch.
        kept_epoch=kept_epoch_line(read_train_state(folder)) if training_figures else None,
    )


def build_report(folder: Path, *, host: PluginHost | None = None) -> Path:
    """(Re)build ``report.html`` of a run or evaluation folder from its ``predictions.csv``.

    Every registered metric runs again on the saved predictions (so ``metrics.json`` and the
    figures are rewritten, and newly installed metric plugins contribute); saved Grad-CAM
    overlays are kept. The set the predictions come from is read from the old ``metrics.json``.

    Raises:
        DataError: The folder has no readable ``predictions.csv``.
        OutputError: The folder cannot be written (a read-only run), checked before any
            metric runs.
    """
    from breastcls.evaluation.metrics import compute_metrics, metrics_document

    folder = Path(folder)
    run = RunFolder(folder)
    saved = read_predictions(run.predictions)
    # Before any metric: on a read-only run the first figure's write failed inside a metric
    # plugin, and the error blamed the plugin.
    check_writable_dir(
        folder,
        hint="`breastcls report` rewrites report.html, metrics.json and the figures inside the "
        "folder itself: copy the folder somewhere writable, or fix its permissions.",
    )
    previous = run.read_metrics()
    evaluated_on = previous.evaluated_on
    context = _report_context(run)
    predictions = dataclasses.replace(
        saved,
        thresholds=dict(context.calibration.thresholds),
        temperature=context.calibration.temperature,
        role=evaluated_on.role if evaluated_on else None,
    )
    set_description = evaluated_on.set if evaluated_on else None
    sections = compute_metrics(predictions, folder, host=host, set_description=set_description)
    kept = _kept_model_sections(folder, previous)
    if kept:
        sections.extend(kept)
        atomic_write_json(
            run.metrics,
            metrics_document(sections, predictions, set_description=set_description).to_json(),
        )
    return write_report(
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
            settings=run_settings(run.path),
            figures=[p for p in run.curves if p.exists()],
        )
    settings = _read_json(run.evaluation)
    model_dir = Path(settings.get("model", "")).parent
    tta = str(settings.get("tta", "none"))
    return _ReportContext(
        calibration=Calibration.from_dict(settings.get("calibration") or {}, tta=tta),
        title=f"breastcls evaluation: {model_dir.name} (TTA {tta})",
        settings={"evaluation": settings, **run_settings(model_dir)},
        figures=[],
    )


def _read_json(path: Path) -> Any:
    try:
        return read_json_file(path)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{path} is not readable JSON ({error}): fix or delete it.") from error


def _kept_model_sections(folder: Path, previous: MetricsRecord) -> list[MetricSection]:
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
            values=previous.sections[name],
            figures=tuple(folder / f for f in figures if (folder / f).is_file()),
        )
        for name, (title, figures) in titles.items()
        if name in previous.sections
    ]
