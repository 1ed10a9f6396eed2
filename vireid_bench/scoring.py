"""Orchestration: distances in query blocks, every preset and trial, aggregation.

One distance computation serves a whole run: for each dump split, the distances between
every query of every plan and every pool image of every plan are computed once, block by
block of query rows (BLAS matmul, float32), and each block is handed to the kernel for every
(preset, variant, query modality, trial) plan that has queries in it.

Aggregation (PROTOCOLS.md): within a trial, CMC@k, mAP and mINP are means over the queries
with at least one true match in their gallery, as percentages; over trials, the mean and the
population standard deviation (``ddof=0``) of those per-trial values. ``queries`` and
``queries_without_match`` are per-trial counts (their mean over trials when trials differ).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from vireid_bench.dump import MODALITY_CODES, MODALITY_NAMES, FeatureDump, load_dump
from vireid_bench.errors import DumpError, EmptyEvaluationError, ProtocolError
from vireid_bench.gallery import Convention, EvaluationPlan, get_convention
from vireid_bench.kernels import empty_query_scores, score_queries
from vireid_bench.protocol import PROTOCOL_VERSION, Preset, resolve_presets

RANKS = (1, 5, 10, 20)
METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")
DISTANCES = ("cosine", "euclidean")
DEFAULT_BLOCK_BYTES = 256 * 1024**2
ProgressCallback = Callable[[int], None]


@dataclass
class PlanScores:
    """Per-query scores of one evaluation plan (one trial of one setting).

    Attributes:
        protocol, variant, query_modality: what was evaluated.
        plan: the plan (trial, split, query and pool indices).
        first_rank, ap, inp, n_pos, n_gallery: the kernel's per-query outputs, in the
            order of ``plan.query_idx``.
    """

    protocol: str
    variant: str
    query_modality: str
    plan: EvaluationPlan
    first_rank: np.ndarray = field(repr=False)
    ap: np.ndarray = field(repr=False)
    inp: np.ndarray = field(repr=False)
    n_pos: np.ndarray = field(repr=False)
    n_gallery: np.ndarray = field(repr=False)

    def trial_metrics(self) -> dict[str, float]:
        """Return this trial's metrics in percent (NaN when no query has a true match)."""
        valid = self.n_pos > 0
        if not valid.any():
            return dict.fromkeys(METRICS, float("nan"))
        ranks = self.first_rank[valid]
        values = {f"rank{k}": 100.0 * float(np.mean(ranks <= k)) for k in RANKS}
        values["mAP"] = 100.0 * float(np.mean(self.ap[valid]))
        values["mINP"] = 100.0 * float(np.mean(self.inp[valid]))
        return values


@dataclass
class Evaluation:
    """Everything one scoring run produced.

    Attributes:
        rows: one dict per (protocol, variant, query modality); see :data:`RESULT_KEYS`.
        per_query: the per-query scores behind the rows, for statistics and plots.
    """

    rows: list[dict[str, object]]
    per_query: list[PlanScores]


RESULT_KEYS = (
    "dump",
    "dataset",
    "model",
    "protocol",
    "variant",
    "query_modality",
    "gallery_modality",
    "status",
    "features",
    "distance",
    "cmc",
    "trials",
    "queries",
    "queries_without_match",
    *METRICS,
    *(f"{m}_std" for m in METRICS),
)


@dataclass
class _Task:
    preset: Preset
    variant: str
    query_modality: int
    cmc: str
    plans: list[EvaluationPlan]
    scores: list[PlanScores] = field(default_factory=list)


def normalised(
    source: str,
    name: str,
    features: np.ndarray,
    rows: np.ndarray,
    row_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``features`` L2-normalised (float32); only ``rows`` are checked for zero norm.

    Raises:
        DumpError: naming ``source`` and ``features/<name>`` and the first zero-norm row
            (its label from ``row_labels`` when given: the split row of a read block).
    """
    norms = np.linalg.norm(features, axis=1)
    zero = norms[rows] == 0
    if zero.any():
        first = int(rows[np.flatnonzero(zero)[0]])
        if row_labels is not None:
            first = int(row_labels[first])
        raise DumpError(
            source,
            f"features/{name}",
            f"{int(zero.sum())} zero-norm row(s) (first at row {first}); cosine distance "
            "is undefined (use --distance euclidean or fix the features)",
        )
    safe = np.where(norms == 0, 1.0, norms).astype(np.float32)
    return features / safe[:, None]


def distance_block(
    query: np.ndarray, gallery: np.ndarray, distance: str, gallery_sq: np.ndarray | None
) -> np.ndarray:
    """Return float32 [len(query), len(gallery)] distances (cosine or Euclidean).

    Cosine: ``1 - q.g`` on rows the caller normalised (:func:`normalised`). Euclidean:
    ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))`` with ``gallery_sq`` the gallery's squared norms.
    """
    product = query @ gallery.T
    if distance == "cosine":
        np.subtract(np.float32(1.0), product, out=product)
        return product
    query_sq = np.einsum("ij,ij->i", query, query)
    product *= -2.0
    product += query_sq[:, None]
    product += gallery_sq[None, :]
    np.maximum(product, 0.0, out=product)
    np.sqrt(product, out=product)
    return product


def _feature_names(dump: FeatureDump, features: str | None) -> tuple[str, str]:
    if features is None:
        return dump.cross_features, dump.same_features
    if features not in dump.feature_dims:
        raise DumpError(
            dump.source,
            "features",
            f"no feature set {features!r} (available: {list(dump.feature_dims)})",
        )
    return features, features


@dataclass(frozen=True)
class MemoryOptions:
    """How much memory scoring may use, and whether to stream over gallery blocks.

    Attributes:
        limit: bytes the scorer may hold for features, distance blocks and state; None
            means no limit (row blocks of ``block_bytes``, the in-memory path).
        gallery_block, query_block: force the streamed path with these block sizes
            (columns, rows); None lets ``limit`` decide.
    """

    limit: int | None = None
    gallery_block: int | None = None
    query_block: int | None = None


MIN_ROWS_PER_BLOCK = 32
"""The in-memory path needs at least this many whole pool rows per block (one kernel chunk);
below that the split is streamed over gallery blocks."""


@dataclass(frozen=True)
class ScoringContext:
    """What phase (b) needs besides the dump and the tasks (picklable, no features).

    Attributes:
        source: the dump's file (as given to :func:`~vireid_bench.dump.load_dump`).
        cross_name, same_name: the feature sets for cross- and same-modality pairs.
        distance: ``"cosine"`` or ``"euclidean"``.
        convention: the dataset convention (camera keys).
    """

    source: str
    cross_name: str
    same_name: str
    distance: str
    convention: Convention

    @property
    def feature_sets(self) -> list[str]:
        """The feature sets a worker has to load to score with this context."""
        return list(dict.fromkeys((self.cross_name, self.same_name)))


@dataclass
class EvaluationSetup:
    """Phase (a) of :func:`evaluate`: the work to do and the rows already decided.

    Attributes:
        presets: the presets as requested (they order the rows).
        base: the fields every row of this dump shares (dump, dataset, model...).
        tasks: one per (preset, variant, query modality) to score; ``scores`` empty until
            phase (b) fills them (:func:`score_tasks` or :func:`merge_shards`).
        skipped: rows of settings skipped while planning (status says why).
        context: what scoring needs besides the dump.
        strict: raise instead of skipping (see :func:`evaluate`).
    """

    presets: tuple[Preset, ...]
    base: dict[str, object]
    tasks: list[_Task]
    skipped: list[dict[str, object]]
    context: ScoringContext
    strict: bool


@dataclass(frozen=True)
class Shard:
    """One unit of scoring work: queries ``[start, stop)`` of one plan of one task.

    ``task`` indexes :attr:`EvaluationSetup.tasks`, ``plan`` that task's ``plans``;
    ``start``/``stop`` are positions in the plan's ``query_idx`` (not image indices).
    """

    task: int
    plan: int
    start: int
    stop: int


def _skip(
    setup_source: str,
    base: dict[str, object],
    strict: bool,
    preset: Preset,
    variant: str,
    modality: int,
    status: str,
) -> dict[str, object]:
    """Raise (strict) or warn about a skipped setting; return its row."""
    if strict:
        raise EmptyEvaluationError(
            f"{setup_source}: protocol {preset.name!r} ({MODALITY_NAMES[modality]} query): "
            f"{status}"
        )
    warnings.warn(
        f"{os.path.basename(setup_source)}: {preset.name} "
        f"({MODALITY_NAMES[modality]} query): {status}; skipped",
        stacklevel=4,
    )
    return _row(base, preset, variant, modality, status, None)


def plan_evaluation(
    dump: FeatureDump,
    presets: Sequence[Preset],
    *,
    features: str | None = None,
    distance: str = "cosine",
    cmc: str | None = None,
    trials: int | None = None,
    query_modalities: Iterable[str] | None = None,
    strict: bool = False,
    convention: Convention | None = None,
) -> EvaluationSetup:
    """Phase (a) of :func:`evaluate`: validate the options and build the tasks.

    Touches no feature values. Settings that do not apply or have no query become
    ``skipped`` rows (with a warning), or raise with ``strict``; the arguments mean what
    they mean for :func:`evaluate`.
    """
    if distance not in DISTANCES:
        raise ProtocolError(f"unknown distance {distance!r} (valid: {', '.join(DISTANCES)})")
    if cmc is not None and cmc not in ("image", "identity"):
        raise ProtocolError(f"unknown CMC convention {cmc!r} (valid: image, identity)")
    convention = convention or get_convention(dump.dataset)
    if dump.protocol_version not in (None, PROTOCOL_VERSION):
        warnings.warn(
            f"{os.path.basename(dump.source)}: dump built for protocol version "
            f"{dump.protocol_version}, scored with protocol version {PROTOCOL_VERSION}",
            stacklevel=3,
        )
    cross_name, same_name = _feature_names(dump, features)
    wanted_modalities = None
    if query_modalities is not None:
        wanted_modalities = set(query_modalities)
        unknown = wanted_modalities - set(MODALITY_CODES)
        if unknown:
            raise ProtocolError(f"unknown query modality {sorted(unknown)[0]!r}")

    skipped: list[dict[str, object]] = []
    tasks: list[_Task] = []
    base = {
        "dump": os.path.basename(dump.source),
        "dataset": dump.dataset,
        "model": dump.model,
        "features": cross_name if cross_name == same_name else f"{cross_name}/{same_name}",
        "distance": distance,
    }

    def skip(preset: Preset, variant: str, modality: int, status: str) -> None:
        skipped.append(_skip(dump.source, base, strict, preset, variant, modality, status))

    for preset in presets:
        # the setting as the dataset's community code applies it (same name, maybe other rule)
        preset = convention.adapt_preset(preset)
        preset_cmc = cmc or (convention.default_cmc if preset.cmc == "dataset" else preset.cmc)
        for variant in convention.variants(preset):
            for modality_name in preset.query_modalities:
                if wanted_modalities is not None and modality_name not in wanted_modalities:
                    continue
                modality = MODALITY_CODES[modality_name]
                reason = convention.not_applicable(dump, preset, modality)
                if reason is not None:
                    skip(preset, variant, modality, f"not applicable: {reason}")
                    continue
                plans = convention.plans(dump, preset, variant, modality, trials)
                if not plans or all(p.query_idx.size == 0 for p in plans):
                    skip(preset, variant, modality, f"no {modality_name} query in the dump")
                    continue
                tasks.append(_Task(preset, variant, modality, preset_cmc, plans))
    context = ScoringContext(dump.source, cross_name, same_name, distance, convention)
    return EvaluationSetup(tuple(presets), base, tasks, skipped, context, strict)


def score_tasks(
    dump: FeatureDump,
    tasks: list[_Task],
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
    for split_index in range(len(dump.splits)):
        _score_split(
            dump,
            split_index,
            tasks,
            context.cross_name,
            context.same_name,
            context.distance,
            context.convention,
            block_bytes,
            progress,
            memory,
        )


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


def split_pools(tasks: Sequence[_Task]) -> dict[int, np.ndarray]:
    """Per split, the union of every plan's gallery pool (the columns in-process scoring uses)."""
    pools: dict[int, list[np.ndarray]] = {}
    for task in tasks:
        for plan in task.plans:
            pools.setdefault(plan.split, []).append(plan.pool_idx)
    return {split: np.unique(np.concatenate(arrays)) for split, arrays in pools.items()}


def restrict_tasks(
    tasks: Sequence[_Task],
    shards: Sequence[Shard],
    pools: Mapping[int, np.ndarray] | None = None,
) -> list[_Task]:
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
        restricted.append(_Task(task.preset, task.variant, task.query_modality, task.cmc, [sliced]))
    if pools is not None:
        for split in sorted({tasks[s.task].plans[s.plan].split for s in shards}):
            task = tasks[shards[0].task]
            plan = EvaluationPlan(split, -1, np.empty(0, dtype=np.int64), pools[split])
            restricted.append(
                _Task(task.preset, task.variant, task.query_modality, task.cmc, [plan])
            )
    return restricted


def score_restricted(
    dump: FeatureDump,
    restricted: list[_Task],
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
            merged = _empty_scores(task, plan)
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
                _skip(
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
        rows.append(_row(setup.base, task.preset, task.variant, task.query_modality, "ok", task))
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
) -> Evaluation:
    """Score a loaded dump under the given presets.

    Three phases: :func:`plan_evaluation` (tasks and skipped rows), :func:`score_tasks`
    (per-query scores) and :func:`aggregate` (rows). :mod:`vireid_bench.distributed` runs
    phase (b) as shards on a Dask cluster instead.

    Args:
        dump: a validated dump (:func:`vireid_bench.dump.load_dump`).
        presets: the settings to evaluate.
        features: one feature set for every pair (default: the dump's cross/same policy).
        distance: ``"cosine"`` (on L2-normalised features) or ``"euclidean"``.
        cmc: ``"image"`` or ``"identity"`` to override every preset's CMC convention.
        trials: evaluate only the first ``trials`` trials.
        query_modalities: restrict to these query modalities (names).
        strict: raise instead of skipping a preset that is empty or not applicable
            (the CLI sets it when presets are named one by one).
        block_bytes: memory budget of one distance block.
        progress: called with the number of query rows done after each block.
        convention: override the dataset convention (default: by ``dump.dataset``).
        memory: memory limit / forced streaming (:class:`MemoryOptions`); by default row
            blocks of ``block_bytes`` in memory, streamed when the features are lazy.

        rerank: ``"k-reciprocal"`` or ``"aim"`` to re-rank each query's gallery after
            exclusion (docs/rerank.md); the rows' ``distance`` then names the method and
            its parameters. Needs the features in memory (not lazy).
        rerank_params: ``k1``, ``k2`` (and ``lambda`` for k-reciprocal); missing ones take
            the method's defaults.

    Returns:
        The :class:`Evaluation`; skipped presets appear as rows with ``status`` saying why.

    Raises:
        EmptyEvaluationError: with ``strict``, when a preset has no query, an empty
            gallery, no query with a true match, or does not apply to the dump.
        DumpError: zero-norm features under cosine, unknown feature set.
    """
    if rerank:
        from vireid_bench import rerank_scoring

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
    )
    if rerank:
        context = setup.context
        for split_index in range(len(dump.splits)):
            rerank_scoring.score_split_reranked(
                dump,
                split_index,
                setup.tasks,
                context.cross_name,
                context.same_name,
                context.distance,
                context.convention,
                block_bytes,
                progress,
                rerank,
                rerank_params,
            )
        evaluation = aggregate(setup)
        rerank_scoring.label_rows(evaluation.rows, rerank, rerank_params)
        return evaluation
    score_tasks(
        dump,
        setup.tasks,
        setup.context,
        block_bytes=block_bytes,
        progress=progress,
        memory=memory,
    )
    return aggregate(setup)


def _row_order(presets: Sequence[Preset], row: dict[str, object]) -> tuple[int, str, int]:
    names = [p.name for p in presets]
    modality_rank = 0 if row["query_modality"] == "infrared" else 1
    return names.index(str(row["protocol"])), str(row["variant"]), modality_rank


def _task_status(task: _Task) -> str:
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


def _row_reader(
    source: str, name: str, features, distance: str
) -> Callable[[np.ndarray], np.ndarray]:
    """Return a reader of (normalised for cosine) float32 rows for sorted split indices."""

    def read(rows: np.ndarray) -> np.ndarray:
        lazy = not isinstance(features, np.ndarray)
        # a fresh float32 copy either way (a file read, or fancy indexing)
        block = features.read_rows(rows) if lazy else features[rows]
        if distance == "cosine":
            norms = np.linalg.norm(block, axis=1)
            if not norms.all():
                # the same one-line error as the in-memory path, naming the split row
                normalised(source, name, block, np.arange(rows.size), row_labels=rows)
            block /= norms[:, None]  # in place: no second copy of the block
        return np.ascontiguousarray(block, dtype=np.float32)

    return read


def split_jobs(
    tasks: Sequence[_Task], split_index: int
) -> tuple[list[tuple[_Task, EvaluationPlan]], np.ndarray, np.ndarray]:
    """Return the (task, plan) pairs of one split and the union of their queries and pools.

    The unions are sorted unique split indices (empty arrays when there is no job).
    """
    jobs = [(task, plan) for task in tasks for plan in task.plans if plan.split == split_index]
    if not jobs:
        empty = np.empty(0, dtype=np.int64)
        return jobs, empty, empty
    query_union = np.unique(np.concatenate([plan.query_idx for _, plan in jobs]))
    pool_union = np.unique(np.concatenate([plan.pool_idx for _, plan in jobs]))
    return jobs, query_union, pool_union


def prepared_features(
    source: str, split, names: tuple[str, str], distance: str, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the (cross, same) feature arrays, L2-normalised for cosine (``rows`` checked).

    ``same`` is ``cross`` itself when both names are the same set.
    """

    def prepare(name: str) -> np.ndarray:
        array = split.features[name]
        if distance == "cosine":
            array = normalised(source, name, array, rows)
        return array

    cross = prepare(names[0])
    return cross, cross if names[1] == names[0] else prepare(names[1])


def _score_split(
    dump: FeatureDump,
    split_index: int,
    tasks: list[_Task],
    cross_name: str,
    same_name: str,
    distance: str,
    convention: Convention,
    block_bytes: int,
    progress: ProgressCallback | None,
    memory: MemoryOptions | None = None,
) -> None:
    """Compute the split's distances block by block and run every plan's kernel.

    In memory (row blocks of whole pool rows, :func:`~vireid_bench.kernels.score_queries`)
    when the features are loaded and ``memory`` allows at least
    :data:`MIN_ROWS_PER_BLOCK` rows per block; otherwise streamed over gallery blocks
    (:func:`vireid_bench.streaming.score_streamed`), with identical results.
    """
    memory = memory or MemoryOptions()
    split = dump.splits[split_index]
    jobs, query_union, pool_union = split_jobs(tasks, split_index)
    if not jobs:
        return
    if pool_union.size == 0:
        for task, plan in jobs:
            task.scores.append(_empty_scores(task, plan))
        return
    names = {cross_name, same_name}
    matrices = 1 if same_name == cross_name else 3
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
            dump, split, split_index, jobs, query_union, pool_union, cross_name, same_name,
            distance, convention, stream_blocks, progress,
        )
        return
    _score_split_in_memory(
        dump, split, jobs, query_union, pool_union, cross_name, same_name, distance,
        convention, block_bytes, progress,
    )


def _score_split_streamed(
    dump: FeatureDump,
    split,
    split_index: int,
    jobs: list[tuple[_Task, EvaluationPlan]],
    query_union: np.ndarray,
    pool_union: np.ndarray,
    cross_name: str,
    same_name: str,
    distance: str,
    convention: Convention,
    blocks: tuple[int, int],
    progress: ProgressCallback | None,
) -> None:
    """Score the split's plans over query blocks x gallery blocks (exact, bounded memory)."""
    from vireid_bench.streaming import StreamJob, score_streamed

    camera_keys = {
        colocated: convention.camera_keys(split.cam, colocated) for colocated in (False, True)
    }
    stream_jobs = []
    for task, plan in jobs:
        scores = _empty_scores(task, plan)
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
                out={
                    key: getattr(scores, key)
                    for key in ("first_rank", "ap", "inp", "n_pos", "n_gallery")
                },
            )
        )
    read_cross = _row_reader(dump.source, cross_name, split.features[cross_name], distance)
    read_same = None
    if same_name != cross_name:
        read_same = _row_reader(dump.source, same_name, split.features[same_name], distance)
    score_streamed(
        stream_jobs,
        query_union,
        pool_union,
        split.modality,
        split.pid,
        read_cross,
        read_same,
        distance,
        distance_block,
        query_block=blocks[0],
        gallery_block=blocks[1],
        progress=progress,
    )


def _score_split_in_memory(
    dump: FeatureDump,
    split,
    jobs: list[tuple[_Task, EvaluationPlan]],
    query_union: np.ndarray,
    pool_union: np.ndarray,
    cross_name: str,
    same_name: str,
    distance: str,
    convention: Convention,
    block_bytes: int,
    progress: ProgressCallback | None,
) -> None:
    """Score the split's plans in row blocks of whole pool rows."""
    cross, same = prepared_features(
        dump.source,
        split,
        (cross_name, same_name),
        distance,
        np.union1d(query_union, pool_union),
    )
    gallery_cross = np.ascontiguousarray(cross[pool_union])
    gallery_same = gallery_cross if same is cross else np.ascontiguousarray(same[pool_union])
    sq_cross = sq_same = None
    if distance == "euclidean":
        sq_cross = np.einsum("ij,ij->i", gallery_cross, gallery_cross)
        sq_same = sq_cross if same is cross else np.einsum("ij,ij->i", gallery_same, gallery_same)
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
        scores = _empty_scores(task, plan)
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

    matrices = 1 if same is cross else 3
    rows_per_block = max(1, int(block_bytes // max(1, pool_union.size * 4 * matrices)))
    for start in range(0, query_union.size, rows_per_block):
        stop = min(start + rows_per_block, query_union.size)
        block_idx = query_union[start:stop]
        dist = distance_block(cross[block_idx], gallery_cross, distance, sq_cross)
        if same is not cross:
            dist_same = distance_block(same[block_idx], gallery_same, distance, sq_same)
            same_modality = split.modality[block_idx][:, None] == pool_modality[None, :]
            np.copyto(dist, dist_same, where=same_modality)
            del dist_same, same_modality
        for task, plan, scores, q_pos, g_cols, cam_keys, gallery, clauses in prepared:
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


def _empty_scores(task: _Task, plan: EvaluationPlan) -> PlanScores:
    """Per-query scores of a plan, filled in block by block (start: no true match)."""
    return PlanScores(
        protocol=task.preset.name,
        variant=task.variant,
        query_modality=MODALITY_NAMES[task.query_modality],
        plan=plan,
        **empty_query_scores(plan.query_idx.size),
    )


def _gallery_modality(preset: Preset, query_modality: int) -> str:
    if preset.gallery_modality == "mixed":
        return "mixed"
    if preset.gallery_modality == "same":
        return MODALITY_NAMES[query_modality]
    return MODALITY_NAMES[1 - query_modality]


def _count(values: list[int]) -> int | float:
    mean = float(np.mean(values)) if values else 0.0
    return int(mean) if mean.is_integer() else mean


def _row(
    base: dict[str, object],
    preset: Preset,
    variant: str,
    query_modality: int,
    status: str,
    task: _Task | None,
) -> dict[str, object]:
    row: dict[str, object] = {
        **base,
        "protocol": preset.name,
        "variant": variant,
        "query_modality": MODALITY_NAMES[query_modality],
        "gallery_modality": _gallery_modality(preset, query_modality),
        "status": status,
        "cmc": task.cmc if task is not None else "",
    }
    if task is None:
        row.update({"trials": 0, "queries": 0, "queries_without_match": 0})
        row.update(dict.fromkeys(METRICS, float("nan")))
        row.update({f"{m}_std": float("nan") for m in METRICS})
        return {key: row[key] for key in RESULT_KEYS}
    per_trial = [s.trial_metrics() for s in task.scores]
    row["trials"] = len(task.scores)
    row["queries"] = _count([s.plan.query_idx.size for s in task.scores])
    row["queries_without_match"] = _count([int((s.n_pos == 0).sum()) for s in task.scores])
    for metric in METRICS:
        values = np.array([t[metric] for t in per_trial], dtype=np.float64)
        values = values[~np.isnan(values)]
        row[metric] = float(values.mean())
        row[f"{metric}_std"] = float(values.std())
    return {key: row[key] for key in RESULT_KEYS}


def score(
    dump: str | os.PathLike | FeatureDump,
    protocols: str | Iterable[str] = "all",
    **options: object,
):
    """Score a feature dump; return one pandas DataFrame row per (protocol, query modality).

    Args:
        dump: a dump path or a loaded :class:`~vireid_bench.dump.FeatureDump`.
        protocols: ``"all"``, a preset name, a comma list, or an iterable of names.
        **options: passed to :func:`evaluate` (``features``, ``distance``, ``cmc``,
            ``trials``, ``query_modalities``, ``strict``, ``block_bytes``).

    Returns:
        A DataFrame whose columns are :data:`RESULT_KEYS`; metric values in percent.
    """
    import pandas as pd

    if isinstance(dump, FeatureDump):
        loaded = dump
    else:
        chosen = options.get("features")
        loaded = load_dump(dump, feature_sets=[chosen] if isinstance(chosen, str) else [])
    evaluation = evaluate(loaded, resolve_presets(protocols), **options)
    return pd.DataFrame(evaluation.rows, columns=list(RESULT_KEYS))
