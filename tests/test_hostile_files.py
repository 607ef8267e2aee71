"""Hostile files without a trained model: model archives that unpack to too much, run-folder
records over their size limit, and a model card built from names meant to inject Markdown or
HTML."""

from __future__ import annotations

import json
import os
import re
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastcls import ConfigError, ModelLoadError
from breastcls.cli.app import app
from breastcls.model import (
    MAX_MODEL_JSON_BYTES,
    ModelLimits,
    check_model_archive,
    load_keras_model,
)
from breastcls.model_card import markdown_code, markdown_text, model_card_text
from breastcls.runs.folder import RunFolder

runner = CliRunner()


def _keras_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``.keras`` file of about 1 MB whose ``config.json`` unpacks to 256 MiB of zeros
    (written from a generator: never whole in memory)."""
    path = tmp_path_factory.mktemp("bomb") / "best.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("metadata.json", b'{"keras_version": "3.0.0"}')
        with archive.open("config.json", "w", force_zip64=True) as entry:
            chunk = b"0" * 2**20
            for _ in range(256):
                entry.write(chunk)
        archive.writestr("model.weights.h5", b"\0" * 1024)
    assert path.stat().st_size < 3 * 2**20
    return path


def test_a_zip_bomb_model_is_refused_quickly_without_unpacking(zip_bomb: Path) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as raised:
        load_keras_model(zip_bomb)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    message = str(raised.value)
    assert str(zip_bomb) in message and "'config.json'" in message
    assert "256.0 MiB" in message and "BREASTCLS_MAX_MODEL_JSON_BYTES" in message
    assert "\n" not in message
    assert elapsed < 1.0 and peak < 10 * 2**20


def test_the_cli_refuses_a_zip_bomb_in_one_line_and_writes_nothing(
    zip_bomb: Path, tmp_path: Path
) -> None:
    image = tmp_path / "image.png"
    image.write_bytes(b"")
    out = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(zip_bomb), str(image), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "config.json" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_the_model_limits_can_be_raised_by_environment_or_parameter(
    zip_bomb: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_model_archive(zip_bomb, ModelLimits(max_json_bytes=2**30, max_ratio=10_000))
    monkeypatch.setenv("BREASTCLS_MAX_MODEL_JSON_BYTES", str(2**30))
    monkeypatch.setenv("BREASTCLS_MAX_MODEL_RATIO", "10000")
    check_model_archive(zip_bomb)
    assert ModelLimits.from_environment().max_json_bytes == 2**30
    monkeypatch.setenv("BREASTCLS_MAX_MODEL_JSON_BYTES", "lots")
    with pytest.raises(ConfigError, match="BREASTCLS_MAX_MODEL_JSON_BYTES='lots'"):
        check_model_archive(zip_bomb)


def test_every_archive_limit_is_checked(tmp_path: Path) -> None:
    small = {"metadata.json": b"{}", "config.json": b"{}"}
    # A JSON entry over a lowered limit.
    path = _keras_zip(tmp_path / "json.keras", {**small, "config.json": b" " * 5000})
    with pytest.raises(ModelLoadError, match=r"'config.json' unpacks to 4.9 KiB"):
        check_model_archive(path, ModelLimits(max_json_bytes=4096))
    check_model_archive(path)
    assert MAX_MODEL_JSON_BYTES >= 2**20
    # A weights entry that compresses like a bomb (zeros).
    path = _keras_zip(tmp_path / "ratio.keras", {**small, "model.weights.h5": b"\0" * 2**23})
    with pytest.raises(ModelLoadError, match=r"compression ratio over the limit of 100.*RATIO"):
        check_model_archive(path)
    # Too many entries, too many bytes in all.
    many = {f"assets/{i}": b"x" for i in range(20)}
    path = _keras_zip(tmp_path / "many.keras", {**small, **many})
    with pytest.raises(ModelLoadError, match=r"22 entries, over the limit of 10.*ENTRIES"):
        check_model_archive(path, ModelLimits(max_entries=10))
    with pytest.raises(ModelLoadError, match=r"over 16 bytes.*BREASTCLS_MAX_MODEL_BYTES"):
        check_model_archive(path, ModelLimits(max_bytes=16))
    # Names that climb out, are absolute or hold control characters.
    for name in ("../evil.py", "/etc/evil", "assets/a\nb", "a\\..\\b"):
        path = _keras_zip(tmp_path / "name.keras", {**small, name: b"x"})
        with pytest.raises(ModelLoadError, match="climbs out of the archive"):
            check_model_archive(path)


def test_a_record_over_the_size_limit_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunFolder(tmp_path)
    run.config.write_text(json.dumps({"data": {"path": "x" * 100}}))
    assert run.read_config_record().run_config.data.path == Path("x" * 100)
    monkeypatch.setenv("BREASTCLS_MAX_RECORD_BYTES", "64")
    with pytest.raises(ConfigError, match=r"config.json is over 64 bytes.*BREASTCLS_MAX_RECORD"):
        run.read_config_record()
    monkeypatch.delenv("BREASTCLS_MAX_RECORD_BYTES")
    # An endless file (a device behind a symbolic link) is not read at all.
    run.config.unlink()
    os.symlink("/dev/zero", run.config)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="is a character device, not a regular file: restore"):
        run.read_config_record()
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('["benign", "malignant"', "not readable JSON"),
        ('{"benign": 0}', "not a list of two or more distinct class names"),
        ('["benign", "benign"]', "not a list of two or more distinct class names"),
        ('["benign", ""]', "not a list of two or more distinct class names"),
        ("[" * 100_000, "not readable JSON"),
        ("\udcff".encode("utf-8", "surrogateescape").decode("latin-1"), "not readable JSON"),
    ],
)
def test_a_malformed_class_names_file_is_one_clear_error(
    tmp_path: Path, content: str, expected: str
) -> None:
    run = RunFolder(tmp_path)
    run.class_names.write_text(content, encoding="latin-1")
    with pytest.raises(ConfigError, match=expected) as raised:
        run.read_class_names()
    assert str(run.class_names) in str(raised.value)


def test_a_config_with_a_section_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.config.write_text('{"data": ["not", "an", "object"]}')
    with pytest.raises(ConfigError, match=r"\('data' is \['not', 'an', 'object'\], not dict\)"):
        run.read_config_record()


HOSTILE = [
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "a | b | c",
    "`<img src=x onerror=alert(1)>`",
    "**bold** _em_ <b>tag</b>\n# heading",
    "name\udcff",
]


def _hostile_run(folder: Path) -> Path:
    run = RunFolder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run.class_names.write_text(json.dumps(HOSTILE[:2]))
    run.config.write_text(
        json.dumps(
            {
                # Every string a valid configuration can hold; a value of the wrong type is
                # refused before the card is written (test below).
                "data": {"path": HOSTILE[3], "image_size": 224, "split_seed": 1},
                "model": {"backbone": HOSTILE[0], "head": "seed|x", "weights": HOSTILE[1]},
                "train": {"epochs": 3, "learning_rate": 0.001},
                "split": {"method": HOSTILE[4], "train_images": 3},
            }
        )
    )
    per_class = {name: {"precision": 0.5, "recall": name, "support": 3} for name in HOSTILE}
    run.metrics.write_text(
        json.dumps(
            {
                "evaluated_on": {"set": HOSTILE[2]},
                "classification": {"accuracy": 0.5, "per_class": per_class},
                "bootstrap": {
                    "method": HOSTILE[1],
                    "intervals": {HOSTILE[0]: {"estimate": 0.5, "low": 0.4, "high": "<b>"}},
                },
            }
        )
    )
    run.environment.write_text(json.dumps({"breastcls": HOSTILE[0], "keras": HOSTILE[1]}))
    return folder


def test_the_model_card_refuses_a_config_of_the_wrong_types(tmp_path: Path) -> None:
    folder = _hostile_run(tmp_path / "run")
    config = json.loads(RunFolder(folder).config.read_text())
    config["data"]["image_size"] = "<i>224</i>"
    RunFolder(folder).config.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config\.json is not a valid configuration"):
        model_card_text(folder)


def test_the_model_card_renders_no_tag_or_link_from_user_strings(tmp_path: Path) -> None:
    import markdown

    card = model_card_text(_hostile_run(tmp_path / "<b>run</b>[x](javascript:y)"))
    card.encode("utf-8")  # valid UTF-8: the stray byte is shown as \xff
    assert "name\\\\xff" in card
    rendered = markdown.markdown(card, extensions=["tables"])
    allowed = {"h1", "h2", "p", "strong", "ul", "ol", "li", "code", "table", "thead", "tbody"}
    allowed |= {"tr", "th", "td"}
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z][a-zA-Z0-9]*)", rendered))
    assert tags <= allowed, tags - allowed
    assert "javascript:" not in "".join(re.findall(r"<[^>]*>", rendered))
    assert "<a " not in rendered and "<script" not in rendered and "<img" not in rendered
    # Every table row keeps its number of cells: a "|" in a name does not make a new cell.
    for table in re.findall(r"<table>.*?</table>", rendered, flags=re.S):
        header = len(re.findall(r"<th[ >]", table.split("</thead>")[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], flags=re.S):
            assert len(re.findall(r"<td", row)) == header
    # Only the card's own emphasis survives, never a name's.
    assert "<strong>bold</strong>" not in rendered and "<em>" not in rendered
    assert rendered.count("<h1>") == 1


@pytest.mark.parametrize("value", HOSTILE)
def test_escaped_strings_render_as_their_own_text(value: str) -> None:
    import html

    import markdown

    shown = value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    shown = " ".join(shown.splitlines())
    for escaped in (markdown_text(value), markdown_code(value)):
        rendered = markdown.markdown(f"x {escaped}", extensions=["tables"])
        text = html.unescape(
            rendered.removeprefix("<p>").removesuffix("</p>").replace("<code>", "")
        ).replace("</code>", "")
        assert text == f"x {shown}", (escaped, rendered)
