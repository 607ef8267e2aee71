"""``breastcls plugins``."""

from __future__ import annotations

from breastcls.cli.common import reports_errors


@reports_errors
def plugins_command() -> None:
    """List every registered component and the plugin and package it comes from."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from breastcls.cli.progress import echo_table
    from breastcls.plugins.host import default_host

    host = default_host()
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("kind", no_wrap=True)
    table.add_column("id", no_wrap=True)
    table.add_column("plugin, package / summary", overflow="fold")
    for info in host.components():
        source = f"{info.plugin}  {host.distribution_of(info.plugin)}"
        table.add_row(info.kind, info.name, Group(source, Text(info.summary, style="dim")))
    echo_table(table)
