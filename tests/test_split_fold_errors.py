"""scikit-learn's fold errors reach users as :class:`DataError` s naming the class counts.

A grouped 20% split uses ``StratifiedGroupKFold`` with five folds, which raises a plain
``ValueError`` when every class has fewer than five images; breastcls says which classes hold
how many images and groups, and what to do. ``breastcls data check`` reports it as a ``split``
issue instead of crashing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from breastcls import DataConfig, DataError, check_data
from breastcls.data.split import kfold_splits, split_samples
from breastcls.interfaces import Sample

# Three patients a class, one image each: six groups (enough for five folds in all), but no
# class has the five members scikit-learn needs for five stratified folds.
_TINY = [("a", f"a-{i}") for i in range(3)] + [("b", f"b-{i}") for i in range(3)]
_COUNTS = "'a' 3 image(s) in 3 patient_id value(s), 'b' 3 image(s) in 3 patient_id value(s)"


def _samples(split: str | None = None) -> tuple[Sample, ...]:
    return tuple(
        Sample(path=Path(f"{patient}.png"), label=label, patient_id=patient, split=split)
        for label, patient in _TINY
    )


def test_a_grouped_test_split_of_too_few_images_per_class_is_a_data_error() -> None:
    with pytest.raises(DataError) as caught:
        split_samples(_samples(), test_fraction=0.2, selection_fraction=0.2, seed=0)
    message = str(caught.value)
    assert message.startswith(
        "Cannot cut 6 images into 5 stratified folds for a grouped 20% test split (one fold "
        "held out): every class needs at least 5 images in 5 patient_id values, and here "
        f"{_COUNTS} (scikit-learn: n_splits=5 cannot be greater than the number of members "
        "in each class). "
    )
    assert message.endswith(
        "Add patients of every class, raise --test-fraction (a fraction f uses round(1/f) "
        "folds), lower --test-fraction to 0, or pass --split-by image --allow-leaky-split "
        "(leaky)."
    )
    assert isinstance(caught.value.__cause__, ValueError)


def test_the_selection_carve_says_selection() -> None:
    # No test set: the same data fails where the selection set is carved.
    with pytest.raises(DataError, match=r"for a grouped 20% selection split .* raise "):
        split_samples(_samples(), test_fraction=0, selection_fraction=0.2, seed=0)
    # Data that fixes train/ and validation/: the selection set is carved from train/.
    validation = tuple(
        Sample(path=Path(f"v{i}.png"), label="ab"[i], patient_id=f"v-{i}", split="validation")
        for i in range(2)
    )
    expected = (
        "selection split (one fold held out): every class needs at least 5 images in 5 "
        f"patient_id values, and here {_COUNTS}"
    )
    with pytest.raises(DataError, match=re.escape(expected)):
        split_samples(
            (*_samples("train"), *validation), test_fraction=0.2, selection_fraction=0.2, seed=0
        )
    # A larger fraction means fewer folds: half of the patients is a split scikit-learn makes.
    split = split_samples(_samples(), test_fraction=0, selection_fraction=0.5, seed=0)
    assert {s.label for s in split.train} == {s.label for s in split.selection} == {"a", "b"}
    assert len(split.train) + len(split.selection) == 6 and not split.leaky


def test_cross_validation_wraps_the_splitter_error_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.model_selection import StratifiedGroupKFold

    def refuse(*args: object, **kwargs: object) -> object:
        raise ValueError("the splitter refused")
        yield  # a generator, like scikit-learn's: the error comes while iterating

    monkeypatch.setattr(StratifiedGroupKFold, "split", refuse)
    samples = tuple(
        Sample(path=Path(f"{label}{i}.png"), label=label, patient_id=f"{label}-{i}")
        for label in "ab"
        for i in range(4)
    )
    with pytest.raises(DataError) as caught:
        kfold_splits(samples, folds=3, seed=0)
    assert str(caught.value) == (
        "Cannot cut 8 images into 3 stratified folds for 3-fold cross-validation: every class "
        "needs at least 3 images in 3 patient_id values, and here 'a' 4 image(s) in 4 "
        "patient_id value(s), 'b' 4 image(s) in 4 patient_id value(s) (scikit-learn: the "
        "splitter refused). Use fewer folds, or add patients of every class."
    )


def test_data_check_reports_the_fold_error_instead_of_crashing(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = ["path,label,patient_id"]
    for index, (label, patient) in enumerate(_TINY):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / f"{index}.png"
        )
        rows.append(f"{index}.png,{label},{patient}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = check_data(manifest)
    assert report.split_source == "none" and report.split is None and not report.ok
    (issue,) = report.errors
    assert issue.kind == "split"
    assert issue.message.startswith(
        "No usable split: Cannot cut 6 images into 5 stratified folds for a grouped 20% test split"
    )
    assert _COUNTS in issue.message
    assert report.per_split == {"(unsplit)": {"a": 3, "b": 3}}
    # Without a test set the check still fails, at the selection carve, and says so.
    no_test = check_data(manifest, config=DataConfig(path=manifest, test_fraction=0))
    assert "grouped 20% selection split" in no_test.errors[0].message
