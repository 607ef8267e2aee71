"""Folder datasets and splits on the real BreakHis development images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from breastcls import DataConfig, DataError, load_dataset, parse_breakhis_name, split_samples


def test_the_real_folder_loads_with_patients_from_breakhis_names(breakhis_dev: Path) -> None:
    dataset = load_dataset(DataConfig(path=breakhis_dev))
    assert dataset.class_names == ("benign", "malignant")
    labels = [s.label for s in dataset.samples]
    assert (labels.count("benign"), labels.count("malignant")) == (94, 175)
    assert len({s.patient_id for s in dataset.samples}) == 34
    assert {s.magnification for s in dataset.samples} == {40, 100, 200, 400}
    # manifest.csv and provenance.csv sit beside the class folders: not images, and not inside
    # a class folder, so nothing is skipped.
    assert dataset.skipped == ()


def test_magnification_filter(breakhis_dev: Path) -> None:
    dataset = load_dataset(DataConfig(path=breakhis_dev, magnification=200))
    assert len(dataset.samples) == 255


def test_breakhis_names_parse_including_the_15_prefix() -> None:
    parsed = parse_breakhis_name("SOB_B_TA-15-190EF-100-001.png")
    assert parsed is not None
    assert (parsed.label, parsed.subtype, parsed.patient_id, parsed.magnification) == (
        "benign",
        "TA",
        "15-190EF",
        100,
    )
    assert parse_breakhis_name("slide_001.png") is None


def test_train_validation_folders_fix_the_split(small_breakhis: Path, tmp_path: Path) -> None:
    root = tmp_path / "seed-layout"
    for label in ("benign", "malignant"):
        images = sorted((small_breakhis / label).glob("*.png"))
        for split, part in (("train", images[:6]), ("validation", images[6:])):
            (root / split / label).mkdir(parents=True)
            for image in part:
                shutil.copy(image, root / split / label / image.name)
    dataset = load_dataset(DataConfig(path=root))
    split = split_samples(dataset.samples, fraction=0.2, seed=11)
    assert split.method == "folders"
    assert (len(split.train), len(split.validation)) == (12, 8)


def test_image_level_split_is_the_seeds_stratified_80_20(small_breakhis: Path) -> None:
    from sklearn.model_selection import train_test_split

    samples = [s for s in load_dataset(DataConfig(path=small_breakhis)).samples]
    anonymous = [type(s)(path=s.path, label=s.label) for s in samples]
    split = split_samples(anonymous, fraction=0.2, seed=11, by="image")
    _, expected = train_test_split(
        np.arange(len(samples)), test_size=0.2, random_state=11, stratify=[s.label for s in samples]
    )
    assert {s.path for s in split.validation} == {samples[i].path for i in expected}
    assert split.method == "image" and len(split.validation) == 4


def test_default_split_of_real_data_is_patient_disjoint(breakhis_dev: Path) -> None:
    samples = load_dataset(DataConfig(path=breakhis_dev)).samples
    split = split_samples(samples, fraction=0.2, seed=11)
    assert split.method == "patient" and not split.leaky
    assert not {s.patient_id for s in split.train} & {s.patient_id for s in split.validation}
    assert {s.label for s in split.validation} == {"benign", "malignant"}
    assert 0.1 < len(split.validation) / len(samples) < 0.35


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist: pass --data"):
        load_dataset(DataConfig(path=tmp_path / "missing"))


def test_empty_class_folder(small_breakhis: Path) -> None:
    (small_breakhis / "normal").mkdir()
    with pytest.raises(DataError, match="normal' holds no images"):
        load_dataset(DataConfig(path=small_breakhis))


def test_a_single_class_is_refused(small_breakhis: Path) -> None:
    shutil.rmtree(small_breakhis / "malignant")
    with pytest.raises(DataError, match="1 class folder\\(s\\) \\(found: benign\\)"):
        load_dataset(DataConfig(path=small_breakhis))


def test_stray_files_are_skipped_and_recorded(small_breakhis: Path) -> None:
    (small_breakhis / "benign" / ".DS_Store").write_bytes(b"\0")
    (small_breakhis / "benign" / "notes.txt").write_text("x")
    dataset = load_dataset(DataConfig(path=small_breakhis))
    reasons = {item.path.name: item.reason for item in dataset.skipped}
    assert reasons[".DS_Store"] == "operating-system file"
    assert reasons["notes.txt"].startswith("not an image extension")
    assert len(dataset.samples) == 20
