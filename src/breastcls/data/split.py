"""Train/validation splits: stratified, seeded, and group-disjoint when patients are known.

Images of one patient look alike, so a split that puts one patient on both sides measures how
well a model recognises patients, not tumours. Every split here keeps a patient (or a
user-chosen group, e.g. a biopsy number) on one side unless an image-level split is asked for
explicitly, and such a split is labelled leaky.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.config import SPANHOL_REPEATS, DataConfig
from breastcls.errors import DataError
from breastcls.interfaces import Sample

__all__ = [
    "Split",
    "kfold_splits",
    "sample_groups",
    "spanhol_splits",
    "split_for_config",
    "split_samples",
]

_ATTRIBUTE_COLUMNS = ("patient_id", "subtype", "magnification")


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """A train/validation partition of a dataset.

    Attributes:
        train: Training samples.
        validation: Validation samples.
        method: How it was made: ``folders`` (given by the data), ``folders-leaky`` (given by the
            data, with a patient or group on both sides), ``patient`` (grouped by patient id,
            stratified), ``group`` (grouped by a user column), ``image`` (stratified by image, no
            groups known) or ``image-leaky`` (by image although groups were known).
    """

    train: tuple[Sample, ...]
    validation: tuple[Sample, ...]
    method: str

    @property
    def leaky(self) -> bool:
        """Whether a patient (or group) can appear on both sides."""
        return self.method.endswith("-leaky")


def _value(sample: Sample, column: str) -> str | None:
    if column in _ATTRIBUTE_COLUMNS:
        value = getattr(sample, column)
        return None if value is None or value == "" else str(value)
    return sample.extra.get(column) or None


def sample_groups(samples: Sequence[Sample], group_by: str | None = None) -> list[str] | None:
    """Return the group of every sample, or ``None`` when no grouping is known.

    Args:
        samples: The images.
        group_by: A column: ``patient_id``, ``subtype``, ``magnification`` or a manifest's extra
            column. ``None`` groups by patient id when the images have one.

    Raises:
        DataError: Some images have a group and others do not (or ``group_by`` names a column
            an image lacks), so no split could be honest about all of them.
    """
    column = group_by or "patient_id"
    values = [_value(sample, column) for sample in samples]
    known = sum(value is not None for value in values)
    if known == 0 and group_by is None:
        return None
    if known < len(values):
        first = next(s.path for s, value in zip(samples, values, strict=True) if value is None)
        raise DataError(
            f"{len(values) - known} of {len(values)} images have no {column} (first: {first}): "
            f"give every image a {column} (a manifest column, or BreakHis file names), or pass "
            "--allow-leaky-split with --split-by image to split images independently."
        )
    return [str(value) for value in values]


def _fixed(samples: Sequence[Sample], group_by: str | None) -> Split:
    train = tuple(s for s in samples if s.split == "train")
    validation = tuple(s for s in samples if s.split == "validation")
    if not validation:
        raise DataError(
            "The data fixes a train split but has no validation images: add a validation/ "
            "folder (or 'validation' rows in the manifest's split column)."
        )
    column = group_by or "patient_id"
    train_groups = {value for s in train if (value := _value(s, column)) is not None}
    leaky = any(_value(s, column) in train_groups for s in validation)
    return Split(train=train, validation=validation, method="folders-leaky" if leaky else "folders")


def _check_classes(labels: npt.NDArray[Any], needed: int, what: str) -> None:
    names, counts = np.unique(labels, return_counts=True)
    if counts.min() < needed:
        raise DataError(
            f"Every class needs at least {needed} images for {what}; class "
            f"{str(names[counts.argmin()])!r} has {counts.min()}: add images of that class"
            + (" or use fewer folds." if "fold" in what else ".")
        )


def _check_groups(samples: Sequence[Sample], groups: list[str], needed: int, column: str) -> None:
    """Each class must span ``needed`` groups, or some side of the split would lack it."""
    per_class: dict[str, set[str]] = {}
    for sample, group in zip(samples, groups, strict=True):
        per_class.setdefault(sample.label, set()).add(group)
    for label, members in sorted(per_class.items()):
        if len(members) < needed:
            raise DataError(
                f"Class {label!r} has images of only {len(members)} {column} value(s); a split "
                f"by {column} needs at least {needed} to put the class on every side: add "
                "patients of that class, or leave the class out."
            )


def _grouped_method(group_by: str | None) -> str:
    return "patient" if group_by in (None, "patient_id") else "group"


def _groups(
    samples: Sequence[Sample], by: str, group_by: str | None, allow_leaky: bool
) -> tuple[list[str] | None, bool]:
    """Return the groups to keep together (``None``: split by image) and whether that is leaky."""
    if by == "patient":
        return sample_groups(samples, group_by), False
    column = group_by or "patient_id"
    known = {value for s in samples if (value := _value(s, column)) is not None}
    if known and not allow_leaky:
        raise DataError(
            f"The images have {column} values ({len(known)} groups), and an image-level split "
            "would put one patient on both sides (inflated, leaky scores): keep the default "
            "patient-level split, or pass --allow-leaky-split to split by image anyway "
            "(recorded as leaky)."
        )
    return None, bool(known)


def split_samples(
    samples: Sequence[Sample],
    *,
    fraction: float,
    seed: int,
    by: str = "patient",
    group_by: str | None = None,
    allow_leaky: bool = False,
) -> Split:
    """Split ``samples`` into train and validation.

    Samples that carry a ``split`` (from ``train/``/``validation/`` folders or a manifest column)
    keep it. Otherwise a stratified split holds out ``fraction`` of the data. When groups are
    known (patient ids, or the ``group_by`` column) and ``by == "patient"``, whole groups move
    together (:class:`sklearn.model_selection.StratifiedGroupKFold` with ``round(1 / fraction)``
    folds, first fold held out), so no patient is on both sides.

    Args:
        samples: The images.
        fraction: Share held out for validation.
        seed: Split seed.
        by: ``patient`` (grouped when groups are known) or ``image``.
        group_by: Group column (see :func:`sample_groups`); ``None`` means patient id.
        allow_leaky: Allow ``by="image"`` on grouped data (the split is then ``image-leaky``).

    Raises:
        DataError: A class is too small to appear on both sides, too few groups, some images
            lack a group, or an image-level split of grouped data without ``allow_leaky``.
    """
    if any(sample.split for sample in samples):
        return _fixed(samples, group_by)

    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    labels = np.array([sample.label for sample in samples])
    _check_classes(labels, 2, "a train/validation split")
    indices = np.arange(len(samples))
    column = group_by or "patient_id"
    groups, leaky = _groups(samples, by, group_by, allow_leaky)
    if groups is not None:
        _check_groups(samples, groups, 2, column)
        n_splits = max(2, round(1 / fraction))
        n_groups = len(set(groups))
        if n_groups < n_splits:
            raise DataError(
                f"Only {n_groups} distinct {column} values: too few for a grouped "
                f"{fraction:.0%} split. Add patients, or pass --split-by image "
                "--allow-leaky-split (leaky)."
            )
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        train_idx, val_idx = next(iter(splitter.split(indices, labels, groups=groups)))
        method = _grouped_method(group_by)
    else:
        try:
            train_idx, val_idx = train_test_split(
                indices, test_size=fraction, random_state=seed, stratify=labels
            )
        except ValueError as error:
            raise DataError(
                f"A stratified {fraction:.0%} validation split of {len(samples)} images with "
                f"{len(set(labels.tolist()))} classes is impossible ({error}): add images or "
                "raise --validation-fraction."
            ) from error
        method = "image-leaky" if leaky else "image"
    return Split(
        train=tuple(samples[i] for i in sorted(train_idx)),
        validation=tuple(samples[i] for i in sorted(val_idx)),
        method=method,
    )


def kfold_splits(
    samples: Sequence[Sample],
    *,
    folds: int,
    seed: int,
    by: str = "patient",
    group_by: str | None = None,
    allow_leaky: bool = False,
) -> list[Split]:
    """Return the ``folds`` splits of a stratified (group) k-fold cross-validation.

    Every image is in exactly one validation fold. With groups known (and ``by == "patient"``)
    :class:`~sklearn.model_selection.StratifiedGroupKFold` keeps each group in one fold;
    otherwise :class:`~sklearn.model_selection.StratifiedKFold` splits images.

    Raises:
        DataError: The data fixes its own split, a class has fewer images than folds, fewer
            groups than folds, or an image-level split of grouped data without ``allow_leaky``.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if any(sample.split for sample in samples):
        raise DataError(
            "The data fixes its own train/validation split (split folders or a manifest split "
            "column): cross-validation needs unsplit data; remove the split or drop --folds."
        )
    labels = np.array([sample.label for sample in samples])
    _check_classes(labels, folds, f"{folds}-fold cross-validation")
    indices = np.arange(len(samples))
    column = group_by or "patient_id"
    groups, leaky = _groups(samples, by, group_by, allow_leaky)
    if groups is not None:
        n_groups = len(set(groups))
        if n_groups < folds:
            raise DataError(
                f"Only {n_groups} distinct {column} values for {folds} folds: use fewer folds."
            )
        _check_groups(samples, groups, 2, column)
        parts = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            indices, labels, groups=groups
        )
        method = _grouped_method(group_by)
    else:
        parts = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            indices, labels
        )
        method = "image-leaky" if leaky else "image"
    return [
        Split(
            train=tuple(samples[i] for i in sorted(train_idx)),
            validation=tuple(samples[i] for i in sorted(val_idx)),
            method=method,
        )
        for train_idx, val_idx in parts
    ]


def spanhol_splits(
    samples: Sequence[Sample],
    *,
    seed: int,
    repeats: int = SPANHOL_REPEATS,
    test_fraction: float = 0.3,
    group_by: str | None = None,
) -> list[Split]:
    """Return the Spanhol et al. (2016) protocol: ``repeats`` random patient-wise 70/30 splits.

    In each repetition, the patients of each class are shuffled (seeded by ``seed`` and the
    repetition) and ``round(test_fraction * n)`` of them (at least one, at most ``n - 1``) go to
    validation with all their images; patients are stratified by class.

    Raises:
        DataError: Patient ids (or ``group_by`` values) are unknown, or a class has fewer than
            two patients.
    """
    groups = sample_groups(samples, group_by)
    column = group_by or "patient_id"
    if groups is None:
        raise DataError(
            "The Spanhol protocol splits by patient, but these images have no patient id: use "
            "BreakHis file names or a manifest with a patient_id column."
        )
    labels_of: dict[str, Counter[str]] = {}
    for sample, group in zip(samples, groups, strict=True):
        labels_of.setdefault(group, Counter())[sample.label] += 1
    by_class: dict[str, list[str]] = {}
    for group in sorted(labels_of):
        by_class.setdefault(labels_of[group].most_common(1)[0][0], []).append(group)
    for label, members in sorted(by_class.items()):
        if len(members) < 2:
            raise DataError(
                f"Class {label!r} has {len(members)} {column} value(s): the Spanhol protocol "
                "needs at least two per class (one on each side)."
            )
    splits: list[Split] = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        held_out: set[str] = set()
        for _, members in sorted(by_class.items()):
            count = min(len(members) - 1, max(1, round(test_fraction * len(members))))
            order = rng.permutation(len(members))
            held_out.update(members[i] for i in order[:count])
        splits.append(
            Split(
                train=tuple(s for s, g in zip(samples, groups, strict=True) if g not in held_out),
                validation=tuple(s for s, g in zip(samples, groups, strict=True) if g in held_out),
                method=_grouped_method(group_by),
            )
        )
    return splits


def split_for_config(samples: Sequence[Sample], config: DataConfig) -> Split:
    """Return the split a run with ``config`` trains on.

    ``config.folds`` picks fold ``config.fold`` of :func:`kfold_splits`, ``config.protocol``
    picks repetition ``config.fold`` of :func:`spanhol_splits`, and otherwise
    :func:`split_samples` holds out ``config.validation_fraction``.

    Raises:
        DataError: As the function used.
    """
    if config.folds is not None:
        return kfold_splits(
            samples,
            folds=config.folds,
            seed=config.split_seed,
            by=config.split_by,
            group_by=config.group_by,
            allow_leaky=config.allow_leaky_split,
        )[config.fold - 1]
    if config.protocol == "spanhol":
        return spanhol_splits(samples, seed=config.split_seed, group_by=config.group_by)[
            config.fold - 1
        ]
    return split_samples(
        samples,
        fraction=config.validation_fraction,
        seed=config.split_seed,
        by=config.split_by,
        group_by=config.group_by,
        allow_leaky=config.allow_leaky_split,
    )
