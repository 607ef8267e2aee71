"""Nested cross-validation and named protocols: one run per fold, then an aggregate.

``breastcls train --folds 5`` (stratified group k-fold) and ``--protocol spanhol`` (5 repeated
patient-wise 70/30 splits) both call :func:`cross_validate`. Each fold's held-out patients are
its test set; its selection set (checkpoint, schedule, calibration) is carved from that fold's
training patients, so the aggregate reports test figures only. Each fold is an ordinary,
complete run folder (``<run>/fold-1/`` ...) whose ``config.json`` names its fold, so any fold
can be repeated alone with :func:`breastcls.train`; ``<run>/pooled/`` evaluates every tested
image once: out of fold for k folds, averaged over the repeats that tested it for overlapping
repeats (:mod:`breastcls.evaluation.pooling`). A killed or failed cross-validation run continues
with :func:`resume_cross_validation`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.config import SPANHOL_REPEATS, RunConfig
from breastcls.data.split import split_for_config
from breastcls.environment import prepare_tensorflow
from breastcls.errors import BreastclsError, ConfigError, DataError
from breastcls.evaluation.evaluate import evaluate_pooled
from breastcls.evaluation.reporting import headline_figures
from breastcls.interfaces import DataRole
from breastcls.io import atomic_write_json
from breastcls.plugins.host import PluginHost, ensure_host
from breastcls.records import MetricsRecord
from breastcls.runs.folder import (
    RunFolder,
    RunResult,
    create_run_dir,
    read_split_csv,
    read_status,
    write_status,
)
from breastcls.training.checks import check_run_config
from breastcls.training.data import ScannedData, scan_data
from breastcls.training.run import check_resumable, finished_run, lock_run
from breastcls.training.train import resume, train

__all__ = [
    "CrossValidationResult",
    "aggregate_metrics",
    "cross_validate",
    "fold_count",
    "resume_cross_validation",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CrossValidationResult:
    """What :func:`cross_validate` returns.

    Attributes:
        run_dir: The parent run folder (``fold-1/``... and ``aggregate.json`` inside).
        folds: The result of each fold's run, in order.
        aggregate: Per metric of the folds' test sets (dotted name, e.g.
            ``classification.accuracy``): ``mean``, ``std`` (sample standard deviation,
            ``ddof=1``), ``ci_low`` and ``ci_high`` (95% Student-t interval of the mean),
            ``min``, ``max``, ``n`` and ``values`` (one per fold).
        pooled: The ``metrics.json`` of the pooled evaluation in ``pooled/``: one row per tested
            image (out of fold for k folds; the mean over the repeats that tested it for
            overlapping repeats).
    """

    run_dir: Path
    folds: tuple[RunResult, ...]
    aggregate: dict[str, dict[str, Any]]
    pooled: MetricsRecord


def fold_count(config: RunConfig) -> int:
    """Return how many runs ``config``'s fold setting or protocol makes (1 without either)."""
    if config.data.folds is not None:
        return config.data.folds
    if config.data.protocol == "spanhol":
        return SPANHOL_REPEATS
    return 1


# A fold's interval bounds are not averaged: the pooled out-of-fold evaluation has the
# intervals of the whole set, and the mean's own interval comes from the spread over folds.
_NOT_AVERAGED = frozenset({"low", "high"})


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and key not in _NOT_AVERAGED
        ):
            flat[name] = float(value)
    return flat


# Metrics that are proportions (the last part of their dotted name): their intervals are
# clipped to [0, 1], so no AUC bound above 1 is shown.
_PROPORTIONS = frozenset(
    {
        "accuracy", "auc", "average_precision", "balanced_accuracy", "brier", "ece",
        "ece_before_temperature", "estimate", "f1", "macro_auc", "npv",
        "patient_recognition_rate", "ppv", "precision", "recall", "sensitivity", "specificity",
        "threshold",
    }
)  # fmt: skip


def _mean_interval(
    values: npt.NDArray[np.float64], level: float, test_train_ratio: float | None = None
) -> tuple[float | None, ...]:
    """Student-t interval of the mean over folds (``None`` with fewer than two values).

    With ``test_train_ratio`` (repeated random splits, whose training sets overlap) the
    variance of the mean is Nadeau and Bengio's corrected resampled one,
    ``(1/J + n_test/n_train) * s**2`` instead of ``s**2 / J``.
    """
    from scipy.stats import t

    if values.size < 2:
        return None, None
    factor = 1.0 / values.size + (test_train_ratio or 0.0)
    spread = values.std(ddof=1) * np.sqrt(factor)
    half = float(t.ppf(0.5 + level / 2, values.size - 1) * spread)
    return float(values.mean()) - half, float(values.mean()) + half


def _clipped(name: str, low: float | None, high: float | None) -> tuple[float | None, ...]:
    if low is None or high is None or name.rsplit(".", 1)[-1] not in _PROPORTIONS:
        return low, high
    return max(low, 0.0), min(high, 1.0)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def aggregate_metrics(
    fold_metrics: Sequence[Mapping[str, Any]],
    *,
    level: float = 0.95,
    test_train_ratio: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Summarise every numeric metric over folds (nested sections become dotted names): mean,
    sample standard deviation and a Student-t ``level`` interval of the mean (``ci_low``,
    ``ci_high``), clipped to [0, 1] for proportions. The folds' own bootstrap bounds are not
    averaged.

    ``test_train_ratio`` (``n_test / n_train`` of repeated random splits) makes the interval
    Nadeau and Bengio's corrected resampled t (see :func:`_mean_interval`).

    Non-finite values (an AUC undefined on a one-class fold) are left out of the statistics and
    written as ``null`` in ``values``; ``n`` counts the finite ones.
    """
    flats = [_flatten(metrics) for metrics in fold_metrics]
    names = sorted({name for flat in flats for name in flat})
    summary: dict[str, dict[str, Any]] = {}
    for name in names:
        values = [flat.get(name, math.nan) for flat in flats]
        finite = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
        ci_low, ci_high = _clipped(name, *_mean_interval(finite, level, test_train_ratio))
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else None,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else (0.0 if finite.size else None),
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "ci_low": ci_low,
            "ci_high": ci_high,
            "n": int(finite.size),
            "values": [_finite(v) for v in values],
        }
    return summary


def _check_splits(scanned: ScannedData, config: RunConfig, count: int) -> None:
    """Fail before any folder is created when some fold cannot be split."""
    for fold in range(1, count + 1):
        data = dataclasses.replace(config.data, fold=fold)
        try:
            split_for_config(scanned.samples, data)
        except DataError as error:
            raise DataError(
                f"Fold {fold} of {count}: {error} With {count} folds there may be too few "
                "patients of a class: use fewer folds or add data."
            ) from error


def cross_validate(config: RunConfig, *, host: PluginHost | None = None) -> CrossValidationResult:
    """Train one run per fold (``config.data.folds``) or protocol repetition, then aggregate.

    Writes ``<run>/cross_validation.json`` (the folds and the configuration, first),
    ``<run>/fold-<k>/`` (a complete run folder each), ``<run>/aggregate.json``
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
    prepare_tensorflow()
    host = ensure_host(host)
    count = fold_count(config)
    if config.data.folds is None and config.data.protocol is None:
        raise ConfigError(
            "cross_validate needs data.folds (e.g. --folds 5) or data.protocol (--protocol "
            "spanhol); use breastcls.train for a single split."
        )
    check_run_config(config, host)
    scanned = scan_data(config, host=host)
    _check_splits(scanned, config, count)
    stem = f"{config.model.backbone}-" + (
        f"{count}fold" if config.data.folds else str(config.data.protocol)
    )
    with create_run_dir(config.out_dir, config.name, default_stem=stem) as lock:
        atomic_write_json(
            RunFolder(lock.path).cross_validation, {"folds": count, "config": config.to_dict()}
        )
        return _run_folds(lock.path, config, count, host, scanned)


def resume_cross_validation(
    run_dir: Path, *, host: PluginHost | None = None
) -> CrossValidationResult:
    """Continue a cross-validation run that was killed, interrupted or failed.

    Finished folds are kept (after checking that their data and split are unchanged), the fold
    that was running continues from its last completed epoch (:func:`breastcls.resume`), the
    folds not started yet are trained, and ``aggregate.json`` is written over all of them.

    Args:
        run_dir: The cross-validation run folder (holding ``cross_validation.json``).
        host: Plugin host (the default host when ``None``).

    Raises:
        ConfigError: ``run_dir`` is not a cross-validation run folder, it has finished already,
            or its process is still alive.
        OutputError: Another process is training or resuming it.
        DataError: The data no longer matches a fold (other class names or another split).
    """
    prepare_tensorflow()
    run_dir = Path(run_dir)
    record = RunFolder(run_dir).cross_validation
    if not record.is_file():
        raise ConfigError(
            f"{str(run_dir)!r} is not a cross-validation run folder (no {record.name}):"
            " pass the folder `breastcls train --folds/--protocol` created."
        )
    with lock_run(run_dir, purpose="resume"):
        check_resumable(run_dir)
        raw = RunFolder(run_dir).read_record(record)
        config = RunConfig.from_dict(raw["config"])
        host = ensure_host(host)
        return _run_folds(run_dir, config, int(raw["folds"]), host, scan_data(config, host=host))


def _fold(
    run_dir: Path, config: RunConfig, fold: int, host: PluginHost, scanned: ScannedData
) -> RunResult:
    """Train fold ``fold`` into ``<run>/fold-<fold>``, or continue or reuse what is there."""
    fold_dir = run_dir / RunFolder.fold_name(fold)
    if RunFolder(fold_dir).config.is_file():
        if read_status(fold_dir).status == "finished":
            return finished_run(fold_dir, host=host, scanned=scanned)
        return resume(fold_dir, host=host, scanned=scanned)
    fold_config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, fold=fold),
        out_dir=run_dir,
        name=RunFolder.fold_name(fold),
    )
    return train(fold_config, host=host, scanned=scanned)


def _run_folds(
    run_dir: Path, config: RunConfig, count: int, host: PluginHost, scanned: ScannedData
) -> CrossValidationResult:
    write_status(run_dir, "running")
    results: list[RunResult] = []
    try:
        for fold in range(1, count + 1):
            results.append(_fold(run_dir, config, fold, host, scanned))
    except BaseException as error:
        reason = (
            str(error) if isinstance(error, BreastclsError) else f"{type(error).__name__}: {error}"
        )
        write_status(run_dir, "failed", reason=f"fold {len(results) + 1}: {reason}")
        raise
    # Repeated random splits share training images between repeats: Nadeau and Bengio's
    # correction; k folds' test sets are disjoint and keep the plain t.
    ratio = _test_train_ratio(results) if config.data.protocol is not None else None
    aggregate = aggregate_metrics([result.metrics for result in results], test_train_ratio=ratio)
    pooled = evaluate_pooled(
        RunFolder(run_dir).pooled.path, [result.run_dir for result in results], host=host
    )
    splits = [RunFolder(result.run_dir).read_config_record().split for result in results]
    atomic_write_json(
        RunFolder(run_dir).aggregate,
        {
            "scheme": f"{count}-fold" if config.data.folds else config.data.protocol,
            "evaluated_on": (
                "each fold's test set (patients the fold's model never trained or selected on)"
            ),
            "magnifications": _magnification_note(config),
            "folds": [str(result.run_dir.relative_to(run_dir)) for result in results],
            "split_methods": [split.get("method") for split in splits],
            "leaky": any(split.get("leaky", False) for split in splits),
            "config": config.to_dict(),
            "interval": _interval_record(ratio),
            "metrics": aggregate,
            "per_magnification": _magnification_rows(run_dir, results),
            "pooled": {"folder": RunFolder(run_dir).pooled.path.name, "metrics": pooled.to_json()},
        },
    )
    accuracy = aggregate.get("classification.accuracy", {})
    write_status(
        run_dir,
        "finished",
        headline={
            **headline_figures(pooled),
            "accuracy_mean": accuracy.get("mean"),
            "accuracy_std": accuracy.get("std"),
        },
    )
    return CrossValidationResult(
        run_dir=run_dir, folds=tuple(results), aggregate=aggregate, pooled=pooled
    )


def _test_train_ratio(results: Sequence[RunResult]) -> float:
    """The mean over folds of ``n_test / n_train`` (training and selection images)."""
    ratios = []
    for result in results:
        roles = [sample.split for sample, _ in read_split_csv(result.run_dir)]
        test = roles.count(DataRole.TEST.value)
        ratios.append(test / max(len(roles) - test, 1))
    return float(np.mean(ratios))


def _interval_record(ratio: float | None) -> dict[str, Any]:
    """How ``ci_low`` and ``ci_high`` of ``aggregate.json`` were computed."""
    if ratio is None:
        return {"method": "Student t of the mean over folds (disjoint test sets)", "level": 0.95}
    return {
        "method": (
            "corrected resampled t (Nadeau & Bengio 2003): variance of the mean "
            "(1/J + n_test/n_train) * s^2, as the repeats' training sets overlap"
        ),
        "test_train_ratio": ratio,
        "level": 0.95,
    }


def _magnification_rows(run_dir: Path, results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Each fold's test-set rows of the ``magnification`` metric, with the fold's name."""
    return [
        {"fold": str(result.run_dir.relative_to(run_dir)), **row}
        for result in results
        for row in result.metrics.section("magnification").get("breakdown", [])
    ]


def _magnification_note(config: RunConfig) -> str:
    if config.data.magnification is not None:
        return f"{config.data.magnification}X only"
    return (
        "pooled: one model for every magnification (Spanhol et al. train one model per "
        "magnification; pass --magnification to follow them)"
    )
