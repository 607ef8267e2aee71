"""Know when not to answer: the domain-shift score of a model trained on the development images
flags few of its own held-out test images, and nearly every image at another scale or with no
tissue, in every place a prediction is shown."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import breastcls
from breastcls.cli.app import app
from breastcls.data.images import decode_image
from breastcls.inference.domain import DomainReference, fit_domain_reference
from breastcls.inference.record import read_record
from breastcls.testing.shifts import non_tissue, small_crops
from breastcls.testing.slides import write_mosaic_slide

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    """A smallcnn trained for 3 epochs at 64 px on the development images (default split:
    test and selection patients held out)."""
    out = tmp_path_factory.mktemp("domain")
    result = breastcls.train(
        breastcls.RunConfig(
            data=breastcls.DataConfig(path=breakhis_dev, image_size=64),
            model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
            train=breastcls.TrainConfig(epochs=3, batch_size=16, learning_rate=3e-3, verbose=0),
            out_dir=out,
            name="domain",
        )
    )
    return result.run_dir


def _role(run: Path, role: str) -> list[Path]:
    with (run / "split.csv").open(newline="", encoding="utf-8") as handle:
        return [Path(row["path"]) for row in csv.DictReader(handle) if row["role"] == role]


def test_the_reference_is_fitted_on_training_images_with_selection_thresholds(run: Path) -> None:
    record = read_record(run)
    assert record is not None and record.domain is not None
    reference = record.domain
    assert reference.n_training_images == len(_role(run, "train"))
    assert reference.n_selection_images == len(_role(run, "selection"))
    assert reference.quantile == 0.99 and reference.smallest_side == 224.0
    # The selection set chose the thresholds: about 1% of it lies above them, by construction.
    selection = breastcls.predict(run, _role(run, "selection")).prediction
    assert selection.domain_score is not None
    assert np.mean(selection.domain_score > 1) <= 0.02


def test_at_most_10_percent_of_the_held_out_test_set_is_flagged(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    domain = metrics["domain"]
    assert domain["set"].startswith("test set") and domain["n_images"] == len(_role(run, "test"))
    assert domain["n_images"] == 58
    assert domain["flagged_fraction"] <= 0.10
    assert domain["applies"] is True
    assert domain["thresholds_chosen_on"].startswith("selection set (56 images, 6 patients)")
    with (run / "predictions.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    flagged = sum(row["in_distribution"] == "no" for row in rows)
    assert flagged == domain["n_flagged"] and all(row["domain_score"] for row in rows)
    html = (run / "report.html").read_text()
    assert f"{domain['n_flagged']} of 58 images unlike the training images" in html
    assert 'id="domain-warning"' not in html


def test_small_crops_at_another_scale_and_non_tissue_images_are_flagged(
    run: Path, tmp_path: Path
) -> None:
    test_images = [decode_image(path) for path in _role(run, "test")]
    # 50 x 50 px fields as files, as another lab's patches come.
    folder = tmp_path / "crops"
    folder.mkdir()
    for index, crop in enumerate(small_crops(test_images, seed=1)):
        Image.fromarray(crop).save(folder / f"crop-{index:03d}.png")
    out = tmp_path / "crops.csv"
    result = runner.invoke(app, ["predict", str(run), str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "WARNING: these predictions do not apply to this data" in result.output
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 58
    assert sum(row["in_distribution"] == "no" for row in rows) / len(rows) >= 0.9
    # The same fields resized up to 224 px before the model sees them (no size to go by).
    resized = breastcls.predict(run, small_crops(test_images, resize_to=224, seed=1)).prediction
    assert resized.in_distribution is not None
    assert np.mean(~resized.in_distribution) >= 0.9
    blank = breastcls.predict(run, non_tissue(30)).prediction
    assert blank.in_distribution is not None and np.mean(~blank.in_distribution) >= 0.9
    assert set(blank.domain_reason or ()) - {""} <= {"features", "sharpness", "chroma"}


def test_evaluate_on_shifted_data_says_first_that_its_figures_do_not_apply(
    run: Path, tmp_path: Path
) -> None:
    # The test patients' images as 50 px crops, under their BreakHis names: still test patients.
    data = tmp_path / "crops"
    for path in _role(run, "test"):
        label = "malignant" if "_M_" in path.name else "benign"
        (data / label).mkdir(parents=True, exist_ok=True)
        (crop,) = small_crops([decode_image(path)], seed=2)
        Image.fromarray(crop).save(data / label / path.name)
    out = tmp_path / "evaluation"
    result = runner.invoke(
        app, ["evaluate", str(run), "--data", str(data), "--out", str(out), "--no-gradcam",
              "--stain-shift", "none"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    warning = next(i for i, line in enumerate(lines) if line.startswith("WARNING: These figures"))
    figures = next(i for i, line in enumerate(lines) if ": accuracy" in line)
    assert warning < figures
    domain = json.loads((out / "metrics.json").read_text())["domain"]
    assert domain["flagged_fraction"] >= 0.9 and domain["applies"] is False
    html = (out / "report.html").read_text()
    summary = html[html.index('id="summary"') :]
    assert summary.index('id="domain-warning"') < summary.index("<table>")
    # A rebuilt report keeps the section and the warning.
    rebuilt = runner.invoke(app, ["report", str(out)])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert 'id="domain-warning"' in (out / "report.html").read_text()


def test_data_check_with_a_model_scores_a_folder(run: Path, tmp_path: Path) -> None:
    for label in ("benign", "malignant"):
        (tmp_path / "blank" / label).mkdir(parents=True)
        for index, image in enumerate(non_tissue(5, seed=len(label))):
            Image.fromarray(image).save(tmp_path / "blank" / label / f"blank-{index}.png")
    result = runner.invoke(
        app, ["data", "check", str(tmp_path / "blank"), "--model", str(run)]
    )
    assert "the model does not apply to this data: 10 of 10 images (100%)" in result.output
    assert result.exit_code == 1, result.output
    found = runner.invoke(
        app, ["data", "check", str(tmp_path / "blank"), "--model", str(run), "--json"]
    )
    domain = json.loads(found.output)["domain"]
    assert (domain["n_images"], domain["n_flagged"], domain["applies"]) == (10, 10, False)


def test_tiles_carry_the_score_and_flagged_tiles_leave_the_summary(
    run: Path, tmp_path: Path, breakhis_dev: Path
) -> None:
    tissue = sorted((breakhis_dev / "malignant").glob("*-200-*.png"))[:3]
    cells = {(0, 0): tissue[0], (1, 0): tissue[1], (2, 0): tissue[2]}
    slide = write_mosaic_slide(tmp_path / "slide.tif", cells, columns=3, rows=1, cell=224)
    # One model pixel covers 224 * 0.5 / 64 µm: one tile per cell, at the training scale.
    result = breastcls.predict_slide(
        run, slide, model_mpp=224 * 0.5 / 64, out=tmp_path / "slide", batch_size=4
    )
    domain = result.summary["domain"]
    assert domain["n_tiles"] == len(result.tiles) == 3
    with (tmp_path / "slide" / "tiles.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["domain_score"]) for r in rows] == pytest.approx(result.tiles.domain_score)
    assert domain["n_flagged"] == sum(r["in_distribution"] == "no" for r in rows)
    # A model scale 4x finer than the slide's: 16 px fields blown up to 64 px, unlike the
    # training images: flagged, and left out of the slide's figures.
    blown = breastcls.predict_slide(
        run, slide, model_mpp=0.5 / 4, out=tmp_path / "blown", batch_size=32
    )
    assert blown.summary["domain"]["flagged_fraction"] >= 0.9
    kept = ~blown.tiles.flagged
    expected = float(blown.tiles.score[kept].max()) if kept.any() else None
    assert blown.summary["max_score"] == expected
    assert 'id="domain-warning"' in (tmp_path / "blown" / "report.html").read_text()


def test_the_reference_scores_known_distances() -> None:
    rng = np.random.default_rng(0)
    n, d = 400, 6
    labels = np.repeat([0, 1], n // 2)
    embedding = rng.normal(size=(n, d)) + labels[:, None] * 3.0
    statistics = np.column_stack([rng.normal(3.0, 0.2, n), rng.normal(4.0, 0.2, n)])
    features = np.column_stack([embedding, statistics])
    selection = features[:100]
    reference = fit_domain_reference(
        features, labels, [224.0] * n, selection, [224.0] * 100, n_classes=2,
        n_selection_patients=7,
    )  # fmt: skip
    assert reference.n_training_images == n and reference.n_selection_images == 100
    # The selection set's 99th percentile: one of 100 images at most lies above the thresholds.
    assert np.mean(reference.score(selection, [224.0] * 100).score > 1) <= 0.01
    # Far from both class means, a gray image (chroma far below the training range), a small one.
    far = np.concatenate([np.full(d, 20.0), [3.0, 4.0]])[None]
    gray = np.concatenate([embedding[0], [3.0, 0.0]])[None]
    normal = features[200:201]
    scored = reference.score(np.concatenate([far, gray, normal, normal]), [224, 224, 224, 50])
    assert list(scored.in_distribution) == [False, False, True, False]
    assert scored.reason == ("features", "chroma", "", "image size")
    # The size part: 0 down to the smallest training side, 1 at half of it.
    sizes = reference.score(np.concatenate([normal] * 3), [224.0, 112.0, 111.0])
    assert list(sizes.in_distribution) == [True, True, False]
    again = DomainReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    np.testing.assert_array_equal(again.score(features).score, reference.score(features).score)
