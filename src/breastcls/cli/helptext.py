"""``--help`` that fits the terminal: plain wrapped text, grouped by panel, nothing truncated.

typer's boxed help cuts option names and help to fit its columns (at 80 columns, and whenever
it is piped, ``--selection-frac…``), shows ``<bool>`` after flags and ``<str>`` where a
registered id is expected. Commands made with :class:`FittedHelpCommand` print instead each
panel (the options' ``rich_help_panel``) as a heading and each option as its names and value,
then its help wrapped beside it, with the registered ids of plugin options listed.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from typer.core import TyperCommand, TyperGroup

__all__ = [
    "FITTED_HELP",
    "PLUGIN_OPTIONS",
    "FittedHelpCommand",
    "FittedHelpGroup",
    "registered_ids",
]

# The options whose value is a registered component id, and the registry kind they name.
PLUGIN_OPTIONS = {
    "backbone": "backbone",
    "head": "head",
    "augmentation": "augmentation",
    "trainer": "trainer",
    "stain_normalisation": "stain_normaliser",
    "tta": "tta",
    "reader": "slide_reader",
    "tissue_detector": "tissue_detector",
}
_DEFAULT_PANEL = "Options"
# Wider terminals get longer lines, up to 120 columns (click stops at 80).
FITTED_HELP = {"max_content_width": 120}


def registered_ids(kind: str) -> list[str]:
    """The ids of one component kind, as ``breastcls plugins`` lists them (loading the plugins
    imports no TensorFlow)."""
    from breastcls.plugins.host import default_host

    return [info.name for info in default_host().registry(kind)]


def _names_and_value(param: Any, ctx: Any) -> str:
    """``--epochs <int>``; a flag that is off by default just ``--jit`` (``--no-jit`` still
    works); a free-text value ``<text>``, a registered id ``<id>``."""
    names = ", ".join(param.opts)
    if getattr(param, "is_flag", False):
        if param.default and param.secondary_opts:
            names += " / " + ", ".join(param.secondary_opts)
        return names
    # typer writes a bounded number <int range>; the bounds follow the default.
    value = (param.display_type_rich(ctx=ctx) or "").replace(" range>", ">")
    if value == "<str>":
        value = "<id>" if param.name in PLUGIN_OPTIONS else "<text>"
    return f"{names} {value}".strip()


def _argument_name(param: Any) -> str:
    """``RUN``, ``IMAGES``: positional arguments in capitals, as in the usage line."""
    return str(param.metavar or (param.name or "").upper())


def _help(param: Any, ctx: Any) -> str:
    record = param.get_help_record(ctx)
    text = record[1] if record else ""
    default = ""
    if text.endswith("]") and "  [default: " in text:
        text, _, default = text.rpartition("  [default: ")
        default = f"  [default: {default}"
    if getattr(param, "is_flag", False) and not param.default:
        default = ""  # "[default: no-jit]" says nothing a flag does not
    kind = PLUGIN_OPTIONS.get(param.name or "")
    if kind is not None:
        text += f" Registered: {', '.join(registered_ids(kind))}."
    return text + default


class _FittedHelp:
    """click's own help layout, as wide as the terminal up to :data:`FITTED_HELP`'s width
    (typer replaces it with boxed tables whenever rich is installed)."""

    context_settings: MutableMapping[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context_settings = {**FITTED_HELP, **self.context_settings}

    def format_help(self, ctx: Any, formatter: Any) -> None:
        command: Any = self
        command.format_usage(ctx, formatter)
        command.format_help_text(ctx, formatter)
        command.format_options(ctx, formatter)
        command.format_epilog(ctx, formatter)


class FittedHelpCommand(_FittedHelp, TyperCommand):
    """A command whose ``--help`` wraps to the terminal's width instead of truncating."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                pieces.append(_argument_name(param) + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments: list[tuple[str, str]] = []
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), getattr(param, "help", None) or ""))
                continue
            panel = getattr(param, "rich_help_panel", None) or _DEFAULT_PANEL
            panels.setdefault(panel, []).append((_names_and_value(param, ctx), _help(param, ctx)))
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        # The panels in the order their first option is declared; --help's own last.
        general = panels.pop(_DEFAULT_PANEL, [])
        for panel, rows in [*panels.items(), (_DEFAULT_PANEL, general)]:
            if rows:
                with formatter.section(panel):
                    formatter.write_dl(rows)


class FittedHelpGroup(_FittedHelp, TyperGroup):
    """A command group whose ``--help`` lists each command with its whole summary line."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
