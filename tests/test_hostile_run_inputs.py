"""Hostile inputs to a trained run through the CLI: corrupt or mismatched records beside the
model, unreadable images (``--skip-bad-images``) and file names that are not valid UTF-8.

Each refusal is exit code 2 with one line ``error: ...``, no traceback, and nothing written."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import breastcls
from _runs import CLI, run_watched
from breastcls.cli.app import app
from conftest import copy_patients

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> tuple[Path, Path]:
    """Real images of four patients per class, and a 1-epoch smallcnn run on them."""
    folder = tmp_path_factory.mktemp("hostile")
    root = copy_patients(breakhis_dev, folder / "data", patients=4, images_per_patient=2)
    result = breastcls.train(
        breastcls.RunConfig(
            data=breastcls.DataConfig(
                path=root, image_size=32, selection_fraction=0.34, test_fraction=0.25
            ),
            model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
            train=breastcls.TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, verbose=0),
            out_dir=folder / "runs",
            name="tiny",
        )
    )
    return root, result.run_dir


@pytest.fixture()
def run(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    """A copy of the trained run that a test may damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained[1], copy)
    return copy


def _one_line_error(output: str, *expected: str) -> None:
    lines = output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert "Traceback" not in output
    for part in expected:
        assert part in lines[0], (part, lines[0])


def _refused_without_writing(run: Path, tmp_path: Path, *expected: str) -> None:
    images = run.parent / "images"
    if not images.exists():
        images.mkdir()
        for row in csv.DictReader((run / "split.csv").open(encoding="utf-8", newline="")):
            shutil.copy(row["path"], images / Path(row["path"]).name)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    out = tmp_path / "predictions.csv"
    for args in (
        ["predict", str(run), str(images), "--out", str(out)],
        ["evaluate", str(run), "--no-gradcam"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        _one_line_error(result.output, *expected)
    assert not out.exists()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def _write(name: str, content: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / name).write_text(content, encoding="utf-8")

    return damage


def _legacy(name: str, content: str) -> Callable[[Path], None]:
    """Damage ``name`` in the run as breastcls wrote it before the model record (read through
    the record's upgrade)."""

    def damage(run: Path) -> None:
        (run / "model_record.json").unlink()
        (run / name).write_text(content, encoding="utf-8")

    return damage


def _record_with(**changes: object) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        record = json.loads((run / "model_record.json").read_text(encoding="utf-8"))
        (run / "model_record.json").write_text(json.dumps({**record, **changes}))

    return damage


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (_write("model_record.json", '{"version": 1, "cl'), ("model_record.json", "not readable")),
        (_record_with(version=99), ("model_record.json", "Upgrade breastcls")),
        (_record_with(class_names=["a", "b", "c"]), ("its record says 3 classes", "record")),
        (_record_with(input="224"), ("model_record.json", "Restore it, or retrain")),
        (_legacy("class_names.json", '["benign", "mal'), ("class_names.json", "restore it")),
        (_legacy("class_names.json", "{}"), ("class_names.json", "not a list")),
        (_legacy("class_names.json", '["a", "b", "c"]'), ("3 class names", "class_names.json")),
        (_legacy("config.json", '{"data": '), ("config.json", "not readable JSON")),
        (
            _legacy("config.json", '{"data": {"path": "d"}, "model": 7}'),
            ("config.json", "'model' is 7, not dict or null"),
        ),
        (_legacy("temperature.json", "[1, 2"), ("temperature.json", "malformed")),
    ],
    ids=[
        "record-corrupt",
        "record-newer",
        "record-other-model",
        "record-malformed",
        "class-names-corrupt",
        "class-names-not-a-list",
        "class-names-too-many",
        "config-corrupt",
        "config-section",
        "temperature-corrupt",
    ],
)
def test_a_damaged_record_is_one_line_and_nothing_is_written(
    run: Path, tmp_path: Path, damage: Callable[[Path], None], expected: tuple[str, ...]
) -> None:
    damage(run)
    _refused_without_writing(run, tmp_path, *expected)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"path,label,patient_id,group,magnification,role,pixel_sha1\nx.png,benign\n", "line 2"),
        (b"path,label\0,role\n\xff\xfe\0\0", "split.csv"),
        (b"path,label,patient_id,group,magnification,role,pixel_sha1\nx,y,,,,test,\n", "'y'"),
    ],
    ids=["short-row", "binary", "foreign-class"],
)
def test_a_damaged_split_csv_stops_evaluate_before_anything_is_written(
    run: Path, content: bytes, expected: str
) -> None:
    (run / "split.csv").write_bytes(content)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = runner.invoke(app, ["evaluate", str(run), "--no-gradcam"])
    assert result.exit_code == 2, result.output
    _one_line_error(result.output, "split.csv", expected)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def _hostile_images(trained: tuple[Path, Path], folder: Path) -> Path:
    """Two real images (one under a name that is not UTF-8) and a truncated PNG."""
    source = sorted((trained[0] / "benign").glob("*.png"))
    folder.mkdir()
    shutil.copy(source[0], folder / source[0].name)
    shutil.copy(source[1], os.fsdecode(bytes(folder) + b"/na\xefve-\xff.png"))
    data = source[1].read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    return folder


def test_predict_skips_bad_images_only_when_asked(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    images = _hostile_images(trained, tmp_path / "images")
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(trained[1]), str(images), "--out", str(out)])
    assert result.exit_code == 2
    _one_line_error(result.output, "1 unreadable image(s)", "truncated.png", "--skip-bad-images")
    assert not out.exists()

    args = ["predict", str(trained[1]), str(images), "--out", str(out), "--skip-bad-images"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 images" in result.output and "1 unreadable image(s) skipped" in result.output
    # Names are written as the file system has them: the CSV gives back the real file.
    with out.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        paths = [Path(row["path"]) for row in csv.DictReader(handle)]
    assert len(paths) == 2 and all(path.is_file() for path in paths)
    assert b"na\xefve-\xff.png" in out.read_bytes()
    with (tmp_path / "p.skipped.csv").open(encoding="utf-8", newline="") as handle:
        skipped = list(csv.DictReader(handle))
    assert [Path(row["path"]).name for row in skipped] == ["truncated.png"]
    assert "truncated" in skipped[0]["reason"]

    prediction = breastcls.predict(trained[1], [images], skip_bad_images=True)
    assert prediction.n_images == 2 and [s.path.name for s in prediction.skipped] == [
        "truncated.png"
    ]


def test_evaluate_skips_bad_images_only_when_asked(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for label in ("benign", "malignant"):
        (data / label).mkdir(parents=True)
        for image in sorted((trained[0] / label).glob("*.png"))[:3]:
            shutil.copy(image, data / label / image.name)
    image = next((data / "malignant").glob("*.png"))
    (data / "malignant" / "truncated.png").write_bytes(image.read_bytes()[:300])
    out = tmp_path / "evaluation"
    args = ["evaluate", str(trained[1]), "--data", str(data), "--out", str(out)]
    args += ["--allow-overlap", "--no-gradcam"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    _one_line_error(result.output, "truncated.png", "--skip-bad-images")
    assert not out.exists()

    result = runner.invoke(app, [*args, "--skip-bad-images"])
    assert result.exit_code == 0, result.output
    assert "1 unreadable image(s) skipped, listed in skipped.csv" in result.output
    with (out / "skipped.csv").open(encoding="utf-8", newline="") as handle:
        assert [Path(row["path"]).name for row in csv.DictReader(handle)] == ["truncated.png"]
    settings = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert settings["skipped images"].startswith("1 unreadable, left out")
    assert "1 unreadable, left out (listed in skipped.csv)" in (out / "report.html").read_text(
        encoding="utf-8"
    )
    with (out / "predictions.csv").open(encoding="utf-8", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 6


def test_evaluate_with_gradcam_keeps_a_name_that_is_not_utf8(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """predictions.csv, Grad-CAM and the report take the raw bytes of such a name."""
    data = tmp_path / "data"
    for label in ("benign", "malignant"):
        (data / label).mkdir(parents=True)
        for index, image in enumerate(sorted((trained[0] / label).glob("*.png"))[:3]):
            name = bytes(data / label) + f"/na\xefve-{index}-".encode() + b"\xff.png"
            shutil.copy(image, os.fsdecode(name))
    out = tmp_path / "evaluation"
    args = ["evaluate", str(trained[1]), "--data", str(data), "--out", str(out)]
    result = runner.invoke(app, [*args, "--allow-overlap"])
    assert result.exit_code == 0, result.output
    assert b"\xff.png" in (out / "predictions.csv").read_bytes()
    with (out / "predictions.csv").open(encoding="utf-8", errors="surrogateescape") as handle:
        paths = [Path(row["path"]) for row in csv.DictReader(handle)]
    assert len(paths) == 6 and all(path.is_file() for path in paths)
    assert (out / "gradcam_correct.png").is_file() or (out / "gradcam_errors.png").is_file()
    assert "\\xff.png" in (out / "report.html").read_text(encoding="utf-8")


def _obeying_permissions() -> list[str]:
    """A command prefix under which this user obeys file permissions: for root, ``setpriv``
    without the capabilities that let root write anywhere (the test is skipped without it)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root writes into read-only folders, and setpriv (util-linux) is missing")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


def test_report_on_a_read_only_run_is_one_line_before_any_metric(run: Path, tmp_path: Path) -> None:
    """Before: `error: Metric 'calibration' (plugin 'builtin_clinical_metrics') failed:
    PermissionError ...` after the metrics before it had run."""
    prefix = _obeying_permissions()
    for path in [run, *run.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    try:
        result = run_watched([*prefix, *CLI, "report", str(run)])
    finally:
        for path in [run, *run.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert result.returncode == 2, result.stderr
    _one_line_error(
        result.stderr,
        f"Cannot write to output folder {str(run)!r}: Permission denied. `breastcls report` "
        "rewrites report.html, metrics.json and the figures inside the folder itself",
    )
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
