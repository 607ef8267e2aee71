"""InferenceModel: one loaded model that predicts exactly as its run did, from files, arrays or
PIL images, and that an export carries whole (class names and calibration)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import breastcls
from breastcls import DataConfig, OutputError
from breastcls.data.images import decode_image
from breastcls.inference import InferenceModel
from breastcls.inference.calibration import Calibration, read_calibration, write_calibration
from breastcls.inference.decision import apply_temperature
from breastcls.interfaces import Sample
from conftest import copy_patients


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
    fitted = read_calibration(result.run_dir)
    write_calibration(
        result.run_dir,
        Calibration(
            temperature=2.5,
            thresholds={"default": 0.5, "youden": 0.42},
            positive="malignant",
            n_images=fitted.n_images,
        ),
    )
    return result.run_dir


def _images(run: Path, count: int = 6) -> list[Path]:
    with (run / "split.csv").open(newline="", encoding="utf-8") as handle:
        return [Path(row["path"]) for row in csv.DictReader(handle)][:count]


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
    raw = model.raw_probabilities([Sample(path=path, label="benign") for path in files])
    np.testing.assert_allclose(
        from_files.prediction.probabilities, apply_temperature(raw, 2.5), atol=1e-12
    )
    assert not np.allclose(raw, from_files.prediction.probabilities, atol=1e-3)
    assert from_arrays.prediction.calibration.temperature == 2.5
    decisions = from_arrays.prediction.decisions["youden"]
    expected = ["malignant" if s >= 0.42 else "benign" for s in from_arrays.prediction.score]
    assert list(decisions) == expected


def test_an_export_predicts_what_the_run_predicts(run: Path, tmp_path: Path) -> None:
    files = _images(run)
    exported = breastcls.export_model(run, format="keras", out_dir=tmp_path / "export")
    for name in ("class_names.json", "temperature.json", "thresholds.json", "model_card.md"):
        assert (tmp_path / "export" / name).is_file(), name
    by_run = breastcls.predict(run, files, out=tmp_path / "run.csv")
    by_export = breastcls.predict(exported.model, files, out=tmp_path / "export.csv")
    np.testing.assert_array_equal(
        by_export.prediction.probabilities, by_run.prediction.probabilities
    )
    assert (tmp_path / "run.csv").read_text() == (tmp_path / "export.csv").read_text()
    assert by_run.prediction.calibration.temperature == 2.5


def test_predict_refuses_a_folder_as_out_before_predicting(run: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder"):
        breastcls.predict(run, _images(run), out=tmp_path)


def test_non_rgb_arrays_are_refused_with_their_index(run: Path) -> None:
    from breastcls import DataError

    with pytest.raises(DataError, match=r"Image 1 has shape \(8, 8\)"):
        breastcls.predict(run, [np.zeros((8, 8, 3)), np.zeros((8, 8))])
