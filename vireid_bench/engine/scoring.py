"""Orchestration: distances in query blocks, every preset and trial, aggregation.

One distance computation serves a whole run: for each dump split, the distances between
every query of every plan and every pool image of every plan are computed once, block by
block of query rows (BLAS matmul, float32), and each block is handed to the kernel for every
(preset, variant, query modality, trial) plan that has queries in it.

Aggregation (docs/protocols.md): within a trial, CMC@k, mAP and mINP are means over the queries
with at least one true match in their gallery, as percentages; over trials, the mean and the
population standard deviation (``ddof=0``) of those per-trial values. ``queries`` and
``queries_without_match`` are per-trial counts (their mean over trials when trials differ).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from vireid_bench.engine import rerank_scoring
from vireid_bench.engine.distances import (
    DISTANCES,
    check_distances,
    checked_distance,
    distance_block,
    normalised,
    prepared_features,
    recipe_block,
    recipe_matrices,
    recipe_row_readers,
)
from vireid_bench.engine.fused import (
    FusedJob,
    FusedPool,
    fused_pool,
    label_groups,
    score_pool_jobs,
)
from vireid_bench.engine.interrupts import interrupts_restored
from vireid_bench.engine.kernels import score_queries
from vireid_bench.engine.plans import (
    METRICS,
    MIN_ROWS_PER_BLOCK,
    RANKS,
    RESULT_KEYS,
    Evaluation,
    EvaluationSetup,
    MemoryOptions,
    PlanScores,
    ScoringContext,
    Shard,
    Task,
    empty_scores,
    plan_evaluation,
    recipe_feature_sets,
    result_row,
    skipped_row,
    split_jobs,
)
from vireid_bench.engine.row_notes import annotate_row
from vireid_bench.engine.streaming import StreamJob, score_streamed
from vireid_bench.engine.torch_backend import resolve_device, score_tasks_torch
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import FeatureDump, declared_feature_bytes, load_dump
from vireid_bench.io.memory import parse_memory_limit
from vireid_bench.io.recipe import DistanceRecipe
from vireid_bench.protocol import Preset, resolve_presets
from vireid_bench.protocol.conventions import Convention, EvaluationPlan

__all__ = [
    "DISTANCES",
    "METRICS",
    "RANKS",
    "RESULT_KEYS",
    "Evaluation",
    "EvaluationSetup",
    "MemoryOptions",
    "PlanScores",
    "ScoringContext",
    "Shard",
    "aggregate",
    "distance_block",
    "evaluate",
    "make_shards",
    "merge_shards",
    "normalised",
    "plan_evaluation",
    "score",
    "score_tasks",
]

DEFAULT_BLOCK_BYTES = 256 * 1024**2
ProgressCallback = Callable[[int], None]


def score_tasks(
    dump: FeatureDump,
    tasks: list[Task],
    context: ScoringContext,
    *,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: ProgressCallback | None = None,
    memory: MemoryOptions | None = None,
) -> None:
    """Phase (b) of :func:`evaluate`: append each plan's :class:`PlanScores` to its task.

    Every split of ``dump`` is scored in turn; within a task, scores are appended in the
    order of its plans that share a split (the plans' order when they have one split).
    """
    with interrupts_restored():  # Ctrl-C inside a kernel: KeyboardInterrupt
        for split_index in range(len(dump.splits)):
            counted = SplitProgress(progress, dump.splits[split_index].n_images)
            _score_split(
                dump,
                split_index,
                tasks,
                context.pair_recipe,
                context.distance,
                context.convention,
                block_bytes,
                counted,
                memory,
            )
            counted.finish()


class SplitProgress:
    """A split's progress reports, topped up to its image count when the split is done.

    The scoring paths report query rows as they are scored; images that are no query
    count when their split is finished, so a run's reports add up to the dump's images
    (the total the command line's progress bar is given).
    """

    def __init__(self, progress: ProgressCallback | None, images: int) -> None:
        self.progress, self.images, self.done = progress, int(images), 0

    def __call__(self, rows: int) -> None:
        rows = min(int(rows), self.images - self.done)
        if self.progress is not None and rows > 0:
            self.done += rows
            self.progress(rows)

    def finish(self) -> None:
        self(self.images - self.done)


def make_shards(setup: EvaluationSetup, block_queries: int | None = None) -> list[Shard]:
    """Cut every plan of ``setup`` into query blocks of at most ``block_queries`` queries.

    ``None`` gives one shard per plan. The shards cover every query of every plan exactly
    once, in task, plan and query order.
    """
    if block_queries is not None and block_queries < 1:
        raise ValueError(f"block_queries must be at least 1, got {block_queries}")
    shards = []
    for t, task in enumerate(setup.tasks):
        for p, plan in enumerate(task.plans):
            n = int(plan.query_idx.size)
            step = n if block_queries is None else block_queries
            for start in range(0, n, max(step, 1)):
                shards.append(Shard(t, p, start, min(start + step, n)))
            if n == 0:
                shards.append(Shard(t, p, 0, 0))
    return shards


def split_pools(tasks: Sequence[Task]) -> dict[int, np.ndarray]:
    """Per split, the union of every plan's gallery pool (the columns in-process scoring uses)."""
    pools: dict[int, list[np.ndarray]] = {}
    for task in tasks:
        for plan in task.plans:
            pools.setdefault(plan.split, []).append(plan.pool_idx)
    return {split: np.unique(np.concatenate(arrays)) for split, arrays in pools.items()}


def restrict_tasks(
    tasks: Sequence[Task],
    shards: Sequence[Shard],
    pools: Mapping[int, np.ndarray] | None = None,
) -> list[Task]:
    """Return one task per shard whose only plan is the shard's plan with its queries sliced.

    Scoring the returned tasks (:func:`score_restricted`) scores exactly those queries,
    each against its plan's whole gallery pool. With ``pools`` (:func:`split_pools` of every
    task), one query-less task per split the shards touch is appended, whose pool is the
    split's whole pool: the distance blocks then have the same gallery columns as in-process
    scoring (BLAS results may depend on the matrix shape), so only the query rows per block
    differ, as they do in-process with another ``block_bytes``.
    """
    restricted = []
    for shard in shards:
        task = tasks[shard.task]
        plan = task.plans[shard.plan]
        sliced = replace(plan, query_idx=plan.query_idx[shard.start : shard.stop])
        restricted.append(Task(task.preset, task.variant, task.query_modality, task.cmc, [sliced]))
    if pools is not None:
        for split in sorted({tasks[s.task].plans[s.plan].split for s in shards}):
            task = tasks[shards[0].task]
            plan = EvaluationPlan(split, -1, np.empty(0, dtype=np.int64), pools[split])
            restricted.append(
                Task(task.preset, task.variant, task.query_modality, task.cmc, [plan])
            )
    return restricted


def score_restricted(
    dump: FeatureDump,
    restricted: list[Task],
    context: ScoringContext,
    *,
    count: int | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    memory: MemoryOptions | None = None,
) -> list[PlanScores]:
    """Score tasks from :func:`restrict_tasks`; return the first ``count`` tasks' scores.

    ``count`` is the number of shards (default: every task); the query-less pool tasks
    :func:`restrict_tasks` appends come after them and are not returned.
    """
    for task in restricted:
        task.scores.clear()
    score_tasks(dump, restricted, context, block_bytes=block_bytes, memory=memory)
    return [task.scores[0] for task in restricted[:count]]


def merge_shards(
    setup: EvaluationSetup, shards: Sequence[Shard], scores: Sequence[PlanScores]
) -> None:
    """Assemble per-shard scores into one :class:`PlanScores` per plan, in plan order.

    ``scores[i]`` are the scores of ``shards[i]`` (any order of shards). Each task's
    ``scores`` is replaced by its plans' scores, query arrays concatenated in query order,
    so that :func:`aggregate` gives what in-process scoring gives.

    Raises:
        ValueError: when the shards do not cover every query of every plan exactly once.
    """
    if len(shards) != len(scores):
        raise ValueError(f"{len(shards)} shard(s) but {len(scores)} result(s)")
    pieces: dict[tuple[int, int], list[tuple[Shard, PlanScores]]] = {}
    for shard, piece in zip(shards, scores, strict=True):
        if piece.first_rank.size != shard.stop - shard.start:
            raise ValueError(f"{shard}: {piece.first_rank.size} result(s) for its queries")
        pieces.setdefault((shard.task, shard.plan), []).append((shard, piece))
    arrays = ("first_rank", "ap", "inp", "n_pos", "n_gallery")
    for t, task in enumerate(setup.tasks):
        task.scores = []
        for p, plan in enumerate(task.plans):
            parts = sorted(pieces.get((t, p), []), key=lambda item: item[0].start)
            covered = 0
            for shard, _ in parts:
                if shard.start != covered:
                    raise ValueError(f"task {t} plan {p}: queries from {covered} not covered")
                covered = shard.stop
            if covered != plan.query_idx.size or not parts:
                raise ValueError(f"task {t} plan {p}: queries from {covered} not covered")
            merged = empty_scores(task, plan)
            for name in arrays:
                setattr(merged, name, np.concatenate([getattr(piece, name) for _, piece in parts]))
            task.scores.append(merged)


def aggregate(setup: EvaluationSetup) -> Evaluation:
    """Phase (c) of :func:`evaluate`: one row per setting from the tasks' scores.

    A task whose every query has an empty gallery or no true match becomes a skipped row
    (warning, or EmptyEvaluationError with ``strict``). Rows are ordered as the presets.
    """
    rows = list(setup.skipped)
    per_query: list[PlanScores] = []
    for task in setup.tasks:
        per_query.extend(task.scores)
        status = _task_status(task)
        if status != "ok":
            rows.append(
                skipped_row(
                    setup.context.source,
                    setup.base,
                    setup.strict,
                    task.preset,
                    task.variant,
                    task.query_modality,
                    status,
                )
            )
            continue
        row = result_row(setup.base, task.preset, task.variant, task.query_modality, "ok", task)
        convention = setup.context.convention
        annotate_row(row, task.scores, convention, task.preset, task.variant, task.query_modality)
        rows.append(row)
    rows.sort(key=lambda r: _row_order(setup.presets, r))
    return Evaluation(rows=rows, per_query=per_query)


def evaluate(
    dump: FeatureDump,
    presets: Sequence[Preset],
    *,
    features: str | None = None,
    distance: str = "cosine",
    cmc: str | None = None,
    trials: int | None = None,
    query_modalities: Iterable[str] | None = None,
    strict: bool = False,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    progress: ProgressCallback | None = None,
    convention: Convention | None = None,
    memory: MemoryOptions | None = None,
    rerank: str | None = None,
    rerank_params: Mapping[str, object] | None = None,
    query_modality: str | None = None,
    rerank_order: str = "exclusion-first",
    device: str | None = None,
    tf32: bool = False,
    recipe: object = None,
) -> Evaluation:
    """Score a loaded dump under the given presets.

    Three phases: :func:`plan_evaluation` (tasks and skipped rows), :func:`score_tasks`
    (per-query scores) and :func:`aggregate` (rows). :mod:`vireid_bench.engine.distributed` runs
    phase (b) as shards on a Dask cluster instead.

    Args:
        dump: a validated dump (:func:`vireid_bench.io.dump.load_dump`).
        presets: the settings to evaluate.
        features: one feature set for every pair (default: the dump's cross/same policy).
        distance: ``"cosine"`` (on L2-normalised features) or ``"euclidean"``.
        cmc: ``"image"`` or ``"identity"`` to override every preset's CMC convention.
        trials: evaluate only the first ``trials`` trials.
        query_modalities: restrict to these query modalities (names).
        query_modality: the command line's ``--query-modality``: ``"infrared"``,
            ``"visible"`` or ``"both"`` (the default); give it or ``query_modalities``.
        strict: raise instead of skipping a preset that is empty or not applicable
            (the CLI sets it when presets are named one by one).
        block_bytes: memory budget of one distance block.
        progress: called with a number of images done, after each block of queries
            (each query row counts once; the split's other images when it is done): the
            calls add up to the dump's image count, in every path (re-ranked included).
        convention: override the dataset convention (default: by ``dump.dataset``).
        memory: memory limit / forced streaming (:class:`MemoryOptions`); by default row
            blocks of ``block_bytes`` in memory, streamed when the features are lazy.

        rerank: ``"k-reciprocal"`` or ``"aim"`` to re-rank each query's gallery after
            exclusion (docs/rerank.md); the rows' ``distance`` then names the method and
            its parameters. Needs the features in memory (not lazy).
        rerank_params: ``k1``, ``k2`` (and ``lambda`` for k-reciprocal); missing ones take
            the method's defaults.
        rerank_order: ``"exclusion-first"`` (default: each query re-ranked against its
            gallery after exclusion) or ``"community"`` (against the whole sampled pool,
            excluded images removed afterwards, as SAAI's AIM and MPANet's k-reciprocal).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` to score with torch on that device
            (:mod:`vireid_bench.engine.torch_backend`; same per-query outputs); None (the
            default) scores with Numba. Needs torch and the features in memory.
        tf32: with a CUDA device, allow TF32 matmuls (faster, not exact float32).
        recipe: a per-pair distance recipe (text, e.g. ``"vv: z_f; ii: 0.7*z_r + z_e;
            vi: z_e"``, or a :class:`~vireid_bench.io.recipe.DistanceRecipe`) overriding
            the dump's ``distance_recipe``; ``"policy"`` scores with the dump's
            ``cross_features`` / ``same_features`` (docs/dump-format.md).

    Returns:
        The :class:`Evaluation`; skipped presets appear as rows with ``status`` saying why.

    Raises:
        EmptyEvaluationError: with ``strict``, when a preset has no query, an empty
            gallery, no query with a true match, or does not apply to the dump.
        DumpError: zero-norm features under cosine, unknown feature set.
    """
    with interrupts_restored():  # Ctrl-C inside a kernel: KeyboardInterrupt
        query_modalities = chosen_modalities(query_modality, query_modalities)
        rerank_scoring.check_order(rerank_order)
        if rerank_order != "exclusion-first" and not rerank:
            raise ProtocolError(f"rerank_order={rerank_order!r} needs rerank=")
        if device is not None:
            resolve_device(device)  # no torch, no CUDA: one line before any work
            if rerank:
                raise ProtocolError("--device: not available with --rerank yet")
        if rerank:
            rerank_params = rerank_scoring.validate(rerank, rerank_params, distance)
            if any(not isinstance(f, np.ndarray) for s in dump.splits for f in s.features.values()):
                raise ProtocolError(
                    f"{dump.source}: --rerank needs the features in memory; raise --memory-limit"
                )
        setup = plan_evaluation(
            dump,
            presets,
            features=features,
            distance=distance,
            cmc=cmc,
            trials=trials,
            query_modalities=query_modalities,
            strict=strict,
            convention=convention,
            recipe=recipe,
        )
        if rerank:
            context = setup.context
            for split_index in range(len(dump.splits)):
                counted = SplitProgress(progress, dump.splits[split_index].n_images)
                rerank_scoring.score_split_reranked(
                    dump,
                    split_index,
                    setup.tasks,
                    context.cross_name,
                    context.same_name,
                    context.distance,
                    context.convention,
                    block_bytes,
                    counted,
                    rerank,
                    rerank_params,
                    rerank_order,
                    recipe=context.recipe,
                )
                counted.finish()
            evaluation = aggregate(setup)
            rerank_scoring.label_rows(evaluation.rows, rerank, rerank_params, rerank_order)
            return evaluation
        if device is not None:
            for split_index in range(len(dump.splits)):
                counted = SplitProgress(progress, dump.splits[split_index].n_images)
                score_tasks_torch(
                    dump, setup.tasks, setup.context, device=device, tf32=tf32,
                    block_bytes=block_bytes, progress=counted, splits=[split_index],
                )  # fmt: skip
                counted.finish()
            return aggregate(setup)
        score_tasks(
            dump,
            setup.tasks,
            setup.context,
            block_bytes=block_bytes,
            progress=progress,
            memory=memory,
        )
        return aggregate(setup)


QUERY_MODALITY_CHOICES = ("infrared", "visible", "both")


def chosen_modalities(
    query_modality: str | None, query_modalities: Iterable[str] | None
) -> list[str] | None:
    """The query modalities of ``query_modality=`` (CLI spelling) or ``query_modalities=``.

    Raises:
        ProtocolError: both given, or a value other than infrared, visible, both.
    """
    if query_modality is None:
        return None if query_modalities is None else list(query_modalities)
    if query_modalities is not None:
        raise ProtocolError("give query_modality or query_modalities, not both")
    if query_modality not in QUERY_MODALITY_CHOICES:
        raise ProtocolError(
            f"unknown query modality {query_modality!r} "
            f"(valid: {', '.join(QUERY_MODALITY_CHOICES)})"
        )
    return None if query_modality == "both" else [query_modality]


def memory_options(
    memory_limit: int | str | None, memory: MemoryOptions | None
) -> MemoryOptions | None:
    """``memory`` with the limit ``memory_limit`` means (bytes, or ``"4G"``, ``"50%"``).

    Raises:
        VireidBenchError: a limit :func:`~vireid_bench.io.memory.parse_memory_limit`
            refuses (below 64 KiB, unreadable), or given both as a limit and in ``memory``.
    """
    if memory_limit is None:
        return memory
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, str)):
        raise ProtocolError(
            f"memory_limit: expected bytes (int) or a string like '4G' or '50%', "
            f"got {type(memory_limit).__name__}"
        )
    limit = parse_memory_limit(str(memory_limit))
    if memory is not None and memory.limit is not None:
        raise ProtocolError("give memory_limit or memory=MemoryOptions(limit=...), not both")
    return replace(memory or MemoryOptions(), limit=limit)


def _row_order(presets: Sequence[Preset], row: dict[str, object]) -> tuple[int, str, int]:
    names = [p.name for p in presets]
    modality_rank = 0 if row["query_modality"] == "infrared" else 1
    return names.index(str(row["protocol"])), str(row["variant"]), modality_rank


def _task_status(task: Task) -> str:
    if all(int(s.n_gallery.sum()) == 0 for s in task.scores):
        return "empty gallery for every query"
    if all(int((s.n_pos > 0).sum()) == 0 for s in task.scores):
        return "no query has a true match in its gallery"
    return "ok"


def _feature_bytes(split, names: set[str], rows: int | None = None) -> int:
    """Bytes of float32 features of ``names`` for ``rows`` images (default: the split)."""
    n = split.n_images if rows is None else rows
    return sum(4 * n * int(split.features[name].shape[1]) for name in names)


def _streamed_blocks(
    n_queries: int, n_pool: int, matrices: int, row_bytes: int, budget: int
) -> tuple[int, int]:
    """Choose (query_block, gallery_block) so one block step stays within ``budget`` bytes.

    One step holds ``q x g`` float32 distances per matrix and the features of ``q + g``
    rows (``row_bytes`` each). Query blocks are kept large (the gallery is re-read once per
    query block) unless that leaves gallery blocks of fewer than 2,048 columns.
    """
    def columns(q: int) -> int:
        return (budget - q * row_bytes) // (4 * matrices * q + row_bytes)

    q_block = max(1, min(n_queries, 4096))
    while q_block > 64 and columns(q_block) < min(2048, n_pool):
        q_block //= 2
    g_block = columns(q_block)
    if g_block < 1:
        raise ProtocolError(
            f"memory limit too small: {budget} bytes cannot hold one distance block "
            f"({q_block} queries x 1 gallery image); raise --memory-limit"
        )
    return q_block, int(min(g_block, n_pool))


def _score_split(
    dump: FeatureDump,
    split_index: int,
    tasks: list[Task],
    recipe: DistanceRecipe,
    distance: str,
    convention: Convention,
    block_bytes: int,
    progress: ProgressCallback | None,
    memory: MemoryOptions | None = None,
) -> None:
    """Compute the split's distances block by block and run every plan's kernel.

    In memory (row blocks of whole pool rows, :func:`~vireid_bench.engine.kernels.score_queries`)
    when the features are loaded and ``memory`` allows at least
    :data:`MIN_ROWS_PER_BLOCK` rows per block; otherwise streamed over gallery blocks
    (:func:`vireid_bench.engine.streaming.score_streamed`), with identical results.
    """
    memory = memory or MemoryOptions()
    split = dump.splits[split_index]
    jobs, query_union, pool_union = split_jobs(tasks, split_index)
    if not jobs:
        return
    if pool_union.size == 0:
        for task, plan in jobs:
            task.scores.append(empty_scores(task, plan))
        return
    names = set(recipe.feature_sets)
    matrices = recipe_matrices(recipe)
    lazy = any(not isinstance(split.features[name], np.ndarray) for name in names)
    row_bytes = _feature_bytes(split, names, rows=1)
    stream_blocks = None
    if memory.gallery_block is not None or memory.query_block is not None:
        stream_blocks = (
            memory.query_block or min(query_union.size, 4096),
            memory.gallery_block or pool_union.size,
        )
    elif lazy or memory.limit is not None:
        resident = 0 if lazy else _feature_bytes(split, names)
        # in memory: raw + normalised features + the gallery copy stay resident
        in_memory_resident = 3 * resident if distance == "cosine" else 2 * resident
        row_block_bytes = block_bytes
        if memory.limit is not None:
            row_block_bytes = min(block_bytes, memory.limit - in_memory_resident)
        rows = row_block_bytes // max(1, pool_union.size * 4 * matrices)
        if lazy or rows < min(MIN_ROWS_PER_BLOCK, query_union.size):
            limit = memory.limit if memory.limit is not None else block_bytes
            # 10 % headroom for what the block model does not count (label arrays, the
            # per-identity table, BLAS buffers)
            budget = int(0.9 * (limit - resident))
            stream_blocks = _streamed_blocks(
                query_union.size, pool_union.size, matrices, row_bytes, budget
            )
        else:
            block_bytes = row_block_bytes
    if stream_blocks is not None:
        _score_split_streamed(
            dump, split, split_index, jobs, query_union, pool_union, recipe,
            distance, convention, stream_blocks, progress,
        )
        return
    _score_split_in_memory(
        dump, split, jobs, query_union, pool_union, recipe, distance,
        convention, block_bytes, progress,
    )


def _score_split_streamed(
    dump: FeatureDump,
    split,
    split_index: int,
    jobs: list[tuple[Task, EvaluationPlan]],
    query_union: np.ndarray,
    pool_union: np.ndarray,
    recipe: DistanceRecipe,
    distance: str,
    convention: Convention,
    blocks: tuple[int, int],
    progress: ProgressCallback | None,
) -> None:
    """Score the split's plans over query blocks x gallery blocks (exact, bounded memory)."""
    camera_keys = {
        colocated: convention.camera_keys(split.cam, colocated) for colocated in (False, True)
    }
    stream_jobs = []
    for task, plan in jobs:
        scores = empty_scores(task, plan)
        task.scores.append(scores)
        stream_jobs.append(
            StreamJob(
                query_idx=plan.query_idx,
                pool_idx=plan.pool_idx,
                pid=split.pid,
                cam_keys=camera_keys[task.preset.colocated_cameras],
                modality=split.modality.astype(np.int64),
                clauses=task.preset.clause_codes(),
                identity_cmc=task.cmc == "identity",
                colocated=bool(task.preset.colocated_cameras),
                out={
                    key: getattr(scores, key)
                    for key in ("first_rank", "ap", "inp", "n_pos", "n_gallery")
                },
            )
        )
    readers = recipe_row_readers(dump.source, split, recipe, distance)
    label = ",".join(recipe.feature_sets)
    score_streamed(
        stream_jobs,
        query_union,
        pool_union,
        split.modality,
        split.pid,
        readers,
        recipe,
        distance,
        checked_distance(dump.source, label),
        query_block=blocks[0],
        gallery_block=blocks[1],
        progress=progress,
        check=lambda values: check_distances(values, dump.source, label),
        camera_keys=camera_keys,
    )


def _score_split_in_memory(
    dump: FeatureDump,
    split,
    jobs: list[tuple[Task, EvaluationPlan]],
    query_union: np.ndarray,
    pool_union: np.ndarray,
    recipe: DistanceRecipe,
    distance: str,
    convention: Convention,
    block_bytes: int,
    progress: ProgressCallback | None,
) -> None:
    """Score the split's plans in row blocks of whole pool rows."""
    names = recipe.feature_sets
    prepared_sets = dict(
        zip(
            names,
            prepared_features(
                dump.source, split, names, distance, np.union1d(query_union, pool_union)
            ),
            strict=True,
        )
    )
    gallery_sets = {n: np.ascontiguousarray(a[pool_union]) for n, a in prepared_sets.items()}
    gallery_sq = {
        n: np.einsum("ij,ij->i", g, g) if distance == "euclidean" else None
        for n, g in gallery_sets.items()
    }
    pool_modality = split.modality[pool_union]

    # Camera keys depend only on whether a preset merges co-located cameras.
    camera_keys = {
        colocated: convention.camera_keys(split.cam, colocated) for colocated in (False, True)
    }
    # Per job: each query's position in query_union and each pool image's column.
    prepared = []
    for task, plan in jobs:
        q_pos = np.searchsorted(query_union, plan.query_idx)
        g_cols = np.searchsorted(pool_union, plan.pool_idx).astype(np.int64)
        cam_keys = camera_keys[task.preset.colocated_cameras]
        scores = empty_scores(task, plan)
        task.scores.append(scores)
        prepared.append(
            (
                task,
                plan,
                scores,
                q_pos,
                g_cols,
                cam_keys,
                {
                    "g_uid": plan.pool_idx,
                    "g_pid": split.pid[plan.pool_idx],
                    "g_cam": cam_keys[plan.pool_idx],
                    "g_mod": split.modality[plan.pool_idx].astype(np.int64),
                },
                task.preset.clause_codes(),
            )
        )

    matrices = recipe_matrices(recipe)
    rows_per_block = max(1, int(block_bytes // max(1, pool_union.size * 4 * matrices)))
    groups = pool_groups(prepared)
    # labels and identities numbered once per split, each fused pool prepared once
    split_group, relation = label_groups(camera_keys[False], camera_keys[True], split.modality)
    ids, split_pid = np.unique(split.pid, return_inverse=True)
    split_pid = split_pid.reshape(-1)
    pools = {
        g: fused_pool(
            prepared[members[0]][4],
            prepared[members[0]][1].pool_idx,
            split_pid[prepared[members[0]][1].pool_idx],
            split_group[prepared[members[0]][1].pool_idx],
            relation,
            int(ids.size),
        )
        for g, (members, fused) in enumerate(groups)
        if fused
    }
    for start in range(0, query_union.size, rows_per_block):
        stop = min(start + rows_per_block, query_union.size)
        block_idx = query_union[start:stop]
        dist = recipe_block(
            recipe,
            {n: a[block_idx] for n, a in prepared_sets.items()},
            gallery_sets,
            split.modality[block_idx],
            pool_modality,
            distance,
            dump.source,
            gallery_sq,
        )
        for g, (members, fused) in enumerate(groups):
            if fused:
                _score_block_fused(
                    dist, start, stop, block_idx, pools[g], split_pid, split_group,
                    [prepared[k] for k in members],
                )  # fmt: skip
                continue
            task, plan, scores, q_pos, g_cols, cam_keys, gallery, clauses = prepared[members[0]]
            selected = np.flatnonzero((q_pos >= start) & (q_pos < stop))
            if selected.size == 0:
                continue
            query_idx = plan.query_idx[selected]
            out = score_queries(
                dist,
                q_rows=(q_pos[selected] - start).astype(np.int64),
                q_uid=query_idx,
                q_pid=split.pid[query_idx],
                q_cam=cam_keys[query_idx],
                q_mod=split.modality[query_idx].astype(np.int64),
                g_cols=g_cols,
                clauses=clauses,
                identity_cmc=task.cmc == "identity",
                **gallery,
            )
            for key, values in out.items():
                getattr(scores, key)[selected] = values
        if progress is not None:
            progress(stop - start)


def pool_groups(prepared: Sequence[tuple]) -> list[tuple[list[int], bool]]:
    """Group the prepared jobs whose plans share one pool (same images, same order).

    Returns (members, fused) pairs. Each group is scored by one fused pass per query row
    (:mod:`vireid_bench.engine.fused`, also the faster kernel for a single setting); a pool
    that holds an image twice keeps one job per group, scored by the single-setting kernel
    (:func:`~vireid_bench.engine.kernels.score_queries`).
    """
    groups: dict[bytes, list[int]] = {}
    single = []
    for k, item in enumerate(prepared):
        pool = item[1].pool_idx
        if np.unique(pool).size != pool.size:
            single.append(([k], False))
            continue
        groups.setdefault(np.asarray(pool, dtype=np.int64).tobytes(), []).append(k)
    return [(members, True) for members in groups.values()] + single


def _score_block_fused(
    dist: np.ndarray,
    start: int,
    stop: int,
    block_idx: np.ndarray,
    pool: FusedPool,
    split_pid: np.ndarray,
    split_group: np.ndarray,
    members: Sequence[tuple],
) -> None:
    """Score a block's queries of every job of one pool group in one fused pass.

    ``pool``: the group's prepared pool; ``split_pid`` / ``split_group``: every split
    image's dense identity and label group in the numbering ``pool`` was built with.
    """
    picked = [np.flatnonzero((member[3] >= start) & (member[3] < stop)) for member in members]
    rows = np.unique(np.concatenate([members[k][3][sel] for k, sel in enumerate(picked)]))
    if rows.size == 0:
        return
    rows_local = rows - start
    query_idx = block_idx[rows_local]
    jobs = [
        FusedJob(
            queries=np.searchsorted(rows, member[3][sel]),
            clauses=member[7],
            colocated=bool(member[0].preset.colocated_cameras),
            identity_cmc=member[0].cmc == "identity",
        )
        for member, sel in zip(members, picked, strict=True)
    ]
    outs = score_pool_jobs(
        dist,
        q_rows=rows_local.astype(np.int64),
        q_uid=query_idx,
        q_pid=split_pid[query_idx],
        q_group=split_group[query_idx],
        pool=pool,
        jobs=jobs,
    )
    for member, sel, out in zip(members, picked, outs, strict=True):
        for key, values in out.items():
            getattr(member[2], key)[sel] = values


def score(
    dump: str | os.PathLike | FeatureDump,
    protocols: str | Iterable[str] = "all",
    *,
    memory_limit: int | str | None = None,
    **options: object,
):
    """Score a feature dump; return one pandas DataFrame row per (protocol, query modality).

    Args:
        dump: a dump path or a loaded :class:`~vireid_bench.io.dump.FeatureDump`.
        protocols: ``"all"``, a preset name, a comma list, or an iterable of names.
        memory_limit: the command line's ``--memory-limit``: bytes (int) or a string
            (``"4G"``, ``"512MiB"``, ``"50%"`` of the memory available now). Default: no
            limit (features in memory, row blocks of ``block_bytes``). A dump whose
            features take more than half the limit is read lazily, as the command does.
        **options: passed to :func:`evaluate` (``features``, ``distance``, ``cmc``,
            ``trials``, ``query_modality`` or ``query_modalities``, ``strict``,
            ``block_bytes``, ``rerank``, ...).

    Returns:
        A DataFrame whose columns are :data:`RESULT_KEYS`; metric values in percent.
    """
    import pandas as pd

    memory = memory_options(memory_limit, options.pop("memory", None))  # type: ignore[arg-type]
    if isinstance(dump, FeatureDump):
        loaded = dump
    else:
        chosen = options.get("features")
        wanted = [chosen] if isinstance(chosen, str) else []
        wanted += recipe_feature_sets(options.get("recipe"))  # type: ignore[arg-type]
        lazy = (
            memory is not None
            and memory.limit is not None
            and not options.get("rerank")
            and declared_feature_bytes(dump, wanted) > memory.limit // 2
        )
        loaded = load_dump(dump, feature_sets=wanted, lazy=lazy)
    evaluation = evaluate(loaded, resolve_presets(protocols), memory=memory, **options)
    return pd.DataFrame(evaluation.rows, columns=list(RESULT_KEYS))
