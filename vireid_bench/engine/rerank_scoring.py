"""Scoring with re-ranking: ``evaluate(..., rerank="k-reciprocal" | "aim")``.

The exclusion rule comes first (docs/rerank.md): for a query ``q`` of a plan, its gallery
``G_q`` is the pool minus ``q`` minus every image an exclusion clause matches, and the
re-ranked distances of ``q`` are computed on ``{q} + G_q`` only, one probe at a time, so an
excluded image, or another query, never influences them. Queries whose galleries are the
same set of pool positions form a group; what depends on the gallery alone is computed
once per group (:class:`~vireid_bench.engine.rerank.KReciprocalGallery`,
:class:`~vireid_bench.engine.rerank.AIMBase`). When queries that lie in the pool have distinct
galleries but the same ``{q} + G_q`` (setting ``mix``: ``G_q`` is the pool minus ``q``),
that joint set is shared instead (:class:`~vireid_bench.engine.rerank.KReciprocalJoint`; AIM
leaves the probe out of its base set), which gives the same numbers.

The metrics then come from :func:`vireid_bench.engine.kernels.score_queries` on the re-ranked
distances with the usual clauses: excluded pool images get ``+inf`` and are excluded by the
kernel as before, so ``n_gallery`` and the tie rule (pool order) are unchanged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

import numpy as np

from vireid_bench.engine.distances import prepared_features, recipe_block
from vireid_bench.engine.kernels import empty_query_scores, exclusion_table, score_queries
from vireid_bench.engine.plans import PlanScores, split_jobs
from vireid_bench.engine.rerank import (
    KR_DEFAULTS,
    AIMBase,
    KReciprocalGallery,
    KReciprocalJoint,
    check_params,
)
from vireid_bench.errors import ProtocolError
from vireid_bench.io.dump import MODALITY_NAMES, FeatureDump
from vireid_bench.io.recipe import DistanceRecipe
from vireid_bench.protocol.datasets.sysu import parse_variant

METHODS = ("k-reciprocal", "aim")
ORDERS = ("exclusion-first", "community")
"""Re-ranking orders (docs/rerank.md): ``exclusion-first`` re-ranks each query against its
gallery after exclusion (``{q} + G_q``); ``community`` re-ranks it against the whole sampled
pool (``{q} + pool - {q}``) and only then removes the excluded images, as SAAI's AIM
(``models/AIM.py``, ``engine/__init__.py``) and MPANet's k-reciprocal
(``utils/eval_regdb.py``) do."""
#: AIM's k1/k2 in the SAAI code (engine/__init__.py): SYSU-MM01 by (mode, shots), RegDB.
AIM_SYSU = {("all", 1): (4, 1), ("indoor", 1): (2, 2)}
AIM_SYSU_MULTI = (20, 6)
AIM_REGDB = (8, 2)
#: no SAAI value for other datasets (LLCM...): SAAI's multi-shot values, also KR's k1/k2.
AIM_OTHER = (20, 6)


def validate(method: str, params: Mapping[str, object] | None, distance: str) -> dict:
    """Check a re-ranking request; return its explicit parameters.

    Raises:
        ProtocolError: unknown method or parameter, a bad value, or AIM with a
            distance other than cosine (AIM is defined on cosine similarities).
    """
    if method not in METHODS:
        raise ProtocolError(f"unknown re-ranking {method!r} (valid: {', '.join(METHODS)})")
    params = {k: v for k, v in dict(params or {}).items() if v is not None}
    allowed = ("k1", "k2", "lambda") if method == "k-reciprocal" else ("k1", "k2")
    for key in params:
        if key not in allowed:
            raise ProtocolError(
                f"--rerank {method}: no parameter {key!r} (valid: {', '.join(allowed)})"
            )
    if method == "aim" and distance != "cosine":
        raise ProtocolError(
            "--rerank aim: AIM is defined on cosine similarities (SAAI); use --distance cosine"
        )
    merged = resolve(method, params, "generic", "")
    check_params(method, merged["k1"], merged["k2"], merged.get("lambda"))
    return params


def resolve(method: str, params: Mapping[str, object], dataset: str, variant: str) -> dict:
    """The parameters used for one (dataset, variant): explicit ones, else the defaults."""
    if method == "k-reciprocal":
        return {**KR_DEFAULTS, **params}
    if dataset == "sysu-mm01":
        try:
            mode, shots, _ = parse_variant(variant)
        except ProtocolError:
            mode, shots = "all", 1
        k1, k2 = AIM_SYSU.get((mode, shots), AIM_SYSU_MULTI)
    elif dataset == "regdb":
        k1, k2 = AIM_REGDB
    else:
        k1, k2 = AIM_OTHER
    return {"k1": k1, "k2": k2, **params}


def check_order(order: str) -> str:
    """Return ``order``; raise ProtocolError when it is not one of :data:`ORDERS`."""
    if order not in ORDERS:
        raise ProtocolError(f"unknown re-ranking order {order!r} (valid: {', '.join(ORDERS)})")
    return order


def label(method: str, params: Mapping[str, object], order: str = "exclusion-first") -> str:
    """``k-reciprocal(k1=20,k2=6,lambda=0.3)`` / ``aim(k1=4,k2=1)``; the community order
    adds ``,order=community`` (the default order is not written, so older rows still match)."""
    fields = [f"{k}={v:g}" for k, v in params.items()]
    if order != "exclusion-first":
        fields.append(f"order={order}")
    return f"{method}(" + ",".join(fields) + ")"


def label_rows(
    rows: list[dict[str, object]],
    method: str,
    params: Mapping[str, object] | None,
    order: str = "exclusion-first",
) -> None:
    """Append the re-ranking and its parameters to each row's ``distance`` field."""
    for row in rows:
        used = resolve(method, dict(params or {}), str(row["dataset"]), str(row["variant"]))
        row["distance"] = f"{row['distance']}+{label(method, used, order)}"


class _Pairs:
    """Distances between split rows under the scorer's per-pair recipe.

    Every set's block is checked for NaN / Inf (a DumpError naming ``source`` and the set).
    """

    def __init__(
        self,
        sets: Mapping[str, np.ndarray],
        recipe: DistanceRecipe,
        modality: np.ndarray,
        distance: str,
        source: str = "",
    ):
        self.sets, self.recipe, self.modality, self.distance = sets, recipe, modality, distance
        self.source = source

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dist = recipe_block(
            self.recipe,
            {n: np.ascontiguousarray(f[a]) for n, f in self.sets.items()},
            {n: np.ascontiguousarray(f[b]) for n, f in self.sets.items()},
            self.modality[a],
            self.modality[b],
            self.distance,
            self.source,
        )
        return dist.astype(np.float64)

    def base(self, method: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """k-reciprocal: squared Euclidean (2 x cosine distance on unit features);
        AIM: cosine similarity."""
        dist = self(a, b)
        if method == "aim":
            return 1.0 - dist
        if self.distance == "cosine":
            return np.maximum(2.0 * dist, 0.0)
        return dist * dist


def score_split_reranked(
    dump: FeatureDump,
    split_index: int,
    tasks: list,
    cross_name: str,
    same_name: str,
    distance: str,
    convention,
    block_bytes: int,
    progress: Callable[[int], None] | None,
    method: str,
    params: Mapping[str, object] | None,
    order: str = "exclusion-first",
    recipe: DistanceRecipe | None = None,
) -> None:
    """Score every plan of the split with re-ranked distances (see the module notes).

    Appends one :class:`~vireid_bench.engine.scoring.PlanScores` per plan to its task, as
    ``scoring._score_split`` does. ``order="community"`` re-ranks each query against the
    whole pool (less the query itself) before the kernel removes the excluded images.
    """
    check_order(order)
    split = dump.splits[split_index]
    jobs, query_union, pool_union = split_jobs(tasks, split_index)
    if not jobs:
        return
    recipe = recipe or DistanceRecipe.from_policy(cross_name, same_name)
    names = recipe.feature_sets
    prepared = prepared_features(
        dump.source, split, names, distance, np.union1d(query_union, pool_union)
    )
    sets = dict(zip(names, prepared, strict=True))
    pairs = _Pairs(sets, recipe, split.modality, distance, dump.source)
    camera_keys = {c: convention.camera_keys(split.cam, c) for c in (False, True)}
    advance = _scaled_progress(
        progress, sum(int(plan.query_idx.size) for _, plan in jobs), int(query_union.size)
    )
    for task, plan in jobs:
        used = resolve(method, dict(params or {}), dump.dataset, task.variant)
        scores = PlanScores(
            protocol=task.preset.name,
            variant=task.variant,
            query_modality=MODALITY_NAMES[task.query_modality],
            plan=plan,
            **empty_query_scores(plan.query_idx.size),
        )
        task.scores.append(scores)
        _score_plan(
            split,
            task,
            plan,
            scores,
            camera_keys[task.preset.colocated_cameras],
            pairs,
            method,
            used,
            block_bytes,
            advance,
            order,
        )
    advance(None)


def _scaled_progress(
    progress: Callable[[int], None] | None, work: int, units: int
) -> Callable[[int | None], None]:
    """Report ``work`` steps (queries scored, over every plan) as ``units`` query rows.

    The other paths report each query row of the split once; here a query is re-ranked
    once per plan it belongs to, so the steps are scaled, and the calls add up to
    ``units`` exactly (``None`` reports what is left).
    """
    state = {"work": 0, "reported": 0}

    def advance(steps: int | None) -> None:
        if progress is None:
            return
        state["work"] = work if steps is None else min(work, state["work"] + steps)
        due = units if work == 0 or steps is None else units * state["work"] // work
        if due > state["reported"]:
            progress(due - state["reported"])
            state["reported"] = due

    return advance


def _score_plan(
    split, task, plan, scores, cam_keys, pairs, method, used, block_bytes, advance,
    rerank_order="exclusion-first",
) -> None:
    pool = plan.pool_idx.astype(np.int64)
    queries = plan.query_idx.astype(np.int64)
    n, m = pool.size, queries.size
    if m == 0:
        return
    g_pid, g_cam = split.pid[pool], cam_keys[pool]
    g_mod = split.modality[pool].astype(np.int64)
    q_pid, q_cam = split.pid[queries], cam_keys[queries]
    q_mod = split.modality[queries].astype(np.int64)
    clauses = task.preset.clause_codes()
    table = exclusion_table(clauses)
    order = np.argsort(pool, kind="stable")
    loc = np.minimum(np.searchsorted(pool[order], queries), max(n - 1, 0))
    in_pool = pool[order][loc] == queries if n else np.zeros(m, dtype=bool)
    q_pool_pos = np.where(in_pool, order[loc], -1)

    # group the queries by the pool positions their gallery keeps
    groups: dict[bytes, list[int]] = defaultdict(list)
    step = max(1, int(block_bytes // max(1, n * 8)))
    for start in range(0, m, step):
        s = slice(start, min(m, start + step))
        key = (
            4 * (q_cam[s, None] == g_cam[None, :])
            + 2 * (q_pid[s, None] == g_pid[None, :])
            + (q_mod[s, None] == g_mod[None, :])
        )
        itself = queries[s, None] == pool[None, :]
        # community order: the whole pool is re-ranked, the kernel excludes afterwards
        included = ~itself if rerank_order == "community" else ~(table[key] | itself)
        for r, packed in enumerate(np.packbits(included, axis=1)):
            groups[packed.tobytes()].append(start + r)

    def unpack(key: bytes) -> np.ndarray:
        return np.flatnonzero(np.unpackbits(np.frombuffer(key, dtype=np.uint8))[:n])

    external: list[tuple[np.ndarray, list[int]]] = []  # (gallery positions, queries)
    joint: dict[bytes, list[int]] = defaultdict(list)
    for key, members in groups.items():
        if len(members) == 1 and in_pool[members[0]]:
            gallery = unpack(key)
            j_set = np.union1d(gallery, [q_pool_pos[members[0]]])
            joint[np.packbits(np.isin(np.arange(n), j_set)).tobytes()].append(members[0])
        else:
            external.append((unpack(key), members))
    for key, members in joint.items():
        if len(members) == 1:
            j_set = unpack(key)
            external.append((j_set[j_set != q_pool_pos[members[0]]], members))

    def emit(members: list[int], rows: np.ndarray) -> None:
        idx = np.asarray(members, dtype=np.int64)
        out = score_queries(
            rows,
            q_rows=np.arange(idx.size, dtype=np.int64),
            q_uid=queries[idx],
            q_pid=q_pid[idx],
            q_cam=q_cam[idx],
            q_mod=q_mod[idx],
            g_cols=np.arange(n, dtype=np.int64),
            g_uid=pool,
            g_pid=g_pid,
            g_cam=g_cam,
            g_mod=g_mod,
            clauses=clauses,
            identity_cmc=task.cmc == "identity",
        )
        for name, values in out.items():
            getattr(scores, name)[idx] = values
        advance(int(idx.size))

    rows_per_block = max(1, int(block_bytes // max(1, n * 8)))
    k1, k2 = int(used["k1"]), int(used["k2"])

    def score_external(gallery: np.ndarray, members: list[int]) -> None:
        rows_g = pool[gallery]
        size = gallery.size

        def fn(r, c, rows_g=rows_g):
            return pairs.base(method, rows_g[r], rows_g[c])

        engine = None
        if size:
            if method == "aim":
                engine = AIMBase(fn, size, k1=k1, k2=k2, max_bytes=block_bytes)
            else:
                engine = KReciprocalGallery(
                    fn,
                    size,
                    k1=k1,
                    k2=k2,
                    lambda_value=float(used["lambda"]),
                    max_bytes=block_bytes,
                )
        for start in range(0, len(members), rows_per_block):
            chunk = members[start : start + rows_per_block]
            rows = np.full((len(chunk), n), np.inf)
            if engine is not None:
                probe = pairs.base(method, queries[chunk], rows_g)
                for r in range(len(chunk)):
                    if method == "aim":
                        rows[r, gallery] = engine.scores(probe[r])
                    else:
                        rows[r, gallery] = engine.rerank(probe[r])
            emit(chunk, rows)

    for gallery, members in external:
        score_external(gallery, members)

    for key, members in joint.items():
        if len(members) < 2:
            continue
        j_set = unpack(key)
        rows_j = pool[j_set]

        def fn(r, c, rows_j=rows_j):
            return pairs.base(method, rows_j[r], rows_j[c])

        positions = np.searchsorted(j_set, q_pool_pos[np.asarray(members)])
        if method == "aim":
            engine = AIMBase(fn, j_set.size, k1=k1, k2=k2, max_bytes=block_bytes)
        else:
            engine = KReciprocalJoint(
                fn,
                j_set.size,
                k1=k1,
                k2=k2,
                lambda_value=float(used["lambda"]),
                max_bytes=block_bytes,
            )
            # a probe with an exact distance tie that the joint numbering orders otherwise
            # than "probe first" (docs/rerank.md): on its own {q} + G_q, as one probe
            redo = engine.tie_order_matters[positions]
            for member, pos in zip(np.asarray(members)[redo], positions[redo], strict=True):
                score_external(j_set[np.arange(j_set.size) != pos], [int(member)])
            members = [m for m, r in zip(members, redo, strict=True) if not r]
            positions = positions[~redo]
        for start in range(0, len(members), rows_per_block):
            chunk = members[start : start + rows_per_block]
            pos = positions[start : start + rows_per_block]
            rows = np.full((len(chunk), n), np.inf)
            if method == "aim":
                sims = pairs.base(method, queries[chunk], rows_j)
                for r in range(len(chunk)):
                    rows[r, j_set] = engine.scores(sims[r], skip=int(pos[r]))
            else:
                rows[:, j_set] = engine.rerank(pos)
            rows[np.arange(len(chunk)), j_set[pos]] = np.inf
            emit(chunk, rows)
