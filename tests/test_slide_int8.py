"""Cheaper slide inference on CPUs: tiles read in blocks, and the int8 ONNX runtime.

The int8 model is calibrated on half of the run's selection images and checked on the other
half; it runs through the same door (:class:`~breastcls.InferenceModel`, the runtime protocol)
as float32, and writes only into the user's cache folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import breastcls
from breastcls.cli.app import app
from breastcls.errors import ConfigError
from breastcls.inference import quantization
from breastcls.inference import runtime as runtimes
from breastcls.interfaces import Sample
from breastcls.slides.reading import open_slide, read_tiles, tile_pixels
from breastcls.slides.tiling import SCALE_TOLERANCE, plan_tiles
from breastcls.testing.slides import write_mosaic_slide
from conftest import copy_patients

# The largest difference of a probability between int8 and float32 allowed on a small CNN
# (measured: under 0.01 on this run's images).
INT8_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def int8_run(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    """A 2-epoch smallcnn run at 48 px on real images of eight patients per class."""
    folder = tmp_path_factory.mktemp("int8")
    root = copy_patients(breakhis_dev, folder / "data", patients=8, images_per_patient=4)
    result = breastcls.train(
        breastcls.RunConfig(
            data=breastcls.DataConfig(path=root, image_size=48),
            model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
            train=breastcls.TrainConfig(epochs=2, batch_size=8, learning_rate=3e-3, verbose=0),
            out_dir=root.parent / "runs",
            name="int8",
        )
    )
    return result.run_dir


def _split(run: Path, role: str) -> list[Path]:
    import csv

    with (run / "split.csv").open(newline="", encoding="utf-8") as handle:
        return [Path(row["path"]) for row in csv.DictReader(handle) if row["role"] == role]


def test_int8_probabilities_stay_within_the_tolerance_of_float32(
    int8_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quantised: list[Path] = []
    quantize = quantization.quantize_onnx
    monkeypatch.setattr(
        quantization, "quantize_onnx", lambda *a: quantised.append(a[1]) or quantize(*a)
    )
    model = breastcls.InferenceModel.load(int8_run)
    float32 = model.with_runtime("onnx")
    int8 = model.with_runtime("onnx-int8")
    assert (float32.runtime.name, int8.runtime.name) == ("onnx", "onnx-int8")
    images = _split(int8_run, "test")
    assert len(images) >= 8
    expected = float32.score_files([Sample(path=p, label="benign") for p in images])
    found = int8.score_files([Sample(path=p, label="benign") for p in images])
    difference = np.abs(found.raw - expected.raw).max()
    assert 0 < difference <= INT8_TOLERANCE  # int8 arithmetic, not float32's
    # Calibrated on every other selection image, checked on the others; kept in the cache.
    selection = _split(int8_run, "selection")
    cache = runtimes._ModelCache(source=model.source, sha256=runtimes.model_sha256(model.source))
    entry = json.loads(cache.record_file.read_text())["onnx_int8"]
    assert entry["calibration_images"] == (len(selection) + 1) // 2
    assert entry["check_images"] == len(selection) // 2
    assert 0 < entry["max_abs_diff"] <= INT8_TOLERANCE
    assert entry["check_set"] == "selection images not used for calibration"
    assert f"probabilities within {entry['max_abs_diff']:.2g} of float32" in int8.runtime.reason
    # A second model of the same file and selection set reuses the int8 copy.
    assert quantised == [cache.folder / f"runtime-int8.{os.getpid()}.partial.onnx"]
    again = breastcls.InferenceModel.load(int8_run, runtime="onnx-int8")
    assert again.runtime.name == "onnx-int8" and len(quantised) == 1


def test_the_int8_copy_quantises_the_convolutions_and_keeps_the_head_float32(
    int8_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    monkeypatch.setenv(runtimes.CACHE_VARIABLE, str(tmp_path / "cache"))
    breastcls.InferenceModel.load(int8_run, runtime="onnx-int8")
    (path,) = (tmp_path / "cache").rglob("runtime-int8.onnx")
    graph = onnx.load(str(path)).graph
    made_by = {output: node.op_type for node in graph.node for output in node.output}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert convolutions
    for node in convolutions:  # int8 activations and weights, dequantised where they meet
        assert [made_by.get(name) for name in node.input[:2]] == ["DequantizeLinear"] * 2
    # The layer that gives the logits reads float32 tensors: no 8-bit rounding of a logit.
    (softmax,) = [node for node in graph.node if node.op_type == "Softmax"]
    (logits,) = [node for node in graph.node if softmax.input[0] in node.output]
    assert logits.op_type in ("Gemm", "MatMul", "Add")
    assert "DequantizeLinear" not in [made_by.get(name) for name in logits.input]
    assert not list(path.parent.glob("*.prepared.onnx"))  # the optimised float32 copy is gone


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_a_read_only_run_folder_tiles_with_onnx_int8_and_nothing_is_written_into_it(
    int8_run: Path, tmp_path: Path, breakhis_dev: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(runtimes.CACHE_VARIABLE, str(tmp_path / "cache"))
    copy = tmp_path / "read-only"
    shutil.copytree(int8_run, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    before = _snapshot(copy)
    cells = {(c, 0): p for c, p in enumerate(sorted((breakhis_dev / "malignant").glob("*"))[:2])}
    slide = write_mosaic_slide(tmp_path / "slide.tif", cells, columns=2, rows=1, cell=96)
    try:
        tiled = CliRunner().invoke(
            app, ["slide", "predict", str(copy), str(slide), "--model-mpp", "1.0",
                  "--runtime", "onnx-int8", "--out", str(tmp_path / "out")],
        )  # fmt: skip
        after = _snapshot(copy)
    finally:
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert tiled.exit_code == 0, tiled.output
    summary = json.loads((tmp_path / "out" / "slide" / "summary.json").read_text())
    assert summary["runtime"] == "onnx-int8"
    assert (tmp_path / "out" / "slide" / "tiles.csv").is_file()
    assert after == before
    assert list((tmp_path / "cache").rglob("runtime-int8.onnx"))


def test_int8_needs_the_run_s_selection_images(int8_run: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(int8_run / "best.keras", bare / "model.keras")
    shutil.copy(int8_run / "model_record.json", bare / "model_record.json")
    with pytest.raises(ConfigError, match="calibrates the int8 model on the selection images"):
        breastcls.InferenceModel.load(bare / "model.keras", runtime="onnx-int8")


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> Path:
    images = sorted(breakhis_dev.glob("*/*.png"))
    cells = {(c, r): images[(7 * c + 3 * r) % len(images)] for c in range(6) for r in range(4)
             if (c + r) % 5}  # fmt: skip
    return write_mosaic_slide(
        tmp_path_factory.mktemp("mosaic") / "mosaic.tif", cells, columns=6, rows=4, cell=96,
        compression="jpeg",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("size", "model_mpp", "overlap"),
    [(96, 0.5, 0.0), (64, 0.8, 0.5), (40, 1.5, 0.25), (40, 0.25, 0.0)],
)
def test_block_reading_gives_the_tiles_read_one_by_one(
    mosaic: Path, size: int, model_mpp: float, overlap: float
) -> None:
    slide = open_slide(mosaic)
    try:
        plan = plan_tiles(
            slide, slide_mpp=0.5, model_mpp=model_mpp, image_size=size,
            mask=np.ones((4, 6), dtype=bool), mask_downsample=96.0, overlap=overlap,
            min_tissue=0.1,
        )  # fmt: skip
        keep = np.arange(len(plan)) % 4 != 2  # gaps in the rows, as glass leaves
        plan = dataclasses.replace(
            plan, column=plan.column[keep], row=plan.row[keep], x=plan.x[keep],
            y=plan.y[keep], tissue=plan.tissue[keep],
        )  # fmt: skip
        together = read_tiles(slide, plan, 0, len(plan))
        alone = np.stack([tile_pixels(slide, plan, i) for i in range(len(plan))])
    finally:
        slide.close()
    assert together.shape == (len(plan), size, size, 3) and len(plan) >= 8
    assert together.tobytes() == alone.tobytes()


def test_a_level_within_the_tolerance_is_read_as_is(mosaic: Path) -> None:
    slide = open_slide(mosaic)  # levels of downsample 1, 2 and 4
    try:

        def plan(model_mpp: float) -> tuple[int, int]:
            found = plan_tiles(
                slide, slide_mpp=0.5, model_mpp=model_mpp, image_size=48,
                mask=np.ones((4, 6), dtype=bool), mask_downsample=96.0,
            )  # fmt: skip
            return found.level, found.read_size

        exact, near = 1.0, 1.0 / (1 + SCALE_TOLERANCE / 2)  # level 1 is 1% coarser than near
        assert plan(exact) == (1, 48) and plan(near) == (1, 48)
        # Further off, the finer level is read and resampled down.
        assert plan(1.0 / (1 + 2 * SCALE_TOLERANCE)) == (0, 92)
    finally:
        slide.close()
