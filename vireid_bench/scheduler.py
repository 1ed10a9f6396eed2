"""The ``--scheduler`` options and what they choose; light to import (no numpy, no dask).

:mod:`vireid_bench.distributed` does the work; this module holds the choice
(:class:`Scheduler`), the click options every scoring command shares and the one-line errors
for a missing dask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from vireid_bench.errors import VireidBenchError

SCHEDULERS = ("local", "dask")
DEFAULT_WORKERS = 2
DEFAULT_BLOCK_QUERIES = 4096
DEFAULT_TIMEOUT = 10.0
INSTALL_HINT = "install the dist extra: pip install 'vireid-bench[dist]'"


class DistributedError(VireidBenchError):
    """Dask is missing, or the cluster cannot be reached or started (CLI: exit 2)."""


@dataclass(frozen=True)
class Scheduler:
    """Where phase (b) of scoring runs.

    Attributes:
        kind: ``"local"`` (this process, :func:`~vireid_bench.scoring.evaluate`) or
            ``"dask"``.
        address: a Dask scheduler (``tcp://host:8786``); None starts a LocalCluster.
        workers: worker processes of the LocalCluster (one thread each).
        block_queries: the most queries of one trial in one Dask task.
        timeout: seconds to wait for the scheduler at ``address``.
        processes: LocalCluster workers as processes (True) or threads of this process.
    """

    kind: str = "local"
    address: str | None = None
    workers: int = DEFAULT_WORKERS
    block_queries: int = DEFAULT_BLOCK_QUERIES
    timeout: float = DEFAULT_TIMEOUT
    processes: bool = True

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise DistributedError(f"unknown scheduler {self.kind!r} (valid: local, dask)")
        if self.workers < 1 or self.block_queries < 1 or not self.timeout > 0:
            raise DistributedError("workers, block queries and timeout must be positive")


def import_distributed() -> Any:
    """Import and return ``distributed``; DistributedError naming the extra if missing."""
    try:
        import distributed
    except ImportError as exc:
        raise DistributedError(f"--scheduler dask needs dask: {INSTALL_HINT}") from exc
    return distributed


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


def scheduler_from_options(
    scheduler: str,
    scheduler_address: str | None,
    dask_workers: int,
    dask_block_queries: int,
    dask_timeout: float,
) -> Scheduler:
    """The :class:`Scheduler` the ``--scheduler*`` / ``--dask-*`` options ask for.

    Raises:
        DistributedError: ``--scheduler-address`` without ``--scheduler dask``, or dask is
            not installed while ``--scheduler dask`` is asked for.
    """
    if scheduler != "dask":
        if scheduler_address is not None:
            raise DistributedError("--scheduler-address needs --scheduler dask")
        return Scheduler()
    import_distributed()  # fail early, before any work, when dask is missing
    return Scheduler(
        kind="dask",
        address=scheduler_address,
        workers=dask_workers,
        block_queries=dask_block_queries,
        timeout=dask_timeout,
    )
