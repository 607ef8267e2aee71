"""The plain classification metrics: the seed's classification report and the confusion
matrices."""

from __future__ import annotations

from pathlib import Path

from breastcls.interfaces import MetricSection, Predictions

__all__ = ["classification_metric", "confusion_matrix_metric"]


def classification_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """Accuracy and per-class precision, recall, F1 and support, with macro/weighted averages."""
    from sklearn.metrics import accuracy_score, classification_report

    labels = list(range(len(predictions.class_names)))
    kwargs = {
        "y_true": predictions.y_true,
        "y_pred": predictions.y_pred,
        "labels": labels,
        "target_names": list(predictions.class_names),
        "zero_division": 0,
    }
    report = classification_report(output_dict=True, **kwargs)
    values = {
        "accuracy": float(accuracy_score(predictions.y_true, predictions.y_pred)),
        "n_images": len(predictions.y_true),
        "per_class": {
            name: {
                "precision": float(report[name]["precision"]),
                "recall": float(report[name]["recall"]),
                "f1": float(report[name]["f1-score"]),
                "support": int(report[name]["support"]),
            }
            for name in predictions.class_names
        },
        **{
            f"{average}_avg": {
                "precision": float(report[f"{average} avg"]["precision"]),
                "recall": float(report[f"{average} avg"]["recall"]),
                "f1": float(report[f"{average} avg"]["f1-score"]),
            }
            for average in ("macro", "weighted")
        },
    }
    return MetricSection(
        name="classification",
        title="Classification report",
        values=values,
        text=classification_report(digits=4, **kwargs),
    )


def confusion_matrix_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """The confusion matrix (rows: true class, columns: predicted), raw and row-normalised."""
    from sklearn.metrics import confusion_matrix

    from breastcls.evaluation.plots import plot_confusion_matrix

    labels = list(range(len(predictions.class_names)))
    matrix = confusion_matrix(predictions.y_true, predictions.y_pred, labels=labels)
    totals = matrix.sum(axis=1, keepdims=True)
    normalised = matrix / totals.clip(min=1)
    figures = (
        plot_confusion_matrix(
            matrix, predictions.class_names, out_dir / "confusion_matrix.png", normalise=False
        ),
        plot_confusion_matrix(
            matrix,
            predictions.class_names,
            out_dir / "confusion_matrix_normalised.png",
            normalise=True,
        ),
    )
    return MetricSection(
        name="confusion_matrix",
        title="Confusion matrix",
        values={
            "labels": list(predictions.class_names),
            "matrix": matrix.astype(int).tolist(),
            "normalised": [[round(float(v), 6) for v in row] for row in normalised],
        },
        figures=figures,
    )
