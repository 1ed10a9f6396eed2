"""Scale-out on Dask: score query blocks, trials and dumps on a ``distributed`` cluster.

The work of a scoring run is cut into shards (:class:`vireid_bench.engine.scoring.Shard`: the
queries ``[start, stop)`` of one trial of one (preset, variant, query modality)). Shards of
the same dump, trial and query block travel together as one Dask task, so they share one
distance computation, as in-process scoring shares it. Workers open the dump themselves by
its path (features never go through the scheduler); what comes back are the per-query
arrays, merged in plan order (:func:`vireid_bench.engine.scoring.merge_shards`) and aggregated by
the same code as in-process (:func:`vireid_bench.engine.scoring.aggregate`).

Planning (which settings apply, which queries and gallery pool each trial has) also runs on
the workers, one task per dump, so the client never loads features either; its warnings are
replayed on the client. Every dump of a run is submitted at once: the cluster works on all of
them together (``leaderboard`` and ``check`` over many dumps).

Dask is optional (the ``dist`` extra); this module imports it only when a cluster is used.
No process pool or network protocol of our own: a ``distributed.Client`` on a
``LocalCluster`` or on the scheduler at ``--scheduler-address``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vireid_bench.engine.plans import recipe_feature_sets
from vireid_bench.engine.scheduler import (
    DEFAULT_BLOCK_QUERIES,
    DistributedError,
    Scheduler,
    import_distributed,
)
from vireid_bench.engine.scoring import (
    DEFAULT_BLOCK_BYTES,
    Evaluation,
    EvaluationSetup,
    MemoryOptions,
    PlanScores,
    ScoringContext,
    Shard,
    Task,
    aggregate,
    empty_scores,
    evaluate,
    make_shards,
    merge_shards,
    plan_evaluation,
    restrict_tasks,
    score_restricted,
    split_pools,
)
from vireid_bench.io.dump import declared_feature_bytes, load_dump

if TYPE_CHECKING:
    from distributed import Client

    from vireid_bench.io.dump import FeatureDump
    from vireid_bench.protocol.conventions import Convention
    from vireid_bench.protocol.presets import Preset

ConventionFactory = Callable[["FeatureDump"], "Convention | None"]


@dataclass(frozen=True)
class ScoreRequest:
    """One dump to score, as :func:`~vireid_bench.engine.scoring.evaluate` would be called on it.

    Attributes:
        path: the dump; on a cluster, a path every worker can open (shared filesystem).
        presets: the settings.
        options: keyword arguments of :func:`~vireid_bench.engine.scoring.plan_evaluation`
            (``features``, ``distance``, ``cmc``, ``trials``, ``query_modalities``,
            ``strict``, ``convention``).
        convention_factory: a picklable callable giving the convention for the loaded dump
            (it may raise to refuse the dump); overrides ``options["convention"]``.
        block_bytes: memory budget of one distance block.
        memory: the memory limit / forced streaming, applied on the worker as in-process
            (:class:`~vireid_bench.engine.scoring.MemoryOptions`; features are loaded whole there).
        allow_external: follow external links / virtual datasets inside the dump
            (:func:`~vireid_bench.io.dump.load_dump`).
    """

    path: str
    presets: tuple[Preset, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    convention_factory: ConventionFactory | None = None
    block_bytes: int = DEFAULT_BLOCK_BYTES
    memory: MemoryOptions | None = None
    allow_external: bool = False

    @property
    def feature_sets(self) -> list[str]:
        """The feature sets to load besides the dump's defaults."""
        chosen = self.options.get("features")
        recipe_sets = recipe_feature_sets(self.options.get("recipe"))  # type: ignore[arg-type]
        return ([chosen] if isinstance(chosen, str) else []) + recipe_sets


# --------------------------------------------------------------------------- entry points


def evaluate_requests(
    requests: Sequence[ScoreRequest], scheduler: Scheduler | None = None
) -> list[Evaluation]:
    """Score every request; return their evaluations in request order.

    With a ``dask`` scheduler, every dump is submitted at once and the results equal the
    in-process ones (same plans, same per-query kernel, same aggregation). A cluster
    started here (LocalCluster) is closed before returning.

    Raises:
        DistributedError: dask is not installed, or the scheduler cannot be reached.
        VireidBenchError: what scoring a dump raises (re-raised from the worker).
    """
    scheduler = scheduler or Scheduler()
    if scheduler.kind == "local":
        return [_evaluate_here(request) for request in requests]
    with dask_client(scheduler) as client:
        return evaluate_on_dask(client, requests, block_queries=scheduler.block_queries)


def _load(request: ScoreRequest) -> FeatureDump:
    """Load a request's dump; lazily when its features exceed half its memory limit."""
    limit = request.memory.limit if request.memory is not None else None
    external = request.allow_external
    declared = declared_feature_bytes(request.path, allow_external=external)
    lazy = limit is not None and declared > limit // 2
    return load_dump(
        request.path, feature_sets=request.feature_sets, lazy=lazy, allow_external=external
    )


def _options(request: ScoreRequest, dump: FeatureDump) -> dict[str, Any]:
    options = dict(request.options)
    if request.convention_factory is not None:
        options["convention"] = request.convention_factory(dump)
    return options


def _evaluate_here(request: ScoreRequest) -> Evaluation:
    dump = _load(request)
    return evaluate(
        dump,
        request.presets,
        block_bytes=request.block_bytes,
        memory=request.memory,
        **_options(request, dump),
    )


@contextmanager
def dask_client(scheduler: Scheduler) -> Iterator[Client]:
    """A ``distributed.Client`` for ``scheduler``; what is started here is closed on exit.

    Without an address, starts a LocalCluster of ``scheduler.workers`` single-threaded
    workers (no dashboard). With one, connects within ``scheduler.timeout`` seconds.

    Raises:
        DistributedError: dask is not installed, or the scheduler cannot be reached.
    """
    distributed = import_distributed()
    with warnings.catch_warnings():
        # Dask's own start/stop chatter (unclosed sockets, port notices) is not the user's
        # business; the toolkit's warnings (replayed from the workers) still show.
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.filterwarnings("ignore", module=r"distributed(\.|$)")
        cluster = None
        try:
            if scheduler.address is None:
                cluster = distributed.LocalCluster(
                    n_workers=scheduler.workers,
                    threads_per_worker=1,
                    processes=scheduler.processes,
                    dashboard_address=None,
                    scheduler_kwargs={"dashboard": False},
                    silence_logs=logging.ERROR,
                )
                client = distributed.Client(cluster, timeout=scheduler.timeout)
            else:
                client = distributed.Client(scheduler.address, timeout=scheduler.timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            if cluster is not None:
                cluster.close()
            where = scheduler.address or "a LocalCluster"
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DistributedError(f"cannot reach the Dask scheduler at {where}: {reason}") from exc
        try:
            yield client
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def evaluate_on_dask(
    client: Client,
    requests: Sequence[ScoreRequest],
    *,
    block_queries: int = DEFAULT_BLOCK_QUERIES,
) -> list[Evaluation]:
    """Score every request on ``client``'s cluster; return evaluations in request order.

    One planning task per dump; as each plan arrives, its shards (``block_queries`` queries
    of one trial at most, grouped by trial and block) are submitted, so the cluster works on
    every dump at once. Warnings raised while planning are replayed here, dump by dump in
    request order just before that dump's aggregation (the in-process order).
    """
    distributed = import_distributed()
    plan_futures = {
        client.submit(_plan_on_worker, request, pure=False): index
        for index, request in enumerate(requests)
    }
    setups: dict[int, EvaluationSetup] = {}
    pools: dict[int, dict[int, Any]] = {}
    pending_warnings: dict[int, list[tuple[type[Warning], str]]] = {}
    batches: dict[int, list[tuple[list[Shard], Any]]] = {}
    try:
        for future in distributed.as_completed(plan_futures):
            index = plan_futures[future]
            setup, caught = future.result()
            pending_warnings[index] = caught
            request = requests[index]
            setups[index] = setup
            pools[index] = split_pools(setup.tasks)
            batches[index] = [
                (
                    shards,
                    client.submit(
                        _score_on_worker,
                        request,
                        restrict_tasks(setup.tasks, shards, pools[index]),
                        len(shards),
                        setup.context,
                        pure=False,
                    ),
                )
                for shards in group_shards(setup, make_shards(setup, block_queries), block_queries)
            ]
        evaluations = []
        for index in range(len(requests)):
            setup = setups[index]
            shards_all: list[Shard] = []
            scores_all: list[PlanScores] = []
            for shards, future in batches[index]:
                arrays = future.result()
                for shard, values in zip(shards, arrays, strict=True):
                    task = setup.tasks[shard.task]
                    piece = empty_scores(task, task.plans[shard.plan])
                    for name, value in values.items():
                        setattr(piece, name, value)
                    shards_all.append(shard)
                    scores_all.append(piece)
            merge_shards(setup, shards_all, scores_all)
            # the planning warnings, then aggregation's: the order in-process scoring gives
            for category, message in pending_warnings.pop(index):
                warnings.warn(message, category, stacklevel=2)
            evaluations.append(aggregate(setup))
        return evaluations
    finally:
        pending = list(plan_futures) + [f for b in batches.values() for _, f in b]
        client.cancel([f for f in pending if not f.done()])


def group_shards(
    setup: EvaluationSetup, shards: Sequence[Shard], block_queries: int
) -> list[list[Shard]]:
    """Group shards into Dask tasks: the shards of one split and query block share a task.

    A split's trials and settings mostly have the same queries (SYSU-MM01's trials sample
    galleries, not queries): one task computes those queries' distances once for all of
    them, as in-process scoring does. Trials held in separate splits (RegDB) and query blocks
    are separate tasks. Groups keep the shards' order.
    """
    groups: dict[tuple[int, int], list[Shard]] = {}
    for shard in shards:
        plan = setup.tasks[shard.task].plans[shard.plan]
        key = (plan.split, shard.start // block_queries)
        groups.setdefault(key, []).append(shard)
    return list(groups.values())


# --------------------------------------------------------------------------- on the workers

_SCORING_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def _cached_dump(
    path: str, feature_sets: tuple[str, ...], stamp: tuple[int, int], allow_external: bool
) -> FeatureDump:
    """A dump loaded once per worker process (keyed by size and mtime: a rewrite reloads)."""
    del stamp  # part of the cache key only
    return load_dump(path, feature_sets=list(feature_sets), allow_external=allow_external)


def _worker_dump(request: ScoreRequest) -> FeatureDump:
    try:
        info = os.stat(request.path)
        stamp = (info.st_size, info.st_mtime_ns)
    except OSError:
        stamp = (-1, -1)  # load_dump raises the one-line error
    return _cached_dump(
        request.path, tuple(request.feature_sets), stamp, request.allow_external
    )


def _plan_on_worker(
    request: ScoreRequest,
) -> tuple[EvaluationSetup, list[tuple[type[Warning], str]]]:
    """Phase (a) for one dump, on a worker; returns the setup and the warnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dump = _worker_dump(request)
        setup = plan_evaluation(dump, request.presets, **_options(request, dump))
    return setup, [(w.category, str(w.message)) for w in caught]


def _score_on_worker(
    request: ScoreRequest, restricted: list[Task], count: int, context: ScoringContext
) -> list[dict[str, Any]]:
    """Phase (b) for a group of shards, on a worker: their per-query arrays, in order.

    One scoring at a time per worker process: the Numba kernel is itself parallel, and its
    default threading layer must not be entered from several threads at once.
    """
    dump = _worker_dump(request)
    with _SCORING_LOCK:
        scores = score_restricted(
            dump,
            restricted,
            context,
            count=count,
            block_bytes=request.block_bytes,
            memory=request.memory,
        )
    return [
        {name: getattr(s, name) for name in ("first_rank", "ap", "inp", "n_pos", "n_gallery")}
        for s in scores
    ]
