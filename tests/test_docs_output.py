"""docs/scripts/docs_output.py: the blocks it fills between markers, and what ``--check``
treats as a change (the full run is CI's: ``python docs/scripts/docs_output.py --check``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

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


def test_the_check_ignores_timings_but_not_figures() -> None:
    script = _script()
    line = "epoch 1/3: loss 0.7930, accuracy 0.6065 (32s)\nThe run took 138 s on 2 CPU cores."
    slower = line.replace("32s", "41s").replace("138", "201").replace("2 CPU", "4 CPU")
    assert script.masked(line) == script.masked(slower)
    assert script.masked(line) != script.masked(line.replace("0.6065", "0.6129"))


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
