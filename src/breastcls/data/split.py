"""Training / selection / test splits: stratified, seeded, and patient-disjoint.

Every run has three sets (:class:`~breastcls.interfaces.DataRole`): *training* fits the weights,
*selection* picks the checkpoint, drives the learning-rate schedule and fits the temperature and
thresholds, and *test* is touched once, by the final model. Only the test set's figures estimate
performance on new patients: the selection set chose the model, so its figures are optimistic.

Images of one patient look alike, so a split that puts one patient on two sides measures how well
a model recognises patients, not tumours. Every split here keeps a group on one side: the BreakHis
accession number by default (``14-18842`` and ``14-18842D`` are slides of one biopsy), the patient
id for other data, or a user-chosen column. An image-level split of grouped data must be asked for
explicitly, and is labelled leaky.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from breastcls.config import SPANHOL_REPEATS, DataConfig
from breastcls.data.breakhis import accession_number
from breastcls.errors import DataError
from breastcls.interfaces import DataRole, Sample

__all__ = [
    "Leak",
    "Split",
    "find_leak",
    "group_key",
    "kfold_splits",
    "sample_groups",
    "spanhol_splits",
    "split_for_config",
    "split_samples",
]

_ATTRIBUTE_COLUMNS = ("patient_id", "subtype", "magnification")


@dataclass(frozen=True, slots=True, kw_only=True)
class Leak:
    """How many of the reported set's groups (patients) also trained or selected the model.

    Attributes:
        role: The set whose figures are reported: ``test``, or ``selection`` without a test set.
        shared: Its groups that are also in an earlier role (training or selection).
        groups: Its groups in all.
        first: One shared group, to name in messages.
    """

    role: DataRole
    shared: int
    groups: int
    first: str

    @property
    def label(self) -> str:
        """The words every figure from a leaky set carries:
        ``LEAKY: 24 of 31 test patients also trained or selected (optimistic)``."""
        earlier = "trained or selected" if self.role is DataRole.TEST else "trained"
        return (
            f"LEAKY: {self.shared} of {self.groups} {self.role.value} patients also {earlier} "
            "(optimistic)"
        )


def find_leak(
    roles: Iterable[tuple[DataRole, str | None]], reported: DataRole = DataRole.TEST
) -> Leak | None:
    """Count the ``reported`` set's groups that an earlier role also holds.

    Args:
        roles: ``(role, group)`` of every image (``None``: group unknown, never a leak).
        reported: The set whose figures are reported.

    Returns:
        The leak, or ``None`` when no group of ``reported`` is in an earlier role.
    """
    order = list(DataRole)
    earlier: set[str] = set()
    held: set[str] = set()
    for role, group in roles:
        if group is None:
            continue
        if role is reported:
            held.add(group)
        elif order.index(role) < order.index(reported):
            earlier.add(group)
    shared = sorted(held & earlier)
    if not shared:
        return None
    return Leak(role=reported, shared=len(shared), groups=len(held), first=shared[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """A partition of a dataset into the three roles.

    Attributes:
        train: Training samples.
        selection: Selection samples (checkpoint, learning-rate schedule, calibration).
        test: Test samples; empty when the run keeps no test set (its figures then come from
            the selection set and are labelled optimistic).
        method: How training and selection were separated: ``patient`` (grouped by accession
            or patient id, stratified), ``group`` (grouped by a user column), ``image``
            (stratified by image, no groups known), ``image-leaky`` (by image although groups
            were known) or ``folders`` (given by the data).
        test_from: Where the test set comes from: ``split`` (held out here), ``data`` (a
            ``validation/`` or ``test/`` folder, or a manifest's ``split`` column), ``fold``
            (the held-out fold of a cross-validation) or ``none``.
        leaky: Whether some group (patient, accession or ``group_by`` value) is in two roles.
        group_by: The group column (``None``: accession number, see :func:`group_key`).
    """

    train: tuple[Sample, ...]
    selection: tuple[Sample, ...]
    test: tuple[Sample, ...]
    method: str
    test_from: str
    leaky: bool = False
    group_by: str | None = None

    @property
    def leak(self) -> Leak | None:
        """The reported set's patients that also trained or selected the model (``None``: none)."""
        return self.leak_of(self.reported_role)

    def leak_of(self, role: DataRole) -> Leak | None:
        """The patients of the ``role`` set that an earlier role also holds (``None``: none)."""
        return find_leak(
            (
                (part, group_key(s, self.group_by))
                for part, samples in self.parts()
                for s in samples
            ),
            role,
        )

    @property
    def reported_role(self) -> DataRole:
        """The set whose figures a run reports: the test set, or selection when there is none."""
        return DataRole.TEST if self.test else DataRole.SELECTION

    def parts(self) -> tuple[tuple[DataRole, tuple[Sample, ...]], ...]:
        """Each role with its samples, in the order train, selection, test."""
        return (
            (DataRole.TRAIN, self.train),
            (DataRole.SELECTION, self.selection),
            (DataRole.TEST, self.test),
        )

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (``config.json``'s ``split``): method, leak, sizes."""
        leak = self.leak
        return {
            "method": self.method,
            "test_from": self.test_from,
            "leaky": self.leaky,
            "leak": leak.label if leak is not None else None,
            **{f"{role.value}_images": len(samples) for role, samples in self.parts()},
            **{f"{role.value}_patients": self._groups(samples) for role, samples in self.parts()},
        }

    def _groups(self, samples: Sequence[Sample]) -> int | None:
        """The number of groups (patients) among ``samples``; ``None`` when none is known."""
        groups = {g for s in samples if (g := group_key(s, self.group_by)) is not None}
        return len(groups) if groups else None


def _value(sample: Sample, column: str) -> str | None:
    if column in _ATTRIBUTE_COLUMNS:
        value = getattr(sample, column)
        return None if value is None or value == "" else str(value)
    return sample.extra.get(column) or None


def group_key(sample: Sample, group_by: str | None = None) -> str | None:
    """Return the group ``sample`` must share a side with, or ``None`` when it has none.

    By default that is the patient's accession number (:func:`accession_number`: a BreakHis
    ``14-18842D`` groups with ``14-18842``; other patient ids are kept as they are); with
    ``group_by``, the value of that column.
    """
    if group_by is not None:
        return _value(sample, group_by)
    patient = _value(sample, "patient_id")
    return None if patient is None else accession_number(patient)


def sample_groups(samples: Sequence[Sample], group_by: str | None = None) -> list[str] | None:
    """Return the group of every sample (:func:`group_key`), or ``None`` when none is known.

    Args:
        samples: The images.
        group_by: A column: ``patient_id``, ``subtype``, ``magnification`` or a manifest's extra
            column. ``None`` groups by accession number (patient id) when images have one.

    Raises:
        DataError: Some images have a group and others do not (or ``group_by`` names a column
            an image lacks), so no split could be honest about all of them.
    """
    column = group_by or "patient_id"
    values = [group_key(sample, group_by) for sample in samples]
    known = sum(value is not None for value in values)
    if known == 0 and group_by is None:
        return None
    if known == 0:
        others = sorted(
            {c for s in samples for c in _ATTRIBUTE_COLUMNS if _value(s, c) is not None}
            | {c for s in samples for c in s.extra}
        )
        found = (
            f"; the images have {', '.join(others)}: group by one of those, or"
            if others
            else (", nor any other column to group by:")
        )
        raise DataError(
            f"No image has a {column!r} value to group by{found} give every image a {column} in "
            "a manifest column."
        )
    if known < len(values):
        first = next(s.path for s, value in zip(samples, values, strict=True) if value is None)
        where = (
            "a manifest column, or BreakHis file names"
            if column in _ATTRIBUTE_COLUMNS
            else "a manifest column"
        )
        raise DataError(
            f"{len(values) - known} of {len(values)} images have no {column} (first: {first}): "
            f"give every image a {column} ({where}), or pass "
            "--allow-leaky-split with --split-by image to split images independently."
        )
    return [str(value) for value in values]


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
                "patients of that class, lower --test-fraction to 0, or leave the class out."
            )


def _class_counts(samples: Sequence[Sample], groups: list[str] | None, column: str) -> str:
    """Describe each class's images (and groups): ``'benign' 3 images in 3 patient_id values``."""
    images: Counter[str] = Counter(sample.label for sample in samples)
    members: dict[str, set[str]] = {}
    for sample, group in zip(samples, groups or [""] * len(samples), strict=True):
        members.setdefault(sample.label, set()).add(group)
    return ", ".join(
        f"{label!r} {count} image(s)"
        + (f" in {len(members[label])} {column} value(s)" if groups is not None else "")
        for label, count in sorted(images.items())
    )


def _folds(
    parts: Iterable[tuple[npt.NDArray[Any], npt.NDArray[Any]]],
    *,
    samples: Sequence[Sample],
    groups: list[str] | None,
    column: str,
    n_splits: int,
    what: str,
    remedy: str,
) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    """Run a scikit-learn splitter's ``split`` generator; turn its ``ValueError`` into a
    :class:`DataError` that names each class's image (and group) counts and ``remedy``."""
    try:
        return list(parts)
    except ValueError as error:
        raise DataError(
            f"Cannot cut {len(samples)} images into {n_splits} stratified folds for {what}: "
            f"every class needs at least {n_splits} images"
            + (f" in {n_splits} {column} values" if groups is not None else "")
            + f", and here {_class_counts(samples, groups, column)} "
            f"(scikit-learn: {str(error).rstrip('.')}). {remedy}"
        ) from error


def _grouped_method(group_by: str | None) -> str:
    return "patient" if group_by in (None, "patient_id") else "group"


def _groups(
    samples: Sequence[Sample], by: str, group_by: str | None, allow_leaky: bool
) -> tuple[list[str] | None, bool]:
    """Return the groups to keep together (``None``: split by image) and whether that is leaky."""
    if by == "patient":
        return sample_groups(samples, group_by), False
    column = group_by or "patient_id"
    known = {value for s in samples if (value := group_key(s, group_by)) is not None}
    if known and not allow_leaky:
        raise DataError(
            f"The images have {column} values ({len(known)} groups), and an image-level split "
            "would put one patient on both sides (inflated, leaky scores): keep the default "
            "patient-level split, or pass --allow-leaky-split to split by image anyway "
            "(recorded as leaky)."
        )
    return None, bool(known)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Grouping:
    """How samples are kept together: the split level and its options, shared by every cut."""

    seed: int
    by: str = "patient"
    group_by: str | None = None
    allow_leaky: bool = False


def _hold_out(
    samples: Sequence[Sample], fraction: float, grouping: _Grouping, what: str
) -> tuple[tuple[Sample, ...], tuple[Sample, ...], str]:
    """Hold out ``fraction`` of ``samples``, stratified by class, whole groups together.

    Returns the kept samples, the held-out samples and the method (see :class:`Split`).
    """
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    labels = np.array([sample.label for sample in samples])
    _check_classes(labels, 2, f"a {what} split")
    indices = np.arange(len(samples))
    column = grouping.group_by or "patient_id"
    groups, leaky = _groups(samples, grouping.by, grouping.group_by, grouping.allow_leaky)
    if groups is not None:
        _check_groups(samples, groups, 2, column)
        n_splits = max(2, round(1 / fraction))
        n_groups = len(set(groups))
        if n_groups < n_splits:
            raise DataError(
                f"Only {n_groups} distinct {column} values: too few for a grouped "
                f"{fraction:.0%} {what} split. Add patients, or pass --split-by image "
                "--allow-leaky-split (leaky)."
            )
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=grouping.seed)
        kept, held = _folds(
            splitter.split(indices, labels, groups=groups),
            samples=samples,
            groups=groups,
            column=column,
            n_splits=n_splits,
            what=f"a grouped {fraction:.0%} {what} split (one fold held out)",
            remedy=(
                f"Add patients of every class, raise --{what}-fraction (a fraction f uses "
                "round(1/f) folds), lower --test-fraction to 0, or pass --split-by image "
                "--allow-leaky-split (leaky)."
            ),
        )[0]
        method = _grouped_method(grouping.group_by)
    else:
        try:
            kept, held = train_test_split(
                indices, test_size=fraction, random_state=grouping.seed, stratify=labels
            )
        except ValueError as error:
            raise DataError(
                f"A stratified {fraction:.0%} {what} split of {len(samples)} images with "
                f"{len(set(labels.tolist()))} classes is impossible ({error}): add images or "
                "change the fraction."
            ) from error
        method = "image-leaky" if leaky else "image"
    return (
        tuple(samples[i] for i in sorted(kept)),
        tuple(samples[i] for i in sorted(held)),
        method,
    )


def _crosses(first: Sequence[Sample], second: Sequence[Sample], group_by: str | None) -> bool:
    groups = {value for s in first if (value := group_key(s, group_by)) is not None}
    return any(group_key(s, group_by) in groups for s in second)


def _with_selection(
    development: Sequence[Sample],
    test: tuple[Sample, ...],
    *,
    selection_fraction: float,
    grouping: _Grouping,
    test_from: str,
) -> Split:
    """Carve the selection set out of ``development`` and return the three-role split.

    Raises:
        DataError: A role (the test set too, unless there is none) lacks a class.
    """
    train, selection, method = _hold_out(development, selection_fraction, grouping, "selection")
    leaky = method == "image-leaky" or _crosses((*train, *selection), test, grouping.group_by)
    split = Split(
        train=train,
        selection=selection,
        test=test,
        method=method,
        test_from=test_from,
        leaky=leaky,
        group_by=grouping.group_by,
    )
    _refuse_given_leak(split, grouping)
    classes = {s.label for s in (*development, *test)}
    for role, part in split.parts():
        missing = sorted(classes - {s.label for s in part})
        if missing and (part or role is not DataRole.TEST):
            raise DataError(
                f"The {role.label} has no image of class(es) {missing}: add images (patients) "
                "of every class, or change the split fractions (--test-fraction, "
                "--selection-fraction)."
            )
    return split


def _refuse_given_leak(split: Split, grouping: _Grouping) -> None:
    """Refuse a split the data fixes whose test (or selection) patients also trained the model,
    unless leaks were allowed: its figures would measure recognising patients, not tumours."""
    if split.test_from != "data" or not split.leaky or grouping.allow_leaky:
        return
    leak = split.leak or split.leak_of(DataRole.SELECTION)
    if leak is None:
        return
    column = grouping.group_by or "accession number"
    earlier = "training or selection" if leak.role is DataRole.TEST else "training"
    raise DataError(
        f"The data's own split puts {leak.shared} of {leak.groups} {leak.role.value} patients "
        f"(grouped by {column}) also in {earlier} (first: {leak.first}), so its figures would be "
        "optimistic: move each patient's images into one split folder (or give them one split "
        "in the manifest), or pass --allow-leaky-split to go on (every figure is then "
        "labelled LEAKY)."
    )


def _given(samples: Sequence[Sample], selection_fraction: float, grouping: _Grouping) -> Split:
    """The split of data that fixes its own (folders or a manifest ``split`` column).

    ``train/`` + ``validation/`` is the seed blog's layout, where ``validation/`` is the *test*
    set and the blog carves 20% of ``train/`` to monitor training: so does breastcls. With a
    ``test/`` part too, every role is taken as given.
    """
    by_split: dict[str | None, tuple[Sample, ...]] = {
        name: tuple(s for s in samples if s.split == name)
        for name in ("train", "validation", "test")
    }
    if by_split["test"] and by_split["validation"]:
        train, selection, test = by_split["train"], by_split["validation"], by_split["test"]
        leaky = _crosses(train, selection, grouping.group_by) or _crosses(
            (*train, *selection), test, grouping.group_by
        )
        split = Split(
            train=train,
            selection=selection,
            test=test,
            method="folders",
            test_from="data",
            leaky=leaky,
            group_by=grouping.group_by,
        )
        _refuse_given_leak(split, grouping)
        return split
    test = by_split["test"] or by_split["validation"]
    if not test:
        raise DataError(
            "The data fixes a train split but has no validation or test images: add a "
            "validation/ folder (or 'validation' rows in the manifest's split column), or "
            "remove the split to let breastcls hold out a test set."
        )
    return _with_selection(
        by_split["train"],
        test,
        selection_fraction=selection_fraction,
        grouping=grouping,
        test_from="data",
    )


def split_samples(
    samples: Sequence[Sample],
    *,
    test_fraction: float,
    selection_fraction: float,
    seed: int,
    by: str = "patient",
    group_by: str | None = None,
    allow_leaky: bool = False,
) -> Split:
    """Split ``samples`` into training, selection and test sets.

    Data that fixes its split (``train/``/``validation/``/``test/`` folders or a manifest
    ``split`` column) keeps it, as :func:`_given` describes. Otherwise a stratified split holds
    out ``test_fraction`` of the data as the test set, then ``selection_fraction`` of the rest
    as the selection set. When groups are known (accession numbers, patient ids or the
    ``group_by`` column) and ``by == "patient"``, whole groups move together
    (:class:`sklearn.model_selection.StratifiedGroupKFold` with ``round(1 / fraction)`` folds,
    first fold held out), so no patient is in two roles.

    Args:
        samples: The images.
        test_fraction: Share held out as the test set; ``0`` keeps no test set.
        selection_fraction: Share of the rest held out as the selection set.
        seed: Split seed.
        by: ``patient`` (grouped when groups are known) or ``image``.
        group_by: Group column (see :func:`sample_groups`); ``None`` means accession number.
        allow_leaky: Allow ``by="image"`` on grouped data (the split is then leaky).

    Raises:
        DataError: A class is too small to appear in every role, too few groups (also when
            scikit-learn refuses the folds: the message gives each class's image and group
            counts), some images lack a group, an image-level split of grouped data without
            ``allow_leaky``, or a split the data fixes that puts a test (or selection) patient
            in an earlier role, without ``allow_leaky``.
    """
    grouping = _Grouping(seed=seed, by=by, group_by=group_by, allow_leaky=allow_leaky)
    if any(sample.split for sample in samples):
        return _given(samples, selection_fraction, grouping)
    if test_fraction <= 0:
        return _with_selection(
            samples, (), selection_fraction=selection_fraction, grouping=grouping, test_from="none"
        )
    development, test, _ = _hold_out(samples, test_fraction, grouping, "test")
    return _with_selection(
        development,
        test,
        selection_fraction=selection_fraction,
        grouping=grouping,
        test_from="split",
    )


def _refuse_given_split(samples: Sequence[Sample], what: str) -> None:
    if any(sample.split for sample in samples):
        raise DataError(
            "The data fixes its own split (split folders or a manifest split column): "
            f"{what} needs unsplit data; remove the split, or train without it."
        )


def kfold_splits(
    samples: Sequence[Sample],
    *,
    folds: int,
    seed: int,
    selection_fraction: float = 0.2,
    by: str = "patient",
    group_by: str | None = None,
    allow_leaky: bool = False,
) -> list[Split]:
    """Return the ``folds`` splits of a nested, stratified (group) k-fold cross-validation.

    Each outer fold's held-out patients are its test set, and every image is in exactly one
    test fold; the selection set is carved (``selection_fraction``, by group) from that fold's
    training patients, so no model ever chooses its checkpoint or calibration on its own test
    patients. With groups known (and ``by == "patient"``)
    :class:`~sklearn.model_selection.StratifiedGroupKFold` keeps each group in one fold;
    otherwise :class:`~sklearn.model_selection.StratifiedKFold` splits images.

    Raises:
        DataError: The data fixes its own split, a class has fewer images than folds, fewer
            groups than folds, or an image-level split of grouped data without ``allow_leaky``.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    _refuse_given_split(samples, "cross-validation")
    grouping = _Grouping(seed=seed, by=by, group_by=group_by, allow_leaky=allow_leaky)
    labels = np.array([sample.label for sample in samples])
    _check_classes(labels, folds, f"{folds}-fold cross-validation")
    indices = np.arange(len(samples))
    column = group_by or "patient_id"
    groups, _ = _groups(samples, by, group_by, allow_leaky)
    if groups is not None:
        n_groups = len(set(groups))
        if n_groups < folds:
            raise DataError(
                f"Only {n_groups} distinct {column} values for {folds} folds: use fewer folds."
            )
        _check_groups(samples, groups, 2, column)
        splits = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            indices, labels, groups=groups
        )
    else:
        splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(
            indices, labels
        )
    parts = _folds(
        splits,
        samples=samples,
        groups=groups,
        column=column,
        n_splits=folds,
        what=f"{folds}-fold cross-validation",
        remedy="Use fewer folds, or add patients of every class.",
    )
    return [
        _with_selection(
            [samples[i] for i in sorted(development)],
            tuple(samples[i] for i in sorted(test)),
            selection_fraction=selection_fraction,
            grouping=grouping,
            test_from="fold",
        )
        for development, test in parts
    ]


def spanhol_splits(
    samples: Sequence[Sample],
    *,
    seed: int,
    repeats: int = SPANHOL_REPEATS,
    test_fraction: float = 0.3,
    selection_fraction: float = 0.2,
    group_by: str | None = None,
) -> list[Split]:
    """Return the Spanhol et al. (2016) protocol: ``repeats`` random patient-wise 70/30 splits.

    In each repetition, the patients of each class are shuffled (seeded by ``seed`` and the
    repetition) and ``round(test_fraction * n)`` of them (at least one, at most ``n - 1``) form
    the test set with all their images; patients are stratified by class. The selection set is
    carved (``selection_fraction``, by patient) from the remaining 70%: the paper's "30% for
    testing" is then never seen before the final model is scored.

    Raises:
        DataError: Patient ids (or ``group_by`` values) are unknown, or a class has too few
            patients for three roles.
    """
    _refuse_given_split(samples, "the Spanhol protocol")
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
        if len(members) < 3:
            raise DataError(
                f"Class {label!r} has {len(members)} {column} value(s): the Spanhol protocol "
                "needs at least three per class (training, selection and test)."
            )
    grouping = _Grouping(seed=seed, group_by=group_by)
    splits: list[Split] = []
    for repeat in range(repeats):
        rng = np.random.default_rng([seed, repeat])
        held_out: set[str] = set()
        for _, members in sorted(by_class.items()):
            count = min(len(members) - 2, max(1, round(test_fraction * len(members))))
            order = rng.permutation(len(members))
            held_out.update(members[i] for i in order[:count])
        pairs = list(zip(samples, groups, strict=True))
        splits.append(
            _with_selection(
                [s for s, g in pairs if g not in held_out],
                tuple(s for s, g in pairs if g in held_out),
                selection_fraction=selection_fraction,
                grouping=grouping,
                test_from="fold",
            )
        )
    return splits


def split_for_config(samples: Sequence[Sample], config: DataConfig) -> Split:
    """Return the split a run with ``config`` trains on.

    ``config.folds`` picks fold ``config.fold`` of :func:`kfold_splits`, ``config.protocol``
    picks repetition ``config.fold`` of :func:`spanhol_splits`, and otherwise
    :func:`split_samples` holds out ``config.test_fraction`` and ``config.selection_fraction``.

    Raises:
        DataError: As the function used.
    """
    if config.folds is not None:
        return kfold_splits(
            samples,
            folds=config.folds,
            seed=config.split_seed,
            selection_fraction=config.selection_fraction,
            by=config.split_by,
            group_by=config.group_by,
            allow_leaky=config.allow_leaky_split,
        )[config.fold - 1]
    if config.protocol == "spanhol":
        return spanhol_splits(
            samples,
            seed=config.split_seed,
            selection_fraction=config.selection_fraction,
            group_by=config.group_by,
        )[config.fold - 1]
    return split_samples(
        samples,
        test_fraction=config.test_fraction,
        selection_fraction=config.selection_fraction,
        seed=config.split_seed,
        by=config.split_by,
        group_by=config.group_by,
        allow_leaky=config.allow_leaky_split,
    )
