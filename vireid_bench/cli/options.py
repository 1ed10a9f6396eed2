"""Click option decorators shared by several commands (one definition each).

Light to import: click, :mod:`vireid_bench.io.memory` and :mod:`vireid_bench.engine.scheduler`
use only the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from vireid_bench.engine.scheduler import (
    DEFAULT_BLOCK_QUERIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKERS,
    SCHEDULERS,
)
from vireid_bench.io.memory import MEMORY_LIMIT_HELP, parse_memory_limit


def memory_limit_option(command):
    """Add ``--memory-limit`` (default ``50%``) to a click command, as ``memory_limit``."""
    return click.option("--memory-limit", default="50%", show_default=True, help=MEMORY_LIMIT_HELP)(
        command
    )


def parents_option(command):
    """Add ``--parents`` to a writing command, as ``parents``.

    Without it a missing output folder is an error (``error: PATH: folder ... does not
    exist``); with it the folder is created, as ``mkdir -p``.
    """
    return click.option(
        "--parents",
        is_flag=True,
        help="Create the output file's missing parent folders (default: refuse).",
    )(command)


def scheduler_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--scheduler``, ``--scheduler-address``, ``--dask-*`` options to a command.

    The command receives them as ``scheduler``, ``scheduler_address``, ``dask_workers``,
    ``dask_block_queries`` and ``dask_timeout``; :func:`scheduler_from_options` makes the
    :class:`Scheduler`.
    """
    options = [
        click.option(
            "--scheduler",
            type=click.Choice(SCHEDULERS),
            default="local",
            show_default=True,
            help="Where to score: 'local' in this process, or 'dask': query blocks, trials "
            "and dumps are sharded over a Dask cluster and merged (same numbers; needs "
            "pip install 'vireid-bench[dist]'). See docs/scale.md.",
        ),
        click.option(
            "--scheduler-address",
            metavar="ADDRESS",
            help="With --scheduler dask: the Dask scheduler to use (tcp://host:8786); the "
            "dumps must be at the same path on every worker. Default: start a LocalCluster.",
        ),
        click.option(
            "--dask-workers",
            type=click.IntRange(min=1),
            default=DEFAULT_WORKERS,
            show_default=True,
            help="Worker processes of the LocalCluster started when no --scheduler-address.",
        ),
        click.option(
            "--dask-block-queries",
            type=click.IntRange(min=1),
            default=DEFAULT_BLOCK_QUERIES,
            show_default=True,
            help="Most queries of one trial in one Dask task (smaller: more, finer tasks).",
        ),
        click.option(
            "--dask-timeout",
            type=click.FloatRange(min=0, min_open=True),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help="Seconds to wait for the scheduler at --scheduler-address.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def split_list(value: str) -> list[str]:
    """Split a comma-separated option value into its non-empty, stripped parts."""
    return [part.strip() for part in value.split(",") if part.strip()]


def memory_options(memory_limit: str):
    """The :class:`~vireid_bench.engine.scoring.MemoryOptions` a ``--memory-limit`` asks for."""
    from vireid_bench.engine.scoring import MemoryOptions  # lazy: keeps --help light

    return MemoryOptions(limit=parse_memory_limit(memory_limit))


def allow_external_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--allow-external`` (off by default) to a command, as ``allow_external``."""
    return click.option(
        "--allow-external",
        is_flag=True,
        help="Follow external links, virtual datasets and external raw data inside dumps "
        "(refused by default: the numbers would depend on files the dump's SHA-256 does not "
        "cover). With it, the recorded SHA-256 covers every file read (docs/robustness.md).",
    )(command)


def query_modality_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--query-modality infrared|visible|both`` (default both), as ``query_modality``."""
    return click.option(
        "--query-modality",
        type=click.Choice(["infrared", "visible", "both"]),
        default="both",
        show_default=True,
        help="Report only queries of this modality.",
    )(command)


def trials_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--trials N`` (default: every trial), as ``trials``."""
    return click.option(
        "--trials", type=click.IntRange(min=1), help="Use only the first N trials."
    )(command)


def table_output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``-f/--format table|markdown|csv|json`` (as ``fmt``) and ``-o/--output FILE``."""
    command = click.option(
        "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout."
    )(command)
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(["table", "markdown", "csv", "json"]),
        default="table",
        show_default=True,
        help="Output format. JSON and CSV carry unrounded values and every field.",
    )(command)
