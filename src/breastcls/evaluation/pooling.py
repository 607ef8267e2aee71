"""Pooling the test predictions of cross-validation folds or protocol repeats into one set.

The test sets of k-fold cross-validation are disjoint: pooled, every image is predicted once,
out of fold. The test sets of repeated random splits (Spanhol's five 70/30 repeats) overlap:
some images are tested two or three times, others never. Pooling those rows would count an
image once per repeat that drew it, so each distinct image becomes one row, with its
probabilities averaged over the repeats that tested it; the set is named that way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from breastcls.evaluation.clinical import unit_ids
from breastcls.interfaces import MetricSection, Predictions

__all__ = ["fold_calibration_section", "pool_fold_predictions"]


def pool_fold_predictions(
    folds: Sequence[Predictions], *, images: int | None = None
) -> tuple[Predictions, str]:
    """Return one row per distinct image of the folds' test predictions, and the set's name.

    Args:
        folds: Each fold's (or repeat's) test predictions, with their paths.
        images: How many images the folds split (to count those never tested), if known.
    """
    rows: dict[str, list[tuple[int, int]]] = {}
    for f, fold in enumerate(folds):
        for i, path in enumerate(fold.paths):
            rows.setdefault(path, []).append((f, i))
    first = [places[0] for places in rows.values()]
    units = [unit_ids(fold) for fold in folds]  # each image's biopsy, as the folds counted it
    probabilities = np.array(
        [
            np.mean([folds[f].probabilities[i] for f, i in places], axis=0)
            for places in rows.values()
        ]
    )
    pooled = dataclasses.replace(
        folds[0],
        y_true=np.array([folds[f].y_true[i] for f, i in first], dtype=np.int64),
        probabilities=probabilities,
        paths=tuple(rows),
        patient_ids=tuple(folds[f].patient_ids[i] for f, i in first),
        magnifications=tuple(folds[f].magnifications[i] for f, i in first),
        groups=tuple(units[f][i] for f, i in first),
        # Each fold calibrated with its own temperature: no single raw output to go back to.
        raw_probabilities=None,
        **_pooled_domain(folds, list(rows.values())),
    )
    tested = [len(places) for places in rows.values()]
    if max(tested) == 1:
        return pooled, f"test sets of {len(folds)} folds, pooled out of fold"
    never = f"; {images - len(rows)} of {images} images never tested" if images else ""
    return pooled, (
        f"test sets of {len(folds)} overlapping repeats: one row per image tested "
        f"({len(rows)} images), its probabilities averaged over the {min(tested)} to "
        f"{max(tested)} repeats that tested it ({sum(n > 1 for n in tested)} images tested "
        f"more than once{never}); not out of fold"
    )


def _pooled_domain(
    folds: Sequence[Predictions], rows: Sequence[Sequence[tuple[int, int]]]
) -> dict[str, Any]:
    """Each image's domain-shift fields over the folds that tested it: the mean score, in
    distribution when every fold found it so, and every reason given (``None`` when some
    fold's model had no domain reference)."""
    scores, inside, reasons = [], [], []
    for fold in folds:
        if fold.domain_score is None or fold.in_distribution is None or not fold.domain_reason:
            return {"domain_score": None, "in_distribution": None, "domain_reason": None}
        scores.append(fold.domain_score)
        inside.append(fold.in_distribution)
        reasons.append(fold.domain_reason)
    return {
        "domain_score": np.array([np.mean([scores[f][i] for f, i in p]) for p in rows]),
        "in_distribution": np.array([all(inside[f][i] for f, i in p) for p in rows], dtype=bool),
        "domain_reason": tuple(
            "; ".join(dict.fromkeys(reasons[f][i] for f, i in p if reasons[f][i])) for p in rows
        ),
    }


def fold_calibration_section(
    sections: Sequence[MetricSection], fold_metrics: Sequence[Mapping[str, Any]]
) -> list[MetricSection]:
    """``sections`` with the calibration section saying how the folds calibrated.

    Each fold applied its own temperature (fitted on its own selection set), so no single
    temperature describes the pooled probabilities, and they are not raw either.
    """
    temperatures = [m.get("calibration", {}).get("temperature") for m in fold_metrics]
    if all(t is None for t in temperatures):
        return list(sections)
    listed = ", ".join("none" if t is None else f"{t:.3f}" for t in temperatures)
    note = (
        f"Probabilities temperature-scaled by each fold with its own temperature (T = {listed}), "
        "each fitted on that fold's selection set."
    )
    return [
        dataclasses.replace(
            section,
            text=note,
            values={**section.values, "temperature": None, "fold_temperatures": temperatures},
        )
        if section.name == "calibration"
        else section
        for section in sections
    ]
