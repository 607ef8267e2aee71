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


def _patient(path: Path) -> str:
    return "-".join(path.name.split("-")[1:3])


@pytest.fixture()
def planted(small_breakhis: Path, tmp_path: Path) -> Path:
    """Real images in train/ and validation/ (whole patients), then planted problems."""
    root = tmp_path / "planted"
    for label in ("benign", "malignant"):
        images = sorted((small_breakhis / label).glob("*.png"))
        patients = sorted({_patient(p) for p in images})
        for image in images:
            split = "train" if _patient(image) in patients[:3] else "validation"
            (root / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / split / label / image.name)
    train_benign = sorted((root / "train" / "benign").glob("*.png"))
    train_malignant = sorted((root / "train" / "malignant").glob("*.png"))
    # 1. The same file in train and validation (its patient is then on both sides too).
    leaked = train_benign[0]
    shutil.copy(leaked, root / "validation" / "benign" / leaked.name.replace("-0", "-9"))
    # 2. The same pixels as a TIFF in validation.
    source = train_malignant[0]
    Image.open(source).save(root / "validation" / "malignant" / "copy-as.tif")
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
    assert report.split_source == "data" and report.split_method == "folders-leaky"
    assert not report.ok
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
    assert leak.splits == ("train", "validation") and leak.labels == ("benign",)
    file_messages = sorted(by_kind["duplicate-file"])
    assert [s for s, _ in file_messages] == ["error", "error", "warning"]
    assert any(m.startswith("LEAK: identical files across splits") for _, m in file_messages)
    assert any("different labels (benign, malignant): keep the copy" in m for _, m in file_messages)
    assert any(m.startswith("identical files in one split") for _, m in file_messages)

    (pixels,) = [g for g in report.duplicates if g.kind == "pixels"]
    assert pixels.crosses_splits and pixels.paths[-1].name == "copy-as.tif"
    assert by_kind["identical-pixels"][0][1].startswith(
        "LEAK: identical pixels in different files across splits train/validation"
    )

    (leaked_patient,) = report.patients_in_several_splits
    assert report.patients_in_several_splits[leaked_patient] == ("train", "validation")
    assert by_kind["patient-in-several-splits"][0][0] == "error"

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
    assert len(report.errors) == 3 + 2 + 1 + 1
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
    # The default split is patient-level: no patient on both sides, no duplicate images.
    assert report.split_source == "computed" and report.split_method == "patient"
    assert report.patients_in_several_splits == {} and report.duplicates == ()
    assert sum(report.per_split["validation"].values()) == 64


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


def test_cli_reports_errors_with_exit_code_1(planted: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["data", "check", str(planted)])
    assert result.exit_code == 1, result.output
    assert "result: 7 error(s), 8 warning(s) - FAILED" in result.output
    assert "LEAK: identical files across splits train/validation" in result.output
    as_json = runner.invoke(app, ["data", "check", str(planted), "--json"])
    assert as_json.exit_code == 1
    document = json.loads(as_json.stdout)
    assert (document["ok"], document["errors"], document["warnings"]) == (False, 7, 8)
    assert document["per_split"]["validation"] == {"benign": 5, "malignant": 5}


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
    assert "269 of 269 images have no biopsy" in missing.output


def test_identical_noise_is_not_confused_with_different_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for index in range(5):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{index}.png")
    report = check_data(tmp_path)
    assert report.ok and report.duplicates == ()
