"""What every command shares: exit codes, the error contract, warnings, output, progress.

Exit codes scripts can rely on: 0 success; 1 a check found a regression; 2 bad input or
usage (one-line message on stderr naming the file and field); 130 interrupted (Ctrl-C,
SIGINT); 143 terminated (SIGTERM). An interrupted run leaves every output file as it was.

Light to import (click and the standard library only): ``vireid-bench --help`` loads it.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from vireid_bench.errors import VireidBenchError

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process killed by SIGTERM


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (see :func:`main`).

    A KeyboardInterrupt subclass, so every cleanup that runs on Ctrl-C (temporary files
    removed, output left as it was) runs on SIGTERM too.
    """


def raise_terminated(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Terminated


def toolkit_version() -> str:
    # lazy: heavy modules load only when the command runs (fast --help)
    from vireid_bench import __version__

    return __version__


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show Python warnings as ``warning: <message>`` lines on stderr.

    Every warning the toolkit raises is shown each time; interpreter diagnostics that are
    not about the user's input (ResourceWarning from garbage collection, library
    deprecations) are not.
    """

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        click.echo(f"warning: {message}", err=True)

    previous = warnings.showwarning
    warnings.showwarning = show
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for category in (ResourceWarning, DeprecationWarning, PendingDeprecationWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = show
            yield
    finally:
        warnings.showwarning = previous


def write_output(text: str, output: str | None) -> None:
    """Write ``text`` to stdout, or atomically to ``output`` (temporary file, then rename)."""
    if output is None or output == "-":
        click.echo(text, nl=False)
        return
    from vireid_bench.io.files import write_text_atomic  # lazy: keeps --help light

    target = write_text_atomic(output, text)
    click.echo(f"wrote {target}", err=True)


@contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    if total <= 0 or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


class InputError(click.ClickException):
    """Bad input: a one-line ``error: ...`` message on stderr and exit code 2."""

    exit_code = EXIT_INPUT

    def show(self, file=None) -> None:  # noqa: ARG002 - click's signature
        click.echo(f"error: {self.format_message()}", err=True)


def interrupted_exit(exc: KeyboardInterrupt) -> click.exceptions.Exit:
    """Say ``interrupted`` (Ctrl-C) or ``terminated`` (SIGTERM); return the exit to raise."""
    if isinstance(exc, Terminated):
        click.echo("terminated", err=True)
        return click.exceptions.Exit(EXIT_TERMINATED)
    click.echo("interrupted", err=True)
    return click.exceptions.Exit(EXIT_INTERRUPTED)


class ToolkitGroup(click.Group):
    """Maps toolkit errors to exit code 2, Ctrl-C to 130 and SIGTERM to 143."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt as exc:  # while the command line is parsed
            raise interrupted_exit(exc) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except VireidBenchError as exc:
            raise InputError(str(exc)) from exc
        except KeyboardInterrupt as exc:
            raise interrupted_exit(exc) from None




class MapsErrors:
    """Mixin: toolkit errors -> ``error: ...`` on stderr and exit code 2.

    Commands defined in their own modules use it so that they behave the same when invoked
    on their own (e.g. from tests) as under the ``vireid-bench`` group.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except VireidBenchError as exc:
            raise InputError(str(exc)) from exc


class ToolkitCommand(MapsErrors, click.Command):
    """A click command that maps toolkit errors to exit code 2."""


class ToolkitSubgroup(MapsErrors, click.Group):
    """A click group that maps toolkit errors to exit code 2."""
