"""Re-ranking: k-reciprocal encoding (Zhong et al., CVPR 2017) and SAAI's AIM.

Both methods turn a query's distances to its gallery into re-ranked distances. They work on
*items* numbered ``0 .. n-1`` and read distances through a callable, so that callers decide
what the items are (vireid-bench: the gallery a setting leaves a query after exclusion,
see :mod:`vireid_bench.engine.rerank_scoring` and ``docs/rerank.md``).

k-reciprocal (the community ``re_ranking`` function, as in reid-strong-baseline and the
many VI-ReID repositories that copy it), on a *joint set* of items:

* ``D``: squared Euclidean distances; each row ``i`` divided by its maximum (the code
  divides columns by their max and transposes; ``D`` is symmetric, so this is row ``i``
  over ``max_j D[i, j]``). A row whose maximum is 0 stays 0.
* ``N(i, k)``: the first ``k + 1`` items of row ``i`` in ``(distance, item)`` order
  (``i`` itself included, at distance 0). ``R(i, k) = {j in N(i, k) : i in N(j, k)}``.
* ``R*(i) = R(i, k1)`` plus ``R(c, round(k1 / 2))`` for each ``c`` in ``R(i, k1)`` whose
  half set has more than 2/3 of its items in ``R(i, k1)``; ``round`` is NumPy's (half to
  even), as ``np.around`` in the community code.
* ``V[i, j] = exp(-D[i, j]) / sum_{j' in R*(i)} exp(-D[i, j'])`` for ``j`` in ``R*(i)``.
* local query expansion (``k2 != 1``): ``V[i] <- mean of V[j]`` over the first ``k2``
  items of row ``i``.
* ``jaccard(p, g) = 1 - S / (2 - S)`` with ``S = sum_k min(V[p, k], V[g, k])``, only for
  probe rows ``p``; ``final = (1 - lambda) * jaccard + lambda * D``.

Differences to the community code, all below 1e-6 on the values or confined to exact ties:
neighbour lists break distance ties by item number (the community ``np.argsort`` does not
say), ``V`` and the Jaccard sums are float64 (the community uses float32, older copies
float16), and ``d(i, i)`` is exactly 0.

AIM (Fang et al., ICCV 2023, ``models/AIM.py`` of the SAAI code), for a probe ``q`` and a
gallery ``G`` with cosine similarities ``S = 1 - cosine distance``:

* ``a(x)``: ``S(x, G)`` keeping the ``k1`` largest entries (ties by item number), others 0;
* ``new_q = a(q)``; ``new_g = mean of a(h)`` over the ``min(k2, k1)`` most similar items
  ``h`` of ``g`` in ``G`` (``g`` itself first); both L2-normalised (norm floored at 1e-12);
* ``score(q, g) = -new_q . new_g - S(q, g)`` (smaller is closer), exactly SAAI's output.
  SAAI keeps every entry tied with the ``k1``-th largest; here exactly ``k1`` are kept.
  ``k1`` larger than the gallery keeps the whole gallery (``torch.topk`` would fail).

Memory: pairwise distances are only ever materialised in row blocks of at most
``max_bytes``; what persists is ``O(n * k1^2)`` (neighbour lists, sparse ``V``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from vireid_bench.errors import ProtocolError

#: ``fn(rows, cols) -> float [len(rows), len(cols)]`` over item numbers.
PairFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]

KR_DEFAULTS = {"k1": 20, "k2": 6, "lambda": 0.3}
DEFAULT_MAX_BYTES = 256 * 1024**2


def half_k(k1: int) -> int:
    """``int(np.around(k1 / 2))``: the community's half neighbourhood (half to even)."""
    return int(np.around(k1 / 2))


def check_params(method: str, k1: object, k2: object, lambda_value: object = None) -> None:
    """Raise :class:`ProtocolError` unless ``k1``, ``k2`` >= 1 are ints and lambda in [0, 1]."""
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ProtocolError(f"--rerank {method}: {name} must be an integer >= 1, got {value!r}")
    if lambda_value is not None and not (
        isinstance(lambda_value, (int, float)) and 0.0 <= float(lambda_value) <= 1.0
    ):
        raise ProtocolError(f"--rerank {method}: lambda must be in [0, 1], got {lambda_value!r}")


# --------------------------------------------------------------------------------------
# neighbour lists


def _rows_per_block(n_cols: int, max_bytes: int, per_value: int = 8) -> int:
    return max(1, int(max_bytes // max(1, n_cols * per_value * 2)))


def _sorted_smallest(block: np.ndarray, count: int) -> np.ndarray:
    """Column numbers of the ``count`` smallest entries of each row, (value, column) order."""
    n_cols = block.shape[1]
    if count >= n_cols:
        return np.argsort(block, axis=1, kind="stable")
    part = np.argpartition(block, count - 1, axis=1)[:, :count]
    threshold = np.take_along_axis(block, part, axis=1).max(axis=1)
    out = np.empty((block.shape[0], count), dtype=np.int64)
    for r in range(block.shape[0]):
        row = block[r]
        below = np.flatnonzero(row < threshold[r])
        tied = np.flatnonzero(row == threshold[r])[: count - below.size]
        chosen = np.concatenate([below, tied])
        out[r] = chosen[np.lexsort((chosen, row[chosen]))]
    return out


def neighbour_lists(
    fn: PairFunction, n: int, count: int, max_bytes: int, *, largest: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's first ``count`` items by ``(value, item)`` (``largest``: by -value).

    ``fn`` gives the values; an item's value to itself is taken as 0 (1 with ``largest``,
    a similarity). Returns ``(idx int64 [n, c], values float64 [n, c], row_extreme [n])``
    with ``c = min(count, n)`` and ``row_extreme`` the row maximum (minimum with
    ``largest``) of the values, the item itself included. Row blocks stay within
    ``max_bytes``.
    """
    idx, values, extreme, _ = _neighbour_pass(fn, n, count, max_bytes, largest, False)
    return idx, values, extreme


def _neighbour_pass(
    fn: PairFunction, n: int, count: int, max_bytes: int, largest: bool, ties: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`neighbour_lists`, and with ``ties`` also :func:`_first_among_ties_changes`
    of every item (else all False)."""
    c = min(count, n)
    idx = np.empty((n, c), dtype=np.int64)
    values = np.empty((n, c), dtype=np.float64)
    extreme = np.empty(n, dtype=np.float64)
    changes = np.zeros(n, dtype=bool)
    step = _rows_per_block(n, max_bytes)
    cols = np.arange(n)
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        block = np.asarray(fn(rows, cols), dtype=np.float64)
        block[np.arange(rows.size), rows] = 1.0 if largest else 0.0
        key = -block if largest else block
        extreme[rows] = block.min(axis=1) if largest else block.max(axis=1)
        chosen = _sorted_smallest(key, c)
        idx[rows] = chosen
        values[rows] = np.take_along_axis(block, chosen, axis=1)
        if ties:
            _first_among_ties_changes(key, chosen, changes)
    return idx, values, extreme, changes


def _first_among_ties_changes(key: np.ndarray, chosen: np.ndarray, changes: np.ndarray) -> None:
    """Set ``changes[p]`` for each item ``p`` whose moving to the front of its distance
    ties would change a row's list: the row lists an item ``j < p`` with exactly ``p``'s
    value (``p`` would move ahead of ``j``, or enter the list).

    A list (``chosen``, in ``(value, item)`` order) holds every item below its last value
    and the smallest items at it, so that is: ``p``'s value is at most the last one and
    ``p`` is not the first listed item of its value.
    """
    listed = np.take_along_axis(key, chosen, axis=1)
    first = np.ones(listed.shape, dtype=bool)
    first[:, 1:] = listed[:, 1:] != listed[:, :-1]
    is_first = np.zeros(key.shape, dtype=bool)
    is_first[np.nonzero(first)[0], chosen[first]] = True
    changes |= ((key <= listed[:, -1:]) & ~is_first).any(axis=0)


# --------------------------------------------------------------------------------------
# k-reciprocal: numba core on a joint set


@njit(cache=True)
def _search(sorted_values, length, value):
    lo = 0
    hi = length
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    if lo < length and sorted_values[lo] == value:
        return lo
    return -1


@njit(cache=True)
def _pair(i, j, shift, ext_d, uidx, ud, ulen, xr, xc, xd):
    """Base distance between joint items ``i`` and ``j`` (see :func:`_kr_prepare`)."""
    if i == j:
        return 0.0
    if shift == 1:
        if i == 0:
            return ext_d[j - 1]
        if j == 0:
            return ext_d[i - 1]
        i -= 1
        j -= 1
    pos = _search(uidx[i], ulen[i], j)
    if pos >= 0:
        return ud[i, pos]
    a = _search(xr, xr.shape[0], i)
    b = _search(xc, xc.shape[0], j)
    if a >= 0 and b >= 0:
        return xd[a, b]
    return np.nan


@njit(cache=True)
def _in_list(top, row, length, value):
    for t in range(length):  # noqa: SIM110 - a loop numba compiles to an early exit
        if top[row, t] == value:
            return True
    return False


@njit(cache=True)
def _kr_prepare(top, lk, kh1, rowmax, shift, ext_d, uidx, ud, ulen, xr, xc, xd, width):
    """Sparse ``V`` rows (before query expansion) of every joint item.

    ``top[i, :lk]``: item ``i``'s first ``k1 + 1`` joint items; ``kh1 = round(k1/2) + 1``.
    Distances come from :func:`_pair`: with ``shift == 1`` item 0 is an external probe
    whose distances to items ``1..`` are ``ext_d``; the rest are looked up in the
    per-item tables ``uidx``/``ud`` (sorted item numbers, base numbering) or the extra
    block ``xr`` x ``xc``. Returns ``(vidx, vval, vlen, missing)``.
    """
    m = top.shape[0]
    length = lk
    vidx = np.empty((m, width), dtype=np.int64)
    vval = np.empty((m, width), dtype=np.float64)
    vlen = np.zeros(m, dtype=np.int64)
    # every item's half-size reciprocal set, once
    half = np.empty((m, kh1), dtype=np.int64)
    n_half = np.zeros(m, dtype=np.int64)
    for c in range(m):
        for s in range(kh1):
            j = top[c, s]
            if _in_list(top, j, kh1, c):
                half[c, n_half[c]] = j
                n_half[c] += 1
    in_r = np.zeros(m, dtype=np.int64)
    in_star = np.zeros(m, dtype=np.int64)
    recip = np.empty(length, dtype=np.int64)
    missing = 0
    for i in range(m):
        stamp = i + 1
        n_r = 0
        for t in range(length):
            j = top[i, t]
            if _in_list(top, j, length, i):
                recip[n_r] = j
                n_r += 1
        count = 0
        for t in range(n_r):
            in_r[recip[t]] = stamp
            in_star[recip[t]] = stamp
            vidx[i, count] = recip[t]
            count += 1
        for t in range(n_r):
            c = recip[t]
            n_h = n_half[c]
            inside = 0
            for s in range(n_h):
                if in_r[half[c, s]] == stamp:
                    inside += 1
            if 3 * inside > 2 * n_h:
                for s in range(n_h):
                    j = half[c, s]
                    if in_star[j] != stamp:
                        in_star[j] = stamp
                        vidx[i, count] = j
                        count += 1
        # sort the row's items (insertion sort: rows are short)
        for a in range(1, count):
            v = vidx[i, a]
            b = a - 1
            while b >= 0 and vidx[i, b] > v:
                vidx[i, b + 1] = vidx[i, b]
                b -= 1
            vidx[i, b + 1] = v
        scale = rowmax[i]
        total = 0.0
        for a in range(count):
            d = _pair(i, vidx[i, a], shift, ext_d, uidx, ud, ulen, xr, xc, xd)
            if np.isnan(d):
                missing += 1
                d = 0.0
            w = np.exp(-(d / scale)) if scale > 0 else 1.0
            vval[i, a] = w
            total += w
        for a in range(count):
            vval[i, a] /= total
        vlen[i] = count
    return vidx, vval, vlen, missing


@njit(cache=True)
def _kr_jaccard(top, k2, vidx, vval, vlen, probes, out):
    """Fill ``out[p, g]`` with ``jaccard(probes[p], g)`` for every joint item ``g``.

    Query expansion over the first ``k2`` items of a row (none when ``k2 == 1``).
    """
    m = top.shape[0]
    length = top.shape[1]
    n_qe = min(k2, length)
    qv = np.zeros(m, dtype=np.float64)
    acc = np.zeros(m, dtype=np.float64)
    hits = np.zeros(m, dtype=np.bool_)
    support = np.empty(m, dtype=np.int64)
    touched = np.empty(m, dtype=np.int64)
    for p in range(probes.shape[0]):
        i = probes[p]
        # expanded V of the probe, densely in qv
        n_s = 0
        if k2 == 1:
            for a in range(vlen[i]):
                k = vidx[i, a]
                qv[k] = vval[i, a]
                support[n_s] = k
                n_s += 1
        else:
            for t in range(n_qe):
                h = top[i, t]
                for a in range(vlen[h]):
                    k = vidx[h, a]
                    if qv[k] == 0.0:
                        support[n_s] = k
                        n_s += 1
                    qv[k] += vval[h, a] / n_qe
        # rows whose V meets the probe's support
        for h in range(m):
            hit = False
            for a in range(vlen[h]):
                if qv[vidx[h, a]] > 0.0:
                    hit = True
                    break
            hits[h] = hit
        for g in range(m):
            rows_hit = False
            if k2 == 1:
                rows_hit = hits[g]
            else:
                for t in range(n_qe):
                    if hits[top[g, t]]:
                        rows_hit = True
                        break
            if not rows_hit:
                out[p, g] = 1.0
                continue
            n_t = 0
            if k2 == 1:
                for a in range(vlen[g]):
                    k = vidx[g, a]
                    if qv[k] > 0.0:
                        if acc[k] == 0.0:
                            touched[n_t] = k
                            n_t += 1
                        acc[k] += vval[g, a]
            else:
                for t in range(n_qe):
                    h = top[g, t]
                    if not hits[h]:
                        continue
                    for a in range(vlen[h]):
                        k = vidx[h, a]
                        if qv[k] > 0.0:
                            if acc[k] == 0.0:
                                touched[n_t] = k
                                n_t += 1
                            acc[k] += vval[h, a] / n_qe
            s = 0.0
            for t in range(n_t):
                k = touched[t]
                s += min(qv[k], acc[k])
                acc[k] = 0.0
            out[p, g] = 1.0 - s / (2.0 - s)
        for t in range(n_s):
            qv[support[t]] = 0.0
    return out


def _u_tables(
    fn: PairFunction, top: np.ndarray, kh1: int, max_bytes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each item ``i``: the sorted union of ``top[i]`` and ``top[c, :kh1]`` over
    ``c`` in ``top[i]``, with the distances from ``i`` to them (padded with ``n``)."""
    n, length = top.shape
    cand = np.concatenate([top, top[top, :kh1].reshape(n, -1)], axis=1)
    cand.sort(axis=1)
    dup = np.zeros_like(cand, dtype=bool)
    dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
    cand[dup] = n
    cand.sort(axis=1)
    ulen = (cand < n).sum(axis=1).astype(np.int64)
    width = int(ulen.max()) if n else 0
    uidx = np.ascontiguousarray(cand[:, :width])
    ud = np.zeros((n, width), dtype=np.float64)
    step = _rows_per_block(n, max_bytes)
    cols = np.arange(n)
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        block = np.asarray(fn(rows, cols), dtype=np.float64)
        block[np.arange(rows.size), rows] = 0.0
        block = np.concatenate([block, np.zeros((rows.size, 1))], axis=1)
        ud[rows] = np.take_along_axis(block, uidx[rows], axis=1)
    return uidx, ud, ulen


def _v_width(k1: int) -> int:
    return (k1 + 1) * (half_k(k1) + 2)


def _check_missing(missing: int) -> None:
    if missing:
        raise AssertionError(f"k-reciprocal: {missing} distance(s) missing from the tables")


_EMPTY_I = np.empty(0, dtype=np.int64)
_EMPTY_D = np.empty((0, 0), dtype=np.float64)


class KReciprocalJoint:
    """k-reciprocal re-ranking on one joint set of items (probes and gallery together).

    Neighbour lists, ``R*`` and ``V`` of every item are computed once; :meth:`rerank`
    then gives the re-ranked rows of any probes, a few at a time.

    Distance ties are broken by item number here; the one-probe rule (``{q} + G_q``,
    :class:`KReciprocalGallery`) puts the probe first among its ties. The two agree for
    probe ``p`` unless ``tie_order_matters[p]`` (an exact tie of ``p`` with a smaller item
    inside some neighbour list); re-rank such a probe with :class:`KReciprocalGallery`.

    Args:
        fn: base distances (squared Euclidean, >= 0) between items ``0 .. n-1``.
        n: number of items in the joint set.
        k1, k2, lambda_value: the method's parameters.
        max_bytes: budget of one block of pairwise distances.
    """

    def __init__(
        self,
        fn: PairFunction,
        n: int,
        *,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.fn, self.n, self.k2, self.lambda_value = fn, n, k2, lambda_value
        self.max_bytes = max_bytes
        self.top, _, self.rowmax, self.tie_order_matters = _neighbour_pass(
            fn, n, max(k1 + 1, k2), max_bytes, False, True
        )
        lk = min(k1 + 1, n)
        kh1 = min(half_k(k1) + 1, lk)
        uidx, ud, ulen = _u_tables(fn, self.top[:, :lk], kh1, max_bytes)
        self.vidx, self.vval, self.vlen, missing = _kr_prepare(
            self.top,
            lk,
            kh1,
            self.rowmax,
            0,
            np.empty(0),
            uidx,
            ud,
            ulen,
            _EMPTY_I,
            _EMPTY_I,
            _EMPTY_D,
            _v_width(k1),
        )
        _check_missing(missing)

    def rerank(self, probes: np.ndarray) -> np.ndarray:
        """Return float64 [len(probes), n]: ``(1 - lambda) * jaccard + lambda * D``.

        ``D`` is the row-normalised base distance; a probe's own column is meaningless.
        """
        probes = np.asarray(probes, dtype=np.int64)
        n = self.n
        out = np.empty((probes.size, n), dtype=np.float64)
        step = _rows_per_block(n, self.max_bytes)
        cols = np.arange(n)
        for start in range(0, probes.size, step):
            chunk = probes[start : start + step]
            jac = np.empty((chunk.size, n), dtype=np.float64)
            _kr_jaccard(self.top, self.k2, self.vidx, self.vval, self.vlen, chunk, jac)
            base = np.asarray(self.fn(chunk, cols), dtype=np.float64)
            base[np.arange(chunk.size), chunk] = 0.0
            scale = self.rowmax[chunk][:, None]
            normalised = np.divide(base, scale, out=np.zeros_like(base), where=scale > 0)
            lam = self.lambda_value
            out[start : start + chunk.size] = (1.0 - lam) * jac + lam * normalised
        return out


def k_reciprocal_joint(
    fn: PairFunction,
    n: int,
    probes: np.ndarray,
    *,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """k-reciprocal re-ranking of ``probes`` against every item of one joint set.

    The community ``re_ranking`` with the probes and the gallery as one set of ``n``
    items; see :class:`KReciprocalJoint` (this is its one-call form).

    Returns:
        float64 [len(probes), n]; the probe's own column is meaningless.
    """
    joint = KReciprocalJoint(fn, n, k1=k1, k2=k2, lambda_value=lambda_value, max_bytes=max_bytes)
    return joint.rerank(probes)


class KReciprocalGallery:
    """k-reciprocal re-ranking of probes *outside* a fixed gallery, one probe at a time.

    Each probe ``q`` is re-ranked on the joint set ``{q} + gallery`` (``q`` numbered 0,
    gallery item ``g`` numbered ``g + 1``), exactly as :func:`k_reciprocal_joint` on that
    set would; what depends on the gallery alone (neighbour lists, row maxima, the
    distances a row can need) is computed once here.

    Args:
        fn: base distances (squared Euclidean) between gallery items.
        n: gallery size.
        k1, k2, lambda_value, max_bytes: as :func:`k_reciprocal_joint`.
    """

    def __init__(
        self,
        fn: PairFunction,
        n: int,
        *,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.fn, self.n, self.k1, self.k2, self.lambda_value = fn, n, k1, k2, lambda_value
        self.top, self.topd, self.rowmax = neighbour_lists(fn, n, max(k1 + 1, k2), max_bytes)
        self.length = min(max(k1 + 1, k2), n + 1)
        self.lk = min(k1 + 1, n + 1)
        self.kh1 = min(half_k(k1) + 1, self.lk)
        lk_gallery = min(k1 + 1, n)
        kh1_gallery = min(half_k(k1) + 1, lk_gallery)
        self.uidx, self.ud, self.ulen = _u_tables(
            fn, self.top[:, :lk_gallery], kh1_gallery, max_bytes
        )

    def rerank(self, dq: np.ndarray) -> np.ndarray:
        """Return float64 [n]: probe ``q``'s re-ranked distances to the gallery.

        Args:
            dq: base distances (squared Euclidean) from the probe to the gallery items.
        """
        n, length = self.n, self.length
        dq = np.asarray(dq, dtype=np.float64)
        top = np.empty((n + 1, length), dtype=np.int64)
        top[0, 0] = 0
        top[0, 1:] = _sorted_smallest(dq[None, :], length - 1)[0] + 1
        # insert the probe (item 0, first among equal distances) into each gallery row
        position = (self.topd < dq[:, None]).sum(axis=1)
        shifted = self.top + 1
        cols = np.arange(length)[None, :]
        pos = position[:, None]
        width = shifted.shape[1]
        before = np.take_along_axis(shifted, np.minimum(cols, width - 1), axis=1)
        after = np.take_along_axis(shifted, np.clip(cols - 1, 0, width - 1), axis=1)
        top[1:] = np.where(cols < pos, before, np.where(cols == pos, 0, after))
        rowmax = np.empty(n + 1, dtype=np.float64)
        rowmax[0] = max(0.0, float(dq.max())) if n else 0.0
        rowmax[1:] = np.maximum(self.rowmax, dq)
        # distances a gallery row may need to the probe's own half-neighbours
        xr = np.unique(top[0, 1 : self.lk] - 1)
        xc = np.unique(top[0, 1 : self.kh1] - 1)
        xd = np.asarray(self.fn(xr, xc), dtype=np.float64) if xr.size and xc.size else _EMPTY_D
        if xd.size:
            xd[xr[:, None] == xc[None, :]] = 0.0
        vidx, vval, vlen, missing = _kr_prepare(
            top,
            self.lk,
            self.kh1,
            rowmax,
            1,
            dq,
            self.uidx,
            self.ud,
            self.ulen,
            xr,
            xc,
            xd,
            _v_width(self.k1),
        )
        _check_missing(missing)
        jac = np.empty((1, n + 1), dtype=np.float64)
        _kr_jaccard(top, self.k2, vidx, vval, vlen, np.zeros(1, dtype=np.int64), jac)
        normalised = dq / rowmax[0] if rowmax[0] > 0 else np.zeros(n)
        return (1.0 - self.lambda_value) * jac[0, 1:] + self.lambda_value * normalised


# --------------------------------------------------------------------------------------
# AIM


@njit(cache=True)
def _aim_scores(top, tops, skip, k1, k2, q_sim, q_top, out):
    """SAAI's AIM scores of one probe against every item of a base set but ``skip``.

    ``top``/``tops``: each base item's most similar items (item first) with their
    similarities, at least ``k1 + 1`` long (or the whole set); ``q_sim``: the probe's
    similarity to every base item; ``q_top``: base items by decreasing ``q_sim``.
    """
    m, length = top.shape
    qv = np.zeros(m, dtype=np.float64)
    # the probe's sparse affinity, normalised
    kept = 0
    norm = 0.0
    for t in range(q_top.shape[0]):
        j = q_top[t]
        if j == skip:
            continue
        if kept == k1:
            break
        qv[j] = q_sim[j]
        norm += q_sim[j] * q_sim[j]
        kept += 1
    norm = max(np.sqrt(norm), 1e-12)
    acc = np.zeros(m, dtype=np.float64)
    # which items g's mean row touches: a stamp per g, never ``acc == 0`` (a similarity
    # can be exactly 0, or sums cancel to 0, on tied features; the item would be listed
    # again and ``touched`` overrun)
    seen = np.zeros(m, dtype=np.int64)
    touched = np.empty(m, dtype=np.int64)
    for g in range(m):
        if g == skip:
            out[g] = np.nan
            continue
        stamp = g + 1
        # g's k2 nearest (k2 <= k1) in the gallery, each contributing its sparse row
        n_t = 0
        used = 0
        for t in range(length):
            h = top[g, t]
            if h == skip:
                continue
            if used == min(k2, k1):
                break
            used += 1
            kept_h = 0
            for s in range(length):
                j = top[h, s]
                if j == skip:
                    continue
                if kept_h == k1:
                    break
                kept_h += 1
                if seen[j] != stamp:
                    seen[j] = stamp
                    touched[n_t] = j
                    n_t += 1
                acc[j] += tops[h, s]
        dot = 0.0
        gnorm = 0.0
        for t in range(n_t):
            j = touched[t]
            v = acc[j] / used
            gnorm += v * v
            dot += v * qv[j]
            acc[j] = 0.0
        gnorm = max(np.sqrt(gnorm), 1e-12)
        out[g] = -(dot / (norm * gnorm)) - q_sim[g]
    return out


class AIMBase:
    """SAAI's affinity inference over a base set, for probes inside or outside it.

    The gallery of a probe is the base set, minus the probe itself when it is one of
    the base items (``skip``).

    Args:
        fn: cosine similarities between base items.
        n: size of the base set.
        k1, k2: AIM's parameters.
        max_bytes: budget of one block of pairwise similarities.
    """

    def __init__(
        self, fn: PairFunction, n: int, *, k1: int, k2: int, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.n, self.k1, self.k2 = n, k1, k2
        self.top, self.tops, _ = neighbour_lists(fn, n, k1 + 1, max_bytes, largest=True)

    def scores(self, q_sim: np.ndarray, skip: int = -1) -> np.ndarray:
        """Return float64 [n]: AIM scores (smaller is closer); NaN at ``skip``.

        Args:
            q_sim: the probe's cosine similarity to every base item.
            skip: the probe's own base item number, or -1 when it is not a base item.
        """
        q_sim = np.asarray(q_sim, dtype=np.float64)
        count = min(self.k1 + 1, self.n)
        q_top = _sorted_smallest(-q_sim[None, :], count)[0] if self.n else _EMPTY_I
        out = np.empty(self.n, dtype=np.float64)
        _aim_scores(self.top, self.tops, skip, self.k1, self.k2, q_sim, q_top, out)
        return out
