"""Phase (a) of scoring: which (setting, variant, query modality, trial) work to do.

:func:`plan_evaluation` turns a dump and presets into an :class:`EvaluationSetup`: one
:class:`Task` per (preset, variant, query modality) with its trial plans, the rows of
settings that do not apply (status says why), and the :class:`ScoringContext` phase (b)
needs. Nothing here computes a distance; :mod:`vireid_bench.engine.scoring` does phase (b)
and aggregation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from vireid_bench.engine.distances import DISTANCES
from vireid_bench.engine.kernels import empty_query_scores
from vireid_bench.errors import DumpError, EmptyEvaluationError, ProtocolError
from vireid_bench.io.dump import MODALITY_CODES, MODALITY_NAMES, FeatureDump
from vireid_bench.io.recipe import DistanceRecipe, RecipeError, parse_recipe
from vireid_bench.protocol import PROTOCOL_VERSION, Preset
from vireid_bench.protocol.conventions import Convention, EvaluationPlan, get_convention
from vireid_bench.protocol.registry import check_dataset_name

RANKS = (1, 5, 10, 20)


METRICS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


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
class Task:
    preset: Preset
    variant: str
    query_modality: int
    cmc: str
    plans: list[EvaluationPlan]
    scores: list[PlanScores] = field(default_factory=list)


POLICY = "policy"
"""``--recipe policy``: score with ``cross_features`` / ``same_features`` even when the dump
has a ``distance_recipe``."""


def distance_recipe(
    dump: FeatureDump, features: str | None, recipe: str | DistanceRecipe | None
) -> DistanceRecipe | None:
    """The recipe to score with: ``--features`` (one set), else ``recipe`` (text,
    :data:`POLICY`, or parsed), else the dump's ``distance_recipe``; None means the v1
    policy.

    Raises:
        ProtocolError: ``features`` and ``recipe`` both given, or a malformed ``recipe``
            (one line, ``--recipe: PAIR: problem``).
    """
    if features is not None and recipe is not None:
        raise ProtocolError("--recipe: cannot be combined with --features (one set for every pair)")
    if features is not None:
        return None
    if recipe is None:
        return dump.distance_recipe
    if isinstance(recipe, DistanceRecipe):
        missing = [n for n in recipe.feature_sets if n not in dump.feature_dims]
        if missing:
            raise ProtocolError(
                f"--recipe: unknown feature set {missing[0]!r} "
                f"(available: {', '.join(dump.feature_dims)})"
            )
        return recipe
    if recipe.strip() == POLICY:
        return None
    try:
        return parse_recipe(recipe, list(dump.feature_dims))
    except RecipeError as exc:
        raise ProtocolError(f"--recipe: {exc}") from None


def recipe_feature_sets(recipe: str | DistanceRecipe | None) -> list[str]:
    """The feature sets a ``recipe`` option needs loaded (none for None / ``policy``).

    Raises:
        ProtocolError: a malformed recipe (``--recipe: PAIR: problem``).
    """
    if recipe is None:
        return []
    if isinstance(recipe, DistanceRecipe):
        return list(recipe.feature_sets)
    if recipe.strip() == POLICY:
        return []
    try:
        return list(parse_recipe(recipe).feature_sets)
    except RecipeError as exc:
        raise ProtocolError(f"--recipe: {exc}") from None


def feature_names(dump: FeatureDump, features: str | None) -> tuple[str, str]:
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
        source: the dump's file (as given to :func:`~vireid_bench.io.dump.load_dump`).
        cross_name, same_name: the feature sets for cross- and same-modality pairs (of
            the v1 policy; with a ``recipe`` they only label).
        distance: ``"cosine"`` or ``"euclidean"``.
        convention: the dataset convention (camera keys).
        recipe: the per-pair distance recipe; None means the v1 policy
            ``vv: same; ii: same; vi: cross`` (:attr:`pair_recipe`).
    """

    source: str
    cross_name: str
    same_name: str
    distance: str
    convention: Convention
    recipe: DistanceRecipe | None = None

    @property
    def pair_recipe(self) -> DistanceRecipe:
        """The recipe every backend applies
        (:func:`~vireid_bench.engine.distances.recipe_distances`)."""
        if self.recipe is not None:
            return self.recipe
        return DistanceRecipe.from_policy(self.cross_name, self.same_name)

    @property
    def feature_sets(self) -> list[str]:
        """The feature sets a worker has to load to score with this context."""
        return list(self.pair_recipe.feature_sets)


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
    tasks: list[Task]
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


def skipped_row(
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
    return result_row(base, preset, variant, modality, status, None)


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
    recipe: str | DistanceRecipe | None = None,
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
    # a misspelt dataset ('SYSU-MM01') must not fall back to the generic protocol
    try:
        dataset = check_dataset_name(dump.dataset)
    except ProtocolError as exc:
        raise ProtocolError(f"{dump.source}: {exc}") from exc
    convention = convention or get_convention(dataset)
    if dump.protocol_version not in (None, PROTOCOL_VERSION):
        warnings.warn(
            f"{os.path.basename(dump.source)}: dump built for protocol version "
            f"{dump.protocol_version}, scored with protocol version {PROTOCOL_VERSION}",
            stacklevel=3,
        )
    cross_name, same_name = feature_names(dump, features)
    chosen_recipe = distance_recipe(dump, features, recipe)
    wanted_modalities = None
    if query_modalities is not None:
        wanted_modalities = set(query_modalities)
        unknown = wanted_modalities - set(MODALITY_CODES)
        if unknown:
            raise ProtocolError(f"unknown query modality {sorted(unknown)[0]!r}")

    skipped: list[dict[str, object]] = []
    tasks: list[Task] = []
    base = {
        "dump": os.path.basename(dump.source),
        "dataset": dump.dataset,
        "model": dump.model,
        "features": (
            chosen_recipe.label
            if chosen_recipe is not None
            else cross_name if cross_name == same_name else f"{cross_name}/{same_name}"
        ),
        "distance": distance,
    }

    def skip(preset: Preset, variant: str, modality: int, status: str) -> None:
        skipped.append(skipped_row(dump.source, base, strict, preset, variant, modality, status))

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
                tasks.append(Task(preset, variant, modality, preset_cmc, plans))
    context = ScoringContext(
        dump.source, cross_name, same_name, distance, convention, chosen_recipe
    )
    return EvaluationSetup(tuple(presets), base, tasks, skipped, context, strict)


def split_jobs(
    tasks: Sequence[Task], split_index: int
) -> tuple[list[tuple[Task, EvaluationPlan]], np.ndarray, np.ndarray]:
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


def empty_scores(task: Task, plan: EvaluationPlan) -> PlanScores:
    """Per-query scores of a plan, filled in block by block (start: no true match)."""
    return PlanScores(
        protocol=task.preset.name,
        variant=task.variant,
        query_modality=MODALITY_NAMES[task.query_modality],
        plan=plan,
        **empty_query_scores(plan.query_idx.size),
    )


def gallery_modality_name(preset: Preset, query_modality: int) -> str:
    if preset.gallery_modality == "mixed":
        return "mixed"
    if preset.gallery_modality == "same":
        return MODALITY_NAMES[query_modality]
    return MODALITY_NAMES[1 - query_modality]


def _count(values: list[int]) -> int | float:
    mean = float(np.mean(values)) if values else 0.0
    return int(mean) if mean.is_integer() else mean


def result_row(
    base: dict[str, object],
    preset: Preset,
    variant: str,
    query_modality: int,
    status: str,
    task: Task | None,
) -> dict[str, object]:
    row: dict[str, object] = {
        **base,
        "protocol": preset.name,
        "variant": variant,
        "query_modality": MODALITY_NAMES[query_modality],
        "gallery_modality": gallery_modality_name(preset, query_modality),
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
