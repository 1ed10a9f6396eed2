"""Numba kernels: per-query ranks of the true matches -> CMC, AP and INP.

Definitions (docs/protocols.md, "Metrics"). For a query ``q``, its gallery is the pool minus the
query image itself minus every image an exclusion clause matches. Gallery images are
ordered by ``(distance, position in the pool)``: smaller distance first, ties broken by pool
order (a stable sort), so results are deterministic. A *true match* is a gallery image with
``pid_g == pid_q``. With ``P`` true matches at 1-based ranks ``r_1 < ... < r_P``:

* ``AP  = (1 / P) * sum_k k / r_k``
* ``INP = P / r_P``
* first-hit rank: ``r_1`` under the ``image`` CMC convention; under the ``identity``
  convention (the SYSU-MM01 / AGW one, each gallery identity represented by its closest
  image) ``1 + the number of distinct identities with an image ranked before r_1``.

``CMC@k`` of the query is ``first_rank <= k``. Queries with ``P = 0`` get rank 0 and NaN
AP/INP and are left out of every average by the caller.

The kernel never sorts a whole gallery: it collects the true matches (few), sorts those,
and for every other gallery image counts with a binary search how many true matches it
precedes. Ranks are exact, and the cost is one pass over each query's pool row.

Exclusion is evaluated inside the kernel from label arrays; camera numbers never appear
here: co-located cameras arrive already merged into ``cam`` keys by the caller.

Three layers, as in ranx: ``_score_one_query`` (single query), ``_score_queries``
(``prange`` over chunks of queries, preallocated outputs) and :func:`score_queries` (checks
its inputs and carries this documentation).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

SAME = 1
DIFFERENT = 2
_CHUNK = 32
_INSERTION_SORT_MAX = 32


def exclusion_table(clauses: np.ndarray) -> np.ndarray:
    """Return bool [8]: whether a gallery image is excluded, indexed by its relations.

    Index ``4 * same_camera + 2 * same_identity + same_modality``. Any clause whose
    constrained relations all hold excludes (codes: 0 any, 1 same, 2 different).
    """
    table = np.zeros(8, dtype=np.bool_)
    for index in range(8):
        relations = (bool(index & 4), bool(index & 2), bool(index & 1))
        for clause in np.asarray(clauses).reshape(-1, 3):
            if all(
                code == 0 or (code == SAME) == equal
                for code, equal in zip(clause.tolist(), relations, strict=True)
            ):
                table[index] = True
    return table


@njit(cache=True, inline="always")
def key_less(d_a: float, i_a: int, d_b: float, i_b: int) -> bool:
    """Lexicographic (distance, pool position) order."""
    return d_a < d_b or (d_a == d_b and i_a < i_b)


@njit(cache=True)
def metrics_from_negatives(neg_before, base: int, n_pos: int) -> tuple[float, float, int]:
    """AP, INP and the image-CMC first-hit rank of ``n_pos`` > 0 sorted true matches.

    ``neg_before[base + k]`` counts the gallery images (not true matches) ranked between
    true match ``k - 1`` and true match ``k``, so true match ``k`` has rank
    ``k + 1 + sum(neg_before[base : base + k + 1])`` (docs/protocols.md, "Metrics").
    """
    negatives = 0
    total = 0.0
    rank = 0
    first_rank = 0
    for k in range(n_pos):
        negatives += neg_before[base + k]
        rank = k + 1 + negatives
        if k == 0:
            first_rank = rank
        total += (k + 1) / rank
    return total / n_pos, n_pos / rank, first_rank


@njit(cache=True, inline="always")
def slot_among_true_matches(sorted_d, sorted_j, offset, n_pos, d, j) -> int:
    """Return how many sorted true matches precede image ``(d, j)`` (0 .. n_pos - 1).

    ``sorted_d[offset:offset + n_pos]`` / ``sorted_j[...]`` are the true matches in
    ``(distance, pool position)`` order; the caller has checked that the image precedes the
    last one. A binary search over the rest once the first is passed.
    """
    if key_less(d, j, sorted_d[offset], sorted_j[offset]):
        return 0
    lo = 1
    hi = n_pos - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if key_less(sorted_d[offset + mid], sorted_j[offset + mid], d, j):
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def place_negatives(
    pos_d, pos_j, n_pos, neg_d, neg_j, n_neg, neg_before, identity_cmc, g_pid, pid_buffer
) -> int:
    """Count, per true match, the other gallery images ranked before it.

    Sorts the ``n_pos`` true matches ``(pos_d, pos_j)`` in place by (distance, pool
    position), then places each of the ``n_neg`` other images ``(neg_d, neg_j)`` among them:
    ``neg_before[s]`` (``s`` in ``0 .. n_pos``, zeroed here) counts the images with exactly
    ``s`` true matches before them. Images after the last true match change no metric and
    are skipped without a search. With ``identity_cmc`` the identities (``g_pid`` of the
    pool position) of the images before the first true match are written to
    ``pid_buffer``; returns how many were written (0 otherwise).
    """
    # in place by insertion for the usual handful, by a stable merge sort beyond that
    if n_pos <= _INSERTION_SORT_MAX:
        for a in range(1, n_pos):
            d_a = pos_d[a]
            j_a = pos_j[a]
            b = a - 1
            while b >= 0 and key_less(d_a, j_a, pos_d[b], pos_j[b]):
                pos_d[b + 1] = pos_d[b]
                pos_j[b + 1] = pos_j[b]
                b -= 1
            pos_d[b + 1] = d_a
            pos_j[b + 1] = j_a
    else:
        order = np.argsort(pos_d[:n_pos], kind="mergesort")
        sorted_d = pos_d[:n_pos][order]
        sorted_j = pos_j[:n_pos][order]
        pos_d[:n_pos] = sorted_d
        pos_j[:n_pos] = sorted_j
    for p in range(n_pos + 1):
        neg_before[p] = 0
    last_d = pos_d[n_pos - 1]
    last_j = pos_j[n_pos - 1]
    n_closer_ids = 0
    for t in range(n_neg):
        d = neg_d[t]
        j = neg_j[t]
        if key_less(last_d, last_j, d, j):
            continue
        slot = slot_among_true_matches(pos_d, pos_j, 0, n_pos, d, j)
        neg_before[slot] += 1
        if identity_cmc and slot == 0:
            pid_buffer[n_closer_ids] = g_pid[j]
            n_closer_ids += 1
    return n_closer_ids


@njit(cache=True, inline="always")
def popcount(x) -> int:
    """The number of set bits of the unsigned 64-bit word ``x``."""
    count = 0
    while x:
        x &= x - np.uint64(1)
        count += 1
    return count


@njit(cache=True)
def distinct_count(values, n) -> int:
    """How many distinct values ``values[:n]`` holds (sorts that prefix in place)."""
    if n == 0:
        return 0
    head = values[:n]
    head.sort()
    distinct = 1
    for t in range(1, n):
        if head[t] != head[t - 1]:
            distinct += 1
    return distinct


@njit(cache=True)
def _score_one_query(
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
    pos_d,
    pos_j,
    neg_d,
    neg_j,
    neg_before,
    pid_buffer,
):
    """Score one query; return (first_rank, ap, inp, n_pos, n_gallery).

    ``pos_d``, ``pos_j``, ``neg_d``, ``neg_j``, ``neg_before`` and ``pid_buffer`` are
    scratch arrays of at least the pool size (+1 for ``neg_before``), owned by the calling
    thread.
    """
    n_pool = g_cols.shape[0]
    n_pos = 0
    n_neg = 0
    # Pass 1 over the pool: split the gallery into true matches and the rest.
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
        if same_pid:
            pos_d[n_pos] = row[g_cols[j]]
            pos_j[n_pos] = j
            n_pos += 1
        else:
            neg_d[n_neg] = row[g_cols[j]]
            neg_j[n_neg] = j
            n_neg += 1
    n_gallery = n_pos + n_neg
    if n_pos == 0:
        return 0, np.nan, np.nan, 0, n_gallery
    n_closer_ids = place_negatives(
        pos_d, pos_j, n_pos, neg_d, neg_j, n_neg, neg_before, identity_cmc, g_pid, pid_buffer
    )
    ap, inp, first_rank = metrics_from_negatives(neg_before, 0, n_pos)
    if identity_cmc:
        first_rank = distinct_count(pid_buffer, n_closer_ids) + 1
    return first_rank, ap, inp, n_pos, n_gallery


@njit(cache=True, parallel=True)
def _score_queries(
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
    first_rank,
    ap,
    inp,
    n_pos,
    n_gallery,
):
    n_queries = q_rows.shape[0]
    n_pool = g_cols.shape[0]
    n_chunks = (n_queries + _CHUNK - 1) // _CHUNK
    for chunk in prange(n_chunks):
        pos_d = np.empty(n_pool, dtype=dist.dtype)
        pos_j = np.empty(n_pool, dtype=np.int64)
        neg_d = np.empty(n_pool, dtype=dist.dtype)
        neg_j = np.empty(n_pool, dtype=np.int64)
        neg_before = np.empty(n_pool + 1, dtype=np.int64)
        pid_buffer = np.empty(n_pool, dtype=np.int64)
        start = chunk * _CHUNK
        stop = min(start + _CHUNK, n_queries)
        for i in range(start, stop):
            r, a, p, npos, ngal = _score_one_query(
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
                pos_d,
                pos_j,
                neg_d,
                neg_j,
                neg_before,
                pid_buffer,
            )
            first_rank[i] = r
            ap[i] = a
            inp[i] = p
            n_pos[i] = npos
            n_gallery[i] = ngal


def empty_query_scores(m: int) -> dict[str, np.ndarray]:
    """Return per-query outputs for ``m`` queries as if none had a true match."""
    return {
        "first_rank": np.zeros(m, dtype=np.int64),
        "ap": np.full(m, np.nan),
        "inp": np.full(m, np.nan),
        "n_pos": np.zeros(m, dtype=np.int64),
        "n_gallery": np.zeros(m, dtype=np.int64),
    }


def check_block_inputs(
    dist: np.ndarray,
    q_rows: np.ndarray,
    g_cols: np.ndarray,
    per_query: dict[str, np.ndarray],
    per_pool: dict[str, np.ndarray],
) -> None:
    """Raise ``ValueError`` naming the argument unless ``dist`` is 2-D, every array of
    ``per_query`` has one entry per ``q_rows`` and of ``per_pool`` one per ``g_cols``,
    and the rows and columns lie inside ``dist``."""
    m = int(q_rows.shape[0])
    n = int(g_cols.shape[0])
    for arrays, size in ((per_query, m), (per_pool, n)):
        for name, array in arrays.items():
            if np.shape(array) != (size,):
                raise ValueError(f"{name}: expected shape ({size},), got {np.shape(array)}")
    if dist.ndim != 2:
        raise ValueError(f"dist: expected a 2-D array, got shape {dist.shape}")
    if m and (q_rows.min() < 0 or q_rows.max() >= dist.shape[0]):
        raise ValueError("q_rows: index outside dist's rows")
    if n and (g_cols.min() < 0 or g_cols.max() >= dist.shape[1]):
        raise ValueError("g_cols: index outside dist's columns")


def score_queries(
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
) -> dict[str, np.ndarray]:
    """Score queries against a pool, excluding gallery images by ``clauses``.

    Args:
        dist: float32 or float64 [B, C] distances; row ``q_rows[i]`` holds query ``i``'s
            distances, column ``g_cols[j]`` pool image ``j``'s.
        q_rows: int64 [m], each query's row in ``dist``.
        q_uid, g_uid: int64 image ids ([m], [n]); a pool image with the query's id is the
            query itself and is never in its gallery.
        q_pid, g_pid: int64 person ids.
        q_cam, g_cam: int64 camera keys (co-located cameras already share a key).
        q_mod, g_mod: int64 modality codes.
        g_cols: int64 [n], pool image ``j``'s column in ``dist``; pool order breaks ties.
        clauses: int8 [c, 3], (camera, identity, modality) relation codes per clause:
            0 any, 1 same, 2 different. Any matching clause excludes.
        identity_cmc: first-hit rank counted among identities (True) or images (False).

    Returns:
        ``first_rank`` int64 [m] (1-based, 0 when no true match), ``ap`` and ``inp``
        float64 [m] (NaN when no true match), ``n_pos`` int64 [m] (true matches in the
        gallery) and ``n_gallery`` int64 [m] (gallery size after exclusion).
    """
    m = int(q_rows.shape[0])
    check_block_inputs(
        dist, q_rows, g_cols,
        {"q_uid": q_uid, "q_pid": q_pid, "q_cam": q_cam, "q_mod": q_mod},
        {"g_uid": g_uid, "g_pid": g_pid, "g_cam": g_cam, "g_mod": g_mod},
    )  # fmt: skip
    if clauses.ndim != 2 or clauses.shape[1] != 3:
        raise ValueError(f"clauses: expected shape (c, 3), got {clauses.shape}")
    out = empty_query_scores(m)
    if m == 0:
        return out

    def as_int(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.int64)

    _score_queries(
        dist,
        as_int(q_rows),
        as_int(q_uid),
        as_int(q_pid),
        as_int(q_cam),
        as_int(q_mod),
        as_int(g_cols),
        as_int(g_uid),
        as_int(g_pid),
        as_int(g_cam),
        as_int(g_mod),
        exclusion_table(clauses),
        bool(identity_cmc),
        out["first_rank"],
        out["ap"],
        out["inp"],
        out["n_pos"],
        out["n_gallery"],
    )
    return out
