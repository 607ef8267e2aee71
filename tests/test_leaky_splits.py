"""Issue 25 #1: a split the data fixes whose test patients also trained or selected the model is
refused, and, allowed with --allow-leaky-split, every figure says so (smallcnn, tiny images)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from breastcls.cli.app import app
from breastcls.model_card import model_card_text

runner = CliRunner()
TINY = [
    "--backbone", "smallcnn", "--weights", "none", "--image-size", "32", "--epochs", "1",
    "--batch-size", "8", "--learning-rate", "3e-3", "--selection-fraction", "0.34",
]  # fmt: skip
LABEL = "LEAKY: 8 of 8 test patients also trained or selected (optimistic)"


def _blog_layout_by_image(source: Path, root: Path) -> Path:
    """The blog's folders drawn by image: every other image of each class goes to validation/,
    so each slide (two images) has one image on each side, and all 8 accessions cross."""
    for label in ("benign", "malignant"):
        for index, image in enumerate(sorted((source / label).glob("*.png"))):
            part = "validation" if index % 2 else "train"
            (root / part / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(image, root / part / label / image.name)
    return root


def _title(html: str) -> str:
    match = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert match is not None
    return match.group(1)


def test_a_leaky_blog_layout_is_refused_then_labelled_everywhere(
    small_breakhis: Path, tmp_path: Path
) -> None:
    data = _blog_layout_by_image(small_breakhis, tmp_path / "blog")
    base = ["train", "--data", str(data), *TINY, "--out", str(tmp_path / "runs")]
    refused = runner.invoke(app, [*base, "--name", "refused"])
    assert refused.exit_code == 2
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.output
    assert "puts 8 of 8 test patients (grouped by accession number) also in training" in lines[0]
    assert "--allow-leaky-split" in lines[0]
    assert not (tmp_path / "runs" / "refused").exists()

    result = runner.invoke(app, [*base, "--allow-leaky-split", "--name", "leaky"])
    assert result.exit_code == 0, result.output
    # The terminal summary: the set (training's own look at it is look 1), then the leak.
    assert f"test set (look 1 of this test set), {LABEL}: accuracy" in result.output
    run = tmp_path / "runs" / "leaky"
    evaluated_on = json.loads((run / "metrics.json").read_text())["evaluated_on"]
    assert evaluated_on["set"] == f"test set (look 1 of this test set), {LABEL}"
    assert evaluated_on["leak"] == LABEL
    config = json.loads((run / "config.json").read_text())
    assert config["split"]["leak"] == LABEL and config["split"]["test_patients"] == 8
    html = (run / "report.html").read_text()
    assert LABEL in _title(html)
    card = html[html.index('id="summary"') :]
    assert card.index(LABEL) < card.index("<table>")  # the card's first line
    listing = runner.invoke(app, ["runs", str(tmp_path / "runs")])
    assert listing.exit_code == 0
    assert re.search(r"leaky .*\d\.\d{3}!", listing.output)
    assert f"! leaky: {LABEL}" in listing.output
    card_text = model_card_text(run)
    # Markdown-escaped: "\(optimistic\)".
    heading = next(line for line in card_text.splitlines() if line.startswith("## Metrics ("))
    assert heading.startswith("## Metrics (test set")
    assert "LEAKY: 8 of 8 test patients also trained or selected" in heading
    assert "the data's own split (folders or manifest) puts patients in several roles" in (
        card_text.replace("\\", "")
    )
    assert "(8 patients)" in card_text

    # `breastcls evaluate` of the run's own test set says so too (read back from split.csv).
    again = runner.invoke(
        app,
        [
            "evaluate",
            str(run),
            "--no-gradcam",
            "--stain-shift",
            "none",
            "--out",
            str(tmp_path / "e"),
        ],
    )
    assert again.exit_code == 0, again.output
    assert LABEL in again.output
    assert (
        json.loads((tmp_path / "e" / "metrics.json").read_text())["evaluated_on"]["leak"] == LABEL
    )
