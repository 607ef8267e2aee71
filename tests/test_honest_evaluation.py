"""End to end on real BreakHis images: near copies of training images are refused by
``evaluate --data``, data without patients is labelled so, and every look at a test set is
counted."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from breastcls.cli.app import app
from breastcls.runs.folder import read_test_looks

# The tiny run on real images, and images of patients it never saw.
from test_evaluate_cli import data_and_run, new_patients  # noqa: F401

pytestmark = pytest.mark.real_data
runner = CliRunner()


def _training_image(run: Path) -> Path:
    with (run / "split.csv").open() as handle:
        return next(Path(r["path"]) for r in csv.DictReader(handle) if r["role"] == "train")


def _folder_with(root: Path, image: Image.Image, filename: str, malignant: Path) -> Path:
    """A two-class folder: ``image`` in benign/, a copy of ``malignant`` in malignant/."""
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
    image.save(root / "benign" / filename)
    shutil.copy(malignant, root / "malignant" / "other.png")
    return root


def _evaluate(run: Path, *extra: str) -> tuple[int, str]:
    args = ["evaluate", str(run), "--no-gradcam", "--stain-shift", "none", *extra]
    result = runner.invoke(app, args)
    return result.exit_code, result.output.replace("\n", " ")


def test_near_copies_of_a_training_image_are_refused(
    data_and_run: tuple[Path, Path],  # noqa: F811
    new_patients: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    _, run = data_and_run
    distinct = sorted((new_patients / "malignant").glob("*.png"))[0]
    image = Image.open(_training_image(run)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    resaved = Image.open(buffer)
    cropped = image.crop((1, 0, image.width, image.height))
    for name, copy, filename in (("jpeg", resaved, "scan.jpg"), ("crop", cropped, "scan.png")):
        folder = _folder_with(tmp_path / name, copy, filename, distinct)
        code, output = _evaluate(run, "--data", str(folder))
        assert code == 2, output
        assert "1 image(s) are near copies" in output and "--allow-overlap" in output, output
        assert "other.png" not in output
    assert read_test_looks(run) == [r for r in read_test_looks(run) if r["data"] == "split.csv"]


def test_distinct_images_of_unknown_patients_pass_with_a_caveat(
    data_and_run: tuple[Path, Path],  # noqa: F811
    new_patients: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    _, run = data_and_run
    root = tmp_path / "anonymous"
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
        for index, image in enumerate(sorted((new_patients / label).glob("*.png"))):
            shutil.copy(image, root / label / f"image-{index}.png")  # no patient in the name
    out = tmp_path / "out"
    code, output = _evaluate(run, "--data", str(root), "--out", str(out))
    assert code == 0, output
    caveat = "test set: checked for exact and near copies only (patients unknown)"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["evaluated_on"]["set"] == f"{caveat} (look 1 of this test set)"
    assert caveat in output
    assert caveat in (out / "report.html").read_text()
    assert read_test_looks(run)[-1]["data"] == str(root.resolve())


def test_every_look_at_the_test_set_is_counted(
    data_and_run: tuple[Path, Path],  # noqa: F811
) -> None:
    _, run = data_and_run
    own = [r for r in read_test_looks(run) if r["data"] == "split.csv"]
    assert [r["look"] for r in own][:1] == [1]  # training scored the test set once
    assert json.loads((run / "metrics.json").read_text())["evaluated_on"]["set"] == (
        "test set (look 1 of this test set)"
    )
    before = len(own)
    for _ in range(2):  # the same evaluation, twice: two looks
        code, output = _evaluate(run)
        assert code == 0, output
    looks = [r for r in read_test_looks(run) if r["data"] == "split.csv"]
    assert [r["look"] for r in looks] == list(range(1, before + 3))
    assert [(r["tta"], r["options"]["stain_shift"]) for r in looks[-2:]] == [("none", "none")] * 2
    last = before + 2
    metrics = json.loads((run / "evaluations" / "test-none" / "metrics.json").read_text())
    assert metrics["evaluated_on"]["set"] == f"test set (look {last} of this test set)"
    assert f"look {last} of this test set" in output
    listing = runner.invoke(app, ["runs", str(run.parent)])
    assert listing.exit_code == 0, listing.output
    assert listing.output.splitlines()[1].split()[6] == "looks"
    row = next(line for line in listing.output.splitlines() if line.startswith("tiny"))
    assert f" {len(read_test_looks(run))} " in row
