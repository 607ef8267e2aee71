"""An example metric-and-tracking plugin for breastcls.

It adds an ``agreement`` section to every evaluation (Matthews correlation coefficient and Cohen's
kappa: agreement beyond chance, robust to class imbalance) and logs each training run to a JSON
Lines file through the lifecycle hooks, the way a plugin would forward metrics to a tracking
server. The file is ``$BREASTCLS_TRACKING_FILE`` when set, else ``<run folder>/tracking.jsonl``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import breastcls
from breastcls.interfaces import MetricSection, Predictions
from breastcls.records import ConfigRecord, EpochRecord, MetricsRecord

TRACKING_ENV = "BREASTCLS_TRACKING_FILE"


def agreement_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    """Matthews correlation coefficient and Cohen's kappa of the arg-max predictions."""
    from sklearn.metrics import cohen_kappa_score, matthews_corrcoef

    y_true, y_pred = predictions.y_true, predictions.y_pred
    labels = list(range(len(predictions.class_names)))
    return MetricSection(
        name="agreement",
        title="Agreement beyond chance",
        values={
            "matthews_corrcoef": float(matthews_corrcoef(y_true, y_pred)),
            "cohen_kappa": float(cohen_kappa_score(y_true, y_pred, labels=labels)),
        },
    )


@breastcls.hookimpl
def breastcls_register_metrics(registry: breastcls.PluginRegistry[breastcls.Metric]) -> None:
    """Register the ``agreement`` metric."""
    registry.add("agreement", agreement_metric, summary="Matthews correlation, Cohen's kappa")


def _log(run_dir: Path, event: str, **fields: Any) -> None:
    target = Path(os.environ.get(TRACKING_ENV) or run_dir / "tracking.jsonl")
    record = {"event": event, "run": str(run_dir), "time": dt.datetime.now(dt.timezone.utc)}
    with target.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps({**record, **fields}, default=str) + "\n")


@breastcls.hookimpl
def breastcls_train_start(run_dir: Path, config: ConfigRecord) -> None:
    """Log the run's model and training settings."""
    settings = config.run_config
    _log(run_dir, "train_start", model=asdict(settings.model), train=asdict(settings.train))


@breastcls.hookimpl
def breastcls_epoch_end(run_dir: Path, epoch: int, logs: EpochRecord) -> None:
    """Log one epoch's metrics (``val_`` ones are the selection set's)."""
    _log(run_dir, "epoch_end", epoch=epoch, logs=dict(logs))


@breastcls.hookimpl
def breastcls_train_end(run_dir: Path, metrics: MetricsRecord) -> None:
    """Log the final accuracy and agreement, with the set they were measured on."""
    evaluated_on = metrics.evaluated_on.set if metrics.evaluated_on else None
    _log(
        run_dir,
        "train_end",
        accuracy=metrics.section("classification").get("accuracy"),
        agreement=metrics.sections.get("agreement"),
        evaluated_on=evaluated_on,
    )
