"""What every command shares: exit codes, the error contract, warnings, output, progress.

Exit codes scripts can rely on: 0 success; 1 a check found a regression (only ``check``);
2 bad input or usage (one line ``error: WHERE: problem`` on stderr); 130 interrupted
(Ctrl-C, SIGINT); 141 stdout closed by its reader (broken pipe, silent); 143 terminated
(SIGTERM); 70 an internal error (a bug: traceback, then one ``error:`` line). An
interrupted run leaves every output file as it was.

:class:`ErrorContract` is the one place that turns an exception into a message and an exit
code (:func:`failure_exit`); every command class of the package (:class:`ToolkitGroup`,
:class:`ToolkitCommand`, :class:`ToolkitSubgroup`) uses it.

Light to import (click and the standard library only): ``vireid-bench --help`` loads it.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress

import click

from vireid_bench.errors import VireidBenchError

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process killed by SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug, never an input problem


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (see :func:`main`).

    A KeyboardInterrupt subclass, so every cleanup that runs on Ctrl-C (temporary files
    removed, output left as it was) runs on SIGTERM too.
    """


# The signal main() received during this run (SIGINT or SIGTERM), if any: libraries may wrap
# the KeyboardInterrupt the handler raises (Numba: SystemError; Dask: its own errors), and the
# error contract still reports the interrupt.
_received: list[int] = []


def raise_terminated(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _received.append(signal.SIGTERM)
    raise Terminated


def raise_interrupted(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _received.append(signal.SIGINT)
    raise KeyboardInterrupt


def raise_pending_signal() -> None:
    """Raise the interrupt of a signal this run received but never saw arrive.

    The handlers raise inside whatever Python code runs when the signal lands; when that is
    a finalizer or a weak-reference callback (garbage collection), Python prints "Exception
    ignored in ..." and goes on, and the run would finish as if no signal had come. Called
    before anything is written, so such a run still exits 130 / 143 and leaves the output
    as it was.
    """
    if _received:
        raise Terminated() if _received[-1] == signal.SIGTERM else KeyboardInterrupt()


def install_signal_handlers() -> Callable[[], None]:
    """SIGINT -> KeyboardInterrupt, SIGTERM -> :class:`Terminated`, both recorded.

    An interrupt raised inside a finalizer (and so swallowed) prints nothing: it is
    honoured later by :func:`raise_pending_signal`. Returns the function that restores the
    previous handlers and hook. A SIGINT ignored at start-up
    (a shell's background job) stays ignored.
    """
    _received.clear()
    previous_term = signal.signal(signal.SIGTERM, raise_terminated)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, raise_interrupted)
    previous_hook = sys.unraisablehook

    def quiet_interrupts(unraisable) -> None:
        # an interrupt swallowed by a finalizer is recorded and re-raised by
        # raise_pending_signal: no "Exception ignored" traceback for it
        if _received and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return
        previous_hook(unraisable)

    sys.unraisablehook = quiet_interrupts

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        sys.unraisablehook = previous_hook
        _received.clear()  # what this run received ends with it

    return restore


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

    The warnings are held until the block ends and shown only when it succeeds: when it
    fails, the one-line ``error:`` is the whole of stderr (the error contract), never a
    warning about an input the error then refuses.
    """
    held: list[str] = []

    def show(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        held.append(f"warning: {message}")

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
    for text in held:  # reached only when the block succeeded
        click.echo(text, err=True)


def write_output(
    text: str,
    output: str | None,
    inputs: Iterable[str] = (),
    *,
    parents: bool = False,
    quiet: bool = False,
) -> None:
    """Write ``text`` to stdout (``None`` or ``-``), or to ``output`` through the one writer.

    The writer (:func:`vireid_bench.io.files.write_text_atomic`) refuses an output that is
    one of ``inputs``, an existing non-regular file, or in a missing folder (unless
    ``parents``); see docs/robustness.md.
    """
    # lazy: keeps --help light
    from vireid_bench.io.files import OutputError, os_problem, write_text_atomic

    raise_pending_signal()
    if output is None or output == "-":
        try:
            click.echo(text, nl=False)
            sys.stdout.flush()
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            raise OutputError("<stdout>", f"cannot be written ({os_problem(exc)})") from exc
        return

    target = write_text_atomic(output, text, inputs, parents=parents)
    if not quiet:
        click.echo(f"wrote {target}", err=True)


def check_output(output: str | None, inputs: Iterable[str] = (), *, parents: bool = False) -> None:
    """Refuse a bad ``--output`` before any work is done (the writer checks again at the end).

    Raises:
        OutputError: the output is an input, not a regular file, or in a missing folder.
    """
    if output is None or output == "-":
        return
    # lazy: keeps --help light
    from vireid_bench.io.files import check_output_path

    check_output_path(output, inputs, parents=parents)


COMPILING_NOTE = "note: compiling scoring kernels (first run only)"


def note_cold_kernels(*modules: object) -> bool:
    """Print :data:`COMPILING_NOTE` once when a Numba kernel of ``modules`` has no disk cache.

    Numba compiles ``cache=True`` kernels on their first call and stores them beside the
    module (or under ``NUMBA_CACHE_DIR``); a missing index file means this run compiles for
    several seconds. Functions inlined into their callers (``inline="always"``) are never
    compiled on their own, so they have no cache and are skipped. Returns whether the note
    was printed.
    """
    for module in modules:
        for value in vars(module).values():
            if getattr(value, "targetoptions", {}).get("inline") == "always":
                continue
            cache_file = getattr(getattr(value, "_cache", None), "_cache_file", None)
            index = getattr(cache_file, "_index_path", None)
            if isinstance(index, str) and not os.path.exists(index):
                click.echo(COMPILING_NOTE, err=True)
                return True
    return False


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
        click.echo(f"error: {one_line(self.format_message())}", err=True)


def one_line(text: str) -> str:
    """``text`` on one line (inner line breaks become '; ')."""
    parts = [part.strip() for part in str(text).splitlines() if part.strip()]
    return "; ".join(parts)


def interrupt_in(exc: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or :class:`Terminated`) ``exc`` is or wraps, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    if _received:
        return Terminated() if _received[-1] == signal.SIGTERM else KeyboardInterrupt()
    return None


def interrupted_exit(exc: KeyboardInterrupt) -> click.exceptions.Exit:
    """Say ``interrupted`` (Ctrl-C) or ``terminated`` (SIGTERM); return the exit to raise."""
    if isinstance(exc, Terminated):
        click.echo("terminated", err=True)
        return click.exceptions.Exit(EXIT_TERMINATED)
    click.echo("interrupted", err=True)
    return click.exceptions.Exit(EXIT_INTERRUPTED)


def _silence_stdout() -> None:
    """After a broken pipe: send what is left of stdout to /dev/null (no second error)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _usage_where(exc: click.UsageError, fallback: str) -> str:
    return exc.ctx.command_path if exc.ctx is not None else fallback


def failure_exit(exc: BaseException, where: str) -> click.exceptions.Exit:
    """The one error contract: print what ``exc`` means on stderr; return the exit to raise.

    * an interrupt (also one a library wrapped, e.g. Numba's SystemError): ``interrupted``
      or ``terminated``, exit 130 / 143;
    * a toolkit error (:class:`VireidBenchError`), :class:`InputError` or a click usage
      error (unknown option, missing argument, bad value): ``error: WHERE: problem``, exit 2;
    * an OSError (unwritable output, no space left, permission denied):
      ``error: FILE: problem``, exit 2; a broken pipe on stdout exits 141 silently;
    * MemoryError: ``error: WHERE: not enough memory ...``, exit 2;
    * anything else is a bug: the traceback, then ``error: internal error ...``, exit 70.
    """
    interrupt = interrupt_in(exc)
    if interrupt is not None or isinstance(exc, click.Abort):
        return interrupted_exit(interrupt or KeyboardInterrupt())
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        ctx = exc.ctx
        click.echo(ctx.get_help())
        listing = getattr(ctx.command, "list_commands", None)
        what = f"command (one of: {', '.join(listing(ctx))})" if listing else "arguments"
        message = f"{ctx.command_path}: missing {what}"
        code = EXIT_INPUT
    elif isinstance(exc, click.UsageError):
        text = one_line(exc.format_message())
        message = f"{_usage_where(exc, where)}: {text[:1].lower()}{text[1:]}".rstrip(".")
        code = EXIT_INPUT
    elif isinstance(exc, click.ClickException):
        message = one_line(exc.format_message())
        code = EXIT_INPUT
    elif isinstance(exc, VireidBenchError):
        message = one_line(str(exc))
        code = EXIT_INPUT
    elif isinstance(exc, OSError):
        if exc.errno == errno.EPIPE:
            _silence_stdout()
            return click.exceptions.Exit(EXIT_BROKEN_PIPE)
        from vireid_bench.io.files import os_problem  # lazy: keeps --help light

        if exc.filename is not None:
            message = f"{exc.filename}: {os_problem(exc)}"
        elif exc.strerror is None and str(exc):
            message = one_line(str(exc))
        else:
            message = f"{where}: {os_problem(exc)}"
        code = EXIT_INPUT
    elif isinstance(exc, MemoryError):
        detail = f" ({one_line(str(exc))})" if str(exc) else ""
        message = f"{where}: not enough memory{detail}; try a smaller --memory-limit"
        code = EXIT_INPUT
    else:
        traceback.print_exception(exc, file=sys.stderr)
        message = (
            f"{where}: internal error {type(exc).__name__} (a bug in vireid-bench: please "
            "report it with the traceback above)"
        )
        code = EXIT_INTERNAL
    with suppress(OSError):  # stderr itself may be gone
        click.echo(f"error: {message}", err=True)
    return click.exceptions.Exit(code)


class ErrorContract:
    """Mixin for click commands and groups: every failure goes through :func:`failure_exit`.

    Parsing (``make_context``) and running (``invoke``) are both covered, so a usage error,
    a toolkit error, an OSError or an interrupt gives the same one-line message and exit
    code whether the command runs under the ``vireid-bench`` group or on its own.
    """

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[misc]
        except (click.exceptions.Exit, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - the one place exceptions are mapped
            where = info_name or "vireid-bench"
            if parent is not None:
                where = f"{parent.command_path} {where}"
            raise failure_exit(exc, where) from None

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except (click.exceptions.Exit, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - the one place exceptions are mapped
            raise failure_exit(exc, ctx.command_path) from None


class ToolkitGroup(ErrorContract, click.Group):
    """The ``vireid-bench`` group under the error contract."""


class ToolkitCommand(ErrorContract, click.Command):
    """A click command under the error contract."""


class ToolkitSubgroup(ErrorContract, click.Group):
    """A click command group under the error contract."""
