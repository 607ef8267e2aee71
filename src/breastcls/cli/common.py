"""What every command shares: error mapping, one error style and a quiet TensorFlow."""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

import typer

from breastcls.cli.helptext import FittedHelpGroup
from breastcls.errors import BreastclsError
from breastcls.io import printable
from breastcls.records import MetricsRecord

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2


def say(text: str, *, err: bool = False) -> None:
    """Print one message; file names that are not UTF-8 show as ``\\xNN`` (never a crash)."""
    typer.echo(printable(text), err=err)


def say_domain(metrics: MetricsRecord, *, first: bool) -> None:
    """The domain-shift lines of a ``metrics.json``: with ``first``, the warning that its
    figures do not apply (said before them); else how many images were flagged."""
    from breastcls.evaluation.domain import domain_line, domain_warning

    domain = metrics.sections.get("domain")
    line = domain_warning(domain) if first else domain_line(domain)
    if line:
        say(f"WARNING: {line}" if first else line)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command with its progress shown on stderr (:mod:`breastcls.cli.progress`), and
    turn a :class:`BreastclsError` into one line ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from breastcls.cli.progress import TerminalProgress, resume_hint, showing_progress

        progress: TerminalProgress | None = None
        try:
            with showing_progress() as progress:
                return command(*args, **kwargs)
        except BreastclsError as error:
            message = " ".join(str(error).splitlines())
            say(f"error: {message}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            say(resume_hint(progress.run_dir if progress else None), err=True)
            raise typer.Exit(130) from None

    return wrapper


@contextlib.contextmanager
def _one_line_usage_errors(ctx: Any) -> Iterator[None]:
    try:
        yield
    except typer.TyperException as error:  # click's exceptions, as typer vendors them
        if type(error).__name__ == "NoArgsIsHelpError":
            raise  # `breastcls` or `breastcls data` alone: typer prints the help
        where = getattr(error, "ctx", None) or ctx
        command = where.command_path if where is not None else "breastcls"
        message = " ".join(error.format_message().split()).rstrip(".")
        # typer validates choices through pydantic, whose messages start "Value error, ".
        message = message.replace("Value error, ", "")
        say(f"error: {message}; see `{command} --help`.", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


class OneLineErrorsGroup(FittedHelpGroup):
    """The application's command group: a usage error (a missing option, a bad value...) is one
    line ``error: ...`` on stderr and exit code 2, as every :class:`BreastclsError` is."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: Any = None,
        **extra: Any,
    ) -> Any:
        with _one_line_usage_errors(parent):
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage_errors(ctx):
            return super().invoke(ctx)


def quiet_tensorflow() -> None:
    """Hide TensorFlow's C++ log lines (absl, oneDNN, CPU features) and Python-side logger
    chatter below errors, unless the user chose a level. Call it before TensorFlow is imported:
    it reads ``TF_CPP_MIN_LOG_LEVEL`` once, when it starts. Only the CLI calls this; importing
    breastcls changes nothing in the process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # oneDNN's notice is an INFO line of TensorFlow's C++ logger: hidden by the level above.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)


class _TensorFlowAnnouncer(importlib.abc.MetaPathFinder):
    """Says ``loading TensorFlow…`` on stderr when the process first imports TensorFlow (or
    Keras, which imports it), so that the seconds that takes are not silent. It only watches:
    the import itself is left to the other finders."""

    said = False

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        # It stays in sys.meta_path, silent: removing itself here would make the import
        # system, which is walking that list, skip the next finder.
        if not self.said and fullname in ("tensorflow", "keras"):
            self.said = True
            say("loading TensorFlow…", err=True)
        return None


def announce_tensorflow() -> None:
    """Have the first import of TensorFlow in this process say so on stderr (the console
    script's entry point calls this; commands that never need TensorFlow say nothing)."""
    if "tensorflow" not in sys.modules and "keras" not in sys.modules:
        sys.meta_path.insert(0, _TensorFlowAnnouncer())


def parse_options(pairs: list[str], *, flag: str) -> dict[str, str]:
    """``NAME=VALUE`` pairs of a repeatable ``flag`` as a mapping; the component converts and
    checks the values.

    Raises:
        ConfigError: A pair is not ``NAME=VALUE``.
    """
    from breastcls.errors import ConfigError

    options: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"{flag} {pair!r} is not NAME=VALUE: write e.g. {flag} name=value.")
        options[name.strip()] = value.strip()
    return options
