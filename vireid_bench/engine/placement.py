"""Placing a pool image among a query's sorted true-match candidates in near-constant time.

The fused kernels (:mod:`vireid_bench.engine.fused`, :mod:`vireid_bench.engine.streaming_fused`)
place every pool image that precedes a query's last candidate among the candidates: ``s`` =
how many candidates precede it in ``(distance, pool position)`` order. A search costs
``O(log n)`` dependent steps per image (a count, ``O(n)``); on hard dumps nearly every image
of the pool needs one, against ~40 candidates.

**Bucket table.** Per query, the candidates' distance range ``[t_1, t_n]`` is cut into
``BUCKETS_PER_CANDIDATE * n`` uniform buckets by a monotone function ``f`` (:func:`bucket_of`:
``floor((d - t_1) * inv)`` in the distances' type, 0 below ``t_1``). ``table[b]`` is the number of
candidates whose bucket is below ``b``, and ``k`` the largest number of candidates in one
bucket. For an image of distance ``d`` in bucket ``b = f(d)``:

* every candidate before ``table[b]`` has a smaller bucket, hence a smaller distance
  (``f`` is monotone: ``c >= d`` implies ``f(c) >= f(d)``);
* every candidate from ``table[b + 1]`` on has a larger bucket, hence a larger distance;

so the candidates of smaller distance are ``table[b]`` plus those among the next ``k``
(a fixed number of branch-free comparisons; reading past bucket ``b`` compares false). The
same compiled ``f`` builds the table and reads it, so this holds whatever its rounding.
Ties (equal distances) are then settled by pool position exactly as before: the keys of
equal distance follow, and precede the image when their position is smaller.

The per-image functions are inlined into their callers at Numba's level
(``inline="always"``): LLVM does not inline them on its own, and the call costs as much as
the placement (2x the time per placed image in a micro-benchmark).

Callers place only images whose key precedes the last candidate's (``d <= t_n``), so an
index clamped to the last candidate compares false. A query with few candidates, or a
distance range that is empty or not finite, keeps the direct search (``k = -1``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

BUCKETS_PER_CANDIDATE = 8
MIN_BUCKETED = 8
LINEAR_MAX = 32


@njit(cache=True, inline="always")
def bucket_of(d, t1, inv):
    """The bucket of distance ``d``: ``floor((d - t1) * inv)``, 0 at or below ``t1``.

    Computed in the distances' own type (``t1`` and ``inv`` have it); monotone
    non-decreasing in ``d``, since IEEE subtraction and multiplication by ``inv > 0`` round
    monotonically. NaN goes to bucket 0.
    """
    y = (d - t1) * inv
    return np.int64(y) if y > 0 else np.int64(0)


@njit(cache=True)
def build_buckets(cd, a0, n, table, t0, scale):
    """Bucket table of the sorted candidate distances ``cd[a0 : a0 + n]``.

    Writes ``table[t0 : t0 + BUCKETS_PER_CANDIDATE * n + 2]`` (``table[t0 + b]``: candidates
    in buckets below ``b``) and returns ``(t1, inv, k)`` in the type of ``cd`` (``scale``, a
    one-element array of that type, is scratch); ``k`` is the largest bucket's occupancy, or
    -1 when no table is built (fewer than :data:`MIN_BUCKETED` candidates, or a range that
    is empty or not finite).
    """
    t1 = cd[a0]
    scale[0] = 0
    if n < MIN_BUCKETED:
        return t1, scale[0], -1
    span = cd[a0 + n - 1] - t1
    if not (span > 0 and span < np.inf):
        return t1, scale[0], -1
    nb = BUCKETS_PER_CANDIDATE * n
    scale[0] = nb / np.float64(span)
    inv = scale[0]
    if not (inv > 0 and inv < np.inf):
        return t1, inv, -1
    b = 0
    for t in range(n):
        bt = min(bucket_of(cd[a0 + t], t1, inv), nb)
        while b <= bt:
            table[t0 + b] = t
            b += 1
    while b <= nb + 1:
        table[t0 + b] = n
        b += 1
    k = 0
    for b in range(nb + 1):
        k = max(k, table[t0 + b + 1] - table[t0 + b])
    return t1, inv, k


@njit(cache=True, inline="always")
def search(cd, a0, n, d):
    """How many of the sorted ``cd[a0 : a0 + n]`` are smaller than ``d``: a vectorised count
    up to :data:`LINEAR_MAX` keys, a branch-free binary search beyond."""
    if n <= LINEAR_MAX:
        s = 0
        for t in range(n):
            s += np.int32(cd[a0 + t] < d)
        return s
    lo = 0
    width = n
    while width > 1:
        half = width >> 1
        lo = lo + half if cd[a0 + lo + half - 1] < d else lo
        width -= half
    return lo + np.int32(cd[a0 + lo] < d)


@njit(cache=True, inline="always")
def after_equal_distances(cd, cj, a0, n, s, d, j):
    """From ``s`` (how many of the sorted keys ``(cd, cj)[a0 : a0 + n]`` have a smaller
    distance than ``d``), step over the keys of equal distance and smaller position than
    ``j``: how many keys precede ``(d, j)`` (``n`` when it follows every key). Signed
    integers; the hot loops call it only when the key at ``s`` has distance ``d`` (rare)."""
    while s < n and cd[a0 + s] == d and cj[a0 + s] < j:
        s += 1
    return s


@njit(cache=True, inline="always")
def below_bucketed_unsigned(cd, a0, n, table, t0, t1, inv, k, d):
    """How many of the sorted ``cd[a0 : a0 + n]`` are smaller than ``d``, with the table of
    :func:`build_buckets` (``k >= 0``): ``table[b]`` plus ``k`` comparisons, in unsigned
    arithmetic (returns ``np.uint64``); ``d`` must not exceed the last key. Numba adds a
    negative-index wraparound to every signed index; without it the fused kernel's
    placement loop ran ~1.4x faster on a hard 40k pool (the bucket, never negative, is
    cast: the same compiled :func:`bucket_of` builds and reads the table)."""
    ua0 = np.uint64(a0)
    first = np.uint64(table[np.uint64(t0) + np.uint64(bucket_of(d, t1, inv))])
    s = first
    last = np.uint64(n - 1)
    for x in range(k):
        s += np.uint64(cd[ua0 + min(first + np.uint64(x), last)] < d)
    return s


@njit(cache=True, inline="always")
def place_bucketed(cd, cj, a0, n, table, t0, t1, inv, k, d, j):
    """How many of the sorted keys ``(cd, cj)[a0 : a0 + n]`` precede ``(d, j)``, with the
    table of :func:`build_buckets` (``k >= 0``): :func:`below_bucketed_unsigned`, then the
    keys of equal distance and smaller position (``n`` when it follows every key). The
    image's distance must not exceed the last key's (``d <= cd[a0 + n - 1]``). The kernels
    inline the same two steps."""
    s = np.int64(below_bucketed_unsigned(cd, a0, n, table, t0, t1, inv, k, d))
    return after_equal_distances(cd, cj, a0, n, s, d, j)


@njit(cache=True, inline="always")
def place_searched(cd, cj, a0, n, d, j):
    """The same without a table: :func:`search`, then the keys of equal distance."""
    return after_equal_distances(cd, cj, a0, n, search(cd, a0, n, d), d, j)
