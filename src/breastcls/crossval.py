"""Cross-validation and named protocols: one run per fold, then an aggregate.

``breastcls train --folds 5`` (stratified group k-fold) and ``--protocol spanhol`` (5 repeated
patient-wise 70/30 splits) both call :func:`cross_validate`. Each fold is an ordinary, complete
run folder (``<run>/fold-1/`` ...) whose ``config.json`` names its fold, so any fold can be
repeated alone with :func:`breastcls.train`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.config import SPANHOL_REPEATS, RunConfig
from breastcls.data.loading import load_dataset
from breastcls.data.split import split_for_config
from breastcls.errors import BreastclsError, ConfigError, DataError
from breastcls.io import atomic_write_json
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.run import RunResult, create_run_dir, write_status
from breastcls.train import train

__all__ = ["CrossValidationResult", "aggregate_metrics", "cross_validate", "fold_count"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossValidationResult:
    """What :func:`cross_validate` returns.

    Attributes:
        run_dir: The parent run folder (``fold-1/``... and ``aggregate.json`` inside).
        folds: The result of each fold's run, in order.
        aggregate: Per metric (dotted name, e.g. ``classification.accuracy``): ``mean``,
            ``std`` (sample standard deviation, ``ddof=1``), ``min``, ``max``, ``n`` and
            ``values`` (one per fold).
    """

    run_dir: Path
    folds: tuple[RunResult, ...]
    aggregate: dict[str, dict[str, Any]]


def fold_count(config: RunConfig) -> int:
    """Return how many runs ``config``'s fold setting or protocol makes (1 without either)."""
    if config.data.folds is not None:
        return config.data.folds
    if config.data.protocol == "spanhol":
        return SPANHOL_REPEATS
    return 1


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def aggregate_metrics(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Summarise every numeric metric over folds (nested sections become dotted names).

    Non-finite values (an AUC undefined on a one-class fold) are left out of the statistics and
    written as ``null`` in ``values``; ``n`` counts the finite ones.
    """
    flats = [_flatten(metrics) for metrics in fold_metrics]
    names = sorted({name for flat in flats for name in flat})
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [flat.get(name, math.nan) for flat in flats]
        finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else None,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else None),
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "n": int(finite.size),
            "values": [_finite(v) for v in values],
        }
    return summary


def _check_splits(config: RunConfig, host: PluginHost, count: int) -> None:
    """Fail before any folder is created when some fold cannot be split."""
    dataset = load_dataset(config.data, host=host)
    for fold in range(1, count + 1):
        data = dataclasses.replace(config.data, fold=fold)
        split = split_for_config(dataset.samples, data)
        for name, part in (("training", split.train), ("validation", split.validation)):
            missing = sorted(set(dataset.class_names) - {s.label for s in part})
            if missing:
                raise DataError(
                    f"Fold {fold} of {count}: the {name} side has no image of class(es) "
                    f"{missing}; too few patients of that class for {count} folds: use fewer "
                    "folds or add data."
                )


def cross_validate(config: RunConfig, *, host: PluginHost | None = None) -> CrossValidationResult:
    """Train one run per fold (``config.data.folds``) or protocol repetition, then aggregate.

    Writes ``<run>/fold-<k>/`` (a complete run folder each), ``<run>/aggregate.json``
    (:func:`aggregate_metrics` of the folds' validation metrics, with the split method of each
    fold and whether any was leaky) and ``<run>/status.json``.

    Args:
        config: The run configuration; ``data.folds`` or ``data.protocol`` must be set.
        host: Plugin host (the default host when ``None``).

    Raises:
        ConfigError: Neither ``data.folds`` nor ``data.protocol`` is set.
        BreastclsError: As :func:`breastcls.train`; impossible folds are detected before any
            folder is created.
    """
    host = ensure_host(host)
    count = fold_count(config)
    if config.data.folds is None and config.data.protocol is None:
        raise ConfigError(
            "cross_validate needs data.folds (e.g. --folds 5) or data.protocol (--protocol "
            "spanhol); use breastcls.train for a single split."
        )
    _check_splits(config, host, count)
    stem = f"{config.model.backbone}-" + (
        f"{count}fold" if config.data.folds else str(config.data.protocol)
    )
    run_dir = create_run_dir(config.out_dir, config.name, default_stem=stem)
    write_status(run_dir, "running")
    results: list[RunResult] = []
    try:
        for fold in range(1, count + 1):
            fold_config = dataclasses.replace(
                config,
                data=dataclasses.replace(config.data, fold=fold),
                out_dir=run_dir,
                name=f"fold-{fold}",
            )
            results.append(train(fold_config, host=host))
    except BaseException as error:
        reason = (
            str(error) if isinstance(error, BreastclsError) else f"{type(error).__name__}: {error}"
        )
        write_status(run_dir, "failed", reason=f"fold {len(results) + 1}: {reason}")
        raise
    aggregate = aggregate_metrics([result.metrics for result in results])
    splits = [
        json.loads((result.run_dir / "config.json").read_text(encoding="utf-8")).get("split", {})
        for result in results
    ]
    atomic_write_json(
        run_dir / "aggregate.json",
        {
            "scheme": f"{count}-fold" if config.data.folds else config.data.protocol,
            "folds": [str(result.run_dir.relative_to(run_dir)) for result in results],
            "split_methods": [split.get("method") for split in splits],
            "leaky": any(split.get("leaky", False) for split in splits),
            "config": config.to_dict(),
            "metrics": aggregate,
        },
    )
    accuracy = aggregate.get("classification.accuracy", {})
    write_status(
        run_dir,
        "finished",
        headline={
            "val_accuracy_mean": accuracy.get("mean"),
            "val_accuracy_std": accuracy.get("std"),
        },
    )
    return CrossValidationResult(run_dir=run_dir, folds=tuple(results), aggregate=aggregate)
