"""``slide predict`` with a foundation-model run (issue 30): the tile embeddings of each slide,
one row per tissue tile of ``tiles.csv``, equal to the extractor's embeddings of those tiles and
the same after a killed job resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import breastcls
from _slide_tiles import planned_tiles
from breastcls.embeddings.extractor import FrozenExtractor
from breastcls.runs.folder import SlideFolder
from breastcls.slides.job import predict_slide
from breastcls.slides.reading import open_slide, read_tiles
from breastcls.slides.regions import RegionOptions
from breastcls.testing.extractors import write_onnx_extractor
from breastcls.testing.slides import write_mosaic_slide
from conftest import copy_patients

pytestmark = pytest.mark.real_data

SIZE = 32  # the extractor's input side
DIMENSION = 16  # its embedding's
CELL = 224
SLIDE_MPP = 0.5
MODEL_MPP = CELL * SLIDE_MPP / SIZE  # one tile is one cell of the slide
CELLS = [(c, r) for r in (1, 2) for c in (1, 2, 3, 4)]  # 8 tissue tiles on 6 x 4 cells


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    """A linear probe on the ONNX stand-in extractor, fitted on a few real images."""
    root = tmp_path_factory.mktemp("probe")
    data = copy_patients(breakhis_dev, root / "data", patients=5, images_per_patient=2)
    extractor = write_onnx_extractor(root / "vit.onnx", input_size=SIZE, dimension=DIMENSION)
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(path=data, image_size=SIZE, selection_fraction=0.3),
        model=breastcls.ModelConfig(
            backbone="onnx", backbone_options={"file": str(extractor), "input_size": str(SIZE)},
            head="linear",
        ),
        train=breastcls.TrainConfig(batch_size=4, verbose=0),
        out_dir=root / "runs",
        name="probe",
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BREASTCLS_CACHE_DIR", str(root / "cache"))
        return breastcls.train(config).run_dir


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    images = sorted((breakhis_dev / "malignant").glob("*.png"))[: len(CELLS)]
    return write_mosaic_slide(
        tmp_path_factory.mktemp("slide") / "mosaic.tif", dict(zip(CELLS, images, strict=True)),
        columns=6, rows=4, cell=CELL, mpp=SLIDE_MPP,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREASTCLS_CACHE_DIR", str(tmp_path / "cache"))


def _predict(run: Path, slide: Path, out: Path, **settings: object) -> breastcls.SlideResult:
    return predict_slide(
        run, slide, model_mpp=MODEL_MPP, out=out, batch_size=2, chunk_batches=1, **settings
    )


def _tiles_csv_cells(folder: Path) -> list[tuple[int, int]]:
    with open(folder / "tiles.csv", newline="") as handle:
        return [(int(row["column"]), int(row["row"])) for row in csv.DictReader(handle)]


def test_the_tile_embeddings_are_the_extractor_s_in_tiles_csv_order(
    probe_run: Path, slide_file: Path, tmp_path: Path
) -> None:
    result = _predict(probe_run, slide_file, tmp_path / "slide")
    folder = tmp_path / "slide"
    names = {p.name for p in folder.iterdir()}
    assert "embeddings.npz" in names and "embeddings.partial" not in names
    with np.load(folder / "embeddings.npz", allow_pickle=False) as stored:
        rows, columns, grid_rows = stored["embeddings"], stored["column"], stored["row"]
    cells = _tiles_csv_cells(folder)
    assert sorted(cells) == sorted(CELLS)  # every tissue tile, none of the glass
    assert rows.dtype == np.float16 and rows.shape == (len(CELLS), DIMENSION)
    assert list(zip(columns.tolist(), grid_rows.tolist(), strict=True)) == cells
    # The extractor's own embeddings of the same tiles, read and resized as the job reads them.
    plan, _ = planned_tiles(
        slide_file, RegionOptions(), slide_mpp=SLIDE_MPP, model_mpp=MODEL_MPP, image_size=SIZE
    )
    assert [(int(c), int(r)) for c, r in zip(plan.column, plan.row, strict=True)] == cells
    slide = open_slide(slide_file, reader="tiff")
    try:
        tiles = read_tiles(slide, plan, 0, len(plan)).astype(np.float32)
    finally:
        slide.close()
    record = json.loads((probe_run / "model_record.json").read_text())["extractor"]
    expected = FrozenExtractor.from_dict(
        {k: v for k, v in record.items() if k not in ("sha256", "dimension", "probe")}
    ).load().embed(tiles)  # fmt: skip
    assert np.ptp(expected) > 0
    np.testing.assert_allclose(rows, expected, rtol=2**-10, atol=1e-3)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["embeddings"] == {
        "file": "embeddings.npz", "tiles": len(CELLS), "dimension": DIMENSION, "dtype": "float16"
    }  # fmt: skip
    assert result.summary["embeddings"] == summary["embeddings"]
    assert SlideFolder(folder).read_summary().embeddings["dimension"] == DIMENSION  # type: ignore[index,union-attr]
    # Tiles are seen once: none goes into the user's embedding cache.
    assert not list((tmp_path / "cache").glob("embeddings/*/shard-*.npz"))


class _Killed(Exception):
    pass


def _killed_after_two_chunks(run: Path, slide: Path, folder: Path) -> None:
    def kill(done: int, total: int) -> None:
        if done >= 4:
            raise _Killed

    with pytest.raises(_Killed):
        _predict(run, slide, folder, on_chunk=kill)


def test_a_killed_job_resumes_to_the_same_embeddings(
    probe_run: Path, slide_file: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole"
    _predict(probe_run, slide_file, whole)
    folder = tmp_path / "killed"
    _killed_after_two_chunks(probe_run, slide_file, folder)
    assert not (folder / "embeddings.npz").exists()
    assert json.loads((folder / "progress.json").read_text())["tiles"] == 4
    # A kill between keeping a chunk's embeddings and committing its rows leaves the chunk.
    np.save(folder / "embeddings.partial" / "tiles-000000004.npy", np.zeros((2, DIMENSION)))
    seen: list[int] = []
    _predict(probe_run, slide_file, folder, on_chunk=lambda done, total: seen.append(done))
    assert seen[0] == 6  # it went on from the committed chunks
    assert not (folder / "embeddings.partial").exists()
    with np.load(whole / "embeddings.npz") as expected, np.load(folder / "embeddings.npz") as got:
        for name in ("embeddings", "column", "row"):
            np.testing.assert_array_equal(got[name], expected[name])
    assert (folder / "tiles.csv").read_bytes() == (whole / "tiles.csv").read_bytes()


def test_a_folder_begun_without_embeddings_is_classified_again(
    probe_run: Path, slide_file: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "older"
    _killed_after_two_chunks(probe_run, slide_file, folder)
    for chunk in (folder / "embeddings.partial").iterdir():  # as a breastcls that kept none
        chunk.unlink()
    seen: list[int] = []
    _predict(probe_run, slide_file, folder, on_chunk=lambda done, total: seen.append(done))
    assert seen[0] == 2  # from the first tile: the committed ones had no embeddings
    with np.load(folder / "embeddings.npz") as stored:
        assert stored["embeddings"].shape == (len(CELLS), DIMENSION)
