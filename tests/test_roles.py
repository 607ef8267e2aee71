"""Honest evaluation: three patient-disjoint roles, calibration off the test set, nested CV, and
``evaluate`` refusing what the model has seen."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import breastcls
from breastcls import DataConfig, DataError
from breastcls.data.breakhis import accession_number
from breastcls.data.loading import load_dataset
from breastcls.data.split import Split, kfold_splits, spanhol_splits, split_for_config
from breastcls.inference.calibration import apply_calibration, fit_calibration
from breastcls.inference.decision import choose_thresholds, fit_temperature
from breastcls.interfaces import DataRole, Predictions, Sample
from conftest import copy_patients

_SIBLINGS = (("14-18842", "14-18842D"), ("14-23060AB", "14-23060CD"), ("14-29960AB", "14-29960CD"))


def _accessions(samples: tuple[Sample, ...] | list[Sample]) -> set[str]:
    return {accession_number(str(s.patient_id)) for s in samples}


def _real_split(breakhis_dev: Path, **options: object) -> tuple[list[Sample], Split]:
    config = DataConfig(path=breakhis_dev, **options)  # type: ignore[arg-type]
    samples = list(load_dataset(config).samples)
    return samples, split_for_config(samples, config)


def test_the_default_split_has_three_accession_disjoint_roles(breakhis_dev: Path) -> None:
    samples, split = _real_split(breakhis_dev)
    roles = dict(split.parts())
    assert sum(len(part) for part in roles.values()) == len(samples) == 269
    for role, part in roles.items():
        assert {s.label for s in part} == {"benign", "malignant"}, role
    train, selection, test = (_accessions(roles[r]) for r in DataRole)
    assert train.isdisjoint(selection) and train.isdisjoint(test) and selection.isdisjoint(test)
    # Slides of one accession stay together, though their patient ids differ.
    for first, second in _SIBLINGS:
        pair = (first, second)
        sides = {role for role, part in roles.items() for s in part if s.patient_id in pair}
        assert len(sides) == 1, (first, second, sides)
    assert 0.1 < len(split.test) / 269 < 0.3 and 0.1 < len(split.selection) / 269 < 0.3
    assert (split.method, split.test_from, split.leaky) == ("patient", "split", False)
    assert split.reported_role is DataRole.TEST


def test_grouping_by_slide_id_instead_splits_some_accession(breakhis_dev: Path) -> None:
    """The audit's finding: grouping by slide id put suffix siblings on two sides."""
    split_apart = 0
    for seed in range(11, 21):
        _, split = _real_split(breakhis_dev, group_by="patient_id", split_seed=seed)
        roles = dict(split.parts())
        for first, second in _SIBLINGS:
            pair = (first, second)
            sides = {r for r, part in roles.items() for s in part if s.patient_id in pair}
            split_apart += len(sides) > 1
    assert split_apart > 0


def test_test_fraction_zero_keeps_no_test_set(breakhis_dev: Path) -> None:
    _, split = _real_split(breakhis_dev, test_fraction=0.0)
    assert split.test == () and split.test_from == "none"
    assert split.reported_role is DataRole.SELECTION


def _blog_layout(breakhis_dev: Path, root: Path, *, with_test: bool = False) -> dict[str, set[str]]:
    """Real images in ``root/{train,validation[,test]}/<class>/``, a part per set of patients."""
    by_part: dict[str, set[str]] = defaultdict(set)
    parts = ("train", "train", "train", "validation") + (("test",) if with_test else ())
    for label in ("benign", "malignant"):
        images = sorted((breakhis_dev / label).glob("*.png"))
        by_accession: dict[str, list[Path]] = defaultdict(list)
        for image in images:
            patient = "-".join(image.name.split("-")[1:3])
            by_accession[accession_number(patient)].append(image)
        for index, (_, members) in enumerate(sorted(by_accession.items())):
            part = parts[index % len(parts)]
            (root / part / label).mkdir(parents=True, exist_ok=True)
            for image in members[:3]:
                shutil.copy(image, root / part / label / image.name)
                by_part[part].add(image.name)
    return by_part


def test_the_blog_layout_keeps_validation_as_the_test_set(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    given = _blog_layout(breakhis_dev, tmp_path / "blog")
    config = DataConfig(path=tmp_path / "blog")
    samples = list(load_dataset(config).samples)
    split = split_for_config(samples, config)
    names = {role: {s.path.name for s in part} for role, part in split.parts()}
    assert names[DataRole.TEST] == given["validation"]
    assert names[DataRole.TRAIN] | names[DataRole.SELECTION] == given["train"]
    assert _accessions(split.train).isdisjoint(_accessions(split.selection))
    assert split.test_from == "data" and not split.leaky
    # The split seed and the grouping apply to the selection set carved from train/.
    other = split_for_config(samples, DataConfig(path=tmp_path / "blog", split_seed=3))
    assert {s.path for s in other.test} == {s.path for s in split.test}
    assert {s.path for s in other.selection} != {s.path for s in split.selection}


def test_train_validation_and_test_folders_are_taken_as_given(
    breakhis_dev: Path, tmp_path: Path
) -> None:
    given = _blog_layout(breakhis_dev, tmp_path / "three", with_test=True)
    config = DataConfig(path=tmp_path / "three")
    split = split_for_config(list(load_dataset(config).samples), config)
    names = {role: {s.path.name for s in part} for role, part in split.parts()}
    assert names == {
        DataRole.TRAIN: given["train"],
        DataRole.SELECTION: given["validation"],
        DataRole.TEST: given["test"],
    }


def test_nested_folds_test_every_image_once_on_patients_their_model_never_saw(
    breakhis_dev: Path,
) -> None:
    samples = list(load_dataset(DataConfig(path=breakhis_dev)).samples)
    folds = kfold_splits(samples, folds=5, seed=11)
    tested = [s.path for fold in folds for s in fold.test]
    assert sorted(tested) == sorted(s.path for s in samples)
    for fold in folds:
        seen = _accessions(fold.train) | _accessions(fold.selection)
        assert seen.isdisjoint(_accessions(fold.test))
        assert _accessions(fold.train).isdisjoint(_accessions(fold.selection))
        assert fold.test_from == "fold"
    for fold in spanhol_splits(samples, seed=11):
        assert (_accessions(fold.train) | _accessions(fold.selection)).isdisjoint(
            _accessions(fold.test)
        )
        assert 0.2 < len(_accessions(fold.test)) / 31 < 0.4


def _predictions(probabilities: list[float], labels: list[int], role: DataRole) -> Predictions:
    p = np.array(probabilities, dtype=np.float64)
    return Predictions(
        class_names=("benign", "malignant"),
        y_true=np.array(labels, dtype=np.int64),
        probabilities=np.stack([1.0 - p, p], axis=1),
        role=role,
    )


def test_calibration_is_fitted_on_the_selection_set_and_applied_unchanged() -> None:
    """Planted: the selection set wants threshold 0.7 and an overconfident model's T > 1; the
    test set on its own would want threshold 0.3. The test set gets the selection set's."""
    rng = np.random.default_rng(0)
    labels = [0] * 20 + [1] * 20
    # Selection: malignant scores 0.7-0.99, benign 0.01-0.69 with a few overconfident errors.
    overconfident = [0.95, 0.97, 0.99]
    selection_scores = np.r_[
        rng.uniform(0.01, 0.69, 17), overconfident, rng.uniform(0.7, 0.99, 20)
    ]
    selection = _predictions(list(selection_scores), labels, DataRole.SELECTION)
    test_scores = np.r_[rng.uniform(0.01, 0.29, 20), rng.uniform(0.3, 0.6, 20)]
    test = _predictions(list(test_scores), labels, DataRole.TEST)

    calibration = fit_calibration(selection)
    expected_t = fit_temperature(selection.probabilities, selection.y_true)
    assert calibration.temperature == pytest.approx(expected_t) and expected_t > 1.0
    assert calibration.n_images == 40 and calibration.notes == ()
    scaled = apply_calibration(selection, calibration)
    assert dict(calibration.thresholds) == choose_thresholds(
        scaled.y_true == 1, scaled.probabilities[:, 1]
    )
    on_test_alone = choose_thresholds(test.y_true == 1, test.probabilities[:, 1])
    assert calibration.thresholds["youden"] != pytest.approx(on_test_alone["youden"])

    applied = apply_calibration(test, calibration)
    assert dict(applied.thresholds) == dict(calibration.thresholds)
    assert applied.temperature == calibration.temperature
    expected = apply_calibration(test, calibration).probabilities
    np.testing.assert_allclose(applied.probabilities, expected)
    with pytest.raises(ValueError, match="selection set only"):
        fit_calibration(test)


def test_degenerate_selection_sets_fit_no_temperature() -> None:
    separated = _predictions([0.1] * 15 + [0.9] * 15, [0] * 15 + [1] * 15, DataRole.SELECTION)
    calibration = fit_calibration(separated)
    assert calibration.temperature is None
    assert "every selection image correctly" in calibration.notes[0]
    tiny = _predictions([0.2, 0.6, 0.7, 0.9], [0, 0, 1, 1], DataRole.SELECTION)
    assert fit_calibration(tiny).temperature is None
    assert "4 images" in fit_calibration(tiny).notes[0]
    # Errors made with near-certainty: the fit wants a huge temperature, which is bounded.
    wild = _predictions(
        [0.001] * 10 + [0.999] * 10 + [0.999] * 10 + [0.001] * 10,
        [0] * 10 + [1] * 10 + [0] * 10 + [1] * 10,
        DataRole.SELECTION,
    )
    bounded = fit_calibration(wild)
    assert bounded.temperature == 4.0 and "bounded" in bounded.notes[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> tuple[Path, Path]:
    """Real images of eight patients per class, two each; a 1-epoch smallcnn run on them."""
    root = copy_patients(
        breakhis_dev, tmp_path_factory.mktemp("roles") / "data", patients=8, images_per_patient=2
    )
    config = breastcls.RunConfig(
        data=DataConfig(path=root, image_size=48),
        model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
        train=breastcls.TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, verbose=0),
        out_dir=root.parent / "runs",
        name="tiny",
    )
    result = breastcls.train(config)
    assert result.role is DataRole.TEST
    return root, result.run_dir


def _roles(run: Path) -> dict[str, list[dict[str, str]]]:
    with (run / "split.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    by_role: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_role[row["role"]].append(row)
    return by_role


def test_a_run_reports_the_test_set_and_keeps_the_selection_figures_apart(
    tiny_run: tuple[Path, Path],
) -> None:
    _, run = tiny_run
    roles = _roles(run)
    assert set(roles) == {"train", "selection", "test"}
    groups = {role: {row["group"] for row in rows} for role, rows in roles.items()}
    assert groups["test"].isdisjoint(groups["train"] | groups["selection"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["evaluated_on"] == {
        "role": "test", "set": "test set (look 1 of this test set)", "leak": None,
        "images": len(roles["test"]),
        # Patients as the split groups them (accessions): two slides of one biopsy count once.
        "patients": len({row["group"] for row in roles["test"]}),
    }  # fmt: skip
    with (run / "predictions.csv").open(newline="") as handle:
        assert sorted(r["path"] for r in csv.DictReader(handle)) == sorted(
            r["path"] for r in roles["test"]
        )
    selection = json.loads((run / "selection" / "metrics.json").read_text())
    assert selection["evaluated_on"]["role"] == "selection"
    assert selection["evaluated_on"]["images"] == len(roles["selection"])
    # The thresholds are those the selection set's (calibrated) predictions give.
    with (run / "selection" / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    truth = np.array([row["true"] == "malignant" for row in rows])
    score = np.array([float(row["p_malignant"]) for row in rows])
    saved = json.loads((run / "model_record.json").read_text())["calibrations"]["none"]
    assert saved["fitted_on"] == "selection"
    assert saved["thresholds"] == pytest.approx(choose_thresholds(truth, score))
    status = json.loads((run / "status.json").read_text())
    assert status["headline"]["role"] == "test"
    assert status["headline"]["accuracy"] == pytest.approx(metrics["classification"]["accuracy"])
    html = (run / "report.html").read_text()
    card = html.index('id="summary"')
    assert card < html.index("Contents") and "Figures from the test set" in html
    assert html.index("<details") > html.index("Patient level")


def test_evaluate_defaults_to_the_test_set(tiny_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = tiny_run
    result = breastcls.evaluate(run, out_dir=tmp_path / "eval", gradcam=False, verbose=0)
    assert result.role is DataRole.TEST and result.n_images == len(_roles(run)["test"])


def _held_out_folder(run: Path, root: Path) -> Path:
    """The run's test images, copied into a fresh ``<class>/`` folder."""
    for row in _roles(run)["test"]:
        (root / row["label"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(row["path"], root / row["label"] / Path(row["path"]).name)
    return root


def test_evaluate_refuses_a_training_image_under_another_name(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run = tiny_run
    folder = _held_out_folder(run, tmp_path / "renamed")
    trained = _roles(run)["train"][0]
    shutil.copy(trained["path"], folder / trained["label"] / "innocent-looking.png")
    with pytest.raises(DataError, match="identical to images that trained or selected"):
        breastcls.evaluate(run, data=folder, out_dir=tmp_path / "out", gradcam=False, verbose=0)
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_training_patient_and_labels_an_allowed_overlap(
    tiny_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run = tiny_run
    folder = _held_out_folder(run, tmp_path / "patient")
    selection = _roles(run)["selection"][0]
    # Another image of a selection patient: same patient, pixels the model never saw.
    source = Path(selection["path"])
    flipped = folder / selection["label"] / source.name.replace(".png", "9.png")
    from PIL import Image

    Image.open(source).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    with pytest.raises(DataError, match=r"1 patient\(s\) the model trained or selected on"):
        breastcls.evaluate(run, data=folder, out_dir=tmp_path / "out", gradcam=False, verbose=0)
    result = breastcls.evaluate(
        run, data=folder, out_dir=tmp_path / "out", gradcam=False, verbose=0, allow_overlap=True
    )
    assert result.role is None
    assert result.metrics["evaluated_on"]["set"].startswith("overlapping data (optimistic)")
    assert "overlapping data (optimistic)" in result.report.read_text()
    clean = _held_out_folder(run, tmp_path / "clean")
    checked = breastcls.evaluate(
        run, data=clean, out_dir=tmp_path / "clean-out", gradcam=False, verbose=0
    )
    assert checked.role is DataRole.TEST
