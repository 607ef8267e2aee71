"""The documentation is tested: snippets run, code compiles, the CLI reference is current, every
page is in the navigation and the site builds in strict mode."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), REPO / "README.md"]
RUNNABLE = "<!-- runnable -->"
_BLOCK = re.compile(r"(?P<marker><!-- runnable -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)
_INCLUDE = re.compile(r'^--8<-- "(?P<path>[^"]+)"$', re.MULTILINE)
CLI_COMMAND = ["--name", "breastcls", "--title", "CLI reference"]


def _blocks(page: Path) -> list[tuple[bool, str]]:
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in _BLOCK.finditer(text):
        code = _INCLUDE.sub(
            lambda include: (REPO / include["path"]).read_text(encoding="utf-8"), match["code"]
        )
        blocks.append((match["marker"] is not None, code))
    return blocks


_RUNNABLE_PAGES = [page for page in PAGES if any(run for run, _ in _blocks(page))]


def test_the_docs_have_runnable_snippets() -> None:
    names = {page.name for page in _RUNNABLE_PAGES}
    assert {"getting-started.md", "plugins.md", "export.md", "reproducing-the-blog.md"} <= names


@pytest.mark.parametrize("page", _RUNNABLE_PAGES, ids=lambda page: page.name)
def test_runnable_snippets_run(page: Path, tmp_path: Path) -> None:
    """A page's runnable blocks run in order, as one script, in an empty folder."""
    script = "\n\n".join(code for runnable, code in _blocks(page) if runnable)
    (tmp_path / "snippets.py").write_text(script, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "snippets.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_python_block_compiles(page: Path) -> None:
    for index, (_, code) in enumerate(_blocks(page)):
        compile(code, f"{page.name}[block {index}]", "exec")


def test_the_cli_reference_is_current(tmp_path: Path) -> None:
    typer_cli = shutil.which("typer")
    assert typer_cli, "the typer command is missing (pip install typer)"
    generated = tmp_path / "cli.md"
    subprocess.run(
        [typer_cli, "breastcls.cli.app", "utils", "docs", *CLI_COMMAND, "--output", str(generated)],
        check=True,
        capture_output=True,
    )
    assert generated.read_text() == (DOCS / "cli.md").read_text(), (
        "docs/cli.md is out of date: run `typer breastcls.cli.app utils docs "
        + " ".join(f'"{part}"' if " " in part else part for part in CLI_COMMAND)
        + " --output docs/cli.md`"
    )


def test_every_page_is_in_the_navigation() -> None:
    config = (REPO / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [page.name for page in DOCS.glob("*.md") if f": {page.name}" not in config]
    assert not missing, f"add these pages to the nav of mkdocs.yml: {missing}"


def test_the_hook_reference_is_generated_from_the_hookspecs() -> None:
    from breastcls.plugins import hookspecs

    assert "::: breastcls.plugins.hookspecs" in (DOCS / "plugins.md").read_text()
    hooks = [name for name in vars(hookspecs) if name.startswith("breastcls_")]
    assert len(hooks) >= 9
    for name in hooks:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "Called" in doc and "Since:" in doc, f"hookspec {name} lacks when/since"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built once for the tests that read it, in strict mode."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed")
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_the_site_builds_in_strict_mode(site: Path) -> None:
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in (
        "breastcls.training.train.train",
        "breastcls.export_model",
        "breastcls.plugins.host.PluginHost",
        "breastcls.data.split.kfold_splits",
        "breastcls.environment.prepare_tensorflow",
    ):
        assert f'id="{name}"' in api
    cli = (site / "cli" / "index.html").read_text(encoding="utf-8")
    assert "breastcls export" in cli and "--tensorboard" in cli


def test_the_api_reference_links_what_docstrings_name(site: Path) -> None:
    roles = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):`")
    for page in site.rglob("*.html"):
        assert not roles.search(page.read_text(encoding="utf-8")), page
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    # e.g. `:func:`breastcls.environment.prepare_tensorflow`` in breastcls's own docstring.
    assert '<a class="autorefs autorefs-internal"' in api
    assert api.count("autorefs-internal") >= 100


def test_the_api_reference_is_ordered_as_a_project_meets_the_library(site: Path) -> None:
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    order = [
        "breastcls.training.train.train",
        "breastcls.predict",
        "breastcls.evaluate",
        "breastcls.predict_slide",
        "breastcls.hookimpl",
        "breastcls.Backbone",
        "breastcls.BreastclsError",
    ]
    positions = [api.index(f'id="{name}"') for name in order]
    assert positions == sorted(positions)


def test_the_training_guide_documents_every_train_option() -> None:
    import typer.main

    from breastcls.cli.app import app

    train = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    guide = (DOCS / "training.md").read_text(encoding="utf-8")
    options = [param.opts[0] for param in train.params if param.opts[0] != "--help"]
    assert len(options) > 20
    missing = [option for option in options if f"`{option}" not in guide]
    assert not missing, f"docs/training.md does not document {missing}"
