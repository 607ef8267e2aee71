"""The one door for a trained model: :class:`InferenceModel` reads a model file and its record
only, predicts from files, arrays or PIL images through one probability path, writes nothing
into the model's folder, and an export (or a run folder written before records) predicts the
same calibrated probabilities."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import breastcls
from breastcls import ConfigError, DataConfig, DataError, ModelLoadError, OutputError
from breastcls.cli.app import app
from breastcls.data.images import decode_image
from breastcls.inference import InferenceModel
from breastcls.inference.calibration import Calibration
from breastcls.inference.decision import apply_temperature
from breastcls.inference.record import RECORD_VERSION, ModelRecord, read_record, write_record
from breastcls.interfaces import DataRole, Sample
from breastcls.testing.slides import write_mosaic_slide
from conftest import copy_patients

PLANTED = Calibration(
    temperature=2.5,
    thresholds={"default": 0.5, "youden": 0.42},
    positive="malignant",
    fitted_on=DataRole.SELECTION,
    n_images=7,
    n_patients=3,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    """A 1-epoch smallcnn run on real images of eight patients per class, with a planted
    temperature (a tiny selection set fits none) so that calibration visibly matters."""
    folder = tmp_path_factory.mktemp("inference")
    root = copy_patients(breakhis_dev, folder / "data", patients=8, images_per_patient=2)
    result = breastcls.train(
        breastcls.RunConfig(
            data=DataConfig(path=root, image_size=48),
            model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
            train=breastcls.TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, verbose=0),
            out_dir=root.parent / "runs",
            name="tiny",
        )
    )
    record = read_record(result.run_dir)
    assert record is not None
    write_record(result.run_dir, record.with_calibration(PLANTED))
    return result.run_dir


def _images(run: Path, count: int = 6) -> list[Path]:
    with (run / "split.csv").open(newline="", encoding="utf-8") as handle:
        return [Path(row["path"]) for row in csv.DictReader(handle)][:count]


def test_training_writes_one_typed_record_beside_the_model(run: Path) -> None:
    raw = json.loads((run / "model_record.json").read_text())
    assert raw["version"] == RECORD_VERSION and raw["origin"] == "training"
    assert raw["class_names"] == ["benign", "malignant"] and raw["positive"]["name"] == "malignant"
    assert raw["input"] == {
        "image_size": 48, "shape": [None, 48, 48, 3], "value_range": "0-255", "channels": "RGB"
    }  # fmt: skip
    assert (raw["backbone"], raw["preprocessing"]) == ("smallcnn", "backbone")
    assert set(raw["versions"]) == {"breastcls", "keras", "tensorflow"}
    none = raw["calibrations"]["none"]
    assert (none["fitted_on"], none["n_images"], none["n_patients"]) == ("selection", 7, 3)
    # Nothing else keeps the calibration: one record, no side files.
    assert not list(run.glob("temperature*.json")) and not list(run.glob("thresholds*.json"))
    record = ModelRecord.from_dict(raw, where=run / "model_record.json")
    assert record.calibrations["none"] == PLANTED and record.image_size == 48


def test_arrays_pil_images_and_files_give_the_same_calibrated_probabilities(run: Path) -> None:
    files = _images(run)
    model = InferenceModel.load(run)
    assert (model.class_names, model.image_size) == (("benign", "malignant"), 48)
    from_files = breastcls.predict(model, files)
    arrays = [decode_image(path) for path in files]
    from_arrays = breastcls.predict(model, arrays)
    from_batch = breastcls.predict(model, np.stack([a[:224, :224] for a in arrays]))
    from_pil = breastcls.predict(model, [Image.fromarray(a) for a in arrays])
    assert from_files.n_images == from_arrays.n_images == from_pil.n_images == 6
    np.testing.assert_allclose(from_arrays.prediction.probabilities,
                               from_files.prediction.probabilities, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(from_pil.prediction.probabilities,
                               from_files.prediction.probabilities, atol=1e-5)  # fmt: skip
    assert from_batch.prediction.probabilities.shape == (6, 2)
    assert from_arrays.sources[0] == "<array 0>" and from_files.sources[0] == str(files[0])
    # The temperature is applied: the calibrated probabilities are the raw ones with T = 2.5.
    raw = model.score_files([Sample(path=path, label="benign") for path in files]).raw
    np.testing.assert_array_equal(from_files.prediction.raw_probabilities, raw)
    np.testing.assert_allclose(
        from_files.prediction.probabilities, apply_temperature(raw, 2.5), atol=1e-12
    )
    assert not np.allclose(raw, from_files.prediction.probabilities, atol=1e-3)
    assert from_arrays.prediction.calibration == PLANTED
    decisions = from_arrays.prediction.decisions["youden"]
    expected = ["malignant" if s >= 0.42 else "benign" for s in from_arrays.prediction.score]
    assert list(decisions) == expected


def test_one_image_a_pil_image_and_what_load_model_returns_are_accepted(run: Path) -> None:
    path = _images(run, 1)[0]
    array = decode_image(path)
    by_file = breastcls.predict(run, [path]).prediction.probabilities
    one_array = breastcls.predict(run, array)  # (h, w, 3): one image, not h rows
    one_pil = breastcls.predict(run, Image.open(path))
    loaded = breastcls.load_model(run)
    assert isinstance(loaded, InferenceModel)
    one_loaded = breastcls.predict(loaded, [array, array])
    assert one_array.n_images == one_pil.n_images == 1 and one_loaded.n_images == 2
    for probabilities in (one_array.prediction.probabilities, one_pil.prediction.probabilities):
        np.testing.assert_allclose(probabilities, by_file, atol=1e-5)
    np.testing.assert_allclose(one_loaded.prediction.probabilities[1], by_file[0], atol=1e-5)
    # The same image as 0-255 floats scores the same.
    as_floats = breastcls.predict(run, array.astype(np.float32)).prediction.probabilities
    np.testing.assert_allclose(as_floats, by_file, atol=1e-5)


def test_floats_in_0_1_and_wrong_channel_counts_get_one_clear_line(run: Path) -> None:
    array = decode_image(_images(run, 1)[0])
    with pytest.raises(DataError, match=r"Image 0 holds floats in \[0, 1\].*0-255 RGB"):
        breastcls.predict(run, array / 255.0)
    with pytest.raises(DataError, match=r"Image 1 has shape \(8, 8\): one channel"):
        breastcls.predict(run, [np.zeros((8, 8, 3)), np.zeros((8, 8))])
    with pytest.raises(DataError, match=r"Image 0 has shape \(8, 8, 4\): 4 channel"):
        breastcls.predict(run, np.zeros((8, 8, 4), dtype=np.uint8))
    with pytest.raises(DataError, match=r"values from -1 to 1"):
        breastcls.predict(run, np.full((8, 8, 3), -1.0) + np.eye(8)[:, :, None] * 2)
    with pytest.raises(DataError, match="mix files with in-memory images"):
        breastcls.predict(run, [_images(run, 1)[0], array])


def test_predict_refuses_a_folder_as_out_before_predicting(run: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder"):
        breastcls.predict(run, _images(run), out=tmp_path)


def test_a_tta_without_calibration_names_the_command_and_calibrate_fits_it(
    run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    with pytest.raises(ConfigError, match=rf"breastcls calibrate {copy} --tta flips"):
        breastcls.predict(copy, _images(copy, 2), tta="flips")
    refused = CliRunner().invoke(app, ["evaluate", str(copy), "--tta", "flips"])
    assert refused.exit_code == 2 and "breastcls calibrate" in refused.output
    result = CliRunner().invoke(app, ["calibrate", str(copy), "--tta", "flips"])
    assert result.exit_code == 0, result.output
    with (copy / "split.csv").open(newline="", encoding="utf-8") as handle:
        selection = [row for row in csv.DictReader(handle) if row["role"] == "selection"]
    patients = len({row["patient_id"] for row in selection})
    assert (
        f"fitted on the selection set ({len(selection)} images, {patients} patients, TTA flips)"
        in result.output
    )
    record = read_record(copy)
    assert record is not None and record.calibrated_ttas == ("none", "flips")
    assert record.calibrations["none"] == PLANTED  # the other TTA's fit is kept
    flips = breastcls.predict(copy, _images(copy, 2), tta="flips").prediction
    assert flips.calibration == record.calibrations["flips"]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


@pytest.fixture()
def read_only_run(run: Path, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "read-only"
    shutil.copytree(run, copy)
    for path in [copy, *copy.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield copy
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_predicts_evaluates_and_tiles_without_writing(
    read_only_run: Path, tmp_path: Path, breakhis_dev: Path
) -> None:
    _read_only_run_works(read_only_run, tmp_path, breakhis_dev)


def test_reading_a_run_writes_nothing_into_it(
    run: Path, tmp_path: Path, breakhis_dev: Path
) -> None:
    # As root (CI) a read-only folder is writable all the same: compare the folder's files
    # and their times before and after instead.
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _read_only_run_works(copy, tmp_path, breakhis_dev)


def _read_only_run_works(folder: Path, tmp_path: Path, breakhis_dev: Path) -> None:
    before = _snapshot(folder)
    runner = CliRunner()
    images = [str(p) for p in _images(folder, 3)]
    predicted = runner.invoke(
        app, ["predict", str(folder), *images, "--out", str(tmp_path / "p.csv")]
    )
    assert predicted.exit_code == 0, predicted.output
    evaluated = runner.invoke(
        app, ["evaluate", str(folder), "--out", str(tmp_path / "eval"), "--stain-shift", "none",
              "--no-gradcam"],
    )  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    cells = {(c, 0): p for c, p in enumerate(sorted((breakhis_dev / "malignant").glob("*"))[:2])}
    slide = write_mosaic_slide(tmp_path / "slide.tif", cells, columns=2, rows=1, cell=96)
    for runtime in ("tensorflow", "onnx", "auto"):  # `auto` measures: into a user cache
        tiled = runner.invoke(
            app, ["slide", "predict", str(folder), str(slide), "--model-mpp", "1.0",
                  "--runtime", runtime, "--out", str(tmp_path / runtime)],
        )  # fmt: skip
        assert tiled.exit_code == 0, tiled.output
        assert (tmp_path / runtime / "slide" / "tiles.csv").is_file()
    after = _snapshot(folder)
    # Evaluating the test set is recorded as a look at it (issue 25's ledger), the one write
    # evaluate makes into a run folder it may write to; a read-only one is not written.
    ledger = "test_looks.jsonl"
    if os.access(folder, os.W_OK):
        assert after.pop(ledger)[0] > before.pop(ledger)[0]  # one look more
    assert after == before


@pytest.mark.parametrize("format", ["keras", "onnx"])
def test_an_export_predicts_what_the_run_predicts(run: Path, tmp_path: Path, format: str) -> None:
    files = _images(run)
    exported = breastcls.export_model(run, format=format, out_dir=tmp_path / "export")
    # The record travels verbatim; the export keeps no second copy of the calibration.
    record = tmp_path / "export" / "model_record.json"
    assert record.read_bytes() == (run / "model_record.json").read_bytes()
    assert "calibration" not in json.loads((tmp_path / "export" / "export.json").read_text())
    by_run = breastcls.predict(run, files, out=tmp_path / "run.csv")
    by_export = breastcls.predict(tmp_path / "export", files, out=tmp_path / "export.csv")
    assert by_export.prediction.calibration == PLANTED
    # The domain-shift score travels too (ONNX Runtime gives no features, so none there).
    if format == "keras":
        assert by_export.prediction.domain_score is not None
        np.testing.assert_allclose(
            by_export.prediction.domain_score, by_run.prediction.domain_score, atol=1e-6
        )
    else:
        assert by_export.prediction.domain_score is None
    tolerance = 0.0 if format == "keras" else 1e-5
    np.testing.assert_allclose(
        by_export.prediction.probabilities, by_run.prediction.probabilities, atol=tolerance
    )
    if format == "keras":
        assert (tmp_path / "run.csv").read_text() == (tmp_path / "export.csv").read_text()
        assert breastcls.predict(exported.model, files).prediction.calibration == PLANTED


def _old_layout(run: Path, folder: Path) -> Path:
    """``run`` as breastcls wrote it before the model record: the calibration in
    ``temperature.json`` and ``thresholds.json``, the class names and config beside."""
    shutil.copytree(run, folder)
    (folder / "model_record.json").unlink()
    (folder / "temperature.json").write_text(
        json.dumps({"temperature": 2.5, "fitted_on": "selection", "tta": "none", "n_images": 7,
                    "notes": [], "method": "temperature scaling"})
    )  # fmt: skip
    (folder / "thresholds.json").write_text(
        json.dumps({"positive_class": "malignant", "chosen_on": "selection", "tta": "none",
                    "rule": None, "thresholds": {"default": 0.5, "youden": 0.42}})
    )  # fmt: skip
    return folder


def test_a_run_folder_from_before_the_record_still_predicts_the_same(
    run: Path, tmp_path: Path
) -> None:
    old = _old_layout(run, tmp_path / "old")
    model = InferenceModel.load(old)
    assert model.record.origin == "upgraded" and model.record.image_size == 48
    assert model.record.calibrations["none"].temperature == 2.5
    assert model.record.backbone == "smallcnn" and model.record.scale is not None
    files = _images(run)
    np.testing.assert_array_equal(
        breastcls.predict(old, files).prediction.probabilities,
        breastcls.predict(run, files).prediction.probabilities,
    )
    assert not (old / "model_record.json").exists()  # upgraded in memory only
    # The explicit step writes the record, with the upgraded calibration kept.
    breastcls.calibrate(old, tta="flips")
    written = read_record(old)
    assert written is not None and written.calibrated_ttas == ("none", "flips")


def test_a_record_that_does_not_fit_its_model_is_refused(run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = read_record(copy)
    assert record is not None
    write_record(copy, dataclasses.replace(record, image_size=64))
    with pytest.raises(ModelLoadError, match=r"its record says 2 classes .* at 64 px"):
        InferenceModel.load(copy)
    raw = json.loads((copy / "model_record.json").read_text())
    (copy / "model_record.json").write_text(json.dumps({**raw, "version": RECORD_VERSION + 1}))
    with pytest.raises(ModelLoadError, match="Upgrade breastcls"):
        InferenceModel.load(copy)
