"""Whole-slide prediction on a synthetic pyramidal TIFF made of real BreakHis images.

The slide is a 9 x 5 grid of 224-pixel cells at 0.5 µm/px on white glass: a 3 x 3 block of one
benign patient's images on the left, a 3 x 3 block of two malignant patients' images on the
right. The model is a small CNN trained on the other patients' images only.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import breastcls
from breastcls.cli.app import app
from breastcls.conversion import EXPORT_TOLERANCE
from breastcls.errors import ConfigError, DataError
from breastcls.inference import runtime as runtimes
from breastcls.plugins import PluginHost
from breastcls.slides.job import predict_slide
from breastcls.slides.outputs import TileTable, heat_map
from breastcls.slides.reading import open_slide
from breastcls.testing.slides import write_mosaic_slide

CELL = 224  # level-0 pixels of one image cell (the side of a development image)
COLUMNS, ROWS = 9, 5
SLIDE_MPP = 0.5
IMAGE_SIZE = 32
# One model pixel covers CELL / IMAGE_SIZE slide pixels, so that one tile is one cell.
MODEL_MPP = CELL * SLIDE_MPP / IMAGE_SIZE
BENIGN_PATIENT = "14-29960CD"
MALIGNANT_PATIENTS = ("14-10147", "14-11031")
BENIGN_CELLS = {(c, r) for c in (1, 2, 3) for r in (1, 2, 3)}
MALIGNANT_CELLS = {(c, r) for c in (5, 6, 7) for r in (1, 2, 3)}


def _patient(image: Path) -> str:
    return "-".join(image.name.split("-")[1:3])


def _images_200x(source: Path, label: str) -> list[Path]:
    return sorted(p for p in (source / label).glob("*.png") if "-200-" in p.name)


def write_slide(
    path: Path, breakhis: Path, *, resolution: bool = True, compression: str = "zlib"
) -> Path:
    """The synthetic slide as a tiled pyramidal TIFF (levels 1, 1/2, 1/4)."""
    benign = [p for p in _images_200x(breakhis, "benign") if _patient(p) == BENIGN_PATIENT]
    malignant = [
        p for p in _images_200x(breakhis, "malignant") if _patient(p) in MALIGNANT_PATIENTS
    ]
    assert len(benign) >= 9 and len(malignant) >= 9
    cells = {
        cell: image
        for region, images in ((BENIGN_CELLS, benign), (MALIGNANT_CELLS, malignant))
        for cell, image in zip(sorted(region), images, strict=False)
    }
    return write_mosaic_slide(
        path, cells, columns=COLUMNS, rows=ROWS, cell=CELL,
        mpp=SLIDE_MPP if resolution else None, compression=compression,
    )  # fmt: skip


@pytest.fixture(scope="module")
def slide_run(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    """A smallcnn trained on the 200X images of every patient not on the slide."""
    root = tmp_path_factory.mktemp("slides") / "data"
    held_out = {BENIGN_PATIENT, *MALIGNANT_PATIENTS}
    for label in ("benign", "malignant"):
        (root / label).mkdir(parents=True)
        for image in _images_200x(breakhis_dev, label):
            if _patient(image) not in held_out:
                shutil.copy(image, root / label / image.name)
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(path=root, image_size=IMAGE_SIZE),
        model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
        # Not deterministic: TensorFlow's op determinism is process-wide and cannot be turned
        # off, and it would disable XLA for every later test of this pytest process.
        train=breastcls.TrainConfig(epochs=8, batch_size=16, learning_rate=3e-3, verbose=0, seed=3),
        out_dir=root.parent / "runs",
        name="slide-model",
    )
    return breastcls.train(config).run_dir


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    return write_slide(tmp_path_factory.mktemp("slide") / "synthetic.tif", breakhis_dev)


@pytest.fixture(scope="module")
def model(slide_run: Path) -> breastcls.InferenceModel:
    return breastcls.InferenceModel.load(slide_run)


@pytest.fixture(scope="module")
def predicted(
    model: breastcls.InferenceModel, slide_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> breastcls.SlideResult:
    out = tmp_path_factory.mktemp("predicted") / "synthetic"
    return predict_slide(model, slide_file, model_mpp=MODEL_MPP, out=out, batch_size=4)


def _cells(table: object) -> list[tuple[int, int]]:
    return [(int(c), int(r)) for c, r in zip(table.column, table.row, strict=True)]  # type: ignore[attr-defined]


def test_the_tiff_reader_reads_levels_resolution_and_regions(slide_file: Path) -> None:
    slide = open_slide(slide_file, reader="tiff", host=PluginHost())
    try:
        assert [(lv.width, lv.height) for lv in slide.levels] == [
            (COLUMNS * CELL, ROWS * CELL), (COLUMNS * CELL // 2, ROWS * CELL // 2),
            (COLUMNS * CELL // 4, ROWS * CELL // 4),
        ]  # fmt: skip
        assert slide.mpp == pytest.approx(SLIDE_MPP)
        glass = slide.read_region(0, 0, 0, CELL, CELL)
        assert (glass == 255).all()
        tissue = slide.read_region(0, CELL, CELL, CELL, CELL)
        assert tissue.std() > 10
    finally:
        slide.close()


@pytest.mark.parametrize("compression", ["zlib", "jpeg"])
def test_openslide_reads_the_same_slide_as_the_tiff_reader(
    compression: str, slide_file: Path, breakhis_dev: Path, tmp_path: Path
) -> None:
    if compression != "zlib":
        slide_file = write_slide(tmp_path / "jpeg.tif", breakhis_dev, compression=compression)
    host = PluginHost()
    # A generic tiled TIFF is the tiff reader's (a third of OpenSlide's CPU time per tile);
    # OpenSlide opens it when asked.
    assert not host.slide_readers.get("openslide").accepts(slide_file)
    by_default = open_slide(slide_file, host=host)
    by_default.close()
    assert type(by_default).__name__ == "_TiffSlide"
    by_tiff = open_slide(slide_file, reader="tiff", host=host)
    by_openslide = open_slide(slide_file, reader="openslide", host=host)
    try:
        assert by_openslide.levels == by_tiff.levels
        assert by_openslide.mpp == pytest.approx(by_tiff.mpp)
        # Inside, across tile borders, at a coarser level, and over the slide's edge (glass).
        for level, x, y, size in ((0, 200, 180, 300), (1, 100, 90, 200), (2, 400, 200, 150)):
            np.testing.assert_array_equal(
                by_openslide.read_region(level, x, y, size, size),
                by_tiff.read_region(level, x, y, size, size),
            )
    finally:
        by_tiff.close()
        by_openslide.close()


def test_a_vendor_slide_opens_with_openslide(tmp_path: Path) -> None:
    import tifffile

    svs = tmp_path / "aperio.svs"
    with tifffile.TiffWriter(svs) as writer:
        writer.write(
            np.full((512, 512, 3), 200, dtype=np.uint8), tile=(256, 256), photometric="rgb",
            compression="jpeg", metadata=None,
            description="Aperio Image Library v12.0.15\n512x512 [0,0 512x512] (256x256) "
            "JPEG/RGB Q=90|AppMag = 20|MPP = 0.5",
        )  # fmt: skip
    assert PluginHost().slide_readers.get("openslide").accepts(svs)
    slide = open_slide(svs, host=PluginHost())
    try:
        assert type(slide).__name__ == "_OpenSlide"
        assert slide.mpp == pytest.approx(0.5)
        assert slide.objective_power == pytest.approx(20.0)  # type: ignore[attr-defined]
    finally:
        slide.close()


def test_the_openslide_reader_names_the_extra_when_openslide_is_missing(
    slide_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from breastcls.slides.readers import OpenSlideReader

    monkeypatch.setitem(sys.modules, "openslide", None)  # import openslide -> ImportError
    reader = OpenSlideReader()
    assert not reader.accepts(slide_file)
    with pytest.raises(breastcls.ConfigError, match=r"breastcls\[slides\]"):
        reader.open(slide_file)


def test_the_malignant_region_scores_above_the_benign_region(
    predicted: breastcls.SlideResult,
) -> None:
    table = predicted.tiles
    cells = _cells(table)
    benign = [s for s, cell in zip(table.score, cells, strict=True) if cell in BENIGN_CELLS]
    malignant = [s for s, cell in zip(table.score, cells, strict=True) if cell in MALIGNANT_CELLS]
    assert len(benign) >= 6 and len(malignant) >= 6
    assert np.mean(malignant) > np.mean(benign) + 0.05, (np.mean(malignant), np.mean(benign))
    # The heat map says the same over the thumbnail.
    heat = predicted.heatmap
    cell = heat.shape[1] / COLUMNS
    rows = slice(round(cell), round(4 * cell))
    left = heat[rows, round(cell) : round(4 * cell)]
    right = heat[rows, round(5 * cell) : round(8 * cell)]
    assert np.nanmean(right) > np.nanmean(left)


def test_glass_is_never_classified(predicted: breastcls.SlideResult) -> None:
    cells = _cells(predicted.tiles)
    assert set(cells) <= BENIGN_CELLS | MALIGNANT_CELLS
    assert len(cells) >= 12
    assert predicted.summary["tiles"]["grid"] == COLUMNS * ROWS
    heat = predicted.heatmap
    assert np.isnan(heat[:, : heat.shape[1] // COLUMNS]).all()  # the glass column on the left
    mask = predicted.tissue_mask
    assert not mask[:, : mask.shape[1] // COLUMNS - 1].any()


def test_the_slide_folder_holds_every_output(predicted: breastcls.SlideResult) -> None:
    from PIL import Image

    folder = predicted.folder
    assert folder is not None
    names = {p.name for p in folder.iterdir()}
    assert {"tiles.csv", "heatmap.png", "tiles.geojson", "tissue_mask.png", "summary.json",
            "slide.json", "thumbnail.png", "report.html"} <= names  # fmt: skip
    assert not {"tiles.partial.csv", "progress.json", ".breastcls-lock.json"} & names
    assert not {"embeddings.npz", "embeddings.partial"} & names  # a CNN: no frozen extractor
    with Image.open(folder / "heatmap.png") as heatmap:
        assert heatmap.size[0] > 300
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["positive"] == "malignant"
    assert summary["tiles"]["classified"] == len(predicted.tiles)
    assert "embeddings" not in summary
    assert set(summary["fraction_positive"]) == set(summary["thresholds"])
    assert 0.0 <= summary["top_k_mean_score"] <= 1.0
    with open(folder / "tiles.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["p_malignant"]) for r in rows] == predicted.tiles.probabilities[:, 1].tolist()


def test_the_geojson_has_one_polygon_per_tile(predicted: breastcls.SlideResult) -> None:
    assert predicted.folder is not None
    collection = json.loads((predicted.folder / "tiles.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert len(features) == len(predicted.tiles)
    for feature, x, y in zip(features, predicted.tiles.x, predicted.tiles.y, strict=True):
        assert feature["type"] == "Feature"
        assert feature["geometry"]["type"] == "Polygon"
        (ring,) = feature["geometry"]["coordinates"]
        assert len(ring) == 5 and ring[0] == ring[-1] == [int(x), int(y)]
        properties = feature["properties"]
        assert properties["objectType"] == "detection"
        assert set(properties["measurements"]) >= {"p_benign", "p_malignant", "tissue_fraction"}
        assert properties["classification"]["name"] in {"benign", "malignant"}


class _Killed(Exception):
    pass


def test_a_killed_job_resumes_to_the_same_tiles_csv(
    model: breastcls.InferenceModel, slide_file: Path, tmp_path: Path
) -> None:
    whole = predict_slide(
        model, slide_file, model_mpp=MODEL_MPP, out=tmp_path / "whole", batch_size=2,
        chunk_batches=1,
    )  # fmt: skip

    def kill_after_three(done: int, total: int) -> None:
        if done >= 6:
            raise _Killed

    folder = tmp_path / "killed"
    with pytest.raises(_Killed):
        predict_slide(
            model, slide_file, model_mpp=MODEL_MPP, out=folder, batch_size=2, chunk_batches=1,
            on_chunk=kill_after_three,
        )  # fmt: skip
    assert not (folder / "tiles.csv").exists()
    assert json.loads((folder / "progress.json").read_text())["tiles"] == 6
    with open(folder / "tiles.partial.csv", "a") as handle:
        handle.write("7,1,2,224,4")  # a chunk cut short by the kill, never committed
    seen: list[int] = []
    resumed = predict_slide(
        model, slide_file, model_mpp=MODEL_MPP, out=folder, batch_size=2, chunk_batches=1,
        on_chunk=lambda done, total: seen.append(done),
    )  # fmt: skip
    assert seen[0] == 8  # it went on from the committed chunks
    assert (folder / "tiles.csv").read_bytes() == (tmp_path / "whole" / "tiles.csv").read_bytes()
    assert resumed.summary == whole.summary


def test_another_job_in_the_same_folder_is_refused(
    model: breastcls.InferenceModel, slide_file: Path, predicted: breastcls.SlideResult
) -> None:
    with pytest.raises(breastcls.OutputError, match="min_tissue"):
        predict_slide(
            model, slide_file, model_mpp=MODEL_MPP, out=predicted.folder, min_tissue=0.9
        )


def test_a_slide_without_resolution_needs_mpp(
    model: breastcls.InferenceModel, breakhis_dev: Path, tmp_path: Path
) -> None:
    bare = write_slide(tmp_path / "bare.tif", breakhis_dev, resolution=False)
    with pytest.raises(DataError, match="--mpp"):
        predict_slide(model, bare, model_mpp=MODEL_MPP)
    result = predict_slide(model, bare, model_mpp=MODEL_MPP, mpp=SLIDE_MPP, batch_size=8)
    assert result.folder is None and len(result.tiles) >= 12
    assert result.summary["mpp_source"] == "--mpp"


def test_the_cli_predicts_many_slides_and_reports_the_bad_ones(
    slide_run: Path, slide_file: Path, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (800, 600), "white").save(blank, dpi=(50_800, 50_800))
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(slide_file.read_bytes()[:100])
    notes = tmp_path / "notes.txt"
    notes.write_text("not a slide")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["slide", "predict", str(slide_run), str(slide_file), str(blank), str(damaged),
         str(notes), "--out", str(out), "--model-mpp", str(MODEL_MPP), "--batch-size", "8"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert any("no tissue" in line for line in errors)
    assert any("no slide reader" in line for line in errors)
    assert (out / "synthetic" / "summary.json").is_file()
    with open(out / "summary.csv", newline="") as handle:
        rows = {Path(r["slide"]).name: r for r in csv.DictReader(handle)}
    assert rows["synthetic.tif"]["status"] == "ok"
    decision = json.loads((out / "synthetic" / "summary.json").read_text())["threshold"]
    assert rows["synthetic.tif"]["threshold_name"] == decision["name"]
    assert float(rows["synthetic.tif"]["fraction_called_positive"]) == decision["fraction_positive"]
    assert {rows[n]["status"] for n in ("blank.png", "damaged.tif", "notes.txt")} == {"error"}

    (out / "summary.csv").unlink()
    summary = CliRunner().invoke(app, ["slide", "summary", str(out)])
    # The failures were recorded only in the summary removed: the folders show none.
    assert summary.exit_code == 0, summary.output
    with open(out / "summary.csv", newline="") as handle:
        gathered = list(csv.DictReader(handle))
    assert [r["folder"] for r in gathered if r["status"] == "ok"] == ["synthetic"]
    assert gathered[0]["top_k_mean_score"] == rows["synthetic.tif"]["top_k_mean_score"]


def test_a_folder_s_macro_image_is_skipped_and_mpp_keeps_the_slide_s_own_resolution(
    slide_run: Path, slide_file: Path, breakhis_dev: Path, tmp_path: Path
) -> None:
    from PIL import Image

    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(slide_file, scans / "case1.tif")
    Image.new("RGB", (600, 240), "white").save(scans / "case1_macro.jpg")
    out = tmp_path / "out"
    # --mpp 0.25 would double the tiles' side in pixels if it replaced the slide's 0.5.
    result = CliRunner().invoke(
        app, ["slide", "predict", str(slide_run), str(scans), "--out", str(out), "--mpp", "0.25",
              "--model-mpp", str(MODEL_MPP), "--batch-size", "16", "--progress-every", "5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # Not a terminal: a progress line with the rate and the slide's place in the job.
    assert re.search(
        r"^slide 1 of 1: tiles of case1\.tif: (\d+)/\1 tiles, [\d.]+ tiles/s", result.output, re.M
    ), result.output
    assert "case1_macro.jpg: skipped: a scanner's label or macro image" in result.output
    assert "WARNING" not in result.output
    summary = json.loads((out / "case1" / "summary.json").read_text())
    assert (summary["slide_mpp"], summary["mpp_source"]) == (SLIDE_MPP, "metadata")
    assert summary["tile_size"] == CELL  # one tile per cell, at the slide's own 0.5 µm/px
    with open(out / "summary.csv", newline="") as handle:
        rows = {Path(r["slide"]).name: r for r in csv.DictReader(handle)}
    assert rows["case1_macro.jpg"]["status"] == "skipped"
    assert rows["case1.tif"]["status"] == "ok"

    # --force-mpp replaces it, and says so; a manifest gives a bare slide its own mpp.
    write_slide(tmp_path / "bare.tif", breakhis_dev, resolution=False)
    manifest = tmp_path / "slides.csv"
    manifest.write_text(f"path,mpp,case_id\n{scans / 'case1.tif'},,A\nbare.tif,0.5,B\n")
    forced = CliRunner().invoke(
        app, ["slide", "predict", str(slide_run), "--manifest", str(manifest), "--out",
              str(tmp_path / "forced"), "--mpp", "0.4", "--force-mpp",
              "--model-mpp", str(MODEL_MPP), "--batch-size", "16"],
    )  # fmt: skip
    assert forced.exit_code == 0, forced.output
    assert "--force-mpp 0.4 replaces the slide's own resolution, 0.5 µm/px" in forced.output
    by_case = {
        name: json.loads((tmp_path / "forced" / name / "summary.json").read_text())
        for name in ("case1", "bare")
    }
    assert by_case["case1"]["slide_mpp"] == 0.4 and by_case["case1"]["case_id"] == "A"
    assert by_case["bare"]["slide_mpp"] == 0.5  # the manifest's, for this slide
    assert by_case["bare"]["case_id"] == "B"


def test_onnx_runtime_gives_tensorflow_s_tiles_within_the_export_tolerance(
    model: breastcls.InferenceModel, slide_file: Path, predicted: breastcls.SlideResult
) -> None:
    result = predict_slide(model, slide_file, model_mpp=MODEL_MPP, batch_size=4, runtime="onnx")
    assert result.summary["runtime"] == "onnx" and predicted.summary["runtime"] == "tensorflow"
    # The conversion is a cache in the user's cache folder, never beside the model.
    assert _cache(model).onnx.is_file() and not (model.folder.path / "runtime.onnx").exists()
    # Calibrated probabilities: the run's temperature applies to both alike.
    assert _cells(result.tiles) == _cells(predicted.tiles)
    np.testing.assert_allclose(
        result.tiles.probabilities, predicted.tiles.probabilities, rtol=0, atol=EXPORT_TOLERANCE
    )


def test_auto_measures_once_per_model_and_machine(
    model: breastcls.InferenceModel, slide_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from breastcls import conversion

    measured: list[int] = []
    converted: list[int] = []
    measure, convert, here = runtimes._measure, conversion.convert_model, runtimes.machine()
    monkeypatch.setattr(runtimes, "_measure", lambda *a: measured.append(1) or measure(*a))
    monkeypatch.setattr(
        conversion, "convert_model", lambda *a, **k: converted.append(1) or convert(*a, **k)
    )
    monkeypatch.setattr(runtimes, "_PROBE_SECONDS", 0.0)  # a few batches are enough here
    cache = _cache(model)
    cache.record_file.unlink(missing_ok=True)
    first = predict_slide(model, slide_file, model_mpp=MODEL_MPP, batch_size=4, runtime="auto")
    second = predict_slide(model, slide_file, model_mpp=MODEL_MPP, batch_size=4, runtime="auto")
    assert measured == [1] and converted == [1]  # the second call reused both
    record = json.loads(cache.record_file.read_text())
    (choice,) = record["choices"]
    assert choice["machine"] == here and choice["batch_size"] == 4
    assert first.summary["runtime"] == second.summary["runtime"] == choice["runtime"]
    assert choice["onnx_images_per_s"] > 0 and choice["tensorflow_images_per_s"] > 0

    monkeypatch.setattr(runtimes, "machine", lambda: {**here, "cpu": "another CPU"})
    again = model.with_runtime("auto", batch_size=4).runtime
    assert again.reason.endswith(f"measured now, kept in {cache.record_file})")
    assert measured == [1, 1] and converted == [1]
    assert len(json.loads(cache.record_file.read_text())["choices"]) == 2

    # A conversion written by an older converter is converted again, its choices measured anew.
    record = json.loads(cache.record_file.read_text())
    assert record["onnx"]["graph_version"] == conversion.ONNX_GRAPH_VERSION
    cache.record_file.write_text(json.dumps({**record, "onnx": {"file": "runtime.onnx"}}))
    model.with_runtime("auto", batch_size=4)
    assert converted == [1, 1] and measured == [1, 1, 1]
    assert json.loads(cache.record_file.read_text())["onnx"]["graph_version"] == 2

    # Another model file (here: its recorded hash changed) voids the conversion and the choices.
    record = json.loads(cache.record_file.read_text())
    cache.record_file.write_text(json.dumps({**record, "model_sha256": "0" * 64}))
    assert cache.read() == {
        "model": str(model.source), "model_sha256": record["model_sha256"], "choices": []
    }  # fmt: skip


def _cache(model: breastcls.InferenceModel) -> runtimes._ModelCache:
    return runtimes._ModelCache(source=model.source, sha256=runtimes.model_sha256(model.source))


def test_without_onnxruntime_onnx_is_refused_and_auto_says_why(
    slide_run: Path, slide_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    arguments = ["slide", "predict", str(slide_run), str(slide_file), "--model-mpp",
                 str(MODEL_MPP), "--batch-size", "8", "--runtime"]  # fmt: skip
    refused = CliRunner().invoke(app, [*arguments, "onnx", "--out", str(tmp_path / "onnx")])
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert line.startswith("error: --runtime onnx needs ONNX Runtime") and "breastcls[onnx]" in line
    auto = CliRunner().invoke(app, [*arguments, "auto", "--out", str(tmp_path / "auto")])
    assert auto.exit_code == 0, auto.output
    (why,) = [line for line in auto.output.splitlines() if "not installed" in line]
    assert why.startswith("--runtime auto: tensorflow, since onnxruntime is not installed")
    summary = json.loads((tmp_path / "auto" / "synthetic" / "summary.json").read_text())
    assert summary["runtime"] == "tensorflow"
    with pytest.raises(ConfigError, match="use one of tensorflow, onnx, onnx-int8, auto"):
        breastcls.InferenceModel.load(slide_run, runtime="tflite")


def test_the_builtin_slide_readers_register_through_the_entry_point_group() -> None:
    from breastcls.testing import check_component

    host = PluginHost()
    assert {"tiff", "openslide", "image"} <= set(host.slide_readers.names())
    for info in host.slide_readers:
        assert info.plugin == "builtin_slide_readers"
        check_component(info)


def test_the_slide_report_shows_the_summary_and_the_heat_map(
    predicted: breastcls.SlideResult, tmp_path: Path
) -> None:
    from breastcls.slides.outputs import write_slide_report

    assert predicted.folder is not None
    page = (predicted.folder / "report.html").read_text(encoding="utf-8")
    assert "<h1>Slide synthetic.tif</h1>" in page
    assert page.count('src="data:image/png;base64,') == 2  # heat map and tissue mask
    assert "heatmap.png" in page and "top_k_mean_score" in page
    hostile = {**predicted.summary, "slide": "/slides/<script>alert(1)</script>.tif"}
    page = write_slide_report(tmp_path / "report.html", hostile, figures=()).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;.tif" in page


def test_the_run_records_the_scale_it_was_trained_at(slide_run: Path) -> None:
    from breastcls.data.scale import BREAKHIS_MPP

    scale = json.loads((slide_run / "config.json").read_text())["scale"]
    # 200X BreakHis images (stored at 224 pixels: the whole 700-pixel field, downscaled).
    assert scale["field_width_um"] == pytest.approx(700 * BREAKHIS_MPP[200])
    assert scale["model_mpp"] == pytest.approx(700 * 6.5 / (3.3 * 20) / IMAGE_SIZE)
    assert "200X" in scale["source"] and scale["note"] is None


def test_the_training_scale_comes_from_the_data_or_is_refused_with_a_reason(
    tmp_path: Path,
) -> None:
    from breastcls.data.images import ImageInfo
    from breastcls.data.scale import BREAKHIS_MPP, training_scale
    from breastcls.interfaces import Sample

    def sample(name: str, width: int = 700) -> tuple[Sample, ImageInfo]:
        path = tmp_path / name
        info = ImageInfo(path=path, format="PNG", mode="RGB", width=width, height=460,
                         tf_native=True, frames=1, pixel_sha1="")  # fmt: skip
        return Sample(path=path, label="benign"), info

    def scale(names: list[tuple[str, int]], image_mpp: float | None = None) -> object:
        pairs = [sample(n, w) for n, w in names]
        info = {s.path: i for s, i in pairs}
        return training_scale([s for s, _ in pairs], info, image_size=224, image_mpp=image_mpp)

    forty = scale([("SOB_B_A-14-22549AB-40-001.png", 700), ("SOB_B_A-14-22549AB-40-002.png", 350)])
    assert forty.model_mpp == pytest.approx(700 * BREAKHIS_MPP[40] / 224)  # type: ignore[attr-defined]
    mixed = scale([("SOB_B_A-14-22549AB-40-001.png", 700), ("SOB_B_A-14-22549AB-400-001.png", 700)])
    assert mixed.model_mpp is None and "--model-mpp" in mixed.note  # type: ignore[attr-defined]
    unnamed = scale([("case-1.png", 1000)])
    assert unnamed.model_mpp is None and "--train-mpp" in unnamed.note  # type: ignore[attr-defined]
    given = scale([("case-1.png", 1000)], image_mpp=0.25)
    assert given.model_mpp == pytest.approx(1000 * 0.25 / 224)  # type: ignore[attr-defined]


def test_without_model_mpp_a_run_without_a_recorded_scale_is_refused(
    model: breastcls.InferenceModel, slide_run: Path, tmp_path: Path
) -> None:
    from breastcls.slides.scale import model_scale

    # A run folder as breastcls wrote it before it recorded the scale (and the model record).
    old = tmp_path / "old-run"
    old.mkdir()
    record = json.loads((slide_run / "config.json").read_text())
    del record["scale"]
    (old / "config.json").write_text(json.dumps(record))
    for name in ("best.keras", "class_names.json"):
        shutil.copy(slide_run / name, old / name)
    older = breastcls.InferenceModel.load(old)
    assert older.record.origin == "upgraded" and older.record.scale is None
    with pytest.raises(breastcls.ConfigError, match=r"trained before .* Pass --model-mpp"):
        model_scale(older, None)
    assert model_scale(older, 1.5) == (1.5, "--model-mpp")
    assert model_scale(model, None)[1].startswith("run (BreakHis file names (200X")


def test_a_run_across_magnifications_warns_at_training_and_slides_suggest_a_model_mpp(
    slide_run: Path, tmp_path: Path
) -> None:
    from breastcls.data.scale import BREAKHIS_MPP, BREAKHIS_WIDTH
    from breastcls.slides.scale import model_scale
    from breastcls.training.callbacks import scale_warnings

    assert scale_warnings(slide_run) == ()  # one magnification: a scale is recorded
    mixed = tmp_path / "mixed-run"
    shutil.copytree(slide_run, mixed)
    note = "the training images show fields from 69 to 276 µm wide: train at one magnification"
    scale = {"model_mpp": None, "field_width_um": None, "image_size": IMAGE_SIZE,
             "source": "BreakHis file names (40X, 200X)", "note": note}  # fmt: skip
    for name in ("config.json", "model_record.json"):
        record = json.loads((mixed / name).read_text())
        record["scale"] = scale
        (mixed / name).write_text(json.dumps(record))
    (warning,) = scale_warnings(mixed)
    assert "records no training scale" in warning and note in warning
    loaded = breastcls.InferenceModel.load(mixed)
    assert loaded.record.scale is not None and loaded.record.scale.model_mpp is None
    # split.csv lists the training images: all 200X here.
    expected = BREAKHIS_WIDTH * BREAKHIS_MPP[200] / IMAGE_SIZE
    with pytest.raises(breastcls.ConfigError) as refused:
        model_scale(loaded, None)
    assert f"e.g. --model-mpp {expected:.4g}, the scale of 200X" in str(refused.value)
    assert note in str(refused.value)


def test_an_exported_model_keeps_the_scale_of_its_run(slide_run: Path, tmp_path: Path) -> None:
    from breastcls.slides.scale import model_scale

    exported = breastcls.export_model(slide_run, format="keras", out_dir=tmp_path / "export")
    assert not (exported.out_dir / "config.json").exists()  # the model record carries it
    loaded = breastcls.InferenceModel.load(exported.model)
    run_mpp = json.loads((slide_run / "config.json").read_text())["scale"]["model_mpp"]
    mpp, source = model_scale(loaded, None)
    assert mpp == pytest.approx(run_mpp) and source.startswith("run (BreakHis file names (200X")


def test_shards_partition_the_sorted_slide_list() -> None:
    from breastcls.slides.collection import parse_shard, shard_of

    slides = [f"slide-{i:02d}" for i in range(11)]
    for count in (1, 2, 3, 11, 12):
        shards = [shard_of(slides, parse_shard(f"{k}/{count}")) for k in range(1, count + 1)]
        assert sorted(s for shard in shards for s in shard) == slides
        assert sum(len(shard) for shard in shards) == len(slides)
    for bad in ("0/3", "4/3", "1/0", "two/3", "3", "-1/3"):
        with pytest.raises(breastcls.ConfigError, match="--shard"):
            parse_shard(bad)
    result = CliRunner().invoke(
        app, ["slide", "predict", "no-run", "no-slide", "--out", "o", "--shard", "0/4"]
    )
    assert result.exit_code == 2 and "K counts from 1" in result.output, result.output


def test_two_shards_then_summary_equal_one_unsharded_run(
    slide_run: Path, slide_file: Path, tmp_path: Path
) -> None:
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a.tif", "b.tif", "c.tif"):
        shutil.copy(slide_file, slides / name)
    # Empty glass (a flat PNG here would be skipped, beside pyramidal slides).
    write_mosaic_slide(slides / "blank.tif", {}, columns=COLUMNS, rows=ROWS, cell=CELL)

    def predict(out: Path, *shard: str, exit_code: int) -> None:
        # No --model-mpp: the scale the run recorded at training.
        arguments = ["slide", "predict", str(slide_run), str(slides), "--out", str(out),
                     "--batch-size", "16", *shard]  # fmt: skip
        result = CliRunner().invoke(app, arguments)
        assert result.exit_code == exit_code, result.output

    predict(tmp_path / "whole", exit_code=2)  # the blank slide has no tissue
    sharded = tmp_path / "sharded"
    predict(sharded, "--shard", "1/2", exit_code=2)  # a.tif, blank.tif
    predict(sharded, "--shard", "2/2", exit_code=0)  # b.tif, c.tif
    assert not (sharded / "summary.csv").exists()
    assert {p.name for p in sharded.glob("summary-shard-*.csv")} == {
        "summary-shard-1-of-2.csv", "summary-shard-2-of-2.csv"
    }  # fmt: skip
    result = CliRunner().invoke(app, ["slide", "summary", str(sharded)])
    assert result.exit_code == 2, result.output  # the blank slide failed
    whole = (tmp_path / "whole" / "summary.csv").read_text()
    assert (sharded / "summary.csv").read_text() == whole
    assert [line.split(",")[1] for line in whole.splitlines()[1:]] == ["a", "b", "blank", "c"]
    summary = json.loads((sharded / "b" / "summary.json").read_text())
    assert summary["model_mpp_source"].startswith("run (")


def _tiles(x: list[int], y: list[int], size: int, score: list[float]) -> TileTable:
    n = len(x)
    return TileTable(
        class_names=("benign", "malignant"), positive="malignant",
        tile=np.arange(n), column=np.zeros(n, dtype=np.int64), row=np.zeros(n, dtype=np.int64),
        x=np.array(x), y=np.array(y), size=size, level=0, tissue=np.ones(n),
        probabilities=np.stack([1 - np.array(score), np.array(score)], axis=1),
        score=np.array(score),
    )  # fmt: skip


def test_the_heat_map_averages_the_tiles_over_each_pixel() -> None:
    # Two 4-pixel tiles overlapping by half, at downsample 2: 2x2 thumbnail pixels each.
    heat = heat_map(_tiles([0, 2], [0, 2], 4, [0.2, 0.6]), (4, 4), 2.0)
    expected = np.full((4, 4), np.nan)
    expected[0:2, 0:2] = 0.2
    expected[1:3, 1:3] = 0.6
    expected[1, 1] = 0.4  # both tiles
    np.testing.assert_allclose(heat, expected, equal_nan=True)
    # A tile smaller than a thumbnail pixel still covers one; one past the edge is clipped.
    heat = heat_map(_tiles([5, 14], [5, 14], 1, [0.9, 0.3]), (4, 4), 4.0)
    assert heat[1, 1] == pytest.approx(0.9) and heat[3, 3] == pytest.approx(0.3)
    assert np.isnan(heat).sum() == 14


def test_the_heat_map_equals_a_tile_by_tile_sum() -> None:
    rng = np.random.default_rng(5)
    table = _tiles(
        list(rng.integers(-50, 900, 300)), list(rng.integers(-50, 600, 300)), 96,
        list(rng.uniform(0, 1, 300)),
    )  # fmt: skip
    total, count = np.zeros((70, 100)), np.zeros((70, 100))
    for i in range(len(table)):
        x0 = min(max(int(np.floor(table.x[i] / 9.0)), 0), 99)
        y0 = min(max(int(np.floor(table.y[i] / 9.0)), 0), 69)
        x1 = min(max(int(np.ceil((table.x[i] + 96) / 9.0)), x0 + 1), 100)
        y1 = min(max(int(np.ceil((table.y[i] + 96) / 9.0)), y0 + 1), 70)
        total[y0:y1, x0:x1] += table.score[i]
        count[y0:y1, x0:x1] += 1
    expected = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    np.testing.assert_allclose(heat_map(table, (70, 100), 9.0), expected, equal_nan=True)


def test_the_summary_calls_tiles_at_the_run_threshold_and_says_where_it_was_chosen(
    predicted: breastcls.SlideResult, model: breastcls.InferenceModel
) -> None:
    assert predicted.folder is not None
    name, value = model.calibration("none").decision_threshold
    assert name == "youden"  # the run's selection set chose one
    decision = predicted.summary["threshold"]
    assert (decision["name"], decision["value"]) == (name, value)
    assert decision["fraction_positive"] == pytest.approx(
        float(np.mean(predicted.tiles.score >= value))
    )
    assert "not on slides" in decision["note"]
    assert 0.9 < predicted.summary["tissue_classified_fraction"] <= 1.0
    assert predicted.summary["tissue_detector"] == "optical-density"
    collection = json.loads((predicted.folder / "tiles.geojson").read_text())
    assert collection["properties"]["threshold"] == value
    assert collection["properties"]["threshold_name"] == "youden"
    called = [f["properties"]["classification"]["name"] for f in collection["features"]]
    expected = ["malignant" if s >= value else "benign" for s in predicted.tiles.score]
    assert called == expected
    page = (predicted.folder / "report.html").read_text(encoding="utf-8")
    assert 'id="research-use"' in page and 'id="threshold-note"' in page
    assert "not on slides" in page


def test_the_overlay_tiff_has_the_slide_s_geometry(
    predicted: breastcls.SlideResult, slide_file: Path
) -> None:
    import tifffile

    assert predicted.folder is not None
    overlay = predicted.folder / "heatmap.tif"
    with tifffile.TiffFile(slide_file) as slide, tifffile.TiffFile(overlay) as tiff:
        assert tiff.pages[0].shape == slide.pages[0].shape
        assert tiff.pages[0].tags["XResolution"].value == slide.pages[0].tags["XResolution"].value
        assert len(tiff.pages) >= 2  # a pyramid
        level0 = tiff.pages[0].asarray()
    # The malignant block's tiles are coloured; the glass column on the left is white.
    assert (level0[:, : CELL - 1] == 255).all()
    assert (level0[CELL : 4 * CELL, 5 * CELL : 8 * CELL] != 255).any(axis=2).mean() > 0.9
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(str(overlay)) as opened:
        assert opened.dimensions == (COLUMNS * CELL, ROWS * CELL)
        assert float(opened.properties["openslide.mpp-x"]) == pytest.approx(SLIDE_MPP)


def test_the_cli_refuses_a_bad_roi_and_an_unknown_detector_in_one_line(
    slide_run: Path, slide_file: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "regions.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [')  # cut short
    command = ["slide", "predict", str(slide_run), str(slide_file), "--out", str(tmp_path / "o"),
               "--model-mpp", str(MODEL_MPP)]  # fmt: skip
    result = CliRunner().invoke(app, [*command, "--roi", str(bad)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"--roi {bad} is not a readable JSON file" in errors[0]
    assert "Traceback" not in result.output
    unknown = CliRunner().invoke(app, [*command, "--tissue-detector", "otsu"])
    assert unknown.exit_code == 2
    assert "otsu" in unknown.output and "optical-density" in unknown.output
    assert "Traceback" not in unknown.output


def test_tile_embeddings_of_a_cnn_run_are_refused_before_a_slide_is_read(
    slide_run: Path, slide_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["slide", "predict", str(slide_run), str(slide_file), "--out", str(out),
              "--model-mpp", str(MODEL_MPP), "--tile-embeddings"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert re.search(r"--tile-embeddings: .* has no frozen extractor \(its backbone: smallcnn\)",
                     " ".join(result.output.split())), result.output  # fmt: skip
    assert "Traceback" not in result.output
    assert not list(out.rglob("tiles*.csv"))
