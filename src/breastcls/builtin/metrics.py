"""Built-in metrics, registered through one entry point like any third party's: the plain ones
(:mod:`~breastcls.evaluation.classification`) and the clinical ones, image level
(:mod:`~breastcls.evaluation.image_metrics`), patient level
(:mod:`~breastcls.evaluation.patient_metrics`) and per class
(:mod:`~breastcls.evaluation.subtype_metrics`)."""

from __future__ import annotations

from breastcls.evaluation.classification import classification_metric, confusion_matrix_metric
from breastcls.evaluation.image_metrics import (
    BootstrapMetric,
    CalibrationMetric,
    ThresholdsMetric,
    roc_metric,
)
from breastcls.evaluation.patient_metrics import magnification_metric, patient_metric
from breastcls.evaluation.subtype_metrics import SubtypeMetric
from breastcls.interfaces import Metric
from breastcls.plugins import hookimpl
from breastcls.registry import PluginRegistry


@hookimpl
def breastcls_register_metrics(registry: PluginRegistry[Metric]) -> None:
    """Register ``classification``, ``confusion_matrix``, ``roc``, ``bootstrap``,
    ``thresholds``, ``calibration``, ``patient``, ``magnification`` and ``subtype``."""
    registry.add(
        "classification",
        classification_metric,
        summary="accuracy; precision, recall, F1 and support per class (the seed's report)",
    )
    registry.add(
        "confusion_matrix",
        confusion_matrix_metric,
        summary="confusion matrix, raw and normalised, with plots",
    )
    registry.add("roc", roc_metric, summary="ROC and precision-recall curves, AUC and AP")
    registry.add(
        "bootstrap",
        BootstrapMetric(),
        summary="class-stratified patient bootstrap 95% CIs: accuracy, sensitivity, "
        "specificity, F1, AUC",
    )
    registry.add(
        "thresholds",
        ThresholdsMetric(),
        summary="operating points: 0.5, Youden's J, sensitivity/specificity at 95% targets",
    )
    registry.add(
        "calibration", CalibrationMetric(), summary="expected calibration error, reliability plot"
    )
    registry.add(
        "patient",
        patient_metric,
        summary="patient score = mean image probability; patient recognition rate; 95% CIs",
    )
    registry.add(
        "magnification",
        magnification_metric,
        summary="results for each magnification, with 95% CIs",
    )
    registry.add(
        "subtype",
        SubtypeMetric(),
        summary="more than two classes: per-class and macro one-vs-rest AUC, balanced "
        "accuracy, 95% CIs",
    )
