"""The HTML report: generic sections, third-party sections, escaping, and a real browser."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from _runs import run_watched
from breastcls import hookimpl
from breastcls.errors import ConfigError
from breastcls.evaluation.metrics import compute_metrics, metrics_document
from breastcls.evaluation.report import data_summary, render_report
from breastcls.htmlpage import Table
from breastcls.interfaces import MetricSection, Predictions
from breastcls.plugins import PluginHost

EVIL = "<script>alert('x')</script>"


def _predictions(class_names: tuple[str, str] = ("benign", "malignant")) -> Predictions:
    rng = np.random.default_rng(5)
    y = np.array([0, 1] * 12)
    score = np.clip(0.5 + (y - 0.5) * 0.5 + rng.normal(0, 0.2, size=len(y)), 0.01, 0.99)
    return Predictions(
        class_names=class_names,
        y_true=y.astype(np.int64),
        probabilities=np.stack([1 - score, score], axis=1),
        paths=tuple(f"/data/{EVIL}-{i}.png" for i in range(len(y))),
        patient_ids=tuple(f"{EVIL}{i % 6}" for i in range(len(y))),
        magnifications=tuple(200 if i % 3 else 40 for i in range(len(y))),
    )


def _third_party_metric(predictions: Predictions, *, out_dir: Path) -> MetricSection:
    from breastcls.evaluation.plots import plot_sample_grid

    figure = plot_sample_grid(
        [np.full((8, 8, 3), 200, dtype=np.uint8)], ["plain"], out_dir / "my_metric.png"
    )
    return MetricSection(
        name="my_metric",
        title="My lab's metric",
        values={"mean_malignant_probability": float(predictions.probabilities[:, 1].mean())},
        figures=(figure,),
        text=f"computed by a plugin {EVIL}",
    )


class MyMetricPlugin:
    """A third party's plugin object, as it would ship it."""

    @hookimpl
    def breastcls_register_metrics(self, registry: object) -> None:
        registry.add("my_metric", _third_party_metric, summary="a lab's own number")  # type: ignore[attr-defined]


def _plugin() -> object:
    return MyMetricPlugin()


def _report(tmp_path: Path, host: PluginHost, predictions: Predictions) -> str:
    sections = compute_metrics(predictions, tmp_path, host=host)
    path = render_report(
        sections,
        tmp_path / "report.html",
        title=f"run {EVIL}",
        summary=data_summary(predictions),
        settings={"data": {"path": f"/x/{EVIL}"}},
    )
    return path.read_text(encoding="utf-8")


def test_a_third_party_metric_adds_a_section(tmp_path: Path) -> None:
    host = PluginHost(plugins=[("my_metric", _plugin())])
    assert host.metrics.info("my_metric").plugin == "my_metric"
    predictions = _predictions()
    html = _report(tmp_path, host, predictions)
    assert "<h3>My lab&#x27;s metric</h3>" in html
    expected = f"{predictions.probabilities[:, 1].mean():.3f}"
    assert re.search(rf"Mean malignant probability</th><td class=\"num\">{expected}<", html)
    embedded = base64.b64encode((tmp_path / "my_metric.png").read_bytes()).decode("ascii")
    assert f"data:image/png;base64,{embedded}" in html
    # The built-in sections are there too, in their parts of the page.
    image_part, patient_part = html.split('<h2 id="patient-level">')
    for title in ("Classification report", "ROC and precision-recall curves", "Calibration"):
        assert f"<h3>{title}</h3>" in image_part
    assert "<h3>Patient level</h3>" in patient_part
    assert "<h3>By magnification</h3>" in patient_part


def test_every_user_string_is_escaped(tmp_path: Path) -> None:
    host = PluginHost(plugins=[("my_metric", _plugin())])
    html = _report(tmp_path, host, _predictions(("benign", EVIL)))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    # Class, patient, file, setting and plugin text all appear, escaped.
    assert html.count("&lt;script&gt;") >= 10
    assert "http://" not in html and "https://" not in html  # nothing fetched


def test_report_of_an_empty_patient_part(tmp_path: Path) -> None:
    p = _predictions()
    bare = Predictions(class_names=p.class_names, y_true=p.y_true, probabilities=p.probabilities)
    host = PluginHost()
    html = _report(tmp_path, host, bare)
    assert "No patient ids are known" in html
    assert data_summary(bare)["patients"] is None


def test_every_report_opens_with_the_research_use_line(tmp_path: Path) -> None:
    from breastcls.slides.outputs import write_slide_report

    line = "Research software: not a medical device, not for diagnosis."
    run_page = _report(tmp_path, PluginHost(), _predictions())
    slide_page = write_slide_report(
        tmp_path / "slide.html", {"slide": "s.tif", "tiles": {"classified": 3}}, figures=()
    ).read_text(encoding="utf-8")
    for page in (run_page, slide_page):
        body = page.split("<body>", 1)[1]
        # Right under the title, before any figure.
        assert body.index(line) < body.index("<table") and body.index("</h1>") < body.index(line)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _load_in_browser(page: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    browser = _chromium()
    assert browser is not None
    screenshot = tmp_path / "screenshot.png"
    result = run_watched(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1200,2000",
            "--enable-logging=stderr",
            "--v=0",
            page.resolve().as_uri(),
        ],
        watched=[screenshot],
    )
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return screenshot, console


@pytest.mark.skipif(
    _chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_report_loads_in_a_real_browser_without_console_errors(tmp_path: Path) -> None:
    host = PluginHost(plugins=[("my_metric", _plugin())])
    out = tmp_path / "eval"
    out.mkdir()
    _report(out, host, _predictions(("benign", EVIL)))
    screenshot, console = _load_in_browser(out / "report.html", tmp_path)
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert console == []


@pytest.mark.skipif(
    _chromium() is None, reason="chromium is not installed (apt-get install chromium)"
)
def test_the_browser_check_does_see_console_errors(tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('broken-page')</script></body></html>")
    _, console = _load_in_browser(page, tmp_path)
    assert any("broken-page" in line for line in console)


def _visible_headings(page: str) -> list[str]:
    return re.findall(r"<(?:th|h2|h3|caption)[^>]*>([^<]*)<", page)


def test_the_report_reads_as_a_document(tmp_path: Path) -> None:
    predictions = _predictions()
    sections = compute_metrics(predictions, tmp_path, host=PluginHost())
    metrics = metrics_document(sections, predictions)
    page = render_report(
        sections,
        tmp_path / "report.html",
        title="run",
        summary=data_summary(predictions),
        settings={"train": {"learning_rate": 3e-4, "batch_size": 8}},
        headline=metrics,
    ).read_text(encoding="utf-8")
    # Headings in words: no JSON key, no key said twice over.
    headings = _visible_headings(page)
    assert not [h for h in headings if re.search(r"[a-z]_[a-z]", h)], headings
    assert "Train › Learning rate" in headings and "0.0003" in page
    for raw in ("positive_classes", "interval_method", "n_resamples", "available"):
        assert raw not in page
    # A section that does not apply to a binary model (per-class AUC) is left out.
    assert "section-subtype" not in page and metrics["subtype"]["available"] is False
    # Every warning once on the page, though the card, the bootstrap and the patient sections
    # all record the intervals' warnings.
    warnings = re.findall(r'<p class="warning">Warning: ([^<]*)</p>', page)
    assert warnings and len(warnings) == len(set(warnings))
    assert set(metrics["bootstrap"]["warnings"]) & set(metrics["patient"]["warnings"])


def test_operating_points_show_intervals_and_where_thresholds_came_from(tmp_path: Path) -> None:
    predictions = _predictions()
    sections = compute_metrics(predictions, tmp_path, host=PluginHost())
    metrics = metrics_document(sections, predictions)
    page = render_report(
        sections, tmp_path / "report.html", title="run", summary=data_summary(predictions)
    ).read_text(encoding="utf-8")
    part = page.split('id="section-thresholds"', 1)[1].split("</section>", 1)[0]
    # No calibration: thresholds chosen on these very images, and the page says so.
    assert metrics["thresholds"]["chosen_on"].startswith("these predictions")
    assert "Thresholds chosen on these images themselves" in part
    youden = next(p for p in metrics["thresholds"]["operating_points"] if p["name"] == "youden")
    sensitivity = youden["intervals"]["sensitivity"]
    row = re.search(r"<th scope=\"row\">Youden[^<]*</th>(.*?)</tr>", part)
    assert row is not None
    assert f"{youden['threshold']:.3f}" in row[1]
    assert f"{sensitivity['estimate']:.3f} [{sensitivity['low']:.3f}, " in row[1]
    assert not re.search(r"\d\.\d{4}", part)  # 3 decimals, as on the card


def test_a_table_refuses_rows_that_do_not_fit_its_columns() -> None:
    with pytest.raises(ConfigError, match=r"row .* has 1 cells, the table 2 columns"):
        Table(columns=("Statistic", "Value"), rows=(("accuracy",),))
