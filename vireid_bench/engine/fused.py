"""The fused kernel: one pass over a query's pool row scores every job that shares the row.

A *job* is one (setting, trial, CMC convention) plan restricted to the queries of a distance
block; all jobs handed to :func:`score_jobs` share one gallery pool (same images, same pool
order), so each query's row of distances is read once for all of them. Per query:

1. **Relations once.** Every pool image belongs to a *label group* (its literal camera key,
   its co-located camera key, its modality); the relation of a group to the query's group
   is a 3-bit code ``c3`` (bit 2 same camera, bit 1 same co-located camera, bit 0 same
   modality), read from a small ``groups x groups`` table. Identity is not part of it: the
   images of the query's identity come from a per-identity index list.
2. **True matches from the index list.** The candidates (the query's identity in the pool,
   minus the query itself) are gathered and sorted by ``(distance, pool position)``. Each
   job's true matches are the candidates its exclusion table keeps (a lookup by
   ``8 + c3``), already in order; ``cnt[s]`` counts them among the first ``s`` candidates.
3. **One pass.** Every pool image up to the last candidate's distance is gathered with
   its distance (no branch per image), placed among the candidates (``s`` = candidates
   before it) by a per-query bucket table over the candidate distances and a fixed number
   of comparisons (:mod:`vireid_bench.engine.placement`; a branch-free search for a
   handful of candidates), ties with a candidate's distance settled by pool position, and
   counted in a histogram ``hist[c3, s]`` (relation codes read from the pool's per-group
   code rows; four interleaved copies so that images of one slot do not wait on each
   other). The candidates themselves and the query are then taken out of the histogram
   (their ``s`` is known), so no identity test runs per image.
4. **Per job.** ``neg_before[cnt[s]] += hist[c3, s]`` over the codes the job keeps gives
   the images ranked before each of its true matches; AP, INP and the first-hit rank follow
   as in :mod:`vireid_bench.engine.kernels`. Gallery sizes come from per-group totals. For
   the identity CMC convention the images before the job's first true match are recorded
   (identity, code, ``s``) during the pass and their distinct identities counted per job.

Ties are broken by pool position everywhere, so every count equals the single-setting
kernel's (and the brute force's, docs/protocols.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from vireid_bench.engine.kernels import (
    check_block_inputs,
    empty_query_scores,
    exclusion_table,
    metrics_from_negatives,
)
from vireid_bench.engine.placement import (
    BUCKETS_PER_CANDIDATE,
    after_equal_distances,
    below_bucketed_unsigned,
    build_buckets,
    search,
)

_CHUNK = 16
_INSERTION_SORT_MAX = 32


@dataclass(frozen=True)
class FusedJob:
    """One plan's share of a block: which queries, which rule, which CMC convention.

    Attributes:
        queries: int [m] positions in :func:`score_jobs`' query arrays, in output order.
        clauses: int8 [c, 3] exclusion clauses (codes of
            :func:`vireid_bench.engine.kernels.exclusion_table`).
        colocated: compare cameras by the co-located keys instead of the literal ones.
        identity_cmc: first-hit rank among identities instead of images.
    """

    queries: np.ndarray
    clauses: np.ndarray
    colocated: bool
    identity_cmc: bool


@njit(cache=True)
def _sort_candidates(cd, cj, cc, n):
    """Sort the first ``n`` candidates by (distance, pool position); they arrive by position."""
    if n <= _INSERTION_SORT_MAX:
        for a in range(1, n):
            d_a = cd[a]
            j_a = cj[a]
            c_a = cc[a]
            b = a - 1
            while b >= 0 and cd[b] > d_a:
                cd[b + 1] = cd[b]
                cj[b + 1] = cj[b]
                cc[b + 1] = cc[b]
                b -= 1
            cd[b + 1] = d_a
            cj[b + 1] = j_a
            cc[b + 1] = c_a
        return
    order = np.argsort(cd[:n], kind="mergesort")
    d_sorted = cd[:n][order]
    j_sorted = cj[:n][order]
    c_sorted = cc[:n][order]
    cd[:n] = d_sorted
    cj[:n] = j_sorted
    cc[:n] = c_sorted


@njit(cache=True, inline="always")
def true_match_counts(excluded, k, cc, a0, n, cnt):
    """Job ``k``'s true matches among the sorted candidates ``cc[a0 : a0 + n]`` (relation
    codes): writes ``cnt[s]`` = true matches among the first ``s`` candidates (``s`` in
    ``0 .. n``); returns (how many, the first one's index or -1)."""
    kept = 0
    first = -1
    cnt[0] = 0
    for t in range(n):
        keep = not excluded[k, 8 + cc[a0 + t]]
        if keep and kept == 0:
            first = t
        kept += keep
        cnt[t + 1] = kept
    return kept, first


@njit(cache=True, inline="always")
def gallery_others(excluded, k, totals_row, same_c3):
    """How many pool images of another identity job ``k`` keeps in the query's gallery:
    per relation code it keeps, the pool's images (``totals_row``) minus those of the
    query's identity (``same_c3``)."""
    others = 0
    for c3 in range(8):
        if not excluded[k, c3]:
            others += totals_row[c3] - same_c3[c3]
    return others


@njit(cache=True, inline="always")
def negatives_before(excluded, k, hist, h0, stride, n, cnt, kept, neg_before):
    """Job ``k``'s negatives per true match from the per-query histogram
    ``hist[h0 + c3 * stride + s]`` (images with ``s`` candidates before them, ``s`` in
    ``0 .. n - 1``, by relation code):
    ``neg_before[r]`` (``r`` in ``0 .. kept``) counts the kept images with exactly ``r`` of
    the job's true matches before them."""
    for t in range(kept + 1):
        neg_before[t] = 0
    for c3 in range(8):
        if excluded[k, c3]:
            continue
        base = h0 + c3 * stride
        for s in range(n):
            neg_before[cnt[s]] += hist[base + s]


@njit(cache=True, inline="always")
def fill_histogram(hist, hw, slot, n_near):
    """Count ``slot[:n_near]`` (unsigned) into ``hist[0 : hw]`` through four interleaved
    copies (``hist[c * hw : (c + 1) * hw]``, ``c`` = image index mod 4) summed at the end:
    a single copy makes consecutive images of the same slot wait on each other's stores
    (measured 1.3-1.5x the kernel's time on a hard 40k pool). Unsigned indices: Numba
    adds a negative-index wraparound to every signed one."""
    for t in range(4 * hw):
        hist[t] = 0
    u1 = np.uint64(hw)
    u2 = np.uint64(2 * hw)
    u3 = np.uint64(3 * hw)
    x = 0
    while x + 4 <= n_near:
        hist[np.uint64(slot[x])] += 1
        hist[u1 + np.uint64(slot[x + 1])] += 1
        hist[u2 + np.uint64(slot[x + 2])] += 1
        hist[u3 + np.uint64(slot[x + 3])] += 1
        x += 4
    while x < n_near:
        hist[np.uint64(slot[x])] += 1
        x += 1
    for t in range(hw):
        hist[t] += hist[hw + t] + hist[2 * hw + t] + hist[3 * hw + t]


@njit(cache=True, parallel=True)
def _score_fused(
    dist,
    q_rows,
    q_pid,
    q_group,
    q_self,
    e_ptr,
    e_job,
    g_cols,
    contiguous,
    codes,
    g_pid,
    pid_ptr,
    pid_pos,
    excluded,
    identity,
    totals,
    max_list,
    n_ids,
    first_rank,
    ap,
    inp,
    n_pos,
    n_gallery,
):
    n_queries = q_rows.shape[0]
    n_pool = g_cols.shape[0]
    n_jobs = excluded.shape[0]
    n_chunks = (n_queries + _CHUNK - 1) // _CHUNK
    width = max_list + 1
    for chunk in prange(n_chunks):
        # candidate keys, then one (inf, n_pool) past the last: `cd[s] == d` reads it
        cd = np.empty(width + 1, dtype=dist.dtype)
        cj = np.empty(width + 1, dtype=np.int32)
        cc = np.empty(width, dtype=np.uint8)
        near = np.empty(n_pool, dtype=np.uint32)
        near_d = np.empty(n_pool, dtype=dist.dtype)
        slot = np.empty(n_pool, dtype=np.uint32)
        table = np.empty(BUCKETS_PER_CANDIDATE * width + 2, dtype=np.int32)
        scale = np.empty(1, dtype=dist.dtype)
        hist = np.empty(4 * 8 * (width + 1), dtype=np.int32)
        cnt = np.empty((n_jobs, width), dtype=np.int32)
        first = np.empty(n_jobs, dtype=np.int64)
        neg_before = np.empty(width, dtype=np.int64)
        same_c3 = np.empty(8, dtype=np.int64)
        rec_pid = np.empty(n_pool, dtype=np.int32)
        rec_c3 = np.empty(n_pool, dtype=np.uint8)
        rec_s = np.empty(n_pool, dtype=np.int32)
        stamp = np.full(n_ids, -1, dtype=np.int64)
        stamp_next = 0
        start = chunk * _CHUNK
        stop = min(start + _CHUNK, n_queries)
        for i in range(start, stop):
            row = dist[q_rows[i]]
            p = q_pid[i]
            me = q_self[i]
            code = codes[q_group[i]]
            # candidates: the query's identity in the pool, minus the query
            same_c3[:] = 0
            n_cand = 0
            if p >= 0:
                for t in range(pid_ptr[p], pid_ptr[p + 1]):
                    j = pid_pos[t]
                    c3 = code[j]
                    same_c3[c3] += 1
                    if j == me:
                        continue
                    cd[n_cand] = row[g_cols[j]]
                    cj[n_cand] = j
                    cc[n_cand] = c3
                    n_cand += 1
            _sort_candidates(cd, cj, cc, n_cand)
            # per job: its true matches among the candidates, gallery size
            any_pos = False
            need_records = False
            first_max = -1
            for e in range(e_ptr[i], e_ptr[i + 1]):
                k = e_job[e]
                local = e - e_ptr[i]
                kept, first[local] = true_match_counts(excluded, k, cc, 0, n_cand, cnt[local])
                n_pos[e] = kept
                n_gallery[e] = kept + gallery_others(excluded, k, totals[q_group[i]], same_c3)
                if kept > 0:
                    any_pos = True
                    if identity[k]:
                        need_records = True
                        first_max = max(first_max, first[local])
            if not any_pos:
                continue
            last_d = cd[n_cand - 1]
            cd[n_cand] = np.inf
            cj[n_cand] = n_pool
            t1, inv, k_max = build_buckets(cd, 0, n_cand, table, 0, scale)
            # every image up to the last candidate's distance, gathered without a branch;
            # the ones of equal distance and larger position land in slot n_cand (ignored).
            # Unsigned counters and indices here and below: Numba adds a negative-index
            # wraparound to every signed index, which cost the placement loop ~40 %.
            gathered = np.uint64(0)
            if contiguous:
                for j in range(n_pool):
                    d = row[j]
                    near[gathered] = j
                    near_d[gathered] = d
                    gathered += np.uint64(d <= last_d)
            else:
                for j in range(n_pool):
                    d = row[g_cols[j]]
                    near[gathered] = j
                    near_d[gathered] = d
                    gathered += np.uint64(d <= last_d)
            n_near = np.int64(gathered)
            # slot of each: relation code * w + candidates before it; two copies of the
            # loop, one per placement, on purpose (choosing per image measured 6-7 % slower)
            w = n_cand + 1
            uw = np.uint64(w)
            if k_max >= 0:
                for x in range(n_near):
                    d = near_d[x]
                    s = below_bucketed_unsigned(cd, 0, n_cand, table, 0, t1, inv, k_max, d)
                    if cd[s] == d:  # a candidate of equal distance (rare)
                        walked = after_equal_distances(cd, cj, 0, n_cand, np.int64(s), d, near[x])
                        s = np.uint64(walked)
                    slot[x] = code[near[x]] * uw + s
            else:
                for x in range(n_near):
                    d = near_d[x]
                    s = search(cd, 0, n_cand, d)
                    if cd[s] == d:
                        s = after_equal_distances(cd, cj, 0, n_cand, s, d, near[x])
                    slot[x] = code[near[x]] * w + s
            fill_histogram(hist, 8 * w, slot, n_near)
            n_rec = 0
            if need_records:
                for x in range(n_near):
                    s = np.int64(slot[x]) % w
                    if s <= first_max:
                        rec_pid[n_rec] = g_pid[near[x]]
                        rec_c3[n_rec] = np.int64(slot[x]) // w
                        rec_s[n_rec] = s
                        n_rec += 1
            # the candidates and the query are no negatives
            for t in range(n_cand):
                hist[cc[t] * w + t] -= 1
            if me >= 0:
                d_me = row[g_cols[me]]
                if d_me <= last_d:
                    s = search(cd, 0, n_cand, d_me)
                    s = after_equal_distances(cd, cj, 0, n_cand, s, d_me, me)
                    hist[code[me] * w + s] -= 1
            for e in range(e_ptr[i], e_ptr[i + 1]):
                k = e_job[e]
                local = e - e_ptr[i]
                kept = n_pos[e]
                if kept == 0:
                    continue
                negatives_before(excluded, k, hist, 0, w, n_cand, cnt[local], kept, neg_before)
                ap[e], inp[e], rank_one = metrics_from_negatives(neg_before, 0, kept)
                if identity[k]:
                    stamp_next += 1
                    distinct = 0
                    f = first[local]
                    for r in range(n_rec):
                        if rec_s[r] > f or excluded[k, rec_c3[r]]:
                            continue
                        pid = rec_pid[r]
                        if pid == p or stamp[pid] == stamp_next:
                            continue
                        stamp[pid] = stamp_next
                        distinct += 1
                    rank_one = distinct + 1
                first_rank[e] = rank_one


def job_tables(jobs: Sequence[FusedJob]) -> np.ndarray:
    """bool [jobs, 16]: whether a job excludes an image, by ``8 * same_identity + c3``."""
    tables = np.zeros((len(jobs), 16), dtype=np.bool_)
    for k, job in enumerate(jobs):
        base = exclusion_table(np.asarray(job.clauses).reshape(-1, 3))
        bit = 1 if job.colocated else 2
        for same_id in (0, 1):
            for c3 in range(8):
                same_cam = (c3 >> bit) & 1
                tables[k, 8 * same_id + c3] = base[4 * same_cam + 2 * same_id + (c3 & 1)]
    return tables


def label_groups(
    cam: np.ndarray, cam_colocated: np.ndarray, modality: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per image its label group, and the uint8 ``groups x groups`` relation codes.

    A label group is one (literal camera key, co-located camera key, modality) triple; the
    relation of two groups is bit 2 same camera, bit 1 same co-located camera, bit 0 same
    modality. Returns (int32 group of every image, relation table).
    """
    labels = np.stack(
        [np.asarray(cam, np.int64), np.asarray(cam_colocated, np.int64),
         np.asarray(modality, np.int64)],
        axis=1,
    )  # fmt: skip
    kinds, group = np.unique(labels, axis=0, return_inverse=True)
    equal = kinds[:, None, :] == kinds[None, :, :]
    relation = (4 * equal[..., 0] + 2 * equal[..., 1] + equal[..., 2]).astype(np.uint8)
    return group.reshape(-1).astype(np.int32), relation


@dataclass(frozen=True)
class FusedPool:
    """What the fused kernel needs of one gallery pool, computed once for all its blocks.

    Built by :func:`fused_pool`; :func:`score_pool_jobs` scores a block against it.
    """

    g_cols: np.ndarray  # int64 [n] distance column of each pool image
    arange_cols: bool  # g_cols is 0 .. n - 1
    g_group: np.ndarray  # int32 [n] label group
    codes: np.ndarray  # uint8 [groups, n] relation code of each pool image, per query group
    g_pid: np.ndarray  # int32 [n] dense identity
    relation: np.ndarray  # uint8 [groups, groups]
    totals: np.ndarray  # int64 [groups, 8] pool images per relation code, per query group
    pid_ptr: np.ndarray  # int64 [n_ids + 1]
    pid_pos: np.ndarray  # int64 pool positions grouped by identity, in pool order
    max_list: int
    n_ids: int
    sorted_uid: np.ndarray  # the pool image ids, sorted
    by_uid: np.ndarray  # pool positions in that order


def fused_pool(
    g_cols: np.ndarray,
    g_uid: np.ndarray,
    g_pid: np.ndarray,
    g_group: np.ndarray,
    relation: np.ndarray,
    n_ids: int,
) -> FusedPool:
    """Prepare a pool: ``g_pid`` dense identities (``0 .. n_ids - 1``), ``g_group`` label
    groups of :func:`label_groups` (``relation`` its table); image ids ``g_uid`` distinct."""
    n = int(np.size(g_cols))
    g_pid = np.asarray(g_pid).astype(np.int32)
    g_group = np.asarray(g_group).astype(np.int32)
    per_group = np.bincount(g_group, minlength=relation.shape[0])
    totals = np.zeros((relation.shape[0], 8), dtype=np.int64)
    for a in range(relation.shape[0]):
        np.add.at(totals[a], relation[a], per_group)
    order = np.argsort(g_pid, kind="stable")
    pid_ptr = np.zeros(n_ids + 1, dtype=np.int64)
    np.cumsum(np.bincount(g_pid, minlength=n_ids), out=pid_ptr[1:])
    by_uid = np.argsort(g_uid, kind="stable")
    g_cols = np.ascontiguousarray(g_cols, dtype=np.int64)
    return FusedPool(
        g_cols=g_cols,
        arange_cols=bool(np.array_equal(g_cols, np.arange(n))),
        g_group=g_group,
        codes=np.ascontiguousarray(relation[:, g_group]),
        g_pid=g_pid,
        relation=relation,
        totals=totals,
        pid_ptr=pid_ptr,
        pid_pos=order.astype(np.int64),
        max_list=int(np.diff(pid_ptr).max(initial=0)),
        n_ids=int(n_ids),
        sorted_uid=np.asarray(g_uid)[by_uid],
        by_uid=by_uid,
    )


def score_pool_jobs(
    dist: np.ndarray,
    q_rows: np.ndarray,
    q_uid: np.ndarray,
    q_pid: np.ndarray,
    q_group: np.ndarray,
    pool: FusedPool,
    jobs: Sequence[FusedJob],
) -> list[dict[str, np.ndarray]]:
    """:func:`score_jobs` against a prepared pool: ``q_pid`` dense identities and
    ``q_group`` label groups in the numbering the pool was built with."""
    m = int(q_rows.shape[0])
    n = int(pool.g_cols.shape[0])
    outs = [empty_query_scores(int(np.size(job.queries))) for job in jobs]
    entries = [np.asarray(job.queries, dtype=np.int64).reshape(-1) for job in jobs]
    for k, queries in enumerate(entries):
        if queries.size and (queries.min() < 0 or queries.max() >= m):
            raise ValueError(f"job {k}: query position outside the query arrays")
    if m == 0 or not jobs or sum(q.size for q in entries) == 0:
        return outs

    # the query's own pool position (-1 when it is not in the pool)
    at = np.clip(np.searchsorted(pool.sorted_uid, q_uid), 0, max(n - 1, 0))
    q_self = np.full(m, -1, dtype=np.int64)
    if n:
        found = pool.sorted_uid[at] == np.asarray(q_uid)
        q_self[found] = pool.by_uid[at[found]]

    # entries: (query, job) pairs grouped by query
    e_query = np.concatenate(entries)
    e_job_all = np.concatenate([np.full(q.size, k, dtype=np.int64) for k, q in enumerate(entries)])
    by_query = np.argsort(e_query, kind="stable")
    e_job = e_job_all[by_query]
    e_ptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(e_query, minlength=m), out=e_ptr[1:])
    size = e_query.size
    first_rank = np.zeros(size, dtype=np.int64)
    ap = np.full(size, np.nan)
    inp = np.full(size, np.nan)
    n_pos = np.zeros(size, dtype=np.int64)
    n_gallery = np.zeros(size, dtype=np.int64)
    contiguous = bool(pool.arange_cols and n == dist.shape[1])
    _score_fused(
        dist,
        np.ascontiguousarray(q_rows, dtype=np.int64),
        np.asarray(q_pid, dtype=np.int64),
        np.asarray(q_group, dtype=np.int64),
        q_self,
        e_ptr,
        e_job,
        pool.g_cols,
        contiguous,
        pool.codes,
        pool.g_pid,
        pool.pid_ptr,
        pool.pid_pos,
        job_tables(jobs),
        np.array([bool(job.identity_cmc) for job in jobs], dtype=np.bool_),
        pool.totals,
        pool.max_list,
        pool.n_ids,
        first_rank,
        ap,
        inp,
        n_pos,
        n_gallery,
    )
    back = np.empty(size, dtype=np.int64)
    back[by_query] = np.arange(size)
    offsets = np.concatenate([[0], np.cumsum([q.size for q in entries])])
    for k, out in enumerate(outs):
        mine = back[offsets[k] : offsets[k + 1]]
        out["first_rank"][:] = first_rank[mine]
        out["ap"][:] = ap[mine]
        out["inp"][:] = inp[mine]
        out["n_pos"][:] = n_pos[mine]
        out["n_gallery"][:] = n_gallery[mine]
    return outs


def score_jobs(
    dist: np.ndarray,
    q_rows: np.ndarray,
    q_uid: np.ndarray,
    q_pid: np.ndarray,
    q_cam: np.ndarray,
    q_cam_colocated: np.ndarray,
    q_mod: np.ndarray,
    g_cols: np.ndarray,
    g_uid: np.ndarray,
    g_pid: np.ndarray,
    g_cam: np.ndarray,
    g_cam_colocated: np.ndarray,
    g_mod: np.ndarray,
    jobs: Sequence[FusedJob],
) -> list[dict[str, np.ndarray]]:
    """Score every job against one pool in one pass per query row.

    The arrays mean what they mean for :func:`vireid_bench.engine.kernels.score_queries`;
    ``q_cam_colocated`` / ``g_cam_colocated`` are the camera keys with co-located cameras
    merged (used by jobs with ``colocated``). Pool image ids ``g_uid`` must be distinct.

    Returns:
        Per job, the outputs of :func:`~vireid_bench.engine.kernels.score_queries` for its
        ``queries``, in that order.
    """
    m = int(q_rows.shape[0])
    n = int(g_cols.shape[0])
    check_block_inputs(
        dist, q_rows, g_cols,
        {"q_uid": q_uid, "q_pid": q_pid, "q_cam": q_cam, "q_cam_colocated": q_cam_colocated,
         "q_mod": q_mod},
        {"g_uid": g_uid, "g_pid": g_pid, "g_cam": g_cam, "g_cam_colocated": g_cam_colocated,
         "g_mod": g_mod},
    )  # fmt: skip
    if np.unique(g_uid).size != n:
        raise ValueError("g_uid: pool image ids must be distinct")
    group, relation = label_groups(
        np.concatenate([np.asarray(q_cam, np.int64), np.asarray(g_cam, np.int64)]),
        np.concatenate(
            [np.asarray(q_cam_colocated, np.int64), np.asarray(g_cam_colocated, np.int64)]
        ),
        np.concatenate([np.asarray(q_mod, np.int64), np.asarray(g_mod, np.int64)]),
    )
    ids, dense = np.unique(
        np.concatenate([np.asarray(q_pid, np.int64), np.asarray(g_pid, np.int64)]),
        return_inverse=True,
    )
    dense = dense.reshape(-1)
    pool = fused_pool(g_cols, g_uid, dense[m:], group[m:], relation, int(ids.size))
    return score_pool_jobs(dist, q_rows, q_uid, dense[:m], group[:m], pool, jobs)
