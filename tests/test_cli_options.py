"""The command-line options come from the configuration classes: defaults, choices and help."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from breastcls import DataConfig, ModelConfig, RunConfig, TrainConfig
from breastcls.cli.app import app
from breastcls.config import choices

RUN_CLI = [sys.executable, "-c", "from breastcls.cli.app import main; main()"]
CLI = Path(__file__).resolve().parents[1] / "src" / "breastcls" / "cli"
PANELS = {"Data", "Model", "Training", "Evaluation", "Speed", "Output"}
# The train options that set a configuration field, with the class that owns the field.
OWNERS: dict[str, tuple[type[Any], str]] = {
    **{name: (DataConfig, name) for name in DataConfig.__dataclass_fields__ if name != "path"},
    **{name: (ModelConfig, name) for name in ModelConfig.__dataclass_fields__},
    **{name: (TrainConfig, name) for name in TrainConfig.__dataclass_fields__},
    "out": (RunConfig, "out_dir"),
    "name": (RunConfig, "name"),
}

runner = CliRunner()


def _commands() -> dict[str, Any]:
    """Every command by name, ``data check`` included."""
    commands: dict[str, Any] = dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    data = commands.pop("data")
    commands.update({f"data {name}": command for name, command in data.commands.items()})
    return commands


def _command(name: str) -> Any:
    return _commands()[name]


def _train_params() -> list[Any]:
    return [param for param in _command("train").params if param.name != "help"]


def _default(config: type[Any], field: str) -> Any:
    spec = config.__dataclass_fields__[field]
    return spec.default_factory() if callable(spec.default_factory) else spec.default


def test_train_help_lists_the_choices_of_every_closed_choice_option() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option, (config, field) in OWNERS.items():
        try:
            allowed = choices(config, field)
        except Exception:
            continue
        if option == "verbose":
            continue  # Keras' verbosity is not a train option
        listed = "<" + "|".join(str(choice) for choice in allowed) + ">"
        assert listed in result.output, f"--{option.replace('_', '-')} does not list {listed}"


def test_train_defaults_are_the_configuration_defaults() -> None:
    checked = 0
    for param in _train_params():
        assert param.name is not None
        if param.name not in OWNERS:
            continue
        config, field = OWNERS[param.name]
        assert param.default == _default(config, field), param.name
        checked += 1
    assert checked >= 25


def test_train_help_shows_the_configuration_defaults() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    data, model, train = DataConfig(path=Path()), ModelConfig(), TrainConfig()
    for shown in (
        data.image_size,
        data.test_fraction,
        data.split_seed,
        model.backbone,
        model.preprocessing,
        train.epochs,
        train.precision,
        train.learning_rate,
    ):
        assert f"[default: {shown}]" in " ".join(result.output.split())  # help is wrapped


def test_no_command_repeats_a_configuration_default() -> None:
    """Options that set a configuration field take their default from the dataclasses."""
    for path in (CLI / "train.py", CLI / "data.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef) or not node.name.endswith("_command"):
                continue
            arguments = node.args.args + node.args.kwonlyargs
            defaults = [*node.args.defaults, *node.args.kw_defaults]
            for argument, default in zip(arguments[-len(defaults) :], defaults, strict=False):
                if argument.arg in OWNERS and isinstance(default, ast.Constant):
                    assert default.value is None or isinstance(default.value, bool), (
                        f"{path.name}: --{argument.arg} repeats the default {default.value!r}"
                    )


def test_every_option_of_every_command_has_help() -> None:
    for name, command in _commands().items():
        for param in command.params:
            if param.name == "help":
                continue
            assert getattr(param, "help", None), f"{name} {param.name} has no help text"


def test_train_options_are_grouped_in_panels() -> None:
    panels = {param.name: getattr(param, "rich_help_panel", None) for param in _train_params()}
    assert set(panels.values()) == PANELS, panels
    assert panels["data"] == "Data" and panels["backbone"] == "Model"
    assert panels["precision"] == "Speed" and panels["out"] == "Output"


@pytest.mark.parametrize("command", ["evaluate", "predict", "report", "export"])
def test_commands_that_use_a_run_name_it_first_as_RUN(command: str) -> None:
    first = _command(command).params[0]
    assert first.param_type_name == "argument" and first.metavar == "RUN"
    assert not any("--model" in param.opts for param in _command(command).params)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--precision", "fp16"),
        ("--task", "subtypes"),
        ("--split-by", "slide"),
        ("--protocol", "random"),
        ("--preprocessing", "imagenet"),
        ("--class-weight", "inverse"),
        ("--magnification", "250"),
    ],
)
def test_a_bad_choice_is_refused_before_anything_runs(
    tmp_path: Path, option: str, value: str
) -> None:
    result = runner.invoke(app, ["train", "--demo", "--out", str(tmp_path), option, value])
    assert result.exit_code == 2
    assert option in result.output and value in result.output
    assert "Value error" not in result.output  # no validator's prefix
    assert list(tmp_path.iterdir()) == []


def test_a_config_error_from_the_dataclasses_reaches_the_command_line(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["train", "--data", str(tmp_path), "--out", str(tmp_path), "--test-fraction", "1.5"]
    )
    assert result.exit_code == 2 and "test_fraction=1.5" in result.output


def _help(args: list[str]) -> str:
    # CliRunner draws help 80 columns wide, whatever COLUMNS says.
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    "args", [["train"], ["evaluate"], ["predict"], ["data", "check"], ["slide", "predict"], []]
)
def test_help_fits_80_columns_without_cutting_anything(args: list[str]) -> None:
    text = _help(args)
    usage, _, rest = text.partition("\n")
    assert usage.startswith("Usage: breastcls") and "{" not in usage
    assert "…" not in text and "..." not in rest
    assert "<bool>" not in text and "<str>" not in text
    assert max(map(len, text.splitlines())) <= 80
    command = typer.main.get_command(app)
    for name in args:
        command = command.commands[name]  # type: ignore[attr-defined]
    for param in command.params:
        # Every option's full name is there; every value is written <like-this>.
        if param.param_type_name == "argument":
            assert (param.metavar or param.name.upper()) in usage, param.name
            continue
        assert all(name in text for name in param.opts), param.opts
        if not param.is_flag:
            assert re.search(rf"{param.opts[-1]} <[^>\s]+>", text), param.opts


def test_train_help_is_short_and_names_the_registered_ids() -> None:
    from breastcls.plugins import default_host

    result = subprocess.run(
        [*RUN_CLI, "train", "--help"], capture_output=True, text=True, check=False,
        env={**os.environ, "COLUMNS": "100"}, timeout=60,
    )  # fmt: skip
    text = result.stdout
    assert result.returncode == 0 and max(map(len, text.splitlines())) <= 100
    assert len(text.splitlines()) < 120
    for heading in PANELS:
        assert f"\n{heading}:\n" in text
    # A flag off by default is written as the flag alone: no value, no [default: no-jit].
    assert re.search(r"\n  --jit +Compile with XLA", text) and "no-jit" not in text
    host = default_host()
    for option, kind in (("--backbone", "backbone"), ("--stain-normalisation", "stain_normaliser")):
        block = " ".join(text.split(f"  {option} <id>", 1)[1].split("\n  --", 1)[0].split())
        ids = [info.name for info in host.registry(kind)]
        assert len(ids) >= 2 and f"Registered: {', '.join(ids)}." in block
