"""Numba kernel of the rank lists: each query's top-k gallery and the ranks of its true matches.

The order is the scorer's (:mod:`vireid_bench.engine.kernels`): gallery images by
``(distance, position in the pool)``, ties in pool order, after exclusion. The kernel
applies the exclusion from label arrays and the preset's clause table exactly as the
scoring kernel does (:func:`~vireid_bench.engine.kernels.exclusion_table`).
Like the scoring kernel it never sorts a whole gallery:

* **top-k**: one pass over the kept gallery in pool order keeps the ``k`` smallest
  ``(distance, position)`` keys in a sorted buffer (insertion; an image enters only when it
  precedes the buffer's last, so a tie never displaces an earlier position);
* **true-match ranks**: the true matches (few) are sorted, every other kept image is placed
  between them with a binary search
  (:func:`~vireid_bench.engine.kernels.slot_among_true_matches`),
  and true match ``k`` gets rank ``k + 1 +`` the images placed before it;
* **identity CMC**: one plus the distinct identities of the images before the first true
  match, as the scoring kernel counts them.

:func:`rank_block` checks its inputs and runs the queries of a block in parallel
(``prange`` over chunks, per-chunk scratch arrays).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from vireid_bench.engine.kernels import (
    distinct_count,
    exclusion_table,
    key_less,
    place_negatives,
)

_CHUNK = 16


@njit(cache=True)
def _rank_one(
    row,
    q_uid,
    q_pid,
    q_cam,
    q_mod,
    g_cols,
    g_uid,
    g_pid,
    g_cam,
    g_mod,
    excluded,
    identity_cmc,
    top_out,
    ranks_out,
    offset,
    pos_d,
    pos_j,
    neg_d,
    neg_j,
    neg_before,
    pid_buffer,
    buf_d,
):
    """One query: fill ``top_out`` (pool positions, -1 padded) and ``ranks_out[offset:]``.

    Returns (gallery size, number of true matches, first-hit rank; 0 without a match).
    """
    n_pool = g_cols.shape[0]
    top_k = top_out.shape[0]
    n_top = 0
    n_pos = 0
    n_neg = 0
    for j in range(n_pool):
        if g_uid[j] == q_uid:
            continue
        same_pid = g_pid[j] == q_pid
        key = (
            (4 if g_cam[j] == q_cam else 0)
            + (2 if same_pid else 0)
            + (1 if g_mod[j] == q_mod else 0)
        )
        if excluded[key]:
            continue
        d = row[g_cols[j]]
        # top-k: a sorted buffer of (distance, position); positions arrive in pool order
        if n_top < top_k or key_less(d, j, buf_d[n_top - 1], top_out[n_top - 1]):
            b = n_top - 1 if n_top < top_k else n_top - 2
            if n_top < top_k:
                n_top += 1
            while b >= 0 and key_less(d, j, buf_d[b], top_out[b]):
                buf_d[b + 1] = buf_d[b]
                top_out[b + 1] = top_out[b]
                b -= 1
            buf_d[b + 1] = d
            top_out[b + 1] = j
        if same_pid:
            pos_d[n_pos] = d
            pos_j[n_pos] = j
            n_pos += 1
        else:
            neg_d[n_neg] = d
            neg_j[n_neg] = j
            n_neg += 1
    for t in range(n_top, top_k):
        top_out[t] = -1
    n_gallery = n_pos + n_neg
    if n_pos == 0:
        return n_gallery, 0, 0
    n_closer_ids = place_negatives(
        pos_d, pos_j, n_pos, neg_d, neg_j, n_neg, neg_before, identity_cmc, g_pid, pid_buffer
    )
    negatives = 0
    for k in range(n_pos):
        negatives += neg_before[k]
        ranks_out[offset + k] = k + 1 + negatives
    first_hit = ranks_out[offset]
    if identity_cmc:
        first_hit = distinct_count(pid_buffer, n_closer_ids) + 1
    return n_gallery, n_pos, first_hit


@njit(cache=True, parallel=True)
def _rank_block(
    dist,
    q_rows,
    q_uid,
    q_pid,
    q_cam,
    q_mod,
    g_cols,
    g_uid,
    g_pid,
    g_cam,
    g_mod,
    excluded,
    identity_cmc,
    offsets,
    top,
    ranks,
    n_pos,
    n_gallery,
    first_hit,
):
    n_queries = q_rows.shape[0]
    n_pool = g_cols.shape[0]
    top_k = top.shape[1]
    n_chunks = (n_queries + _CHUNK - 1) // _CHUNK
    for chunk in prange(n_chunks):
        pos_d = np.empty(n_pool, dtype=dist.dtype)
        pos_j = np.empty(n_pool, dtype=np.int64)
        neg_d = np.empty(n_pool, dtype=dist.dtype)
        neg_j = np.empty(n_pool, dtype=np.int64)
        neg_before = np.empty(n_pool + 1, dtype=np.int64)
        pid_buffer = np.empty(n_pool, dtype=np.int64)
        buf_d = np.empty(top_k, dtype=dist.dtype)
        start = chunk * _CHUNK
        stop = min(start + _CHUNK, n_queries)
        for i in range(start, stop):
            size, positives, hit = _rank_one(
                dist[q_rows[i]],
                q_uid[i],
                q_pid[i],
                q_cam[i],
                q_mod[i],
                g_cols,
                g_uid,
                g_pid,
                g_cam,
                g_mod,
                excluded,
                identity_cmc,
                top[i],
                ranks,
                offsets[i],
                pos_d,
                pos_j,
                neg_d,
                neg_j,
                neg_before,
                pid_buffer,
                buf_d,
            )
            n_gallery[i] = size
            n_pos[i] = positives
            first_hit[i] = hit


def rank_block(
    dist: np.ndarray,
    q_rows: np.ndarray,
    q_uid: np.ndarray,
    q_pid: np.ndarray,
    q_cam: np.ndarray,
    q_mod: np.ndarray,
    g_cols: np.ndarray,
    g_uid: np.ndarray,
    g_pid: np.ndarray,
    g_cam: np.ndarray,
    g_mod: np.ndarray,
    clauses: np.ndarray,
    identity_cmc: bool,
    top_k: int,
) -> dict[str, np.ndarray]:
    """Rank a block of queries against a pool (arguments as
    :func:`vireid_bench.engine.kernels.score_queries`).

    Args:
        dist: float32 or float64 [B, C]; row ``q_rows[i]`` holds query ``i``'s distances,
            column ``g_cols[j]`` pool image ``j``'s.
        q_rows, g_cols: int64 [m], [n]; pool order (``j``) breaks ties.
        q_uid, g_uid: image ids; a pool image with the query's id is the query itself.
        q_pid, g_pid, q_cam, g_cam, q_mod, g_mod: person ids, camera keys, modality codes.
        clauses: int8 [c, 3] exclusion clauses (:meth:`Preset.clause_codes`).
        identity_cmc: first-hit rank counted among identities (True) or images (False).
        top_k: gallery images kept per query (>= 1).

    Returns:
        ``top`` int64 [m, top_k]: pool positions ``j``, best first, -1 past the gallery's
        end; ``ranks`` int64 and ``offsets`` int64 [m + 1] with ``n_pos`` int64 [m]: query
        ``i``'s true matches have the 1-based ranks
        ``ranks[offsets[i] : offsets[i] + n_pos[i]]``, ascending; ``n_gallery`` int64 [m]
        (gallery size after exclusion); ``first_hit`` int64 [m] (0 without a true match).
    """
    m = int(np.shape(q_rows)[0])
    n = int(np.shape(g_cols)[0])
    dist = np.asarray(dist)
    if dist.ndim != 2 or dist.dtype not in (np.float32, np.float64):
        raise ValueError("rank_block: dist must be a 2-D float32 or float64 array")
    if isinstance(top_k, bool) or top_k < 1:
        raise ValueError("rank_block: top_k must be positive")

    def as_int(a: np.ndarray, size: int, name: str) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.int64)
        if a.shape != (size,):
            raise ValueError(f"rank_block: {name}: expected shape ({size},), got {a.shape}")
        return a

    q_rows, q_uid, q_pid, q_cam, q_mod = (
        as_int(a, m, name)
        for a, name in (
            (q_rows, "q_rows"),
            (q_uid, "q_uid"),
            (q_pid, "q_pid"),
            (q_cam, "q_cam"),
            (q_mod, "q_mod"),
        )
    )
    g_cols, g_uid, g_pid, g_cam, g_mod = (
        as_int(a, n, name)
        for a, name in (
            (g_cols, "g_cols"),
            (g_uid, "g_uid"),
            (g_pid, "g_pid"),
            (g_cam, "g_cam"),
            (g_mod, "g_mod"),
        )
    )
    if m and (q_rows.min() < 0 or q_rows.max() >= dist.shape[0]):
        raise ValueError("rank_block: q_rows: index outside dist's rows")
    if n and (g_cols.min() < 0 or g_cols.max() >= dist.shape[1]):
        raise ValueError("rank_block: g_cols: index outside dist's columns")
    # room for every pool image of the query's identity (an upper bound on its true matches)
    ids, counts = np.unique(g_pid, return_counts=True)
    slot = np.minimum(np.searchsorted(ids, q_pid), max(ids.size - 1, 0))
    bound = np.where(ids[slot] == q_pid, counts[slot], 0) if ids.size else np.zeros(m, np.int64)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(bound, out=offsets[1:])
    out = {
        "top": np.full((m, top_k), -1, dtype=np.int64),
        "offsets": offsets,
        "ranks": np.zeros(int(offsets[-1]), dtype=np.int64),
        "n_pos": np.zeros(m, dtype=np.int64),
        "n_gallery": np.zeros(m, dtype=np.int64),
        "first_hit": np.zeros(m, dtype=np.int64),
    }
    if m and n:
        _rank_block(
            dist,
            q_rows,
            q_uid,
            q_pid,
            q_cam,
            q_mod,
            g_cols,
            g_uid,
            g_pid,
            g_cam,
            g_mod,
            exclusion_table(clauses),
            bool(identity_cmc),
            offsets,
            out["top"],
            out["ranks"],
            out["n_pos"],
            out["n_gallery"],
            out["first_hit"],
        )
    return out
