"""``breastcls data check``: planted duplicates, leaks and bad files are each reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from breastcls import DataConfig, check_data
from breastcls.cli.app import app
from breastcls.cli.data_report import format_report


def _patient(path: Path) -> str:
    return "-".join(path.name.split("-")[1:3])


@pytest.fixture()
def planted(small_breakhis: Path, tmp_path: Path) -> Path:
    """Real images in train/, validation/ and test/ (whole patients: three, one and one per
    class), then planted problems.

    With a test/ folder every role is given: train/ is ``train``, validation/ ``selection``,
    test/ ``test``. Benign patients, sorted: 14-23060AB, 14-23060CD, 14-25197 (train),
    14-29960AB (selection), 14-29960CD (test): the last two are slides of one accession.
    """
    root = tmp_path / "planted"
    for label in ("benign", "malignant"):
        images = sorted((small_breakhis / label).glob("*.png"))
        patients = sorted({_patient(p) for p in images})
        folders = {patient: "train" for patient in patients[:3]}
        folders |= {patients[3]: "validation", patients[4]: "test"}
        for image in images:
            split = folders[_patient(image)]
            (root / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / split / label / image.name)
    train_benign = sorted((root / "train" / "benign").glob("*.png"))
    train_malignant = sorted((root / "train" / "malignant").glob("*.png"))
    # 1. The same file in train and test (its patient, 14-23060AB, is then in both roles,
    #    and its accession's other slide, 14-23060CD, only in train).
    leaked = train_benign[0]
    shutil.copy(leaked, root / "test" / "benign" / leaked.name.replace("-0", "-9"))
    # 2. The same pixels as a TIFF in test.
    source = train_malignant[0]
    Image.open(source).save(root / "test" / "malignant" / "copy-as.tif")
    # 3. A duplicate inside train (same label): a warning.
    shutil.copy(train_benign[1], root / "train" / "benign" / "again.png")
    # 4. A duplicate with another label: an error.
    shutil.copy(train_malignant[1], root / "train" / "benign" / "mislabelled.png")
    # 5. Bad and stray files.
    bad = root / "train" / "benign"
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.png").write_text("hello", encoding="utf-8")
    content = source.read_bytes()
    (bad / "cut.png").write_bytes(content[: len(content) // 3])
    for stray in (".DS_Store", "Thumbs.db", "desktop.ini", "notes.txt", ".hidden.png"):
        (bad / stray).write_bytes(b"x")
    (bad / "loop").symlink_to(bad, target_is_directory=True)
    pages = Image.open(train_benign[2]).convert("RGB").rotate(180)
    pages.save(bad / "pages.tif", save_all=True, append_images=[pages.rotate(90)])
    return root


def test_every_planted_problem_is_reported(planted: Path) -> None:
    report = check_data(planted)
    assert report.split_source == "data" and report.split_method == "folders"
    assert report.split is not None and report.split.leaky
    assert not report.ok
    assert report.per_split == {
        # train/benign: 6 images, 2 planted copies, pages.tif and the 3 unreadable files.
        "train": {"benign": 12, "malignant": 6},
        "selection": {"benign": 2, "malignant": 2},
        "test": {"benign": 3, "malignant": 3},
    }
    by_kind: dict[str, list[tuple[str, str]]] = {}
    for issue in report.issues:
        by_kind.setdefault(issue.kind, []).append((issue.severity, issue.message))

    assert sorted(item.path.name for item in report.unreadable) == [
        "cut.png",
        "empty.png",
        "text.png",
    ]
    assert [severity for severity, _ in by_kind["unreadable"]] == ["error"] * 3

    files = {tuple(p.name for p in g.paths): g for g in report.duplicates if g.kind == "file"}
    assert len(files) == 3
    leak = next(g for g in files.values() if g.crosses_splits)
    assert leak.splits == ("train", "test") and leak.labels == ("benign",)
    file_messages = sorted(by_kind["duplicate-file"])
    assert [s for s, _ in file_messages] == ["error", "error", "warning"]
    assert any(
        m.startswith("LEAK: identical files in several roles train/test") for _, m in file_messages
    )
    assert any("image is in the train and test sets; keep one copy" in m for _, m in file_messages)
    assert any("different labels (benign, malignant): keep the copy" in m for _, m in file_messages)
    assert any(m.startswith("identical files in one role") for _, m in file_messages)

    (pixels,) = [g for g in report.duplicates if g.kind == "pixels"]
    assert pixels.crosses_splits and pixels.paths[0].name == "copy-as.tif"  # test/ < train/
    assert pixels.splits == ("train", "test")
    assert by_kind["identical-pixels"][0][1].startswith(
        "LEAK: identical pixels in different files in several roles train/test"
    )

    assert report.patients_in_several_splits == {"14-23060AB": ("train", "test")}
    assert by_kind["patient-in-several-splits"] == [
        (
            "error",
            "LEAK: patient 14-23060AB has images in several roles train/test (3 images): keep "
            "all of them in one role (move them into one split folder, or give them one split "
            "in the manifest).",
        )
    ]
    # Slides of one accession in different roles: 14-29960AB/CD (selection/test), and
    # 14-23060CD (train only) beside 14-23060AB's leaked test copy.
    assert report.accessions_in_several_roles == {
        "14-23060": {"14-23060AB": ("train", "test"), "14-23060CD": ("train",)},
        "14-29960": {"14-29960AB": ("selection",), "14-29960CD": ("test",)},
    }
    accession_messages = sorted(message for _, message in by_kind["accession-in-several-roles"])
    assert accession_messages[1] == (
        "LEAK: slides of accession 14-29960 (one biopsy) are in different roles: 14-29960AB "
        "in selection, 14-29960CD in test (4 images). Keep every slide of an accession in one "
        "role (move them into one split folder, or give them one split in the manifest)."
    )
    assert "14-23060AB in train/test, 14-23060CD in train (5 images)" in accession_messages[0]

    skipped = {item.path.name: item.reason for item in report.skipped}
    assert skipped == {
        ".DS_Store": "operating-system file",
        ".hidden.png": "hidden file",
        "Thumbs.db": "operating-system file",
        "desktop.ini": "operating-system file",
        "loop": "symlink loop; not followed",
        "notes.txt": skipped["notes.txt"],
    }
    assert skipped["notes.txt"].startswith("not an image extension")
    assert [s for s, _ in by_kind["skipped-file"]] == ["warning"] * 6
    (suspicious,) = by_kind["suspicious"]
    assert suspicious == (
        "warning",
        f"{planted}/train/benign/pages.tif: 2 pages or frames; only the first is used.",
    )
    assert len(report.errors) == 3 + 2 + 1 + 1 + 2
    assert report.issues[: len(report.errors)] == report.errors  # errors first


def test_counts_and_statistics_of_the_real_data(breakhis_dev: Path) -> None:
    report = check_data(breakhis_dev)
    assert report.ok and report.issues == ()
    assert report.n_images == 269 and report.per_class == {"benign": 94, "malignant": 175}
    assert report.per_magnification == {"40": 7, "100": 1, "200": 255, "400": 6}
    assert len(report.per_patient) == 34 and report.per_patient["14-29960CD"] == 13
    assert report.sizes == {"224x224": 252, "350x230": 17}
    assert report.modes == {"RGB": 269} and report.formats == {"PNG": 269}
    assert report.size_stats["width"] == {"min": 224.0, "median": 224.0, "max": 350.0}
    # The default split is patient-level (by accession): no patient and no accession in two
    # roles, no duplicate images; every image is labelled train, selection or test.
    assert report.split_source == "computed" and report.split_method == "patient"
    assert report.patients_in_several_splits == {} and report.duplicates == ()
    assert report.accessions_in_several_roles == {}
    assert report.per_split == {
        "train": {"benign": 45, "malignant": 110},
        "selection": {"benign": 24, "malignant": 32},
        "test": {"benign": 25, "malignant": 33},
    }
    assert list(report.per_split) == ["train", "selection", "test"]
    assert report.split is not None
    assert [len(part) for _, part in report.split.parts()] == [155, 56, 58]


# The dev set's README: 34 BreakHis patient ids, of which three pairs share an accession number.
_SIBLINGS = {
    "14-18842": ("14-18842", "14-18842D"),
    "14-23060": ("14-23060AB", "14-23060CD"),
    "14-29960": ("14-29960AB", "14-29960CD"),
}


def test_slides_accessions_and_suffix_siblings_of_the_real_data(breakhis_dev: Path) -> None:
    report = check_data(breakhis_dev)
    assert report.n_slides == len(report.per_patient) == 34
    assert report.n_accessions == 34 - len(_SIBLINGS) == 31
    assert report.suffix_siblings == _SIBLINGS
    document = report.to_dict()
    assert (document["n_slides"], document["n_accessions"]) == (34, 31)
    assert document["suffix_siblings"] == {key: list(ids) for key, ids in _SIBLINGS.items()}
    assert json.loads(json.dumps(document))["suffix_siblings"] == document["suffix_siblings"]


def test_cli_json_reports_both_counts_and_the_siblings(breakhis_dev: Path) -> None:
    result = CliRunner().invoke(app, ["data", "check", str(breakhis_dev), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["n_slides"], document["n_accessions"]) == (34, 31)
    assert document["suffix_siblings"] == {key: list(ids) for key, ids in _SIBLINGS.items()}


def test_ids_outside_the_breakhis_scheme_have_no_siblings(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = ["path,label,patient_id,split"]
    patients = ["P1", "P1A", "p-2", "p-2b", "3", "3", "ward-7", "ward-7"]
    for index, patient in enumerate(patients):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            tmp_path / f"{index}.png"
        )
        split = "train" if index < 4 else "validation"
        rows.append(f"{index}.png,{'ab'[index % 2]},{patient},{split}")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = check_data(tmp_path / "manifest.csv")
    assert report.suffix_siblings == {}
    assert report.n_slides == report.n_accessions == 6


def test_a_leaky_split_is_reported_as_leaks(breakhis_dev: Path) -> None:
    config = DataConfig(path=breakhis_dev, split_by="image", allow_leaky_split=True)
    report = check_data(breakhis_dev, config=config)
    assert report.split_method == "image-leaky"
    assert len(report.patients_in_several_splits) == len(report.errors) > 10
    # Every sibling slide spans roles itself, so its accession adds no second report.
    assert report.accessions_in_several_roles == {}


def test_cli_reports_errors_with_exit_code_1(planted: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "check", str(planted)])
    assert result.exit_code == 1, result.output
    assert "result: 9 error(s), 8 warning(s) - FAILED" in result.output
    assert "LEAK: identical files in several roles train/test" in result.output
    assert "per role:\n  train      benign 12, malignant 6\n  selection  benign 2" in result.output
    assert "per split:" not in result.output
    as_json = runner.invoke(app, ["data", "check", str(planted), "--json"])
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert (document["ok"], document["errors"], document["warnings"]) == (False, 9, 8)
    assert document["per_split"] == {
        "train": {"benign": 12, "malignant": 6},
        "selection": {"benign": 2, "malignant": 2},
        "test": {"benign": 3, "malignant": 3},
    }
    assert document["accessions_in_several_roles"]["14-29960"] == {
        "14-29960AB": ["selection"],
        "14-29960CD": ["test"],
    }


def test_cli_on_the_real_manifest_exits_0(breakhis_dev: Path) -> None:
    result = CliRunner().invoke(app, ["data", "check", str(breakhis_dev / "manifest.csv")])
    assert result.exit_code == 0, result.output
    assert "269 images, 2 classes, 34 patients (slides) in 31 accessions; split:" in result.output
    assert "suffix siblings (slides of one accession):" in result.output
    assert "  14-18842  14-18842, 14-18842D" in result.output
    assert "  14-29960  14-29960AB, 14-29960CD" in result.output
    assert "result: 0 error(s), 0 warning(s) - OK" in result.output


def test_cli_group_by_and_magnification(breakhis_dev: Path) -> None:
    result = CliRunner().invoke(
        app, ["data", "check", str(breakhis_dev), "--magnification", "200", "--json"]
    )
    assert result.exit_code == 0
    assert json.loads(result.stdout)["n_images"] == 255
    missing = CliRunner().invoke(app, ["data", "check", str(breakhis_dev), "--group-by", "biopsy"])
    assert missing.exit_code == 1
    text = " ".join(missing.output.split())  # the report wraps its lines
    assert "No image has a 'biopsy' value to group by; the images have magnification, " in text
    assert "patient_id, subtype: group by one of those" in text


def test_identical_noise_is_not_confused_with_different_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index in range(5):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{index}.png")
    report = check_data(tmp_path)
    assert report.ok and report.duplicates == ()


def _blog_layout(breakhis_dev: Path, root: Path, held_out: set[str]) -> Path:
    """Copy the real images to ``root/{train,validation}/<class>/``: the slides in
    ``held_out`` to validation/ (the test set), every other slide to train/."""
    for image in sorted(breakhis_dev.glob("*/*.png")):
        split = "validation" if _patient(image) in held_out else "train"
        folder = root / split / image.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, folder / image.name)
    return root


def test_suffix_siblings_in_different_roles_are_a_leak(breakhis_dev: Path, tmp_path: Path) -> None:
    # validation/ holds accession 14-29960 whole, 14-2523, and slide 14-18842D, whose sibling
    # slide 14-18842 (same accession, one biopsy) stays in train/.
    held_out = {"14-29960AB", "14-29960CD", "14-2523", "14-18842D"}
    root = _blog_layout(breakhis_dev, tmp_path / "blog", held_out)
    report = check_data(root)
    split = report.split
    assert split is not None and report.split_source == "data" and split.test_from == "data"
    # validation/ is the test set; the selection set is carved from train/ by accession.
    assert report.split_method == "patient" and list(report.per_split) == [
        "train",
        "selection",
        "test",
    ]
    assert {s.patient_id for s in split.test} == held_out
    assert sum(report.per_split["test"].values()) == len(split.test) == 12 + 13 + 9 + 8
    # No slide is in two roles, so only the accession check sees the leak.
    assert report.patients_in_several_splits == {} and report.duplicates == ()
    side = "selection" if any(s.patient_id == "14-18842" for s in split.selection) else "train"
    assert report.accessions_in_several_roles == {
        "14-18842": {"14-18842": (side,), "14-18842D": ("test",)}
    }
    (issue,) = report.errors
    assert issue.kind == "accession-in-several-roles" and report.issues == (issue,)
    assert issue.message.startswith(
        f"LEAK: slides of accession 14-18842 (one biopsy) are in different roles: 14-18842 in "
        f"{side}, 14-18842D in test (16 images). Keep every slide of an accession in one role"
    )
    assert sorted({_patient(path) for path in issue.paths}) == ["14-18842", "14-18842D"]
    assert len(issue.paths) == 16
    text = format_report(report)
    assert "per role:\n  train " in text and "\n  test       benign 25, malignant 17\n" in text
    assert "ERROR   [accession-in-several-roles] LEAK: slides of accession 14-18842" in text
    assert report.to_dict()["accessions_in_several_roles"] == {
        "14-18842": {"14-18842": [side], "14-18842D": ["test"]}
    }

    # Both slides on one side: the same data passes.
    together = _blog_layout(breakhis_dev, tmp_path / "together", held_out | {"14-18842"})
    clean = check_data(together)
    assert clean.ok and clean.issues == () and clean.accessions_in_several_roles == {}
