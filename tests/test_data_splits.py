"""Manifests and patient-level splits on the real BreakHis development images (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from breastcls import ConfigError, DataConfig, DataError, load_dataset
from breastcls.data.manifest import read_manifest
from breastcls.data.split import (
    Split,
    group_key,
    kfold_splits,
    spanhol_splits,
    split_for_config,
    split_samples,
)
from breastcls.interfaces import DataRole, Sample


def _patients(samples: tuple[Sample, ...]) -> set[str | None]:
    return {s.patient_id for s in samples}


def _accessions(samples: tuple[Sample, ...]) -> set[str | None]:
    """The accession numbers (``14-18842D`` -> ``14-18842``) of ``samples``."""
    return {group_key(s) for s in samples}


def _assert_roles_disjoint(
    split: Split, key: Callable[[tuple[Sample, ...]], set[Any]] = _accessions
) -> None:
    """No group in two roles, and the three roles together hold no image twice."""
    train, selection, test = (key(samples) for _, samples in split.parts())
    assert train.isdisjoint(selection) and train.isdisjoint(test) and selection.isdisjoint(test)
    paths = [s.path for _, samples in split.parts() for s in samples]
    assert len(paths) == len(set(paths))


def _biopsy(patient_id: str) -> str:
    """The biopsy number of a BreakHis id: ``14-29960AB`` -> ``29960``."""
    return "".join(ch for ch in patient_id.split("-")[1] if ch.isdigit())


@pytest.fixture(scope="module")
def real(breakhis_dev: Path) -> tuple[Sample, ...]:
    return load_dataset(DataConfig(path=breakhis_dev / "manifest.csv")).samples


def test_the_real_manifest_loads(breakhis_dev: Path) -> None:
    dataset = read_manifest(breakhis_dev / "manifest.csv")
    assert dataset.class_names == ("benign", "malignant")
    assert len(dataset.samples) == 269
    assert len(_patients(dataset.samples)) == 34
    first = dataset.samples[0]
    assert first.path == breakhis_dev / "benign" / "SOB_B_A-14-29960CD-200-002.png"
    assert (first.patient_id, first.subtype, first.magnification) == ("14-29960CD", "A", 200)
    assert sum(s.magnification == 200 for s in dataset.samples) == 255


def test_manifest_extra_columns_and_names_filling_gaps(small_breakhis: Path) -> None:
    images = sorted(small_breakhis.rglob("*.png"))
    lines = ["path,label,biopsy,scanner"]
    lines += [
        f"{p.relative_to(small_breakhis)},{p.parent.name},b{i % 3},s1" for i, p in enumerate(images)
    ]
    (small_breakhis / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dataset = load_dataset(DataConfig(path=small_breakhis / "m.csv"))
    assert len(dataset.samples) == 20
    assert dataset.samples[1].extra == {"biopsy": "b1", "scanner": "s1"}
    # No patient_id column: the BreakHis file names give them.
    assert len(_patients(dataset.samples)) == 10 and None not in _patients(dataset.samples)


def test_default_split_of_the_real_manifest_is_patient_disjoint(real: tuple[Sample, ...]) -> None:
    split = split_for_config(real, DataConfig(path=Path("unused")))
    assert (split.method, split.test_from, split.leaky) == ("patient", "split", False)
    assert [role for role, _ in split.parts()] == [
        DataRole.TRAIN,
        DataRole.SELECTION,
        DataRole.TEST,
    ]
    _assert_roles_disjoint(split)
    assert len(split.train) + len(split.selection) + len(split.test) == 269
    for _, samples in split.parts():
        assert {s.label for s in samples} == {"benign", "malignant"}
    # 31 accessions: about a fifth is the test set, a fifth of the rest the selection set.
    assert (len(_accessions(split.test)), len(_accessions(split.selection))) == (6, 5)
    assert split.reported_role is DataRole.TEST
    assert split.describe() == {
        "method": "patient",
        "test_from": "split",
        "leaky": False,
        "leak": None,
        "train_images": len(split.train),
        "selection_images": len(split.selection),
        "test_images": len(split.test),
        "train_patients": 20,
        "selection_patients": 5,
        "test_patients": 6,
    }
    assert split == split_for_config(real, DataConfig(path=Path("unused")))
    assert split != split_for_config(real, DataConfig(path=Path("unused"), split_seed=12))


def test_accession_siblings_share_a_role(real: tuple[Sample, ...]) -> None:
    # 14-18842 / 14-18842D, 14-23060AB / CD and 14-29960AB / CD are slides of one accession.
    for seed in range(1, 6):
        split = split_samples(real, test_fraction=0.2, selection_fraction=0.2, seed=seed)
        _assert_roles_disjoint(split)
        roles = {s.patient_id: role for role, samples in split.parts() for s in samples}
        assert roles["14-18842"] == roles["14-18842D"]
        assert roles["14-23060AB"] == roles["14-23060CD"]
        assert roles["14-29960AB"] == roles["14-29960CD"]


def test_a_test_fraction_of_zero_keeps_no_test_set(real: tuple[Sample, ...]) -> None:
    split = split_samples(real, test_fraction=0.0, selection_fraction=0.2, seed=11)
    assert (split.test, split.test_from, split.leaky) == ((), "none", False)
    assert split.reported_role is DataRole.SELECTION
    _assert_roles_disjoint(split)
    assert len(split.train) + len(split.selection) == 269
    assert split.describe()["test_images"] == 0


def test_group_by_a_user_column_keeps_biopsies_together(breakhis_dev: Path, tmp_path: Path) -> None:
    rows = (breakhis_dev / "manifest.csv").read_text(encoding="utf-8").splitlines()
    lines = [rows[0] + ",biopsy"] + [f"{row},{_biopsy(row.split(',')[2])}" for row in rows[1:]]
    # The manifest must sit beside the images (a symbolic link out of its folder is refused).
    for label in ("benign", "malignant"):
        shutil.copytree(breakhis_dev / label, tmp_path / label)
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    samples = load_dataset(DataConfig(path=tmp_path / "m.csv")).samples
    biopsies = {s.extra["biopsy"] for s in samples}
    assert len(biopsies) == 31  # 34 patient ids, 3 pairs share a biopsy number
    fractions = {"test_fraction": 0.2, "selection_fraction": 0.2, "seed": 5}
    by_slide = split_samples(samples, group_by="patient_id", **fractions)
    by_biopsy = split_samples(samples, group_by="biopsy", **fractions)
    by_default = split_samples(samples, **fractions)

    def biopsies(split: Split) -> list[set[str]]:
        return [{s.extra["biopsy"] for s in part} for _, part in split.parts()]

    assert by_biopsy.method == "group" and not by_biopsy.leaky
    _assert_roles_disjoint(by_biopsy, key=lambda part: {s.extra["biopsy"] for s in part})
    # The default groups by accession number, which keeps the biopsies together too.
    assert by_default.method == "patient" and not by_default.leaky
    _assert_roles_disjoint(by_default, key=lambda part: {s.extra["biopsy"] for s in part})
    # Grouping by the raw slide id with this seed puts both halves of some shared biopsy numbers
    # (14-23060AB/CD, 14-29960AB/CD, 14-18842/D) in different roles.
    train, selection, test = biopsies(by_slide)
    shared = (train & selection) | (train & test) | (selection & test)
    assert shared and shared <= {"23060", "29960", "18842"}


def test_a_group_column_missing_on_some_images(small_breakhis: Path) -> None:
    samples = load_dataset(DataConfig(path=small_breakhis)).samples
    tagged = [dataclasses.replace(s, extra={"biopsy": "1"}) for s in samples[:5]] + list(
        samples[5:]
    )
    with pytest.raises(DataError, match=r"15 of 20 images have no biopsy \(first: "):
        split_samples(tagged, test_fraction=0.2, selection_fraction=0.2, seed=1, group_by="biopsy")


def test_partly_known_patients_are_refused(small_breakhis: Path) -> None:
    samples = list(load_dataset(DataConfig(path=small_breakhis)).samples)
    samples[0] = dataclasses.replace(samples[0], patient_id=None)
    with pytest.raises(DataError, match="1 of 20 images have no patient_id"):
        split_samples(samples, test_fraction=0.2, selection_fraction=0.2, seed=1)


def test_image_split_of_grouped_data_needs_the_leaky_flag(real: tuple[Sample, ...]) -> None:
    fractions = {"test_fraction": 0.2, "selection_fraction": 0.2, "seed": 11}
    # 34 slide ids, 31 accession numbers: the groups counted are the accessions.
    with pytest.raises(DataError, match=r"patient_id values \(31 groups\).*--allow-leaky-split"):
        split_samples(real, by="image", **fractions)
    split = split_samples(real, by="image", allow_leaky=True, **fractions)
    assert split.method == "image-leaky" and split.leaky
    assert len(_patients(split.train) & _patients(split.test)) > 10
    assert len(_patients(split.train) & _patients(split.selection)) > 10
    # 20% of 269 images is the test set, 20% of the other 215 the selection set.
    assert (len(split.test), len(split.selection), len(split.train)) == (54, 43, 172)


def test_five_fold_patient_cross_validation(real: tuple[Sample, ...]) -> None:
    folds = kfold_splits(real, folds=5, seed=11)
    assert len(folds) == 5
    tested = [s.path for fold in folds for s in fold.test]
    assert sorted(tested) == sorted(s.path for s in real)  # each image tested once
    for fold in folds:
        assert (fold.method, fold.test_from, fold.leaky) == ("patient", "fold", False)
        # Nested: the selection set is carved from the fold's training patients.
        _assert_roles_disjoint(fold)
        assert len(fold.train) + len(fold.selection) + len(fold.test) == 269
        for _, samples in fold.parts():
            assert {s.label for s in samples} == {"benign", "malignant"}
    assert kfold_splits(real, folds=5, seed=11, selection_fraction=0.3)[0].test == folds[0].test
    assert kfold_splits(real, folds=5, seed=11, selection_fraction=0.3)[0] != folds[0]
    assert folds == kfold_splits(real, folds=5, seed=11)
    assert folds != kfold_splits(real, folds=5, seed=12)
    fourth = split_for_config(real, DataConfig(path=Path("x"), folds=5, fold=4))
    assert fourth == folds[3]


def test_kfold_refuses_too_many_folds_and_fixed_splits(real: tuple[Sample, ...]) -> None:
    with pytest.raises(DataError, match="Only 31 distinct patient_id values for 40 folds"):
        kfold_splits(real, folds=40, seed=1)
    fixed = [dataclasses.replace(s, split="train") for s in real]
    with pytest.raises(DataError, match="cross-validation needs unsplit data"):
        kfold_splits(fixed, folds=5, seed=1)


def test_spanhol_protocol(real: tuple[Sample, ...]) -> None:
    repeats = spanhol_splits(real, seed=11)
    assert len(repeats) == 5
    for split in repeats:
        assert (split.method, split.test_from, split.leaky) == ("patient", "fold", False)
        _assert_roles_disjoint(split)
        assert len(split.train) + len(split.selection) + len(split.test) == 269
        benign = {group_key(s) for s in split.test if s.label == "benign"}
        malignant = {group_key(s) for s in split.test if s.label == "malignant"}
        # 30% of the 9 benign and of the 22 malignant accession numbers.
        assert (len(benign), len(malignant)) == (3, 7)
        for _, samples in split.parts():
            assert {s.label for s in samples} == {"benign", "malignant"}
    assert len({frozenset(_accessions(split.test)) for split in repeats}) == 5
    third = split_for_config(real, DataConfig(path=Path("x"), protocol="spanhol", fold=3))
    assert third == repeats[2]


def test_spanhol_needs_patient_ids(small_breakhis: Path) -> None:
    anonymous = [
        Sample(path=s.path, label=s.label)
        for s in load_dataset(DataConfig(path=small_breakhis)).samples
    ]
    with pytest.raises(DataError, match="Spanhol protocol splits by patient"):
        spanhol_splits(anonymous, seed=1)


def test_spanhol_needs_three_patients_per_class(small_breakhis: Path) -> None:
    samples = load_dataset(DataConfig(path=small_breakhis)).samples
    benign = sorted(_accessions(tuple(s for s in samples if s.label == "benign")))
    two_benign = [s for s in samples if s.label != "benign" or group_key(s) in benign[:2]]
    with pytest.raises(DataError, match=r"'benign' has 2 patient_id value.*at least three"):
        spanhol_splits(two_benign, seed=1)
    fixed = [dataclasses.replace(s, split="train") for s in samples]
    with pytest.raises(DataError, match="Spanhol protocol needs unsplit data"):
        spanhol_splits(fixed, seed=1)


def test_fixed_split_with_a_shared_patient_is_refused_or_labelled_leaky(
    small_breakhis: Path,
) -> None:
    samples = load_dataset(DataConfig(path=small_breakhis)).samples
    fixed = [
        dataclasses.replace(s, split="train" if i % 2 else "validation")
        for i, s in enumerate(samples)
    ]
    # Two images per slide, alternating: every one of the 8 accessions is on both sides.
    with pytest.raises(DataError, match=r"puts 8 of 8 test patients .* --allow-leaky-split"):
        split_samples(fixed, test_fraction=0.2, selection_fraction=0.2, seed=1)
    split = split_samples(
        fixed, test_fraction=0.2, selection_fraction=0.2, seed=1, allow_leaky=True
    )
    assert split.test_from == "data" and split.leaky
    assert split.leak is not None
    assert split.leak.label == "LEAKY: 8 of 8 test patients also trained or selected (optimistic)"
    assert {s.path for s in split.test} == {s.path for s in fixed if s.split == "validation"}


def test_train_and_validation_folders_make_validation_the_test_set(
    real: tuple[Sample, ...],
) -> None:
    # The blog's layout: validation/ is the test set; the selection set is carved from train/.
    whole = split_samples(real, test_fraction=0.2, selection_fraction=0.2, seed=11)
    test = {s.path for s in whole.test}
    fixed = [
        dataclasses.replace(s, split="validation" if s.path in test else "train") for s in real
    ]
    split = split_samples(fixed, test_fraction=0.5, selection_fraction=0.2, seed=11)
    assert (split.method, split.test_from, split.leaky) == ("patient", "data", False)
    assert {s.path for s in split.test} == test  # test_fraction does not apply
    _assert_roles_disjoint(split)
    assert {s.path for s in (*split.train, *split.selection)} == {s.path for s in whole.train} | {
        s.path for s in whole.selection
    }
    assert {s.label for s in split.selection} == {"benign", "malignant"}
    other_seed = split_samples(fixed, test_fraction=0.2, selection_fraction=0.2, seed=12)
    assert other_seed.test == split.test and other_seed.selection != split.selection


def test_train_validation_and_test_parts_are_taken_as_given(real: tuple[Sample, ...]) -> None:
    whole = split_samples(real, test_fraction=0.2, selection_fraction=0.2, seed=11)
    role_of = {s.path: role for role, samples in whole.parts() for s in samples}
    name = {DataRole.TRAIN: "train", DataRole.SELECTION: "validation", DataRole.TEST: "test"}
    fixed = [dataclasses.replace(s, split=name[role_of[s.path]]) for s in real]
    split = split_samples(fixed, test_fraction=0.2, selection_fraction=0.2, seed=99)
    assert (split.method, split.test_from, split.leaky) == ("folders", "data", False)
    for (role, given), (_, carved) in zip(split.parts(), whole.parts(), strict=True):
        assert {s.path for s in given} == {s.path for s in carved}, role
    # A patient in two given parts makes the split leaky.
    tested = next(s for s in fixed if s.split == "test")
    first = next(i for i, s in enumerate(fixed) if s.split == "train")
    crossing = list(fixed)
    crossing[first] = dataclasses.replace(fixed[first], patient_id=tested.patient_id)
    with pytest.raises(DataError, match="--allow-leaky-split"):
        split_samples(crossing, test_fraction=0.2, selection_fraction=0.2, seed=99)
    leaky = split_samples(
        crossing, test_fraction=0.2, selection_fraction=0.2, seed=99, allow_leaky=True
    )
    assert leaky.method == "folders" and leaky.leaky
    assert leaky.leak is not None and (leaky.leak.shared, leaky.leak.groups) == (1, 6)


def test_a_train_split_without_validation_or_test_is_refused(real: tuple[Sample, ...]) -> None:
    fixed = [dataclasses.replace(s, split="train") for s in real]
    with pytest.raises(DataError, match="has no validation or test images"):
        split_samples(fixed, test_fraction=0.2, selection_fraction=0.2, seed=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"folds": 1}, "folds=1 must be at least 2"),
        ({"folds": 5, "protocol": "spanhol"}, "both choose the splits"),
        ({"folds": 5, "fold": 6}, "fold=6 is out of range: this configuration has 5 fold"),
        ({"fold": 2}, "fold=2 is out of range"),
        ({"protocol": "random"}, "protocol='random' is not allowed: use one of 'spanhol' or None"),
        ({"group_by": "biopsy", "split_by": "image"}, "contradict each other"),
    ],
)
def test_split_options_are_validated(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DataConfig(path=Path("x"), **options)  # type: ignore[arg-type]


def test_magnification_and_subtype_task_on_the_manifest(breakhis_dev: Path) -> None:
    dataset = load_dataset(
        DataConfig(path=breakhis_dev / "manifest.csv", magnification=200, task="subtype")
    )
    assert len(dataset.samples) == 255
    assert dataset.class_names == ("A", "DC", "F", "MC", "PC", "TA")


def test_copy_of_manifest_elsewhere_resolves_paths_relative_to_it(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    shutil.copy(breakhis_dev / "manifest.csv", tmp_path / "manifest.csv")
    with pytest.raises(DataError, match=r"names 269 file\(s\) that do not exist: line 2: "):
        read_manifest(tmp_path / "manifest.csv")


def _train_cli(*args: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from breastcls.cli.app import app

    result = CliRunner().invoke(
        app, ["train", "--backbone", "smallcnn", "--weights", "none", *args]
    )
    return result.exit_code, result.output


def test_cli_task_subtype_uses_subtype_classes(breakhis_dev: Path, tmp_path: Path) -> None:
    # At 200X, adenosis (A) comes from a single patient: a patient-level split cannot put it on
    # both sides, and the error says so before anything is trained or written.
    code, output = _train_cli(
        "--data", str(breakhis_dev), "--task", "subtype", "--magnification", "200",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "Class 'A' has images of only 1 patient_id value(s)" in output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--task", "stage", "Invalid value for '--task'"),
        ("--split-by", "slide", "Invalid value for '--split-by'"),
        ("--protocol", "random", "Invalid value for '--protocol'"),
        ("--magnification", "250", "Invalid value for '--magnification'"),
    ],
)
def test_cli_data_options_are_validated(
    breakhis_dev: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    code, output = _train_cli("--data", str(breakhis_dev), option, value, "--out", str(tmp_path))
    assert code == 2 and message in output


def test_cli_folds_too_many_for_the_patients(breakhis_dev: Path, tmp_path: Path) -> None:
    code, output = _train_cli(
        "--data", str(breakhis_dev), "--folds", "12", "--magnification", "40",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "Every class needs at least 12 images for 12-fold cross-validation" in output
    assert list(tmp_path.iterdir()) == []
