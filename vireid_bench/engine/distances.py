"""Distances between feature rows: L2 normalisation, cosine and Euclidean blocks.

Every scoring path (in memory, streamed, re-ranked, distributed) computes its distances
here, so the rules hold everywhere: float32 BLAS products, rows normalised for cosine with
a one-line error naming the first zero-norm row.

Scale. Finite float32 features can be as large as 3.4e38 or as small as 1.4e-45; squaring
them in float32 overflows to ``inf`` (above about 1e19) or underflows to 0 (below about
1e-23). So:

* cosine: a row whose float32 norm is not finite or below :data:`TINY_NORM` is first
  multiplied by a power of two that brings its largest entry into [0.5, 1) (exact: no bit
  of any entry changes except those that underflow, which cannot move the norm), then
  normalised. Other rows take the plain float32 path, so ordinary features give the same
  bits as before.
* Euclidean: ranks are invariant to one common scale factor, so when the largest entry of
  the split's features lies outside [2^-32, 2^32] every feature set of the split is
  multiplied by one power of two (:func:`euclidean_scale`). Rows whose magnitudes span
  more than float32 can compare in one product (:data:`MAX_SPAN`) are refused.

Every distance block is then checked for NaN / Inf (:func:`check_distances`): a block that
is not finite raises a :class:`DumpError` naming the dump and the feature set; it is never
scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numba import njit, prange

from vireid_bench.errors import DumpError
from vireid_bench.io.dump_format import VISIBLE
from vireid_bench.io.recipe import DistanceRecipe, PairRecipe

DISTANCES = ("cosine", "euclidean")

TINY_NORM = np.float32(2.0**-40)
"""Rows with a float32 norm below this (or not finite) are rescaled before normalising."""
EUCLIDEAN_RANGE = (2.0**-32, 2.0**32)
"""Largest absolute entry for which Euclidean features are used unscaled."""
MAX_SPAN = 2.0**60
"""Largest ratio between the largest entry of the split and the largest entry of a
non-zero row that Euclidean distances in float32 can rank (squares of the small row would
fall below float32's normal range)."""
_SCAN_BYTES = 64 * 1024**2


def unit_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (``block`` L2-normalised as a new float32 array, mask of zero rows).

    Exact at any finite scale (module notes); zero rows stay zero.
    """
    block = np.asarray(block, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore"):  # such rows are rescaled below
        norms = np.linalg.norm(block, axis=1)
    bad = ~(np.isfinite(norms) & (norms >= TINY_NORM))
    safe = np.where(bad, np.float32(1.0), norms).astype(np.float32)
    unit = block / safe[:, None]
    zero = np.zeros(block.shape[0], dtype=bool)
    if bad.any():
        rows = np.flatnonzero(bad)
        scaled, zero_rows = _rescaled(block[rows])
        norms_scaled = np.linalg.norm(scaled, axis=1)
        norms_scaled[zero_rows] = 1.0
        unit[rows] = scaled / norms_scaled[:, None]
        zero[rows[zero_rows]] = True
    return unit, zero


def _rescaled(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row times the power of two that puts its largest |entry| in [0.5, 1)."""
    peak = np.maximum(rows.max(axis=1, initial=0.0), -rows.min(axis=1, initial=0.0))
    exponent = np.frexp(peak)[1]
    return np.ldexp(rows, -exponent[:, None]).astype(np.float32, copy=False), peak == 0


def normalised(
    source: str,
    name: str,
    features: np.ndarray,
    rows: np.ndarray,
    row_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Return ``features`` L2-normalised (float32); only ``rows`` are checked for zero norm.

    Exact at any finite scale: features multiplied by 1e20 or 1e-20 give the same unit rows.

    Raises:
        DumpError: naming ``source`` and ``features/<name>`` and the first zero-norm row
            (its label from ``row_labels`` when given: the split row of a read block).
    """
    unit, zero_rows = unit_rows(features)
    _raise_zero_norm(source, name, zero_rows, rows, row_labels)
    return unit


def _raise_zero_norm(
    source: str,
    name: str,
    zero_rows: np.ndarray,
    rows: np.ndarray,
    row_labels: np.ndarray | None,
) -> None:
    zero = zero_rows[rows]
    if zero.any():
        first = int(rows[np.flatnonzero(zero)[0]])
        if row_labels is not None:
            first = int(row_labels[first])
        raise DumpError(
            source,
            f"features/{name}",
            f"{int(zero.sum())} zero-norm row(s) (first at row {first}); cosine distance "
            "is undefined (use --distance euclidean or fix the features)",
        )


def euclidean_scale(source: str, sets: Iterable[tuple[str, object]]) -> int:
    """Return ``e``: Euclidean features of a split are multiplied by ``2**e`` (often 0).

    ``sets`` are (name, features) pairs: arrays, or lazy features (``shape``,
    ``read_rows``), which are read once in slabs. One scale for every set, so that
    cross- and same-modality distances stay comparable.

    Raises:
        DumpError: when the rows' magnitudes span more than :data:`MAX_SPAN`.
    """
    peaks: dict[str, np.ndarray] = {}
    for name, features in sets:
        if name not in peaks:
            peaks[name] = _row_peaks(features)
    top = max((float(p.max(initial=0.0)) for p in peaks.values()), default=0.0)
    if top == 0.0:
        return 0
    for name, peak in peaks.items():
        nonzero = peak[peak > 0]
        if nonzero.size and top / float(nonzero.min()) > MAX_SPAN:
            row = int(np.flatnonzero(peak == nonzero.min())[0])
            raise DumpError(
                source,
                f"features/{name}",
                f"row {row}'s largest entry is {float(nonzero.min()):.3g}, the split's "
                f"is {top:.3g}: Euclidean distances in float32 cannot rank rows whose "
                "scales differ this much (use --distance cosine or rescale the features)",
            )
    if EUCLIDEAN_RANGE[0] <= top <= EUCLIDEAN_RANGE[1]:
        return 0
    return -int(np.frexp(top)[1])


def _row_peaks(features) -> np.ndarray:
    """Largest |entry| per row (float64), arrays or lazy features read in slabs."""
    n, dim = features.shape
    step = max(1, _SCAN_BYTES // (4 * max(1, int(dim))))
    peaks = np.empty(n, dtype=np.float64)
    for start in range(0, n, step):
        stop = min(n, start + step)
        if isinstance(features, np.ndarray):
            block = features[start:stop]
        else:
            block = features.read_rows(np.arange(start, stop))
        peaks[start:stop] = np.maximum(
            block.max(axis=1, initial=0.0), -block.min(axis=1, initial=0.0)
        )
    return peaks


def check_distances(dist: np.ndarray, source: str, name: str) -> np.ndarray:
    """Return ``dist``; raise when any distance is NaN or infinite.

    One pass without a temporary: the sum is finite exactly when every value is, unless
    it overflows (then the values are looked at one by one).

    Raises:
        DumpError: one line naming ``source`` and ``features/<name>``.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = dist.sum()
    if np.isfinite(total):
        return dist
    bad = int(dist.size - np.count_nonzero(np.isfinite(dist)))
    if bad:
        raise DumpError(
            source,
            f"features/{name}",
            f"{bad} distance(s) are NaN or infinite; not scored (features out of float32's "
            "range for this distance)",
        )
    return dist


def checked_distance(source: str, name: str) -> Callable[..., np.ndarray]:
    """:func:`checked_distance_block` naming ``source``/``name``."""

    def block(query, gallery, distance, gallery_sq):
        return checked_distance_block(query, gallery, distance, gallery_sq, source, name)

    return block


def similarity_product(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """The float32 BLAS product ``query @ gallery.T`` every distance block starts from."""
    return query @ gallery.T


def distance_block(
    query: np.ndarray, gallery: np.ndarray, distance: str, gallery_sq: np.ndarray | None
) -> np.ndarray:
    """Return float32 [len(query), len(gallery)] distances (cosine or Euclidean).

    Cosine: ``1 - q.g`` on rows the caller normalised (:func:`normalised`). Euclidean:
    ``sqrt(max(|q|^2 + |g|^2 - 2 q.g, 0))`` with ``gallery_sq`` the gallery's squared norms,
    on rows the caller scaled (:func:`euclidean_scale`).
    """
    product = similarity_product(query, gallery)
    if distance == "cosine":
        np.subtract(np.float32(1.0), product, out=product)
        return product
    query_sq = np.einsum("ij,ij->i", query, query)
    product *= -2.0
    product += query_sq[:, None]
    product += gallery_sq[None, :]
    np.maximum(product, 0.0, out=product)
    np.sqrt(product, out=product)
    return product


@njit(cache=True, parallel=True)
def _one_minus_all_finite(product):
    """``product[:] = 1 - product`` (float32 arithmetic, as NumPy's); returns whether every
    result is finite. One parallel pass instead of NumPy's subtraction then a sum."""
    bad = np.zeros(product.shape[0], dtype=np.int64)
    for i in prange(product.shape[0]):
        row = product[i]
        flag = 0
        for j in range(row.shape[0]):
            v = np.float32(1.0) - row[j]
            row[j] = v
            flag |= v - v != 0  # NaN or infinite (their difference is NaN)
        bad[i] = flag
    return bad.sum() == 0


def checked_distance_block(
    query: np.ndarray,
    gallery: np.ndarray,
    distance: str,
    gallery_sq: np.ndarray | None,
    source: str,
    name: str,
) -> np.ndarray:
    """:func:`distance_block` checked by :func:`check_distances` (naming ``source`` and
    ``features/<name>``). Cosine on float32 rows takes one pass for the subtraction and the
    check (same values, bit for bit)."""
    if distance == "cosine" and query.dtype == gallery.dtype == np.float32:
        product = similarity_product(query, gallery)
        if _one_minus_all_finite(product):
            return product
        return check_distances(product, source, name)  # raises, counting the bad ones
    return check_distances(distance_block(query, gallery, distance, gallery_sq), source, name)


def row_reader(
    source: str, name: str, features, distance: str, scale: int = 0
) -> Callable[[np.ndarray], np.ndarray]:
    """Return a reader of float32 rows for sorted split indices.

    Cosine: normalised rows (:func:`unit_rows`). Euclidean: rows times ``2**scale`` (the
    split's :func:`euclidean_scale`; exact, :func:`numpy.ldexp`).
    """

    def read(rows: np.ndarray) -> np.ndarray:
        lazy = not isinstance(features, np.ndarray)
        # a fresh float32 copy either way (a file read, or fancy indexing)
        block = features.read_rows(rows) if lazy else features[rows]
        if distance == "cosine":
            block, zero_rows = unit_rows(block)
            # the same one-line error as the in-memory path, naming the split row
            _raise_zero_norm(source, name, zero_rows, np.arange(rows.size), rows)
        elif scale:
            block = np.ldexp(block, scale).astype(np.float32, copy=False)
        return np.ascontiguousarray(block, dtype=np.float32)

    return read


def prepared_features(
    source: str, split, names: tuple[str, ...], distance: str, rows: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Return the feature arrays of ``names`` ready for :func:`distance_block`.

    Cosine: L2-normalised (``rows`` checked for zero norm). Euclidean: times the split's
    :func:`euclidean_scale` over every named set (the arrays themselves when it is 0).
    A name given twice returns the same array object (``same is cross`` for the v1 pair).
    """
    scale = 0
    if distance == "euclidean":
        scale = euclidean_scale(source, ((name, split.features[name]) for name in names))

    def prepare(name: str) -> np.ndarray:
        array = split.features[name]
        if distance == "cosine":
            array = normalised(source, name, array, rows)
        elif scale:
            array = np.ldexp(array, scale).astype(np.float32, copy=False)
        return array

    done: dict[str, np.ndarray] = {}
    for name in names:
        if name not in done:
            done[name] = prepare(name)
    return tuple(done[name] for name in names)


def recipe_distances(
    recipe: DistanceRecipe,
    block_of: Callable[[str], object],
    q_mod,
    g_mod,
    where: Callable = np.where,
):
    """The distance block under a per-pair ``recipe`` (docs/dump-format.md).

    The one place every backend combines per-set distances, so the arithmetic is the same
    everywhere: for each pair kind, float32 ``w * d(set)`` (no product when ``w`` is 1)
    summed in the order written, then ``+ constant``; each pair then takes its kind's sum.

    Args:
        recipe: the validated recipe.
        block_of: ``name -> float32 distance block of that set`` (numpy or torch; called
            at most once per set; the caller checks it for NaN / Inf).
        q_mod, g_mod: modality codes that broadcast against the block (``q[:, None]`` and
            ``g[None, :]`` for a block; two 1-D arrays for a list of pairs).
        where: ``numpy.where`` or ``torch.where``.

    A recipe that is one set for every pair returns ``block_of(set)`` itself (no copy).
    """
    single = recipe.single_set
    if single is not None:
        return block_of(single)
    blocks: dict[str, object] = {}
    sums: dict[tuple, object] = {}

    def one(name: str):
        if name not in blocks:
            blocks[name] = block_of(name)
        return blocks[name]

    def total(pair: PairRecipe):
        key = (pair.terms, pair.offset)
        if key not in sums:
            value = None
            for weight, name in pair.terms:
                term = one(name)
                if weight != 1.0:
                    term = term * weight
                value = term if value is None else value + term
            if pair.offset:
                value = value + pair.offset
            sums[key] = value
        return sums[key]

    q_vis = q_mod == VISIBLE
    g_vis = g_mod == VISIBLE
    if (recipe.vv.terms, recipe.vv.offset) == (recipe.ii.terms, recipe.ii.offset):
        return where(q_vis == g_vis, total(recipe.vv), total(recipe.vi))
    out = where(q_vis & g_vis, total(recipe.vv), total(recipe.vi))
    return where(~(q_vis | g_vis), total(recipe.ii), out)


def recipe_matrices(recipe: DistanceRecipe) -> int:
    """How many float32 blocks of one shape :func:`recipe_distances` may hold at once (for
    block sizing): 1 for one set; else one per set, one per distinct pair sum and the
    output."""
    if recipe.single_set is not None:
        return 1
    sums = {(getattr(recipe, k).terms, getattr(recipe, k).offset) for k in ("vv", "ii", "vi")}
    plain = sum(
        1 for terms, offset in sums if len(terms) == 1 and terms[0][0] == 1.0 and not offset
    )
    return len(recipe.feature_sets) + (len(sums) - plain) + 1


def recipe_row_readers(
    source: str, split, recipe: DistanceRecipe, distance: str
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """One :func:`row_reader` per feature set of ``recipe`` (one Euclidean scale for all)."""
    names = recipe.feature_sets
    scale = 0
    if distance == "euclidean":
        scale = euclidean_scale(source, ((name, split.features[name]) for name in names))
    return {
        name: row_reader(source, name, split.features[name], distance, scale) for name in names
    }


def recipe_block(
    recipe: DistanceRecipe,
    query: dict[str, np.ndarray],
    gallery: dict[str, np.ndarray],
    q_mod: np.ndarray,
    g_mod: np.ndarray,
    distance: str,
    source: str,
    gallery_sq: dict[str, np.ndarray | None] | None = None,
) -> np.ndarray:
    """NumPy distance block under ``recipe`` from prepared rows per set, each set's block
    checked for NaN / Inf (naming ``source`` and the set); ``gallery_sq``: Euclidean
    squared norms per set (computed when missing)."""

    def block_of(name: str) -> np.ndarray:
        g = gallery[name]
        sq = None
        if distance == "euclidean":
            sq = (gallery_sq or {}).get(name)
            if sq is None:
                sq = np.einsum("ij,ij->i", g, g)
        return checked_distance_block(query[name], g, distance, sq, source, name)

    return recipe_distances(
        recipe, block_of, np.asarray(q_mod)[:, None], np.asarray(g_mod)[None, :]
    )
