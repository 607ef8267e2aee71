"""The ``domain`` section of an evaluation: how many images are unlike the training images, and
the figures on those that are not.

The scores come from the model's domain reference (:mod:`breastcls.inference.domain`), fitted on
the training set with thresholds chosen on the selection set; nothing here is fitted on the
images it reports.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from breastcls.inference.domain import DOMAIN_WARNING_FRACTION, DomainReference
from breastcls.interfaces import MetricSection, Predictions
from breastcls.io import printable

__all__ = ["DOMAIN_FIGURE", "domain_line", "domain_section", "domain_warning"]

DOMAIN_FIGURE = "domain_scores.png"
"""The histogram of the evaluated images' domain-shift scores."""


def domain_warning(values: dict[str, Any] | Any) -> str | None:
    """The plain-words warning a ``domain`` section calls for (more than
    :data:`DOMAIN_WARNING_FRACTION` of the images flagged), or ``None``."""
    if not isinstance(values, dict) or values.get("flagged_fraction") is None:
        return None
    fraction = float(values["flagged_fraction"])
    if fraction <= DOMAIN_WARNING_FRACTION:
        return None
    return (
        f"These figures do not apply to this data: {fraction:.0%} of the images "
        f"({values['n_flagged']} of {values['n_images']}) are unlike the images the model was "
        "trained on (domain-shift score above the selection set's threshold)."
    )


def domain_line(values: dict[str, Any] | Any) -> str | None:
    """One line for the terminal: how many images the domain-shift score flagged, or ``None``
    when the section is missing."""
    if not isinstance(values, dict) or values.get("flagged_fraction") is None:
        return None
    return (
        f"domain shift: {values['n_flagged']} of {values['n_images']} images unlike the "
        f"training images ({values['flagged_fraction']:.1%}; threshold chosen on the "
        f"{values['thresholds_chosen_on']})"
    )


def domain_section(
    predictions: Predictions, reference: DomainReference, out_dir: Path, *, set_name: str
) -> MetricSection | None:
    """The share of flagged images, what flagged them, and accuracy and AUC on the images that
    are like the training images; ``None`` when the predictions carry no domain scores."""
    if predictions.domain_score is None or predictions.in_distribution is None:
        return None
    kept = predictions.in_distribution
    n = len(kept)
    reasons = Counter(r for r in predictions.domain_reason or () if r)
    values: dict[str, Any] = {
        "set": set_name,
        "n_images": n,
        "n_flagged": int(n - kept.sum()),
        "flagged_fraction": float(1 - kept.mean()) if n else None,
        "reasons": dict(sorted(reasons.items())),
        "threshold": 1.0,
        "feature_threshold": reference.feature_threshold,
        "image_threshold": reference.image_threshold,
        "fitted_on": f"training set ({reference.n_training_images} images)",
        "thresholds_chosen_on": (
            f"selection set ({reference.n_selection_images} images"
            + (
                f", {reference.n_selection_patients} patients)"
                if reference.n_selection_patients
                else ")"
            )
        ),
        "quantile": reference.quantile,
        "in_distribution": _subset_figures(predictions, kept),
    }
    warning = domain_warning(values)
    values["applies"] = warning is None
    figure = _histogram(predictions.domain_score, out_dir / DOMAIN_FIGURE, set_name)
    by = ", ".join(f"{reason}: {count}" for reason, count in values["reasons"].items())
    lines = [
        reference.describe(),
        f"{values['n_flagged']} of {n} images of the {set_name} flagged"
        + (f" ({values['flagged_fraction']:.1%})" if n else "")
        + (f"; by {by}" if by else "")
        + ".",
    ]
    if warning:
        lines.insert(0, warning)
    return MetricSection(
        name="domain",
        title="Domain shift: images unlike the training images",
        values=values,
        figures=(figure,),
        text="\n".join(lines),
    )


def _subset_figures(predictions: Predictions, kept: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from breastcls.inference.decision import binary_view

    view = binary_view(predictions)
    truth, score, called = view.y_true[kept], view.score[kept], view.y_pred[kept]
    return {
        "n_images": int(kept.sum()),
        "accuracy": float((predictions.y_pred[kept] == predictions.y_true[kept]).mean())
        if kept.any()
        else None,
        "sensitivity": float(called[truth].mean()) if truth.any() else None,
        "specificity": float((~called[~truth]).mean()) if (~truth).any() else None,
        "auc": float(roc_auc_score(truth, score)) if 0 < truth.sum() < len(truth) else None,
    }


def _histogram(scores: np.ndarray, path: Path, set_name: str) -> Path:
    from breastcls.evaluation.plots import pyplot, save_figure

    figure, axes = pyplot().subplots(figsize=(6, 3.2))
    axes.hist(np.clip(scores, 0, 10), bins=np.linspace(0, 10, 41), color="#4c72b0")
    axes.axvline(1.0, color="#c44e52", linestyle="--", label="threshold (1)")
    axes.set_xlabel("domain-shift score (clipped at 10)")
    axes.set_ylabel("images")
    # The set's name may quote file names (overlapping data): printable, and cut short.
    axes.set_title(f"Domain-shift scores, {printable(set_name)[:60]}", fontsize=9)
    axes.legend()
    return save_figure(figure, path)
