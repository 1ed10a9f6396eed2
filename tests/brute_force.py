"""A brute-force scorer written for clarity: Python loops, lists, no NumPy tricks, no Numba.

It is the slow, obvious twin of ``vireid_bench.engine.kernels`` used by the tests. It follows
docs/protocols.md word by word: build each query's gallery by applying the exclusion clauses
(any matching clause excludes; the query itself never belongs), sort it by (distance,
pool position), then read ranks, AP, INP and the first-hit rank off the sorted list.
"""

from __future__ import annotations

import math


def relation_holds(code: int, equal: bool) -> bool:
    """Clause relation codes: 0 any, 1 same, 2 different."""
    return code == 0 or (code == 1 and equal) or (code == 2 and not equal)


def gallery_of(query: dict, pool: list[dict], clauses: list[tuple[int, int, int]]) -> list[int]:
    """Return the pool positions left in ``query``'s gallery, in pool order.

    ``query`` and each pool entry are dicts with keys uid, pid, cam, mod.
    """
    kept = []
    for position, image in enumerate(pool):
        if image["uid"] == query["uid"]:
            continue
        excluded = False
        for camera_code, identity_code, modality_code in clauses:
            if (
                relation_holds(camera_code, image["cam"] == query["cam"])
                and relation_holds(identity_code, image["pid"] == query["pid"])
                and relation_holds(modality_code, image["mod"] == query["mod"])
            ):
                excluded = True
        if not excluded:
            kept.append(position)
    return kept


def score_query(
    distances: list[float],
    query: dict,
    pool: list[dict],
    clauses: list[tuple[int, int, int]],
    identity_cmc: bool,
) -> dict:
    """Score one query; ``distances[j]`` is its distance to pool entry j.

    Returns first_rank (0 when no true match), ap and inp (nan then), n_pos, n_gallery.
    """
    gallery = gallery_of(query, pool, clauses)
    ranked = sorted(gallery, key=lambda j: (distances[j], j))
    match_ranks = [r + 1 for r, j in enumerate(ranked) if pool[j]["pid"] == query["pid"]]
    result = {"n_gallery": len(ranked), "n_pos": len(match_ranks)}
    if not match_ranks:
        result.update(first_rank=0, ap=math.nan, inp=math.nan)
        return result
    precisions = [(k + 1) / rank for k, rank in enumerate(match_ranks)]
    result["ap"] = sum(precisions) / len(precisions)
    result["inp"] = len(match_ranks) / match_ranks[-1]
    if identity_cmc:
        seen: list[int] = []
        for j in ranked:
            if pool[j]["pid"] not in seen:
                seen.append(pool[j]["pid"])
            if pool[j]["pid"] == query["pid"]:
                break
        result["first_rank"] = len(seen)
    else:
        result["first_rank"] = match_ranks[0]
    return result
