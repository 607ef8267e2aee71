"""Running slide jobs: options, resolutions, folders with scanners' extra images, manifests,
progress in logs, the collection summary's exit code and damaged files.

No model is trained here: what needs one is in tests/test_slides.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from breastcls.cli.app import app
from breastcls.cli.progress import TerminalProgress
from breastcls.errors import ConfigError, DataError
from breastcls.plugins import PluginHost
from breastcls.progress import reporting, reporting_prefixed
from breastcls.slides.collection import read_slide_manifest, slide_files
from breastcls.slides.options import SlideJob, SlideJobOptions
from breastcls.slides.reading import open_slide
from breastcls.slides.scale import slide_resolution
from breastcls.testing.slides import write_mosaic_slide


@pytest.fixture(scope="module")
def cells(breakhis_dev: Path) -> dict[tuple[int, int], Path]:
    images = sorted((breakhis_dev / "malignant").glob("*.png"))[:2]
    return {(0, 0): images[0], (1, 1): images[1]}


def _slide(path: Path, cells: dict[tuple[int, int], Path], *, mpp: float | None = 0.5) -> Path:
    return write_mosaic_slide(path, cells, columns=3, rows=2, cell=96, mpp=mpp)


def test_the_options_refuse_bad_values_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="--force-mpp needs --mpp"):
        SlideJobOptions(force_mpp=True)
    with pytest.raises(ConfigError, match="batch_size=0, workers=0"):
        SlideJobOptions(batch_size=0, workers=0)
    with pytest.raises(ConfigError, match="--mpp -1"):
        SlideJobOptions(mpp=-1.0)
    with pytest.raises(ConfigError, match=r"Unknown slide option.*bach_size"):
        SlideJobOptions().replace(bach_size=8)
    changed = SlideJobOptions().replace(batch_size=8, mpp=0.25)
    assert (changed.batch_size, changed.mpp, changed.workers) == (8, 0.25, 2)


def test_mpp_leaves_a_slide_s_own_resolution_alone_and_force_mpp_replaces_it(
    tmp_path: Path, cells: dict[tuple[int, int], Path]
) -> None:
    host = PluginHost()
    own = open_slide(_slide(tmp_path / "own.tif", cells, mpp=0.5), host=host)
    bare = open_slide(_slide(tmp_path / "bare.tif", cells, mpp=None), host=host)
    try:
        kept = slide_resolution(own, 0.25)
        assert (kept.mpp, kept.source, kept.overridden) == pytest.approx((0.5, "metadata", False))
        forced = slide_resolution(own, 0.25, force=True)
        assert (forced.mpp, forced.source, forced.own) == pytest.approx((0.25, "--force-mpp", 0.5))
        assert forced.overridden
        fallback = slide_resolution(bare, 0.25)
        assert (fallback.mpp, fallback.source, fallback.own) == (0.25, "--mpp", None)
        assert slide_resolution(bare, 0.3, given_by="manifest").source == "manifest"
        with pytest.raises(DataError, match=r"records no resolution.*--mpp.*manifest"):
            slide_resolution(bare, None)
    finally:
        own.close()
        bare.close()


def test_a_macro_jpeg_and_a_label_image_in_a_folder_are_skipped(
    tmp_path: Path, cells: dict[tuple[int, int], Path]
) -> None:
    from PIL import Image

    folder = tmp_path / "scans"
    folder.mkdir()
    slide = _slide(folder / "case1.tif", cells)
    Image.new("RGB", (300, 120), "white").save(folder / "case1_macro.jpg")
    Image.new("RGB", (120, 120), "white").save(folder / "case1-label.png")
    Image.new("RGB", (200, 100), "pink").save(folder / "photo.jpeg")
    found = slide_files([folder], host=PluginHost())
    assert found.slides == [slide]
    reasons = {path.name: reason for path, reason in found.skipped}
    assert set(reasons) == {"case1_macro.jpg", "case1-label.png", "photo.jpeg"}
    assert "label or macro image" in reasons["case1_macro.jpg"]
    assert "flat image beside pyramidal slides" in reasons["photo.jpeg"]
    # Flat images alone in a folder, or given as files, are slides.
    alone = tmp_path / "flat"
    alone.mkdir()
    Image.new("RGB", (200, 100), "pink").save(alone / "big.png")
    given = slide_files([alone, folder / "photo.jpeg"], host=PluginHost())
    assert given.slides == [alone / "big.png", folder / "photo.jpeg"] and not given.skipped


def test_a_manifest_gives_each_slide_its_resolution_and_case(
    tmp_path: Path, cells: dict[tuple[int, int], Path]
) -> None:
    (tmp_path / "slides").mkdir()
    (tmp_path / "elsewhere").mkdir()
    first = _slide(tmp_path / "slides" / "a.tif", cells)
    second = _slide(tmp_path / "elsewhere" / "b.tif", cells, mpp=None)
    manifest = tmp_path / "slides" / "slides.csv"
    manifest.write_text(f'path,mpp,case_id\na.tif,,C-1\n"{second}",0.25,C-2\n', encoding="utf-8")
    jobs = read_slide_manifest(manifest)
    assert jobs == [
        SlideJob(path=first, mpp=None, case_id="C-1"),
        SlideJob(path=second, mpp=0.25, case_id="C-2"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("slide,mpp\na.tif,0.5\n", "must start with 'path'"),
        ("path,mmp\na.tif,0.5\n", "unknown column.*mmp"),
        ("path,mpp\na.tif,fast\n", "line 2: mpp 'fast' is not a number"),
        ("path,mpp\na.tif,-2\n", "line 2: .*-2.0 is not a resolution"),
        ("path\na.tif\nmissing.tif\n", "line 3: .*missing.tif does not exist"),
        ("path\na.tif\n./a.tif\n", "line 3 repeats line 2"),
        ("path\n", "no rows: add one row per slide"),
    ],
)
def test_a_bad_manifest_is_refused_line_by_line(
    tmp_path: Path, cells: dict[tuple[int, int], Path], text: str, message: str
) -> None:
    _slide(tmp_path / "a.tif", cells)
    manifest = tmp_path / "slides.csv"
    manifest.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_slide_manifest(manifest)


def test_the_cli_checks_the_manifest_before_loading_the_model(tmp_path: Path) -> None:
    manifest = tmp_path / "slides.csv"
    manifest.write_text("path\nmissing.tif\n", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["slide", "predict", str(tmp_path / "no-run"), "--manifest", str(manifest),
              "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "missing.tif does not exist" in lines[0], result.output
    nothing = CliRunner().invoke(
        app, ["slide", "predict", str(tmp_path / "no-run"), "--out", str(tmp_path / "out")]
    )
    assert nothing.exit_code == 2 and "No slides" in nothing.output


def test_a_manifest_row_s_regions_win_over_the_job_s(tmp_path: Path) -> None:
    from breastcls.slides.job import slide_regions

    job_roi, row_roi, mask = tmp_path / "job.geojson", tmp_path / "row.geojson", tmp_path / "m.png"
    options = SlideJobOptions(roi=job_roi, tissue_detector="saturation")
    own = slide_regions(SlideJob(path=tmp_path / "a.tif", roi=row_roi, tissue_mask=mask), options)
    assert (own.roi, own.tissue_mask, own.tissue_detector) == (row_roi, mask, "saturation")
    plain = slide_regions(SlideJob(path=tmp_path / "b.tif"), options)
    assert (plain.roi, plain.tissue_mask) == (job_roi, None)


def _slide_folder(out: Path, name: str, *, complete: bool) -> None:
    folder = out / name
    folder.mkdir(parents=True)
    (folder / "slide.json").write_text(json.dumps({"slide": f"/slides/{name}.tif"}))
    if complete:
        summary = {"tiles": {"classified": 12}, "positive": "malignant", "top_k": 10}
        (folder / "summary.json").write_text(json.dumps(summary))


def test_slide_summary_exits_2_when_a_slide_failed(tmp_path: Path) -> None:
    _slide_folder(tmp_path / "good", "a", complete=True)
    ok = CliRunner().invoke(app, ["slide", "summary", str(tmp_path / "good")])
    assert ok.exit_code == 0, ok.output
    assert "1 of 1 slide folders complete" in ok.output

    _slide_folder(tmp_path / "mixed", "a", complete=True)
    _slide_folder(tmp_path / "mixed", "b", complete=False)
    failed = CliRunner().invoke(app, ["slide", "summary", str(tmp_path / "mixed")])
    assert failed.exit_code == 2, failed.output
    assert "error: b: incomplete" in failed.output
    assert "1 of 2 slide folders complete" in failed.output
    rows = (tmp_path / "mixed" / "summary.csv").read_text().splitlines()
    assert [row.split(",")[2] for row in rows[1:]] == ["ok", "error"]


def test_a_truncated_tiff_says_so_and_suggests_no_codec(
    tmp_path: Path, cells: dict[tuple[int, int], Path]
) -> None:
    pytest.importorskip("imagecodecs")
    whole = _slide(tmp_path / "whole.tif", cells).read_bytes()
    for fraction in (0.3, 0.6):
        cut = tmp_path / f"cut-{fraction}.tif"
        cut.write_bytes(whole[: int(len(whole) * fraction)])
        with pytest.raises(DataError, match="is truncated: the file ends at byte") as error:
            open_slide(cut, host=PluginHost())
        assert "imagecodecs" not in str(error.value)


def test_a_damaged_tile_is_named_without_suggesting_an_installed_codec(
    tmp_path: Path, cells: dict[tuple[int, int], Path]
) -> None:
    pytest.importorskip("imagecodecs")
    import tifffile

    path = _slide(tmp_path / "damaged.tif", cells)
    with tifffile.TiffFile(path) as tiff:
        page = tiff.series[0].levels[0].pages[0]
        offset, count = int(page.dataoffsets[0]), int(page.databytecounts[0])
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\x00" * count  # same length: damaged, not truncated
    path.write_bytes(bytes(data))
    slide = open_slide(path, host=PluginHost())
    try:
        with pytest.raises(DataError, match=r"cannot decode tile 0 of level 0.*damaged") as error:
            slide.read_region(0, 0, 0, 64, 64)
    finally:
        slide.close()
    assert "imagecodecs" not in str(error.value)


def test_piped_progress_prints_rate_eta_and_slide_i_of_n() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=200)
    now = [100.0]
    printer = TerminalProgress(console, every=100, clock=lambda: now[0])
    assert not printer.live
    with reporting(printer), reporting_prefixed("slide 2 of 3: "):
        from breastcls.progress import active_reporter

        reporter = active_reporter()
        assert reporter is not None
        reporter.task_started("tiles of b.tif", total=1000, unit="tiles")
        reporter.task_advanced(200)  # resumed: 200 tiles were done before
        for done in (250, 300, 450):
            now[0] += 5.0
            reporter.task_advanced(done)
        reporter.task_finished("b.tif: 1000 tissue tiles classified")
    lines = stream.getvalue().splitlines()
    # 300 is only 100 past the 200 it resumed at: a line; 250 is not; 450 is 150 past 300.
    assert lines == [
        "slide 2 of 3: tiles of b.tif: 300/1000 tiles, 10.0 tiles/s, ETA 0:01:10",
        "slide 2 of 3: tiles of b.tif: 450/1000 tiles, 16.7 tiles/s, ETA 0:00:33",
        "slide 2 of 3: b.tif: 1000 tissue tiles classified",
    ]


def test_training_without_a_scale_starts_with_a_warning_line(tmp_path: Path) -> None:
    from breastcls.cli.progress import describe_training
    from breastcls.progress import TrainingSummary

    summary = TrainingSummary(
        run_dir=tmp_path, backbone="smallcnn", head="linear", images={"train": 10},
        patients=None, parameters=100, trainable=100, device="CPU", epochs=2, first_epoch=1,
        steps=None, warnings=("this run records no training scale (fields from 69 to 276 µm)",),
    )  # fmt: skip
    assert describe_training(summary)[-1] == (
        "WARNING: this run records no training scale (fields from 69 to 276 µm)"
    )
