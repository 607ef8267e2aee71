"""Folder datasets and splits on the real BreakHis development images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from breastcls import DataConfig, DataError, load_dataset
from breastcls.data.breakhis import accession_number, parse_breakhis_name
from breastcls.data.split import split_samples


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


def _seed_layout(root: Path, source: Path, validation: dict[str, list[str]]) -> Path:
    """Copy ``source``'s images to ``root/{train,validation}/<class>/``: the slide ids listed in
    ``validation`` go to validation/, the others to train/."""
    for label in ("benign", "malignant"):
        for image in sorted((source / label).glob("*.png")):
            patient = "-".join(image.name.split("-")[1:3])
            part = "validation" if patient in validation[label] else "train"
            (root / part / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / part / label / image.name)
    return root


def test_train_validation_folders_fix_the_split(small_breakhis: Path, tmp_path: Path) -> None:
    validation = {"benign": ["14-25197"], "malignant": ["14-16188", "14-16336"]}
    root = _seed_layout(tmp_path / "seed-layout", small_breakhis, validation)
    dataset = load_dataset(DataConfig(path=root))
    # Five accessions in train/ (two benign): a selection fraction of 0.4 (two folds) gives the
    # selection set patients of both classes.
    split = split_samples(dataset.samples, test_fraction=0.2, selection_fraction=0.4, seed=11)
    # The blog's layout: validation/ is the test set, the selection set comes out of train/.
    assert (split.method, split.test_from, split.leaky) == ("patient", "data", False)
    assert {s.path.parent.parent.name for s in split.test} == {"validation"}
    assert {s.path.parent.parent.name for s in (*split.train, *split.selection)} == {"train"}
    assert len(split.test) == 6 and len(split.train) + len(split.selection) == 14
    assert {s.label for s in split.selection} == {"benign", "malignant"}
    train, selection = (
        {accession_number(str(s.patient_id)) for s in part}
        for part in (split.train, split.selection)
    )
    assert train.isdisjoint(selection)


def test_validation_folder_sharing_an_accession_with_train_is_leaky(
    small_breakhis: Path, tmp_path: Path
) -> None:
    # 14-29960AB and 14-29960CD are slides of one accession: one in each folder is a leak.
    validation = {"benign": ["14-25197", "14-29960AB"], "malignant": ["14-16188", "14-16336"]}
    root = _seed_layout(tmp_path / "seed-layout", small_breakhis, validation)
    samples = load_dataset(DataConfig(path=root)).samples
    with pytest.raises(DataError, match=r"puts 1 of 4 test patients .*first: 14-29960"):
        split_samples(samples, test_fraction=0.2, selection_fraction=0.34, seed=11)
    split = split_samples(
        samples, test_fraction=0.2, selection_fraction=0.34, seed=11, allow_leaky=True
    )
    assert (split.test_from, split.leaky) == ("data", True)
    assert len(split.test) == 8
    assert split.leak is not None and split.leak.label == (
        "LEAKY: 1 of 4 test patients also trained or selected (optimistic)"
    )


def test_image_level_split_is_the_seeds_stratified_80_20(small_breakhis: Path) -> None:
    from sklearn.model_selection import train_test_split

    samples = [s for s in load_dataset(DataConfig(path=small_breakhis)).samples]
    anonymous = [type(s)(path=s.path, label=s.label) for s in samples]
    split = split_samples(anonymous, test_fraction=0.2, selection_fraction=0.2, seed=11, by="image")
    labels = [s.label for s in samples]
    kept, tested = train_test_split(
        np.arange(len(samples)), test_size=0.2, random_state=11, stratify=labels
    )
    kept = np.sort(kept)
    _, selected = train_test_split(
        np.arange(len(kept)), test_size=0.2, random_state=11, stratify=[labels[i] for i in kept]
    )
    assert {s.path for s in split.test} == {samples[i].path for i in tested}
    assert {s.path for s in split.selection} == {samples[kept[i]].path for i in selected}
    assert (split.method, split.leaky, split.test_from) == ("image", False, "split")
    assert (len(split.train), len(split.selection), len(split.test)) == (12, 4, 4)


def test_default_split_of_real_data_is_patient_disjoint(breakhis_dev: Path) -> None:
    samples = load_dataset(DataConfig(path=breakhis_dev)).samples
    split = split_samples(samples, test_fraction=0.2, selection_fraction=0.2, seed=11)
    assert split.method == "patient" and not split.leaky
    roles = [{accession_number(str(s.patient_id)) for s in part} for _, part in split.parts()]
    assert not roles[0] & roles[1] and not roles[0] & roles[2] and not roles[1] & roles[2]
    for _, part in split.parts():
        assert {s.label for s in part} == {"benign", "malignant"}
    assert 0.1 < len(split.test) / len(samples) < 0.35
    assert 0.1 < len(split.selection) / (len(samples) - len(split.test)) < 0.35


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


def test_the_folder_of_one_class_is_named_as_such(small_breakhis: Path) -> None:
    benign = small_breakhis / "benign"
    count = len(list(benign.glob("*.png")))
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(path=benign))
    message = str(raised.value)
    assert f"{benign} holds {count} images but no class folders" in message
    assert f"Pass the folder above it ({small_breakhis})" in message


def test_stray_files_are_skipped_and_recorded(small_breakhis: Path) -> None:
    (small_breakhis / "benign" / ".DS_Store").write_bytes(b"\0")
    (small_breakhis / "benign" / "notes.txt").write_text("x")
    dataset = load_dataset(DataConfig(path=small_breakhis))
    reasons = {item.path.name: item.reason for item in dataset.skipped}
    assert reasons[".DS_Store"] == "operating-system file"
    assert reasons["notes.txt"].startswith("not an image extension")
    assert len(dataset.samples) == 20
