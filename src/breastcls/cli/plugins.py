"""``breastcls plugins``."""

from __future__ import annotations

import typer

from breastcls.cli.common import EXIT_BAD_INPUT, reports_errors, say


@reports_errors
def plugins_command() -> None:
    """List every registered component and the plugin and package it comes from.

    A plugin that fails to load, or whose registration hook fails, is one line `error: ...`
    after the list (naming the plugin and the hook), and the exit code is 2.
    """
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from breastcls.cli.progress import echo_table
    from breastcls.plugins.host import PluginHost

    host = PluginHost(skip_broken=True)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("kind", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("plugin, package / summary", overflow="fold")
    for info in host.components():
        source = f"{info.plugin}  {host.distribution_of(info.plugin)}"
        table.add_row(info.kind, info.name, Group(source, Text(info.summary, style="dim")))
    echo_table(table)
    for problem in host.broken:
        say(f"error: {' '.join(problem.splitlines())}", err=True)
    if host.broken:
        raise typer.Exit(EXIT_BAD_INPUT)
