"""The plain NumPy way to score, as public VI-ReID evaluation scripts do it.

A full stable ``argsort`` of each query's distance row, then boolean masks per query. It is
the twin of :mod:`vireid_bench.engine.kernels` (same inputs, same outputs, same tie rule) used by
the tests as a second opinion and by ``benchmarks/bench_score.py`` as the speed anchor. It
is deliberately straightforward; do not optimise it.
"""

from __future__ import annotations

import numpy as np

from vireid_bench.engine.kernels import empty_query_scores


def exclusion_mask(
    q_pid: np.ndarray,
    q_cam: np.ndarray,
    q_mod: np.ndarray,
    q_uid: np.ndarray,
    g_pid: np.ndarray,
    g_cam: np.ndarray,
    g_mod: np.ndarray,
    g_uid: np.ndarray,
    clauses: np.ndarray,
) -> np.ndarray:
    """Return bool [m, n]: True where gallery image j is excluded for query i.

    The query image itself (equal uid) is always excluded; otherwise any clause whose
    constrained relations all hold excludes (codes: 0 any, 1 same, 2 different).
    """
    excluded = q_uid[:, None] == g_uid[None, :]
    relations = (
        q_cam[:, None] == g_cam[None, :],
        q_pid[:, None] == g_pid[None, :],
        q_mod[:, None] == g_mod[None, :],
    )
    for clause in np.asarray(clauses).reshape(-1, 3):
        match = np.ones_like(excluded)
        for code, equal in zip(clause, relations, strict=True):
            if code == 1:
                match &= equal
            elif code == 2:
                match &= ~equal
        excluded |= match
    return excluded


def numpy_score(
    dist: np.ndarray,
    q_pid: np.ndarray,
    q_cam: np.ndarray,
    q_mod: np.ndarray,
    q_uid: np.ndarray,
    g_pid: np.ndarray,
    g_cam: np.ndarray,
    g_mod: np.ndarray,
    g_uid: np.ndarray,
    clauses: np.ndarray,
    identity_cmc: bool,
) -> dict[str, np.ndarray]:
    """Score queries from a full distance matrix ``dist`` [m, n] (pool order = column order).

    Returns the same dict as :func:`vireid_bench.engine.kernels.score_queries`.
    """
    m = dist.shape[0]
    out = empty_query_scores(m)
    if m == 0:
        return out
    excluded = exclusion_mask(q_pid, q_cam, q_mod, q_uid, g_pid, g_cam, g_mod, g_uid, clauses)
    order = np.argsort(dist, axis=1, kind="stable")
    for i in range(m):
        keep = ~excluded[i, order[i]]
        ranked_pids = g_pid[order[i]][keep]
        matches = ranked_pids == q_pid[i]
        out["n_gallery"][i] = keep.sum()
        n_pos = int(matches.sum())
        out["n_pos"][i] = n_pos
        if n_pos == 0:
            continue
        hits = np.cumsum(matches)
        positions = np.flatnonzero(matches) + 1
        out["ap"][i] = float(np.mean(hits[positions - 1] / positions))
        out["inp"][i] = n_pos / positions[-1]
        if identity_cmc:
            _, first_index = np.unique(ranked_pids, return_index=True)
            distinct_in_order = ranked_pids[np.sort(first_index)]
            out["first_rank"][i] = int(np.flatnonzero(distinct_in_order == q_pid[i])[0]) + 1
        else:
            out["first_rank"][i] = int(positions[0])
    return out
