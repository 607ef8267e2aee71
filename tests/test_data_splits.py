"""Manifests and patient-level splits on the real BreakHis development images (no TensorFlow)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from breastcls import (
    ConfigError,
    DataConfig,
    DataError,
    Sample,
    kfold_splits,
    load_dataset,
    read_manifest,
    spanhol_splits,
    split_samples,
)
from breastcls.data.split import split_for_config


def _patients(samples: tuple[Sample, ...]) -> set[str | None]:
    return {s.patient_id for s in samples}


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
    assert split.method == "patient" and not split.leaky
    assert _patients(split.train).isdisjoint(_patients(split.validation))
    assert len(split.train) + len(split.validation) == 269
    assert {s.label for s in split.validation} == {"benign", "malignant"}


def test_group_by_a_user_column_keeps_biopsies_together(breakhis_dev: Path, tmp_path: Path) -> None:
    rows = (breakhis_dev / "manifest.csv").read_text(encoding="utf-8").splitlines()
    lines = [rows[0] + ",biopsy"] + [f"{row},{_biopsy(row.split(',')[2])}" for row in rows[1:]]
    # The manifest must sit beside the images: link the class folders into a scratch folder.
    for label in ("benign", "malignant"):
        (tmp_path / label).symlink_to(breakhis_dev / label, target_is_directory=True)
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    samples = load_dataset(DataConfig(path=tmp_path / "m.csv")).samples
    biopsies = {s.extra["biopsy"] for s in samples}
    assert len(biopsies) == 31  # 34 patient ids, 3 pairs share a biopsy number
    by_patient = split_samples(samples, fraction=0.2, seed=5)
    by_biopsy = split_samples(samples, fraction=0.2, seed=5, group_by="biopsy")
    assert by_biopsy.method == "group" and not by_biopsy.leaky
    train = {s.extra["biopsy"] for s in by_biopsy.train}
    assert train.isdisjoint({s.extra["biopsy"] for s in by_biopsy.validation})
    shared = {s.extra["biopsy"] for s in by_patient.train} & {
        s.extra["biopsy"] for s in by_patient.validation
    }
    # The patient-level split with this seed puts both halves of some shared biopsy numbers
    # (14-23060AB/CD, 14-29960AB/CD, 14-18842/D) on opposite sides; grouping by biopsy does not.
    assert shared and shared <= {"23060", "29960", "18842"}


def test_a_group_column_missing_on_some_images(small_breakhis: Path) -> None:
    samples = load_dataset(DataConfig(path=small_breakhis)).samples
    tagged = [dataclasses.replace(s, extra={"biopsy": "1"}) for s in samples[:5]] + list(
        samples[5:]
    )
    with pytest.raises(DataError, match=r"15 of 20 images have no biopsy \(first: "):
        split_samples(tagged, fraction=0.2, seed=1, group_by="biopsy")


def test_partly_known_patients_are_refused(small_breakhis: Path) -> None:
    samples = list(load_dataset(DataConfig(path=small_breakhis)).samples)
    samples[0] = dataclasses.replace(samples[0], patient_id=None)
    with pytest.raises(DataError, match="1 of 20 images have no patient_id"):
        split_samples(samples, fraction=0.2, seed=1)


def test_image_split_of_grouped_data_needs_the_leaky_flag(real: tuple[Sample, ...]) -> None:
    with pytest.raises(DataError, match=r"patient_id values \(34 groups\).*--allow-leaky-split"):
        split_samples(real, fraction=0.2, seed=11, by="image")
    split = split_samples(real, fraction=0.2, seed=11, by="image", allow_leaky=True)
    assert split.method == "image-leaky" and split.leaky
    assert len(_patients(split.train) & _patients(split.validation)) > 10
    assert len(split.validation) == 54


def test_five_fold_patient_cross_validation(real: tuple[Sample, ...]) -> None:
    folds = kfold_splits(real, folds=5, seed=11)
    assert len(folds) == 5
    validation = [s.path for fold in folds for s in fold.validation]
    assert sorted(validation) == sorted(s.path for s in real)  # each image validated once
    for fold in folds:
        assert fold.method == "patient"
        assert _patients(fold.train).isdisjoint(_patients(fold.validation))
        assert {s.label for s in fold.validation} == {"benign", "malignant"}
    assert folds == kfold_splits(real, folds=5, seed=11)
    assert folds != kfold_splits(real, folds=5, seed=12)
    fourth = split_for_config(real, DataConfig(path=Path("x"), folds=5, fold=4))
    assert fourth == folds[3]


def test_kfold_refuses_too_many_folds_and_fixed_splits(real: tuple[Sample, ...]) -> None:
    with pytest.raises(DataError, match="Only 34 distinct patient_id values for 40 folds"):
        kfold_splits(real, folds=40, seed=1)
    fixed = [dataclasses.replace(s, split="train") for s in real]
    with pytest.raises(DataError, match="cross-validation needs unsplit data"):
        kfold_splits(fixed, folds=5, seed=1)


def test_spanhol_protocol(real: tuple[Sample, ...]) -> None:
    repeats = spanhol_splits(real, seed=11)
    assert len(repeats) == 5
    for split in repeats:
        assert _patients(split.train).isdisjoint(_patients(split.validation))
        benign = {s.patient_id for s in split.validation if s.label == "benign"}
        malignant = {s.patient_id for s in split.validation if s.label == "malignant"}
        # 30% of 11 benign and of 23 malignant patients.
        assert (len(benign), len(malignant)) == (3, 7)
    assert len({frozenset(_patients(split.validation)) for split in repeats}) == 5
    third = split_for_config(real, DataConfig(path=Path("x"), protocol="spanhol", fold=3))
    assert third == repeats[2]


def test_spanhol_needs_patient_ids(small_breakhis: Path) -> None:
    anonymous = [
        Sample(path=s.path, label=s.label)
        for s in load_dataset(DataConfig(path=small_breakhis)).samples
    ]
    with pytest.raises(DataError, match="Spanhol protocol splits by patient"):
        spanhol_splits(anonymous, seed=1)


def test_fixed_split_with_a_shared_patient_is_labelled_leaky(small_breakhis: Path) -> None:
    samples = load_dataset(DataConfig(path=small_breakhis)).samples
    fixed = [
        dataclasses.replace(s, split="train" if i % 2 else "validation")
        for i, s in enumerate(samples)
    ]
    split = split_samples(fixed, fraction=0.2, seed=1)
    assert split.method == "folders-leaky" and split.leaky


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"folds": 1}, "folds=1 must be at least 2"),
        ({"folds": 5, "protocol": "spanhol"}, "both choose the splits"),
        ({"folds": 5, "fold": 6}, "fold=6 is out of range: this configuration has 5 fold"),
        ({"fold": 2}, "fold=2 is out of range"),
        ({"protocol": "random"}, "protocol='random' is unknown"),
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
        ("--task", "stage", "--task 'stage' is not binary or subtype"),
        ("--split-by", "slide", "--split-by 'slide' is not patient or image"),
        ("--protocol", "random", "--protocol 'random' is unknown"),
        ("--magnification", "250", "magnification=250 is not a BreakHis magnification"),
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
