"""report.html in a real browser: a real run's and evaluation's report, and a slide report, laid
out at 1280 and 800 px wide without sideways scrolling, each under its research-use line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _runs import run_watched
from breastcls.cli.app import app
from breastcls.htmlpage import RESEARCH_USE
from conftest import copy_patients

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)

# Written into the page by the injected script once it is laid out: the document's width and
# the window's.
_MEASURE = (
    "<script>document.body.insertAdjacentHTML('beforeend', '<p id=\"measure\">' + "
    "document.documentElement.scrollWidth + 'x' + window.innerWidth + '</p>')</script>"
)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory, breakhis_dev: Path) -> dict[str, Path]:
    """The report of a 1-epoch smallcnn run, of an evaluation of it, and of a slide."""
    import breastcls
    from breastcls.slides.outputs import write_slide_report

    base = tmp_path_factory.mktemp("browser")
    data = copy_patients(breakhis_dev, base / "data", patients=5, images_per_patient=4)
    config = breastcls.RunConfig(
        data=breastcls.DataConfig(path=data, image_size=32, selection_fraction=0.4),
        model=breastcls.ModelConfig(backbone="smallcnn", weights=None),
        train=breastcls.TrainConfig(epochs=1, batch_size=8, learning_rate=1e-3, verbose=0),
        out_dir=base / "runs",
        name="tiny",
    )
    run = breastcls.train(config).run_dir
    result = CliRunner().invoke(
        app, ["evaluate", str(run), "--no-gradcam", "--out", str(base / "eval")]
    )
    assert result.exit_code == 0, result.output
    slide = write_slide_report(
        base / "slide.html",
        {"slide": "/a/very/long/" + "folder-name-" * 20 + "slide.tif", "tiles": {"classified": 3}},
        figures=(),
    )
    return {"run": run / "report.html", "evaluate": base / "eval" / "report.html", "slide": slide}


def _measured_width(page: Path, width: int, scratch: Path) -> tuple[int, int]:
    """The document's and the window's width of ``page`` in headless Chromium ``width`` px wide."""
    assert CHROMIUM is not None
    text = page.read_text(encoding="utf-8")
    # The report allows no script; this copy allows the one measuring script.
    text = text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    measured = scratch / f"{page.stem}-{width}.html"
    measured.write_text(text.replace("</body>", f"{_MEASURE}</body>"), encoding="utf-8")
    result = run_watched(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         f"--user-data-dir={scratch / 'profile'}", f"--window-size={width},2000",
         "--virtual-time-budget=2000", "--dump-dom", measured.resolve().as_uri()]
    )  # fmt: skip
    found = re.search(r'<p id="measure">(\d+)x(\d+)</p>', result.stdout)
    assert found, f"the measuring script did not run: {result.stdout[-500:]}{result.stderr[-500:]}"
    return int(found[1]), int(found[2])


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("width", [1280, 800])
@pytest.mark.parametrize("kind", ["run", "evaluate", "slide"])
def test_no_report_scrolls_sideways(
    reports: dict[str, Path], kind: str, width: int, tmp_path: Path
) -> None:
    document, window = _measured_width(reports[kind], width, tmp_path)
    assert window == width
    assert document <= window, f"{kind} report is {document} px wide in a {window} px window"


def test_the_measurement_sees_an_overflowing_page(tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = tmp_path / "wide.html"
    page.write_text("<html><body><table><tr><td>" + "x" * 400 + "</td></tr></table></body></html>")
    document, window = _measured_width(page, 800, tmp_path)
    assert document > window == 800


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run", "evaluate", "slide"])
def test_every_report_says_research_use_only_under_its_title(
    reports: dict[str, Path], kind: str
) -> None:
    body = reports[kind].read_text(encoding="utf-8").split("<body>", 1)[1]
    assert body.index("</h1>") < body.index(RESEARCH_USE) < body.index("<table")


@pytest.mark.slow
def test_the_evaluation_report_names_its_set_once_in_the_title(
    reports: dict[str, Path],
) -> None:
    page = reports["evaluate"]
    title = re.search(r"<h1>(.*?)</h1>", page.read_text(encoding="utf-8"))
    evaluated = json.loads((page.parent / "metrics.json").read_text())["evaluated_on"]["set"]
    assert evaluated.startswith("test set")
    assert title is not None and title[1] == f"breastcls evaluation: tiny (TTA none): {evaluated}"
