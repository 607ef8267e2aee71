"""docs/scripts/docs_output.py: the blocks it fills between markers, and what ``--check``
treats as a change (the full run is CI's: ``python docs/scripts/docs_output.py --check``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_output", REPO / "docs" / "scripts" / "docs_output.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_blocks_are_filled_between_their_markers() -> None:
    script = _script()
    page = (
        "intro\n<!-- docs-output:train -->\nold output\n<!-- /docs-output -->\n"
        "middle\n<!-- docs-output:train-time -->\n<!-- /docs-output -->\nend\n"
    )
    filled, unknown = script.fill(page, {"train": "```text\nnew\n```\n", "train-time": "12 s.\n"})
    assert unknown == []
    assert filled == (
        "intro\n<!-- docs-output:train -->\n```text\nnew\n```\n<!-- /docs-output -->\n"
        "middle\n<!-- docs-output:train-time -->\n12 s.\n<!-- /docs-output -->\nend\n"
    )
    assert script.fill(page, {"train": "x\n"})[1] == ["train-time"]


@pytest.mark.parametrize(
    ("line", "slower", "changed"),
    [
        (
            "epoch 1/3: loss 0.7930, accuracy 0.6065 (32s)\nThe run took 138 s on 2 CPU cores.",
            "epoch 1/3: loss 0.7930, accuracy 0.6065 (41s)\nThe run took 201 s on 4 CPU cores.",
            "epoch 1/3: loss 0.7930, accuracy 0.6129 (32s)\nThe run took 138 s on 2 CPU cores.",
        ),
        (
            "slide 1 of 1: tiles of a.tif: 2000/8000 tiles, 41.5 tiles/s, ETA 0:02:24 (3 s)",
            "slide 1 of 1: tiles of a.tif: 2000/8000 tiles, 55.0 tiles/s, ETA 0:01:49 (2 s)",
            "slide 1 of 1: tiles of a.tif: 2000/9000 tiles, 41.5 tiles/s, ETA 0:02:24 (3 s)",
        ),
    ],
)
def test_the_check_ignores_timings_rates_and_etas_but_not_figures(
    line: str, slower: str, changed: str
) -> None:
    script = _script()
    assert script.masked(line) == script.masked(slower)
    assert script.masked(line) != script.masked(changed)


def test_every_marked_block_in_the_docs_has_a_name_the_script_makes() -> None:
    script = _script()
    names = set()
    for page in script.PAGES:
        text = (REPO / "docs" / page).read_text(encoding="utf-8")
        names.update(re.findall(r"<!-- docs-output:([\w-]+) -->", text))
        assert text.count("<!-- docs-output:") == text.count("<!-- /docs-output -->"), page
    assert {"demo", "train", "evaluate", "run-folder", "train-time"} <= names
    made = set(re.findall(r'"([\w-]+)": ', (REPO / "docs/scripts/docs_output.py").read_text()))
    assert names <= made


def _block(page: str, name: str) -> str:
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    found = [m["body"] for m in _script().BLOCK.finditer(text) if m["name"] == name]
    assert len(found) == 1, f"docs/{page} has {len(found)} blocks named {name}"
    return str(found[0])


def test_the_slide_page_shows_the_slide_job_the_script_runs() -> None:
    script = _script()
    shown = _block("slides.md", "slide")
    # The commands as the script runs them now, on the run the training page shows.
    assert shown.startswith(f"```text\n$ {script._command_line(script.SLIDE_PREDICT)}\n")
    assert f"\n$ {script._command_line(script.SLIDE_SUMMARY)}\n" in shown
    assert script.SLIDE_PREDICT[2] == script.EVALUATE[1] == "runs/dev-run"
    assert re.search(r"^1 of 1 slides -> slide-results/summary\.csv$", shown, re.M)
    assert re.search(r"^test-mosaic: 8 tissue tiles, ", shown, re.M)
    assert re.match(r"It took \d+ s on \d+ CPU cores", _block("slides.md", "slide-time"))
    # Every file of the slide folder, each with what it holds.
    listed = _block("slides.md", "slide-folder").splitlines()[3:-1]
    names = [line.split()[0] for line in listed if line.startswith("    ")]
    assert names == sorted(script.SLIDE_FILES) and "tiles.csv" in names
