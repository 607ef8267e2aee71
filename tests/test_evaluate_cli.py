"""End to end on real BreakHis images: train a tiny run, then evaluate, predict and report."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from breastcls.cli.app import app
from breastcls.data.breakhis import accession_number
from conftest import copy_patients

runner = CliRunner()


def _accession(image: Path) -> str:
    return accession_number("-".join(image.name.split("-")[1:3]))


def _split_rows(run: Path) -> list[dict[str, str]]:
    with (run / "split.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def data_and_run(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> tuple[Path, Path]:
    """Six images from each of six patients per class, and a 1-epoch smallcnn run on them.

    20% of the accessions are the test set and half of the rest the selection set: 24 images,
    enough to fit a temperature.
    """
    import breastcls

    root = copy_patients(
        breakhis_dev, tmp_path_factory.mktemp("eval") / "data", patients=6, images_per_patient=6
    )
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(path=root, image_size=64, selection_fraction=0.5),
        model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
        train=breastcls.TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, verbose=0),
        out_dir=root.parent / "runs",
        name="tiny",
    )
    return root, breastcls.train(config).run_dir


@pytest.fixture(scope="module")
def new_patients(
    tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path, data_and_run: tuple[Path, Path]
) -> Path:
    """Three images from each of two accessions per class that the run never saw."""
    data, _ = data_and_run
    seen = {_accession(image) for image in data.glob("*/*.png")}
    root = tmp_path_factory.mktemp("new") / "data"
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
        by_accession: dict[str, list[Path]] = {}
        for image in sorted((breakhis_dev / label).glob("*.png")):
            if _accession(image) not in seen:
                by_accession.setdefault(_accession(image), []).append(image)
        for images in list(by_accession.values())[:2]:
            for image in images[:3]:
                shutil.copy(image, root / label / image.name)
    return root


def test_training_writes_the_test_report(data_and_run: tuple[Path, Path]) -> None:
    _, run = data_and_run
    for name in ("report.html", "roc.png", "reliability.png", "model_record.json"):
        assert (run / name).is_file(), name
    rows = _split_rows(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluated_on"]["role"] == "test"
    assert metrics["classification"]["n_images"] == sum(r["role"] == "test" for r in rows)
    # Thresholds and temperature come from the selection set and are applied to the test set.
    temperature = json.loads((run / "model_record.json").read_text())["calibrations"]["none"]
    assert metrics["thresholds"]["chosen_on"].startswith("selection set")
    assert temperature["fitted_on"] == "selection"
    assert temperature["n_images"] == sum(r["role"] == "selection" for r in rows) == 24
    assert isinstance(temperature["temperature"], float)
    assert metrics["calibration"]["temperature"] == pytest.approx(temperature["temperature"])
    selection = json.loads((run / "selection" / "metrics.json").read_text())
    assert selection["evaluated_on"]["role"] == "selection"
    assert selection["calibration"]["temperature"] == pytest.approx(temperature["temperature"])
    html = (run / "report.html").read_text()
    assert "Training curves" in html and "Patient level" in html


def test_evaluate_on_new_data_writes_the_evaluation_folder(
    data_and_run: tuple[Path, Path], new_patients: Path, tmp_path: Path
) -> None:
    _, run = data_and_run
    data = new_patients
    out = tmp_path / "eval"
    calibrated = tmp_path / "run"
    shutil.copytree(run, calibrated)
    # d8 averages eight views: it needs its own calibration, fitted explicitly.
    fitted = runner.invoke(app, ["calibrate", str(calibrated), "--tta", "d8"])
    assert fitted.exit_code == 0, fitted.output
    run = calibrated
    result = runner.invoke(
        app,
        ["evaluate", str(run), "--data", str(data), "--tta", "d8", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    images = sorted(data.glob("*/*.png"))
    patients = {"-".join(image.name.split("-")[1:3]) for image in images}
    assert f"{len(images)} images, test set (look 1 of this test set): accuracy " in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    for section in (
        "classification",
        "confusion_matrix",
        "roc",
        "bootstrap",
        "thresholds",
        "calibration",
        "patient",
        "magnification",
        "gradcam",
    ):
        assert section in metrics, section
    assert metrics["patient"]["n_patients"] == len(patients) >= 4
    assert metrics["classification"]["n_images"] == len(images)
    # No image or patient of the data trained or selected the model: a test set.
    assert metrics["evaluated_on"]["role"] == "test"
    assert metrics["evaluated_on"]["images"] == len(images)
    # The thresholds and temperature fitted on the run's selection set with the same TTA are
    # applied, never refitted on the evaluated data.
    temperature = json.loads((run / "model_record.json").read_text())["calibrations"]["d8"]
    assert (temperature["fitted_on"], temperature["tta"]) == ("selection", "d8")
    applied = {p["name"]: p["threshold"] for p in metrics["thresholds"]["operating_points"]}
    assert applied == temperature["thresholds"]
    assert metrics["calibration"]["temperature"] == temperature["temperature"]
    for png in (
        "confusion_matrix.png",
        "roc.png",
        "precision_recall.png",
        "reliability.png",
        "gradcam_correct.png",
    ):
        assert (out / png).stat().st_size > 1000, png
    html = (out / "report.html").read_text()
    assert '<h2 id="image-level">' in html and '<h2 id="patient-level">' in html
    assert "Patient recognition rate" in html or "patient_recognition_rate" in html
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(images) and all(row["patient_id"] for row in rows)
    # Rebuilding the evaluation folder's report keeps the sections that needed the model
    # (Grad-CAM, stain-shift robustness) and their figures.
    (out / "report.html").unlink()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    rebuilt = (out / "report.html").read_text()
    assert "Grad-CAM" in rebuilt and "TTA d8" in rebuilt and "Robustness to stain shifts" in rebuilt
    kept = json.loads((out / "metrics.json").read_text())
    assert kept["gradcam"] == metrics["gradcam"] and kept["robustness"] == metrics["robustness"]


def test_evaluate_refuses_data_the_model_has_seen(
    data_and_run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = data_and_run
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(data), "--no-gradcam"])
    assert result.exit_code == 2
    assert "trained or selected" in result.output and "--allow-overlap" in result.output
    assert not (run / "evaluations" / "data-none").exists()
    # A training image under another name is found by its pixels.
    renamed = tmp_path / "renamed"
    train = next(Path(r["path"]) for r in _split_rows(run) if r["role"] == "train")
    for label in ("benign", "malignant"):
        (renamed / label).mkdir(parents=True)
    shutil.copy(train, renamed / train.parent.name / "scan-1.png")
    shutil.copy(train, renamed / ("malignant" if train.parent.name == "benign" else "benign"))
    result = runner.invoke(app, ["evaluate", str(run), "--data", str(renamed), "--no-gradcam"])
    assert result.exit_code == 2 and "identical to images that trained or selected" in (
        result.output.replace("\n", " ")
    )
    # --allow-overlap scores it anyway, labelled as overlapping (optimistic).
    out = tmp_path / "overlap"
    result = runner.invoke(
        app,
        ["evaluate", str(run), "--data", str(data), "--no-gradcam", "--allow-overlap",
         "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classification"]["n_images"] == len(list(data.glob("*/*.png")))
    assert metrics["evaluated_on"]["role"] is None
    assert metrics["evaluated_on"]["set"].startswith("overlapping data (optimistic)")


def test_evaluate_defaults_to_the_run_test_set(data_and_run: tuple[Path, Path]) -> None:
    _, run = data_and_run
    result = runner.invoke(app, ["evaluate", str(run), "--no-gradcam"])
    assert result.exit_code == 0, result.output
    out = run / "evaluations" / "test-none"
    rows = _split_rows(run)
    n_test = sum(row["role"] == "test" for row in rows)
    # Training looked at the test set once already: this is a later look.
    assert re.search(
        rf"{n_test} images, test set \(look [2-9] of this test set\): accuracy ", result.output
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["classification"]["n_images"] == n_test
    assert metrics["evaluated_on"]["role"] == "test"
    with (out / "predictions.csv").open() as handle:
        evaluated = {r["path"] for r in csv.DictReader(handle)}
    assert evaluated == {r["path"] for r in rows if r["role"] == "test"}
    # Same model, same images, same temperature: the run's own test accuracy.
    assert metrics["classification"]["accuracy"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["classification"]["accuracy"]
    )


def test_predict_streams_folders_and_files(data_and_run: tuple[Path, Path], tmp_path: Path) -> None:
    data, run = data_and_run
    one_file = sorted((data / "benign").glob("*.png"))[0]
    out = tmp_path / "p.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            str(run / "best.keras"),
            str(data / "malignant"),
            str(one_file),
            "--out",
            str(out),
            "--batch-size",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(list((data / "malignant").glob("*.png"))) + 1
    assert rows[-1]["path"] == str(one_file)
    assert rows[0]["patient_id"] and rows[0]["magnification"] == "200"
    probabilities = np.array([[float(r["p_benign"]), float(r["p_malignant"])] for r in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    predicted = np.where(probabilities[:, 1] > probabilities[:, 0], "malignant", "benign")
    assert [r["predicted"] for r in rows] == predicted.tolist()
    # The run's temperature is applied: the same numbers as the run's test-set predictions.
    with (run / "predictions.csv").open() as handle:
        tested = {r["path"]: float(r["p_malignant"]) for r in csv.DictReader(handle)}
    shared = [r for r in rows if r["path"] in tested]
    assert shared
    for r in shared:
        assert float(r["p_malignant"]) == pytest.approx(tested[r["path"]], abs=2e-5)
    # One column per operating threshold chosen on the run's selection set.
    record = json.loads((run / "model_record.json").read_text())
    thresholds = record["calibrations"]["none"]["thresholds"]
    assert thresholds
    for name, threshold in thresholds.items():
        expected = np.where(probabilities[:, 1] >= threshold, "malignant", "benign")
        assert [r[f"at_{name}"] for r in rows] == expected.tolist()


def test_report_rebuilds_from_saved_predictions(data_and_run: tuple[Path, Path]) -> None:
    _, run = data_and_run
    before = json.loads((run / "metrics.json").read_text())
    (run / "report.html").unlink()
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report.html").is_file()
    after = json.loads((run / "metrics.json").read_text())
    assert after["roc"]["auc"] == pytest.approx(before["roc"]["auc"], abs=1e-4)
    assert after["thresholds"]["operating_points"] == before["thresholds"]["operating_points"]


def test_bad_inputs_are_one_line_errors(data_and_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = data_and_run
    result = runner.invoke(app, ["evaluate", str(run), "--tta", "d9"])
    assert result.exit_code == 2
    assert "Unknown tta 'd9'" in result.output and "d8" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "predictions.csv" in result.output
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "scan.png").write_text("not an image")
    result = runner.invoke(app, ["predict", str(run), str(corrupt), "--out", "p.csv"])
    assert result.exit_code == 2
    assert (
        "1 unreadable image(s): " + str(corrupt / "scan.png") + ": not a readable image (unknown "
        "or corrupt format). Fix or remove them, then run again."
    ) in result.output.replace("\n", "")
    # A folder without best.keras: a run that saved no model, or a cross-validation run.
    unsaved = tmp_path / "unsaved"
    unsaved.mkdir()
    result = runner.invoke(app, ["evaluate", str(unsaved)])
    assert result.exit_code == 2 and "holds no best.keras" in result.output
    (unsaved / "cross_validation.json").write_text("{}")
    shutil.copytree(run, unsaved / "fold-2")
    result = runner.invoke(app, ["export", str(unsaved)])
    assert result.exit_code == 2
    assert "is a cross-validation run: its models are in its fold folders (fold-2)" in (
        result.output
    )
    # A bare model (no split.csv beside it) needs --data; a broken record is named.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("best.keras", "model_record.json"):
        shutil.copy(run / name, bare / name)
    result = runner.invoke(app, ["evaluate", str(bare / "best.keras")])
    assert result.exit_code == 2 and "no split.csv" in result.output
    (bare / "model_record.json").write_text('{"version": 1, "class_names": 7}')
    result = runner.invoke(app, ["predict", str(bare), str(run / "accuracy.png")])
    assert result.exit_code == 2 and "model_record.json" in result.output


def test_calibration_and_threshold_statements_say_where_they_were_fitted(
    data_and_run: tuple[Path, Path], new_patients: Path, tmp_path: Path
) -> None:
    _, run = data_and_run
    # A bare model file: nothing was fitted on a selection set; its thresholds are chosen on
    # the scored images themselves, and the report says so instead of "selection set".
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "best.keras", bare / "model.keras")
    out = tmp_path / "bare-eval"
    args = ["--data", str(new_patients), "--no-gradcam", "--stain-shift", "none"]
    result = runner.invoke(app, ["evaluate", str(bare / "model.keras"), *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = html.unescape((out / "report.html").read_text())
    card = card[card.index('id="summary"') : card.index("</section>", card.index('id="summary"'))]
    assert "Not calibrated (TTA none): raw model outputs" in card
    assert "Youden threshold chosen on these images (optimistic)" in card
    assert "selection set" not in card
    settings = json.loads((out / "evaluation.json").read_text())
    assert settings["calibration"]["fitted_on"] is None
    # The run itself: the record's calibration, with its images and patients.
    record = json.loads((run / "model_record.json").read_text())["calibrations"]["none"]
    out = tmp_path / "run-eval"
    result = runner.invoke(app, ["evaluate", str(run), *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    card = html.unescape((out / "report.html").read_text())
    assert (
        f"fitted on the selection set ({record['n_images']} images, {record['n_patients']} "
        "patients, TTA none)"
    ) in card
    assert "the selection set's Youden threshold" in card
