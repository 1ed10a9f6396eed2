"""Lean streaming: every plan that shares a gallery pool in one pass per streamed block.

:mod:`vireid_bench.engine.streaming` cuts the distances into query blocks x gallery blocks.
Before this module it ran one pass per plan (setting, trial, CMC convention) over every
gallery block. Here the plans of one *pool group* (the same pool images in the same order,
no image twice) share each pass, the way :mod:`vireid_bench.engine.fused` does for whole
rows:

1. **Candidates once per query block.** A query's candidates are the pool images of its
   identity minus itself (per-identity index lists, no scan), with their distances from the
   streamed path's per-identity table, sorted by ``(distance, pool position)``. Each plan's
   true matches are the candidates its exclusion table keeps (a lookup by relation code).
2. **One pass per gallery block.** Every image of the block that precedes the query's last
   candidate (gathered without a branch per image) and is not of the query's identity is
   placed among the candidates (``s`` = candidates before it: a per-query bucket table and a
   few comparisons, :mod:`vireid_bench.engine.placement`) and
   counted in a per-query histogram ``hist[c3, s]`` carried across gallery blocks; ``c3``
   is the relation code of :mod:`vireid_bench.engine.fused` (bit 2 same camera, bit 1 same
   co-located camera, bit 0 same modality). For plans with the identity CMC, the identities
   ranked before the plan's first true match go into a bit set per (query, plan).
3. **Finish.** Per plan, ``neg_before[cnt[s]] += hist[c3, s]`` over the codes it keeps, then
   AP, INP and the first-hit rank (:func:`~vireid_bench.engine.kernels.metrics_from_negatives`);
   gallery sizes come from label counts alone.

State per query: its candidates and ``8 x candidates`` int32 counts (plus ``identities / 64``
words per identity-CMC plan), whatever the gallery size. Images of the query's identity are
skipped during the pass (they are the candidates and the query, placed beforehand), so a
candidate's block distance is never compared with its table distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from vireid_bench.engine.fused import (
    FusedJob,
    fill_histogram,
    fused_pool,
    gallery_others,
    job_tables,
    negatives_before,
    true_match_counts,
)
from vireid_bench.engine.kernels import metrics_from_negatives, popcount
from vireid_bench.engine.placement import (
    BUCKETS_PER_CANDIDATE,
    MIN_BUCKETED,
    after_equal_distances,
    below_bucketed_unsigned,
    build_buckets,
    search,
)

_CHUNK = 16


@njit(cache=True, parallel=True)
def _bucket_tables(start, cd):
    """Per query, the bucket table of its sorted candidates (:mod:`~vireid_bench.engine.placement`).

    Returns ``(t_start, table, t1, inv, k)``: query ``i``'s table is
    ``table[t_start[i]:t_start[i + 1]]``; ``k[i] = -1`` where none is built (few candidates,
    an empty or infinite range), and the direct search places its images.
    """
    m = start.shape[0] - 1
    t_start = np.zeros(m + 1, dtype=np.int64)
    for i in range(m):
        n = start[i + 1] - start[i]
        t_start[i + 1] = t_start[i] + (BUCKETS_PER_CANDIDATE * n + 2 if n >= MIN_BUCKETED else 0)
    table = np.empty(t_start[m], dtype=np.int32)
    t1 = np.zeros(m, dtype=cd.dtype)
    inv = np.zeros(m, dtype=cd.dtype)
    k = np.full(m, -1, dtype=np.int64)
    for i in prange(m):
        n = start[i + 1] - start[i]
        if n < MIN_BUCKETED:
            continue
        scale = np.empty(1, dtype=cd.dtype)
        t1[i], inv[i], k[i] = build_buckets(cd, start[i], n, table, t_start[i], scale)
    return t_start, table, t1, inv, k


@njit(cache=True, parallel=True)
def _candidates(
    rows, q_pid, q_self, pid_ptr, pid_pos, union_cols, q_group, g_group, relation,
    row_group, group_row0, group_col0, group_off, group_cols, table,
):  # fmt: skip
    """CSR ``(start, cd, cj, cc)``: each query's candidates sorted by (distance, position).

    ``cc`` is the candidate's relation code to the query; the distance of candidate ``j``
    is read from the per-identity table of the query block (row ``rows[i]``).
    """
    m = rows.shape[0]
    start = np.zeros(m + 1, dtype=np.int64)
    for i in range(m):
        p = q_pid[i]
        c = 0
        if p >= 0:
            c = pid_ptr[p + 1] - pid_ptr[p]
            if q_self[i] >= 0:
                c -= 1
        start[i + 1] = start[i] + c
    cd = np.empty(start[m], dtype=np.float32)
    cj = np.empty(start[m], dtype=np.int32)
    cc = np.empty(start[m], dtype=np.uint8)
    for i in prange(m):
        p = q_pid[i]
        if p < 0:
            continue
        r = rows[i]
        g = row_group[r]
        c0 = group_col0[g]
        c1 = group_col0[g + 1]
        base = group_off[g] + (r - group_row0[g]) * (c1 - c0)
        rel = relation[q_group[i]]
        a0 = start[i]
        c = a0
        for t in range(pid_ptr[p], pid_ptr[p + 1]):
            j = pid_pos[t]
            if j == q_self[i]:
                continue
            d = table[base + np.searchsorted(group_cols[c0:c1], union_cols[j])]
            code = rel[g_group[j]]
            # insertion into the sorted run (the list arrives by pool position)
            b = c - 1
            while b >= a0 and cd[b] > d:
                cd[b + 1] = cd[b]
                cj[b + 1] = cj[b]
                cc[b + 1] = cc[b]
                b -= 1
            cd[b + 1] = d
            cj[b + 1] = j
            cc[b + 1] = code
            c += 1
    return start, cd, cj, cc


@njit(cache=True)
def _first_kept(start, cc, e_ptr, e_job, excluded, identity, bits_of):
    """Per entry its first kept candidate (-1: none); per query the largest over its
    identity-CMC entries (the images the pass must record). ``bits_of`` numbers the
    identity-CMC entries (-1 for the others)."""
    m = start.shape[0] - 1
    first = np.full(e_job.shape[0], -1, dtype=np.int32)
    first_max = np.full(m, -1, dtype=np.int32)
    n_bits = 0
    for i in range(m):
        for e in range(e_ptr[i], e_ptr[i + 1]):
            k = e_job[e]
            for t in range(start[i], start[i + 1]):
                if not excluded[k, 8 + cc[t]]:
                    first[e] = t - start[i]
                    break
            if identity[k]:
                bits_of[e] = n_bits
                n_bits += 1
                if first[e] > first_max[i]:
                    first_max[i] = first[e]
    return first, first_max, n_bits


@njit(cache=True, parallel=True)
def _count(
    dist, q_rows, q_pid, q_group, start, cd, cj, t_start, table, t1, inv, k_max, hist,
    first_max, e_ptr, e_job, first, bits_of, id_bits, excluded, contiguous, g_start,
    block_pos, block_cols, g_pid, codes,
):  # fmt: skip
    """Add one gallery block to every query's histogram (and identity bit sets).

    Images are placed among the candidates by the query's bucket table where it has one
    (``k_max[i] >= 0``, see :func:`_bucket_tables`; the caller passes all ``-1`` when the
    block's distances are not of the candidates' type), by the direct search otherwise.
    A query's slots (``relation code * n + s``) are counted through four interleaved
    copies (:func:`~vireid_bench.engine.fused.fill_histogram`) when the block gives it at
    least as many images as it has slots, straight into ``hist`` otherwise.

    Contiguous: the block is pool positions ``g_start + t`` in columns ``t`` of ``dist``;
    otherwise pool positions ``block_pos[t]`` in columns ``block_cols[t]``. ``hist`` has
    ``8 * n_cand`` slots per query from offset ``8 * start[i]``.
    """
    m = q_rows.shape[0]
    nb = block_pos.shape[0]
    n_chunks = (m + _CHUNK - 1) // _CHUNK
    max_cand = 0
    for i in range(m):
        max_cand = max(max_cand, start[i + 1] - start[i])
    for chunk in prange(n_chunks):
        near = np.empty(nb, dtype=np.uint32)
        near_d = np.empty(nb, dtype=dist.dtype)
        slot = np.empty(nb, dtype=np.uint32)
        local = np.empty(4 * (8 * max_cand + 1), dtype=np.int32)
        for i in range(chunk * _CHUNK, min(m, (chunk + 1) * _CHUNK)):
            a0 = start[i]
            n = start[i + 1] - a0
            if n == 0:
                continue
            row = dist[q_rows[i]]
            last_d = cd[a0 + n - 1]
            # every image up to the last candidate's distance (those of equal distance after
            # the last candidate in position order get slot n, counted nowhere)
            # (unsigned counters and indices: Numba wraps every signed index)
            gathered = np.uint64(0)
            if contiguous:
                for t in range(nb):
                    d = row[t]
                    near[gathered] = t
                    near_d[gathered] = d
                    gathered += np.uint64(d <= last_d)
            else:
                for t in range(nb):
                    d = row[block_cols[t]]
                    near[gathered] = t
                    near_d[gathered] = d
                    gathered += np.uint64(d <= last_d)
            n_near = np.int64(gathered)
            if n_near == 0:
                continue
            p = q_pid[i]
            code = codes[q_group[i]]
            h0 = 8 * a0
            fm = first_max[i]
            kq = k_max[i]
            tq = t_start[i]
            # images of the query's identity (the candidates, the query: placed beforehand)
            # and those after the last candidate go to the extra slot 8 * n
            extra = 8 * n
            ua0 = np.uint64(a0)
            un = np.uint64(n)
            for x in range(n_near):
                t = near[x]
                j = g_start + t if contiguous else block_pos[t]
                d = near_d[x]
                if kq >= 0:
                    su = below_bucketed_unsigned(cd, a0, n, table, tq, t1[i], inv[i], kq, d)
                else:
                    su = np.uint64(search(cd, a0, n, d))
                s = np.int64(su)
                if su < un and cd[ua0 + su] == d:  # a key of equal distance (rare)
                    s = after_equal_distances(cd, cj, a0, n, s, d, j)
                c3 = code[j]
                other = g_pid[j] != p
                slot[x] = c3 * n + s if other and s < n else extra
                if s <= fm and other:
                    for e in range(e_ptr[i], e_ptr[i + 1]):
                        b = bits_of[e]
                        if b < 0 or s > first[e] or excluded[e_job[e], c3]:
                            continue
                        word = g_pid[j] >> 6
                        id_bits[b, word] |= np.uint64(1) << np.uint64(g_pid[j] & 63)
            if n_near >= extra:
                fill_histogram(local, extra + 1, slot, n_near)
                for t in range(extra):
                    hist[h0 + t] += local[t]
            else:
                for x in range(n_near):
                    if slot[x] < extra:
                        hist[h0 + slot[x]] += 1


@njit(cache=True, parallel=True)
def _finish(
    start, cc, hist, q_pid, q_group, e_ptr, e_job, excluded, identity, bits_of, id_bits,
    pid_ptr, pid_pos, g_group, relation, totals, first_rank, ap, inp, n_pos, n_gallery,
):  # fmt: skip
    """Per entry: true matches, gallery size, then AP, INP and the first-hit rank."""
    m = start.shape[0] - 1
    for i in prange(m):
        a0 = start[i]
        n = start[i + 1] - a0
        p = q_pid[i]
        rel = relation[q_group[i]]
        same_c3 = np.zeros(8, dtype=np.int64)
        if p >= 0:
            for t in range(pid_ptr[p], pid_ptr[p + 1]):
                same_c3[rel[g_group[pid_pos[t]]]] += 1
        cnt = np.empty(n + 1, dtype=np.int64)
        neg_before = np.empty(n + 1, dtype=np.int64)
        h0 = 8 * a0
        for e in range(e_ptr[i], e_ptr[i + 1]):
            k = e_job[e]
            kept, _ = true_match_counts(excluded, k, cc, a0, n, cnt)
            n_pos[e] = kept
            n_gallery[e] = kept + gallery_others(excluded, k, totals[q_group[i]], same_c3)
            if kept == 0:
                continue
            negatives_before(excluded, k, hist, h0, n, n, cnt, kept, neg_before)
            ap[e], inp[e], rank_one = metrics_from_negatives(neg_before, 0, kept)
            if identity[k]:
                distinct = 0
                b = bits_of[e]
                for w in range(id_bits.shape[1]):
                    distinct += popcount(id_bits[b, w])
                rank_one = distinct + 1
            first_rank[e] = rank_one


# --------------------------------------------------------------------------- orchestration


@dataclass
class PoolGroup:
    """Plans sharing one pool (distinct images, one order), with what the pass needs.

    Built once per split by :func:`pool_group`; :meth:`start` opens a query block.
    """

    query_idx: list[np.ndarray]  # per job: split indices of its queries
    q_order_pos: list[np.ndarray]  # per job: each query's position in the pid order
    outs: list[dict[str, np.ndarray]]
    excluded: np.ndarray  # bool [jobs, 16]
    identity: np.ndarray  # bool [jobs]
    split_group: np.ndarray  # label group of every split image
    split_pid: np.ndarray  # dense identity of every split image
    n_ids: int
    relation: np.ndarray  # uint8 [groups, groups]
    totals: np.ndarray  # int64 [groups, 8]: pool images per relation code
    g_pid: np.ndarray  # int32 [n] dense identity per pool position
    g_group: np.ndarray  # int32 [n]
    codes: np.ndarray  # uint8 [groups, n]: relation code of each pool image, per query group
    pid_ptr: np.ndarray
    pid_pos: np.ndarray  # int32 pool positions, grouped by identity, in pool order
    pool_sorted: np.ndarray  # the pool's split indices, sorted
    pool_by_uid: np.ndarray  # pool positions in that order
    union_cols: np.ndarray  # pool position -> column of the pool union
    cols_order: np.ndarray  # pool positions sorted by union column
    cols_sorted: np.ndarray
    contiguous: bool  # the pool is the pool union, in order


def pool_group(
    pool_idx: np.ndarray,
    pool_union: np.ndarray,
    jobs: Sequence[tuple[np.ndarray, np.ndarray, FusedJob, dict[str, np.ndarray]]],
    split_group: np.ndarray,
    relation: np.ndarray,
    split_pid: np.ndarray,
    n_ids: int,
) -> PoolGroup:
    """Prepare the plans sharing ``pool_idx`` (distinct split indices).

    ``jobs``: per plan (query split indices, their positions in the pid-ordered query
    union, the plan as a :class:`~vireid_bench.engine.fused.FusedJob`, its output arrays).
    ``split_pid`` is dense (0 .. n_ids - 1).
    """
    pool_idx = np.asarray(pool_idx, dtype=np.int64)
    union_cols = np.searchsorted(pool_union, pool_idx).astype(np.int64)
    # the pool-side tables of the in-memory kernel: identity lists, label totals, self lookup
    base = fused_pool(
        union_cols, pool_idx, split_pid[pool_idx], split_group[pool_idx], relation, n_ids
    )
    cols_order = np.argsort(union_cols, kind="stable").astype(np.int64)
    return PoolGroup(
        query_idx=[np.asarray(job[0], dtype=np.int64) for job in jobs],
        q_order_pos=[job[1] for job in jobs],
        outs=[job[3] for job in jobs],
        excluded=job_tables([job[2] for job in jobs]),
        identity=np.array([bool(job[2].identity_cmc) for job in jobs], dtype=np.bool_),
        split_group=split_group,
        split_pid=split_pid,
        n_ids=n_ids,
        relation=relation,
        totals=base.totals,
        g_pid=base.g_pid,
        g_group=base.g_group,
        codes=base.codes,
        pid_ptr=base.pid_ptr,
        pid_pos=base.pid_pos.astype(np.int32),
        pool_sorted=base.sorted_uid,
        pool_by_uid=base.by_uid.astype(np.int64),
        union_cols=union_cols,
        cols_order=cols_order,
        cols_sorted=union_cols[cols_order],
        contiguous=bool(pool_idx.size == pool_union.size and np.array_equal(pool_idx, pool_union)),
    )


class GroupBlock:
    """One query block of a :class:`PoolGroup`: candidates, then counts per gallery block."""

    def __init__(self, group: PoolGroup, q_start: int, q_stop: int, block_idx, table) -> None:
        self.group = group
        picked = []
        rows_of = []
        for positions in group.q_order_pos:
            selected = np.flatnonzero((positions >= q_start) & (positions < q_stop))
            picked.append(selected)
            rows_of.append(positions[selected] - q_start)
        self.picked = picked
        rows = np.unique(np.concatenate(rows_of)) if rows_of else np.empty(0, np.int64)
        self.m = int(rows.size)
        if self.m == 0:
            return
        e_query = np.concatenate([np.searchsorted(rows, r) for r in rows_of])
        e_job = np.concatenate([np.full(r.size, k, dtype=np.int64) for k, r in enumerate(rows_of)])
        by_query = np.argsort(e_query, kind="stable")
        self.by_query = by_query
        self.e_job = e_job[by_query]
        self.e_ptr = np.zeros(self.m + 1, dtype=np.int64)
        np.cumsum(np.bincount(e_query, minlength=self.m), out=self.e_ptr[1:])
        self.rows = rows.astype(np.int64)
        query_idx = block_idx[rows]
        self.q_pid = group.split_pid[query_idx].astype(np.int64)
        self.q_group = group.split_group[query_idx].astype(np.int64)
        q_self = np.full(self.m, -1, dtype=np.int64)
        n = group.pool_sorted.size
        if n:
            at = np.clip(np.searchsorted(group.pool_sorted, query_idx), 0, n - 1)
            found = group.pool_sorted[at] == query_idx
            q_self[found] = group.pool_by_uid[at[found]]
        self.start, self.cd, self.cj, self.cc = _candidates(
            self.rows, self.q_pid, q_self, group.pid_ptr, group.pid_pos, group.union_cols,
            self.q_group, group.g_group, group.relation, table.row_group, table.row0,
            table.col0, table.off, table.cols, table.values,
        )  # fmt: skip
        bits_of = np.full(self.e_job.size, -1, dtype=np.int64)
        self.first, self.first_max, n_bits = _first_kept(
            self.start,
            self.cc,
            self.e_ptr,
            self.e_job,
            group.excluded,
            group.identity,
            bits_of,
        )
        self.bits_of = bits_of
        self.id_bits = np.zeros(
            (max(1, n_bits), (group.n_ids + 63) // 64 if n_bits else 1), dtype=np.uint64
        )
        self.hist = np.zeros(8 * int(self.start[-1]), dtype=np.int32)
        self.t_start, self.table, self.t1, self.inv, self.k_max = _bucket_tables(
            self.start, self.cd
        )
        self.no_table = np.full(self.m, -1, dtype=np.int64)

    def count(self, dist: np.ndarray, g_start: int, g_stop: int) -> None:
        """Count the pool images whose union columns are ``g_start:g_stop`` (dist's columns)."""
        if self.m == 0:
            return
        group = self.group
        if group.contiguous:
            block_pos = np.empty(g_stop - g_start, dtype=np.int64)
            block_cols = block_pos
        else:
            lo = np.searchsorted(group.cols_sorted, g_start)
            hi = np.searchsorted(group.cols_sorted, g_stop)
            if lo == hi:
                return
            block_pos = group.cols_order[lo:hi]
            block_cols = group.union_cols[block_pos] - g_start
        # the bucket tables hold float32 buckets; other distance types take the direct search
        k_max = self.k_max if dist.dtype == self.cd.dtype else self.no_table
        _count(
            dist, self.rows, self.q_pid, self.q_group, self.start, self.cd, self.cj,
            self.t_start, self.table, self.t1, self.inv, k_max, self.hist, self.first_max,
            self.e_ptr, self.e_job, self.first, self.bits_of,
            self.id_bits, group.excluded, group.contiguous, g_start, block_pos, block_cols,
            group.g_pid, group.codes,
        )  # fmt: skip

    def finish(self) -> None:
        """Write every entry's outputs into its plan's arrays."""
        if self.m == 0:
            return
        group = self.group
        size = self.e_job.size
        first_rank = np.zeros(size, dtype=np.int64)
        ap = np.full(size, np.nan)
        inp = np.full(size, np.nan)
        n_pos = np.zeros(size, dtype=np.int64)
        n_gallery = np.zeros(size, dtype=np.int64)
        _finish(
            self.start, self.cc, self.hist, self.q_pid, self.q_group, self.e_ptr, self.e_job,
            group.excluded, group.identity, self.bits_of, self.id_bits, group.pid_ptr,
            group.pid_pos, group.g_group, group.relation, group.totals, first_rank, ap, inp,
            n_pos, n_gallery,
        )  # fmt: skip
        back = np.empty(size, dtype=np.int64)
        back[self.by_query] = np.arange(size)
        offset = 0
        for k, selected in enumerate(self.picked):
            mine = back[offset : offset + selected.size]
            offset += selected.size
            out = group.outs[k]
            out["first_rank"][selected] = first_rank[mine]
            out["ap"][selected] = ap[mine]
            out["inp"][selected] = inp[mine]
            out["n_pos"][selected] = n_pos[mine]
            out["n_gallery"][selected] = n_gallery[mine]
