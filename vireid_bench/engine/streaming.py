"""Streamed exact scoring: query blocks x gallery blocks with per-query state.

The in-memory path (:func:`vireid_bench.engine.scoring._score_split`) hands the kernel each
query's whole pool row of distances. When a row block does not fit the memory limit (huge
galleries) or the features are read from the HDF5 file block by block, this module scores
the same plans without ever holding a query's whole row:

1. **True matches first.** For the queries of a query block, every true match in the
   post-exclusion gallery (same person id, not the query itself, not excluded) is found from
   the labels alone (pool images grouped by person id), and its distance is computed
   directly (a row-wise dot product, the same formula as the distance blocks). Each query's
   true matches are sorted by ``(distance, pool position)``.
2. **Gallery blocks.** The gallery pool is cut into column blocks; for each block the
   distances ``query block x gallery block`` are computed once for every plan. The plans
   that share one pool (distinct images) are scored together, one pass per block
   (:mod:`vireid_bench.engine.streaming_fused`); a pool that holds an image twice keeps
   the per-plan pass below: every other non-excluded
   gallery image is placed between the sorted true matches by binary search: per query a
   counter ``neg_before[k]`` (images ranked just before the ``k``-th true match) is carried
   across blocks, together with the gallery size and, for the identity CMC convention, a bit
   set of the identities ranked before the first true match.
3. **Finish.** ``r_k = k + sum(neg_before[:k])``, then AP, INP and the first-hit rank
   exactly as the in-memory kernel computes them (:mod:`vireid_bench.engine.kernels`).

Every rank is an exact count, so the metrics equal the in-memory ones. The one caveat is
float32 round-off of the distances themselves: BLAS returns values that differ in the last
bit with the block shape (the in-memory path already depends on its block size this way),
so a true match and another image whose distances are within one float32 ulp can be ordered
differently by the two paths; the tests use features whose dot products are exact.

Memory: one distance block (``query_block x gallery_block`` float32; with a per-pair
recipe of several sets, :func:`~vireid_bench.engine.distances.recipe_matrices` of them),
the features of one query block and one gallery block, and per query
``O(true matches + identities / 64)`` words of state, whatever the gallery size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from vireid_bench.engine.distances import recipe_distances
from vireid_bench.engine.fused import FusedJob, label_groups
from vireid_bench.engine.kernels import (
    exclusion_table,
    key_less,
    metrics_from_negatives,
    popcount,
    slot_among_true_matches,
)
from vireid_bench.engine.streaming_fused import GroupBlock, PoolGroup, pool_group
from vireid_bench.io.recipe import DistanceRecipe

ProgressCallback = Callable[[int], None]
RowReader = Callable[[np.ndarray], np.ndarray]
"""Returns the (normalised when cosine) float32 feature rows of sorted split indices."""


@dataclass
class StreamJob:
    """One plan to score, with its label arrays (see :func:`score_streamed`).

    Attributes:
        query_idx: int64 [m] split indices of the plan's queries.
        pool_idx: int64 [n] split indices of the pool, in pool order.
        pid, cam_keys, modality: int64 label arrays over the whole split (camera keys with
            co-located cameras merged as the preset asks).
        clauses: int8 [c, 3] exclusion clauses of the preset.
        identity_cmc: the CMC convention.
        out: dict of per-query outputs to fill (``first_rank``, ``ap``, ``inp``, ``n_pos``,
            ``n_gallery``; see :func:`vireid_bench.engine.kernels.empty_query_scores`).
        colocated: whether ``cam_keys`` are the co-located keys (used by the fused pass,
            :mod:`vireid_bench.engine.streaming_fused`, when ``score_streamed`` is given
            both camera keys).
    """

    query_idx: np.ndarray
    pool_idx: np.ndarray
    pid: np.ndarray
    cam_keys: np.ndarray
    modality: np.ndarray
    clauses: np.ndarray
    identity_cmc: bool
    out: dict[str, np.ndarray]
    colocated: bool = False


# --------------------------------------------------------------------------- Numba kernels


@njit(cache=True)
def _relation_key(same_cam: bool, same_pid: bool, same_mod: bool) -> int:
    return (4 if same_cam else 0) + (2 if same_pid else 0) + (1 if same_mod else 0)


@njit(cache=True)
def _is_true_match(j, uid, cam, mod, g_uid, g_cam, g_mod, excluded) -> bool:
    """Whether pool image ``j`` (of the query's person id) is a true match in its gallery:
    not the query itself and excluded by no clause."""
    if g_uid[j] == uid:
        return False
    return not excluded[_relation_key(g_cam[j] == cam, True, g_mod[j] == mod)]


def _collect_true_matches(
    rows, q_uid, q_pid, q_cam, q_mod, by_pid_pos, by_pid_pid, g_uid, g_cam, g_mod, excluded,
    union_cols, row_group, group_row0, group_col0, group_off, group_cols, table,
):
    """Return CSR ``(start, pos_d, pos_j)``: each query's true matches, sorted.

    A true match is a pool image with the query's person id that is not the query itself
    and not excluded; ``pos_j`` is its pool position, ``pos_d`` its distance (from the
    block's per-identity table); each query's run is sorted by (distance, pool position).
    """
    m = q_uid.shape[0]
    counts = np.zeros(m, dtype=np.int64)
    same_id_lo = np.searchsorted(by_pid_pid, q_pid, side="left")
    same_id_hi = np.searchsorted(by_pid_pid, q_pid, side="right")
    for i in prange(m):
        c = 0
        for t in range(same_id_lo[i], same_id_hi[i]):
            j = by_pid_pos[t]
            if _is_true_match(j, q_uid[i], q_cam[i], q_mod[i], g_uid, g_cam, g_mod, excluded):
                c += 1
        counts[i] = c
    start = np.zeros(m + 1, dtype=np.int64)
    for i in range(m):
        start[i + 1] = start[i] + counts[i]
    pos_j = np.empty(start[m], dtype=np.int64)
    pos_d = np.empty(start[m], dtype=table.dtype)
    for i in prange(m):
        r = rows[i]
        g = row_group[r]
        c0 = group_col0[g]
        c1 = group_col0[g + 1]
        base = group_off[g] + (r - group_row0[g]) * (c1 - c0)
        a0 = start[i]
        c = a0
        for t in range(same_id_lo[i], same_id_hi[i]):
            j = by_pid_pos[t]
            if not _is_true_match(j, q_uid[i], q_cam[i], q_mod[i], g_uid, g_cam, g_mod, excluded):
                continue
            d = table[base + np.searchsorted(group_cols[c0:c1], union_cols[j])]
            # insertion into the sorted run (true matches per query are few)
            b = c - 1
            while b >= a0 and key_less(d, j, pos_d[b], pos_j[b]):
                pos_d[b + 1] = pos_d[b]
                pos_j[b + 1] = pos_j[b]
                b -= 1
            pos_d[b + 1] = d
            pos_j[b + 1] = j
            c += 1
    return start, pos_d, pos_j


def _count_block(
    dist,
    q_rows,
    q_uid,
    q_pid,
    q_cam,
    q_mod,
    block_pos,
    block_cols,
    g_uid,
    g_pid,
    g_cam,
    g_mod,
    g_id,
    excluded,
    start,
    pos_d,
    pos_j,
    neg_before,
    n_other,
    id_bits,
    identity_cmc,
):
    """Add one gallery block's non-matching images to every query's counters.

    ``block_pos`` are pool positions whose distances sit in columns ``block_cols`` of
    ``dist``; ``neg_before`` is CSR with ``n_pos + 1`` slots per query (offset
    ``start[i] + i``).
    """
    m = q_rows.shape[0]
    nb = block_pos.shape[0]
    for i in prange(m):
        a0 = start[i]
        n_pos = start[i + 1] - a0
        base = a0 + i
        row = dist[q_rows[i]]
        uid = q_uid[i]
        pid = q_pid[i]
        cam = q_cam[i]
        mod = q_mod[i]
        last_d = 0.0
        last_j = 0
        if n_pos > 0:
            last_d = pos_d[a0 + n_pos - 1]
            last_j = pos_j[a0 + n_pos - 1]
        others = 0
        for t in range(nb):
            j = block_pos[t]
            if g_uid[j] == uid or g_pid[j] == pid:
                continue  # the query itself, or a true match (counted beforehand)
            if excluded[_relation_key(g_cam[j] == cam, False, g_mod[j] == mod)]:
                continue
            others += 1
            if n_pos == 0:
                continue
            d = row[block_cols[t]]
            if key_less(last_d, last_j, d, j):
                continue
            lo = slot_among_true_matches(pos_d, pos_j, a0, n_pos, d, j)
            neg_before[base + lo] += 1
            if identity_cmc and lo == 0:
                word = g_id[j] >> 6
                id_bits[i, word] |= np.uint64(1) << np.uint64(g_id[j] & 63)
        n_other[i] += others


def _finish(start, neg_before, n_other, id_bits, identity_cmc, first_rank, ap, inp, n_pos, n_gal):
    """Turn the carried counters into first-hit rank, AP, INP, true matches, gallery size."""
    m = start.shape[0] - 1
    for i in prange(m):
        a0 = start[i]
        p = start[i + 1] - a0
        base = a0 + i
        n_pos[i] = p
        n_gal[i] = p + n_other[i]
        if p == 0:
            first_rank[i] = 0
            ap[i] = np.nan
            inp[i] = np.nan
            continue
        ap[i], inp[i], first_rank[i] = metrics_from_negatives(neg_before, base, p)
        if identity_cmc:
            distinct = 0
            for w in range(id_bits.shape[1]):
                distinct += popcount(id_bits[i, w])
            first_rank[i] = distinct + 1


def _pair_table(
    q_cross, q_same, g_cross, g_same, q_mod, g_mod, row0, col0, off, where, use_same, euclidean
):
    """Distances of each identity's block rows to its pool images (float32, row-major).

    For identity ``g``: rows ``row0[g]:row0[g+1]`` of the query features against gallery
    feature rows ``where[col0[g]:col0[g+1]]``; same-modality pairs use the ``*_same``
    features when ``use_same``. The formulas are those of the distance blocks (cosine
    ``1 - q.g`` on normalised rows; Euclidean ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))``),
    accumulated in float32.
    """
    n_groups = row0.shape[0] - 1
    values = np.empty(off[n_groups], dtype=np.float32)
    dim_c = q_cross.shape[1]
    dim_s = q_same.shape[1]
    for g in prange(n_groups):
        width = col0[g + 1] - col0[g]
        for r in range(row0[g], row0[g + 1]):
            base = off[g] + (r - row0[g]) * width
            for c in range(width):
                k = where[col0[g] + c]
                same = use_same and q_mod[r] == g_mod[col0[g] + c]
                if same:
                    a = q_same[r]
                    b = g_same[k]
                    dim = dim_s
                else:
                    a = q_cross[r]
                    b = g_cross[k]
                    dim = dim_c
                dot = np.float32(0.0)
                aa = np.float32(0.0)
                bb = np.float32(0.0)
                for t in range(dim):
                    dot += a[t] * b[t]
                    if euclidean:
                        aa += a[t] * a[t]
                        bb += b[t] * b[t]
                if euclidean:
                    v = (np.float32(-2.0) * dot + aa) + bb
                    values[base + c] = np.sqrt(max(v, np.float32(0.0)))
                else:
                    values[base + c] = np.float32(1.0) - dot
    return values


PARALLEL_MIN_WORK = 2_000_000
"""Below this many (query, image) steps a kernel runs on one thread: starting the thread
pool costs more than it saves, and far more on a machine loaded by other work."""


def _compiled(function):
    """Return (serial, parallel) Numba compilations of a kernel written with ``prange``."""
    return njit(cache=True)(function), njit(cache=True, parallel=True)(function)


_COLLECT = _compiled(_collect_true_matches)
_COUNT = _compiled(_count_block)
_FINISH = _compiled(_finish)
_TABLE = _compiled(_pair_table)


def _pick(variants, work: int):
    return variants[1] if work >= PARALLEL_MIN_WORK else variants[0]


# --------------------------------------------------------------------------- orchestration


@dataclass
class _JobState:
    job: StreamJob
    excluded: np.ndarray
    g_uid: np.ndarray
    g_pid: np.ndarray
    g_cam: np.ndarray
    g_mod: np.ndarray
    g_id: np.ndarray
    n_ids: int
    by_pid_pos: np.ndarray
    by_pid_pid: np.ndarray
    union_cols: np.ndarray  # pool position -> column in the pool union
    cols_order: np.ndarray  # pool positions sorted by union column
    cols_sorted: np.ndarray
    q_order_pos: np.ndarray  # each query's position in the pid-ordered query union


def _prepare_job(job: StreamJob, pool_union: np.ndarray, order_pos: np.ndarray) -> _JobState:
    g_pid = job.pid[job.pool_idx]
    by_pid_pos = np.argsort(g_pid, kind="stable").astype(np.int64)
    ids, g_id = np.unique(g_pid, return_inverse=True)
    union_cols = np.searchsorted(pool_union, job.pool_idx).astype(np.int64)
    cols_order = np.argsort(union_cols, kind="stable").astype(np.int64)
    return _JobState(
        job=job,
        excluded=exclusion_table(job.clauses),
        g_uid=job.pool_idx.astype(np.int64),
        g_pid=g_pid.astype(np.int64),
        g_cam=job.cam_keys[job.pool_idx].astype(np.int64),
        g_mod=job.modality[job.pool_idx].astype(np.int64),
        g_id=g_id.astype(np.int64).reshape(-1),
        n_ids=int(ids.size),
        by_pid_pos=by_pid_pos,
        by_pid_pid=g_pid[by_pid_pos].astype(np.int64),
        union_cols=union_cols,
        cols_order=cols_order,
        cols_sorted=union_cols[cols_order],
        q_order_pos=order_pos,
    )


def score_streamed(
    jobs: Sequence[StreamJob],
    query_union: np.ndarray,
    pool_union: np.ndarray,
    modality: np.ndarray,
    pid: np.ndarray,
    readers: Mapping[str, RowReader],
    recipe: DistanceRecipe,
    distance: str,
    distance_block: Callable[..., np.ndarray],
    query_block: int,
    gallery_block: int,
    progress: ProgressCallback | None = None,
    check: Callable[[np.ndarray], object] | None = None,
    camera_keys: Mapping[bool, np.ndarray] | None = None,
) -> None:
    """Score every job over query blocks x gallery blocks; fill each ``job.out``.

    Args:
        jobs: the plans of one split.
        query_union, pool_union: sorted unique split indices of every job's queries/pool.
        modality, pid: the split's modality codes and person ids.
        readers: feature-set name -> reader of its rows (sorted split indices in), for
            every set of ``recipe``.
        recipe: the per-pair distance recipe
            (:func:`vireid_bench.engine.distances.recipe_distances` combines the sets).
        distance: ``"cosine"`` or ``"euclidean"``.
        distance_block: ``(query, gallery, distance, gallery_sq) -> float32 [q, g]``.
        query_block, gallery_block: block sizes (rows, columns), at least 1.
        progress: called with the number of query rows done after each query block.
        check: called with the true-match distances of each query block (the finite
            check; ``distance_block`` checks its own blocks).
        camera_keys: the split's camera keys, literal (``False``) and with co-located
            cameras merged (``True``). When given, the jobs sharing one pool (distinct
            images) are scored together, one pass per gallery block
            (:mod:`vireid_bench.engine.streaming_fused`); otherwise one pass per job.

    The outputs equal those of :func:`vireid_bench.engine.kernels.score_queries` on the full rows
    (see the module docstring for the float32 round-off caveat).
    """
    query_block = max(1, int(query_block))
    gallery_block = max(1, int(gallery_block))
    # Queries in person-id order: a block then holds few identities (fewer true matches to
    # look up); results go back to each job's own query order.
    ordered = query_union[np.argsort(pid[query_union], kind="stable")]
    position_in_order = np.empty(query_union.size, dtype=np.int64)
    position_in_order[np.searchsorted(query_union, ordered)] = np.arange(ordered.size)
    pool_pid = pid[pool_union]
    pool_by_pid = np.argsort(pool_pid, kind="stable").astype(np.int64)
    pool_pid_sorted = pool_pid[pool_by_pid]
    fused_groups, single = _fused_groups(jobs, camera_keys, pool_union, pid, modality)
    for _, group in fused_groups:
        group.q_order_pos = [
            position_in_order[np.searchsorted(query_union, idx)] for idx in group.query_idx
        ]
    states = [
        _prepare_job(
            job, pool_union, position_in_order[np.searchsorted(query_union, job.query_idx)]
        )
        for job in single
    ]
    for q_start in range(0, ordered.size, query_block):
        q_stop = min(q_start + query_block, ordered.size)
        block_idx = ordered[q_start:q_stop]
        read_order = np.argsort(block_idx, kind="stable")
        q_rows = {
            name: _rows_in_order(read, block_idx, read_order) for name, read in readers.items()
        }
        block_mod = modality[block_idx]
        table = _true_match_table(
            pid[block_idx], q_rows, block_mod, pool_union, pool_by_pid,
            pool_pid_sorted, modality, readers, recipe, distance,
        )
        if check is not None:
            check(table.values)
        active = []
        for state in states:
            selected = np.flatnonzero(
                (state.q_order_pos >= q_start) & (state.q_order_pos < q_stop)
            )
            if selected.size:
                active.append(_start_block(state, selected, q_start, table))
        fused_active = [
            GroupBlock(group, q_start, q_stop, block_idx, table) for _, group in fused_groups
        ]
        for g_start in range(0, pool_union.size, gallery_block):
            g_stop = min(g_start + gallery_block, pool_union.size)
            columns = pool_union[g_start:g_stop]
            dist = _recipe_pairs(
                q_rows,
                block_mod,
                {name: read(columns) for name, read in readers.items()},
                modality[columns],
                recipe,
                distance,
                distance_block,
            )
            for fused_block in fused_active:
                fused_block.count(dist, g_start, g_stop)
            for block in active:
                state = block["state"]
                lo = np.searchsorted(state.cols_sorted, g_start)
                hi = np.searchsorted(state.cols_sorted, g_stop)
                if lo == hi:
                    continue
                block_pos = state.cols_order[lo:hi]
                _pick(_COUNT, block["rows"].size * block_pos.size)(
                    dist,
                    block["rows"],
                    block["q_uid"],
                    block["q_pid"],
                    block["q_cam"],
                    block["q_mod"],
                    block_pos,
                    state.union_cols[block_pos] - g_start,
                    state.g_uid,
                    state.g_pid,
                    state.g_cam,
                    state.g_mod,
                    state.g_id,
                    state.excluded,
                    block["start"],
                    block["pos_d"],
                    block["pos_j"],
                    block["neg_before"],
                    block["n_other"],
                    block["id_bits"],
                    state.job.identity_cmc,
                )
            del dist
        for block in active:
            _finish_block(block)
        for fused_block in fused_active:
            fused_block.finish()
        if progress is not None:
            progress(q_stop - q_start)


def _fused_groups(
    jobs: Sequence[StreamJob],
    camera_keys: Mapping[bool, np.ndarray] | None,
    pool_union: np.ndarray,
    pid: np.ndarray,
    modality: np.ndarray,
) -> tuple[list[tuple[list[int], PoolGroup]], list[StreamJob]]:
    """Split the jobs into pool groups scored by the fused pass and jobs scored alone.

    A pool that holds an image twice, or no ``camera_keys``, keeps the per-job pass.
    """
    if camera_keys is None:
        return [], list(jobs)
    pools: dict[bytes, list[int]] = {}
    single = []
    for k, job in enumerate(jobs):
        pool = np.asarray(job.pool_idx, dtype=np.int64)
        if np.unique(pool).size != pool.size:
            single.append(job)
            continue
        pools.setdefault(pool.tobytes(), []).append(k)
    if not pools:
        return [], single
    split_group, relation = label_groups(camera_keys[False], camera_keys[True], modality)
    _, dense_pid = np.unique(pid, return_inverse=True)
    dense_pid = dense_pid.reshape(-1).astype(np.int32)
    n_ids = int(dense_pid.max(initial=-1)) + 1
    groups = []
    for members in pools.values():
        fused_jobs = [
            (
                jobs[k].query_idx,
                None,
                FusedJob(
                    queries=np.empty(0, dtype=np.int64),
                    clauses=jobs[k].clauses,
                    colocated=jobs[k].colocated,
                    identity_cmc=jobs[k].identity_cmc,
                ),
                jobs[k].out,
            )
            for k in members
        ]
        group = pool_group(
            jobs[members[0]].pool_idx, pool_union, fused_jobs, split_group, relation,
            dense_pid, n_ids,
        )
        groups.append((members, group))
    return groups, single


def _rows_in_order(read: RowReader, block_idx: np.ndarray, read_order: np.ndarray) -> np.ndarray:
    """Feature rows of ``block_idx`` in its own order (readers take sorted indices)."""
    rows = read(block_idx[read_order])
    out = np.empty_like(rows)
    out[read_order] = rows
    return out


@dataclass
class _TrueMatchTable:
    """Distances between a query block and the pool images sharing a query's person id.

    Query rows of the block are sorted by person id, so each identity ``g`` owns rows
    ``row0[g]:row0[g+1]`` and pool-union columns ``cols[col0[g]:col0[g+1]]`` (ascending);
    its distances are ``values[off[g]:]`` in row-major order.
    """

    row_group: np.ndarray
    row0: np.ndarray
    col0: np.ndarray
    off: np.ndarray
    cols: np.ndarray
    values: np.ndarray


def _true_match_table(
    block_pid: np.ndarray,
    q_rows: Mapping[str, np.ndarray],
    block_mod: np.ndarray,
    pool_union: np.ndarray,
    pool_by_pid: np.ndarray,
    pool_pid_sorted: np.ndarray,
    modality: np.ndarray,
    readers: Mapping[str, RowReader],
    recipe: DistanceRecipe,
    distance: str,
) -> _TrueMatchTable:
    """Compute, identity by identity, the distances a block's true matches can take.

    One small distance block per person id in the query block (its queries x the pool
    images with that id, :func:`_pair_table`), so the cost is the sum of
    ``queries x images`` per identity, not a second pass over the gallery. Per feature set
    of the recipe, then combined per pair as the distance blocks are
    (:func:`~vireid_bench.engine.distances.recipe_distances`).
    """
    change = np.flatnonzero(np.diff(block_pid)) + 1
    row0 = np.concatenate([[0], change, [block_pid.size]]).astype(np.int64)
    ids = block_pid[row0[:-1]]
    lo = np.searchsorted(pool_pid_sorted, ids, side="left")
    hi = np.searchsorted(pool_pid_sorted, ids, side="right")
    col0 = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
    cols = (
        np.concatenate([np.sort(pool_by_pid[a:b]) for a, b in zip(lo, hi, strict=True)])
        if ids.size
        else np.empty(0, dtype=np.int64)
    ).astype(np.int64)
    sizes = np.diff(row0) * np.diff(col0)
    off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    values = np.empty(0, dtype=np.float32)
    if cols.size:
        needed, where = np.unique(cols, return_inverse=True)
        where = where.astype(np.int64).reshape(-1)
        g_mod = modality[pool_union[cols]].astype(np.int64)
        q_mod = block_mod.astype(np.int64)

        def block_of(name: str) -> np.ndarray:
            q = q_rows[name]
            g = readers[name](pool_union[needed])
            return _pick(_TABLE, int(off[-1]) * q.shape[1])(
                q, q, g, g, q_mod, g_mod, row0, col0, off, where, False,
                distance == "euclidean",
            )  # fmt: skip

        # each entry's query row and column (identity g: its rows x its columns, row-major)
        entry_row = np.concatenate(
            [np.repeat(np.arange(row0[g], row0[g + 1]), col0[g + 1] - col0[g])
             for g in range(ids.size)]
        ).astype(np.int64)  # fmt: skip
        entry_col = np.concatenate(
            [np.tile(np.arange(col0[g], col0[g + 1]), row0[g + 1] - row0[g])
             for g in range(ids.size)]
        ).astype(np.int64)  # fmt: skip
        values = recipe_distances(recipe, block_of, q_mod[entry_row], g_mod[entry_col])
    row_group = np.repeat(np.arange(ids.size, dtype=np.int64), np.diff(row0))
    return _TrueMatchTable(row_group, row0, col0, off, cols, values)


def _recipe_pairs(
    q_rows: Mapping[str, np.ndarray],
    q_mod: np.ndarray,
    g_rows: Mapping[str, np.ndarray],
    g_mod: np.ndarray,
    recipe: DistanceRecipe,
    distance: str,
    distance_block: Callable[..., np.ndarray],
) -> np.ndarray:
    """Distance block of a query block x gallery block under the recipe."""

    def block_of(name: str) -> np.ndarray:
        g = g_rows[name]
        sq = np.einsum("ij,ij->i", g, g) if distance == "euclidean" else None
        return distance_block(q_rows[name], g, distance, sq)

    return np.ascontiguousarray(
        recipe_distances(recipe, block_of, q_mod[:, None], g_mod[None, :]), dtype=np.float32
    )


def _start_block(
    state: _JobState, selected: np.ndarray, q_start: int, table: _TrueMatchTable
) -> dict[str, object]:
    """Find, look up and sort the true matches of a job's queries in this query block."""
    job = state.job
    query_idx = job.query_idx[selected]
    rows = (state.q_order_pos[selected] - q_start).astype(np.int64)
    q_uid = query_idx.astype(np.int64)
    q_pid = job.pid[query_idx].astype(np.int64)
    q_cam = job.cam_keys[query_idx].astype(np.int64)
    q_mod = job.modality[query_idx].astype(np.int64)
    work = selected.size * max(1, state.by_pid_pos.size // max(1, state.n_ids))
    start, pos_d, pos_j = _pick(_COLLECT, work)(
        rows, q_uid, q_pid, q_cam, q_mod, state.by_pid_pos, state.by_pid_pid, state.g_uid,
        state.g_cam, state.g_mod, state.excluded, state.union_cols, table.row_group,
        table.row0, table.col0, table.off, table.cols, table.values,
    )
    words = (state.n_ids + 63) // 64 if job.identity_cmc else 1
    return {
        "state": state,
        "selected": selected,
        "rows": rows,
        "q_uid": q_uid,
        "q_pid": q_pid,
        "q_cam": q_cam,
        "q_mod": q_mod,
        "start": start,
        "pos_d": pos_d,
        "pos_j": pos_j,
        "neg_before": np.zeros(pos_j.size + selected.size, dtype=np.int64),
        "n_other": np.zeros(selected.size, dtype=np.int64),
        "id_bits": np.zeros((selected.size if job.identity_cmc else 1, words), dtype=np.uint64),
    }


def _finish_block(block: dict[str, object]) -> None:
    state = block["state"]
    selected = block["selected"]
    m = selected.size
    first_rank = np.zeros(m, dtype=np.int64)
    ap = np.empty(m)
    inp = np.empty(m)
    n_pos = np.zeros(m, dtype=np.int64)
    n_gal = np.zeros(m, dtype=np.int64)
    _pick(_FINISH, block["neg_before"].size)(
        block["start"],
        block["neg_before"],
        block["n_other"],
        block["id_bits"],
        state.job.identity_cmc,
        first_rank,
        ap,
        inp,
        n_pos,
        n_gal,
    )
    out = state.job.out
    out["first_rank"][selected] = first_rank
    out["ap"][selected] = ap
    out["inp"][selected] = inp
    out["n_pos"][selected] = n_pos
    out["n_gallery"][selected] = n_gal
