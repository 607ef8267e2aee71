"""What every command shares: error mapping and option types."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from breastcls.errors import BreastclsError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`BreastclsError` into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except BreastclsError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            typer.echo("interrupted.", err=True)
            raise typer.Exit(130) from None

    return wrapper
