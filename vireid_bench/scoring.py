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
from dataclasses import dataclass, field

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


def _normalised(source: str, name: str, features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """L2-normalise ``features`` (only ``rows`` are checked for zero norm)."""
    norms = np.linalg.norm(features, axis=1)
    zero = norms[rows] == 0
    if zero.any():
        first = int(rows[np.flatnonzero(zero)[0]])
        raise DumpError(
            source,
            f"features/{name}",
            f"{int(zero.sum())} zero-norm row(s) (first at row {first}); cosine distance "
            "is undefined (use --distance euclidean or fix the features)",
        )
    safe = np.where(norms == 0, 1.0, norms).astype(np.float32)
    return features / safe[:, None]


def _distance_block(
    query: np.ndarray, gallery: np.ndarray, distance: str, gallery_sq: np.ndarray | None
) -> np.ndarray:
    """Return float32 [len(query), len(gallery)] distances (cosine or Euclidean)."""
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


# Public names for the re-ranking scorer (vireid_bench.rerank_scoring).
normalised = _normalised
distance_block = _distance_block


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
    rerank: str | None = None,
    rerank_params: Mapping[str, object] | None = None,
) -> Evaluation:
    """Score a loaded dump under the given presets.

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
        rerank: ``"k-reciprocal"`` or ``"aim"`` to re-rank each query's gallery after
            exclusion (docs/rerank.md); the rows' ``distance`` then names the method and
            its parameters.
        rerank_params: ``k1``, ``k2`` (and ``lambda`` for k-reciprocal); missing ones take
            the method's defaults.

    Returns:
        The :class:`Evaluation`; skipped presets appear as rows with ``status`` saying why.

    Raises:
        EmptyEvaluationError: with ``strict``, when a preset has no query, an empty
            gallery, no query with a true match, or does not apply to the dump.
        DumpError: zero-norm features under cosine, unknown feature set.
    """
    if distance not in DISTANCES:
        raise ProtocolError(f"unknown distance {distance!r} (valid: {', '.join(DISTANCES)})")
    if cmc is not None and cmc not in ("image", "identity"):
        raise ProtocolError(f"unknown CMC convention {cmc!r} (valid: image, identity)")
    if rerank:
        from vireid_bench import rerank_scoring

        rerank_params = rerank_scoring.validate(rerank, rerank_params, distance)
    convention = convention or get_convention(dump.dataset)
    if dump.protocol_version not in (None, PROTOCOL_VERSION):
        warnings.warn(
            f"{os.path.basename(dump.source)}: dump built for protocol version "
            f"{dump.protocol_version}, scored with protocol version {PROTOCOL_VERSION}",
            stacklevel=2,
        )
    cross_name, same_name = _feature_names(dump, features)
    wanted_modalities = None
    if query_modalities is not None:
        wanted_modalities = set(query_modalities)
        unknown = wanted_modalities - set(MODALITY_CODES)
        if unknown:
            raise ProtocolError(f"unknown query modality {sorted(unknown)[0]!r}")

    rows: list[dict[str, object]] = []
    tasks: list[_Task] = []
    base = {
        "dump": os.path.basename(dump.source),
        "dataset": dump.dataset,
        "model": dump.model,
        "features": cross_name if cross_name == same_name else f"{cross_name}/{same_name}",
        "distance": distance,
    }

    def skip(preset: Preset, variant: str, modality: int, status: str) -> None:
        if strict:
            raise EmptyEvaluationError(
                f"{dump.source}: protocol {preset.name!r} ({MODALITY_NAMES[modality]} query): "
                f"{status}"
            )
        warnings.warn(
            f"{os.path.basename(dump.source)}: {preset.name} "
            f"({MODALITY_NAMES[modality]} query): {status}; skipped",
            stacklevel=3,
        )
        rows.append(_row(base, preset, variant, modality, status, None))

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

    for split_index in range(len(dump.splits)):
        if rerank:
            rerank_scoring.score_split_reranked(
                dump,
                split_index,
                tasks,
                cross_name,
                same_name,
                distance,
                convention,
                block_bytes,
                progress,
                rerank,
                rerank_params,
            )
        else:
            _score_split(
                dump,
                split_index,
                tasks,
                cross_name,
                same_name,
                distance,
                convention,
                block_bytes,
                progress,
            )

    per_query: list[PlanScores] = []
    for task in tasks:
        per_query.extend(task.scores)
        status = _task_status(task)
        if status != "ok":
            skip(task.preset, task.variant, task.query_modality, status)
            continue
        rows.append(_row(base, task.preset, task.variant, task.query_modality, "ok", task))
    if rerank:
        rerank_scoring.label_rows(rows, rerank, rerank_params)
    rows.sort(key=lambda r: _row_order(presets, r))
    return Evaluation(rows=rows, per_query=per_query)


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
) -> None:
    """Compute the split's distances block by block and run every plan's kernel."""
    split = dump.splits[split_index]
    jobs = [(task, plan) for task in tasks for plan in task.plans if plan.split == split_index]
    if not jobs:
        return
    query_union = np.unique(np.concatenate([plan.query_idx for _, plan in jobs]))
    pool_union = np.unique(np.concatenate([plan.pool_idx for _, plan in jobs]))
    if pool_union.size == 0:
        for task, plan in jobs:
            task.scores.append(_empty_scores(task, plan))
        return
    needed_rows = np.union1d(query_union, pool_union)

    def prepare(name: str) -> np.ndarray:
        array = split.features[name]
        if distance == "cosine":
            array = _normalised(dump.source, name, array, needed_rows)
        return array

    cross = prepare(cross_name)
    same = cross if same_name == cross_name else prepare(same_name)
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
        dist = _distance_block(cross[block_idx], gallery_cross, distance, sq_cross)
        if same is not cross:
            dist_same = _distance_block(same[block_idx], gallery_same, distance, sq_same)
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
