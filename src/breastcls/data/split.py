"""Train/validation splits: stratified, seeded, and patient-disjoint when patients are known."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from breastcls.errors import DataError
from breastcls.interfaces import Sample

__all__ = ["Split", "split_samples"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """A train/validation partition of a dataset.

    Attributes:
        train: Training samples.
        validation: Validation samples.
        method: How it was made: ``folders`` (given by the data), ``patient`` (grouped,
            stratified), ``image`` (stratified by image) or ``image-leaky`` (by image although
            patient ids were known).
    """

    train: tuple[Sample, ...]
    validation: tuple[Sample, ...]
    method: str

    @property
    def leaky(self) -> bool:
        """Whether a patient can appear on both sides."""
        return self.method == "image-leaky"


def split_samples(
    samples: Sequence[Sample],
    *,
    fraction: float,
    seed: int,
    by: str = "patient",
) -> Split:
    """Split ``samples`` into train and validation.

    Samples that carry a ``split`` (from ``train/``/``validation/`` folders or a manifest column)
    keep it. Otherwise a stratified split holds out ``fraction`` of the data. When every sample
    has a patient id and ``by == "patient"``, whole patients move together
    (:class:`sklearn.model_selection.StratifiedGroupKFold` with ``round(1 / fraction)`` folds,
    first fold held out), so no patient is on both sides.

    Raises:
        DataError: A class is too small to appear on both sides.
    """
    if any(sample.split for sample in samples):
        train = tuple(s for s in samples if s.split == "train")
        validation = tuple(s for s in samples if s.split == "validation")
        if not validation:
            raise DataError(
                "The data fixes a train split but has no validation images: add a validation/ "
                "folder (or 'validation' rows in the manifest's split column)."
            )
        return Split(train=train, validation=validation, method="folders")

    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    labels = np.array([sample.label for sample in samples])
    _, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        raise DataError(
            "Every class needs at least 2 images to be split into train and validation; "
            f"the smallest class has {counts.min()}."
        )
    indices = np.arange(len(samples))
    patients = [sample.patient_id for sample in samples]
    grouped = all(patients) and by == "patient"
    if grouped:
        n_splits = max(2, round(1 / fraction))
        n_groups = len(set(patients))
        if n_groups < n_splits:
            raise DataError(
                f"Only {n_groups} patients: too few for a patient-level {fraction:.0%} split. "
                "Add patients or use an image-level split (split_by='image', leaky)."
            )
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train_idx, val_idx = next(iter(splitter.split(indices, labels, groups=patients)))
        method = "patient"
    else:
        train_idx, val_idx = train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=labels
        )
        method = "image-leaky" if all(patients) else "image"
    return Split(
        train=tuple(samples[i] for i in sorted(train_idx)),
        validation=tuple(samples[i] for i in sorted(val_idx)),
        method=method,
    )
