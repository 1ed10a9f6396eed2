"""Where scoring runs (:class:`Scheduler`); light to import (no numpy, no dask).

:mod:`vireid_bench.engine.distributed` does the work; this module holds the choice, the
mapping from the ``--scheduler*`` option values to it and the one-line errors for a missing
dask. The click options themselves live in :mod:`vireid_bench.cli.options`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        kind: ``"local"`` (this process, :func:`~vireid_bench.engine.scoring.evaluate`) or
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
