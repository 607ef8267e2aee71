"""``breastcls plugins``."""

from __future__ import annotations

import typer

from breastcls.cli.common import reports_errors


@reports_errors
def plugins_command() -> None:
    """List every registered component and the plugin and package it comes from."""
    from breastcls.plugins.host import default_host

    host = default_host()
    rows = [
        (info.kind, info.name, info.plugin, host.distribution_of(info.plugin), info.summary)
        for info in host.components()
    ]
    headers = ("kind", "id", "plugin", "package", "summary")
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(4)]
    for row in [headers, *rows]:
        typer.echo(
            "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        )
