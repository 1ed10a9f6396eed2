"""Scoring from a distance matrix, for users who only have ``distmat`` (torchreid's words).

:func:`evaluate_rank` takes what torchreid's ``evaluate_rank`` takes (a query x gallery
distance matrix and the label arrays) and returns what it returns: the CMC curve, mAP and
mINP as fractions. Two shapes of input:

* **query x gallery** (the gallery is "the other side"): per query, the gallery images with
  the query's pid *and* camera are removed (the Market rule of torchreid's
  ``eval_market1501``); with modalities given, ``cross`` also removes gallery images of the
  query's modality and ``uni`` those of the other modality. The mixed settings (``mix``,
  ``mix-id``, ...) need the query side's images in the gallery, which a query x gallery
  matrix cannot hold: they raise :class:`DistanceMatrixError`.
* **pool x pool** (square, ``q_* == g_*``): every row is a query against the whole pool
  minus itself, and any preset's exclusion clauses apply exactly as ``vireid-bench score``
  applies them to a generic dump (the same Numba kernel).

Ranking, metrics and ties are the engine's (docs/protocols.md, "Metrics").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from vireid_bench.engine.kernels import score_queries
from vireid_bench.errors import EmptyEvaluationError, VireidBenchError
from vireid_bench.io.dump import MODALITY_CODES
from vireid_bench.protocol.presets import CMC_CONVENTIONS, RELATION_CODES, Preset, builtin_presets

SAME = RELATION_CODES["same"]
DIFFERENT = RELATION_CODES["different"]
MARKET_CLAUSE = (SAME, SAME, 0)
"""(camera, identity, modality): same camera and same identity (torchreid's Market rule)."""


@dataclass(frozen=True)
class RankResult:
    """What :func:`rank_scores` returns.

    Attributes:
        cmc: float64 [max_rank], fraction of scored queries whose first true match is at
            rank <= k (index k - 1).
        mAP, mINP: means over the scored queries (fractions).
        queries: queries in the matrix (or of ``query_modality``); ``skipped``: those with
            no true match in their gallery, left out of every average.
        setting: the preset's name; ``pool``: whether the matrix was read as pool x pool.
    """

    cmc: np.ndarray
    mAP: float  # noqa: N815 - torchreid's name
    mINP: float  # noqa: N815 - torchreid's name
    queries: int
    skipped: int
    setting: str
    pool: bool


class DistanceMatrixError(VireidBenchError):
    """A distance matrix or its label arrays are malformed, or cannot express the setting.

    The message is ``FIELD: problem`` (one line); a ValueError like every toolkit error.
    """


def _vector(name: str, values: object, n: int, size_of: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise DistanceMatrixError(f"{name}: expected a 1-D array, got shape {array.shape}")
    if array.shape[0] != n:
        raise DistanceMatrixError(
            f"{name}: length {array.shape[0]} does not match distmat's {n} {size_of}"
        )
    if array.dtype.kind == "f" and array.size:
        if not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise DistanceMatrixError(f"{name}: expected integers, got non-integer values")
    elif array.dtype.kind not in "iu" and array.size:
        raise DistanceMatrixError(f"{name}: expected integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _modalities(name: str, values: object, n: int, size_of: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "US" or array.dtype == object:
        if array.ndim != 1:
            raise DistanceMatrixError(f"{name}: expected a 1-D array, got shape {array.shape}")
        names = [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]
        unknown = sorted({str(v) for v in names} - set(MODALITY_CODES))
        if unknown:
            raise DistanceMatrixError(
                f"{name}: unknown modality {unknown[0]!r} (infrared, visible, or 1, 0)"
            )
        array = np.array([MODALITY_CODES[v] for v in names], dtype=np.int64)
    codes = _vector(name, array, n, size_of)
    unknown_codes = np.setdiff1d(np.unique(codes), list(MODALITY_CODES.values()))
    if unknown_codes.size:
        raise DistanceMatrixError(
            f"{name}: unknown modality code(s) {unknown_codes.tolist()} (0 = visible, 1 = infrared)"
        )
    return codes


def _preset(setting: str | Preset) -> Preset:
    if isinstance(setting, Preset):
        return setting
    presets = builtin_presets()
    if setting not in presets:
        raise DistanceMatrixError(f"setting: unknown {setting!r} (known: {', '.join(presets)})")
    return presets[setting]


def rank_scores(
    distmat: object,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    q_modalities: object | None = None,
    g_modalities: object | None = None,
    setting: str | Preset = "cross",
    cmc: str = "image",
    max_rank: int = 50,
    query_modality: str | None = None,
) -> RankResult:
    """Score a distance matrix; return the curve, means and counts (see :func:`evaluate_rank`).

    Args:
        distmat: float [m, n], query i's distance to gallery image j (smaller = closer).
        q_pids, g_pids, q_camids, g_camids: integer labels [m] / [n].
        q_modalities, g_modalities: optional [m] / [n]: 0 / ``"visible"``, 1 / ``"infrared"``.
        setting: a preset name (``vireid-bench protocols``) or a :class:`Preset`.
        cmc: ``"image"`` (rank of the first true match among gallery images, torchreid's)
            or ``"identity"`` (among identities, SYSU-MM01 / AGW).
        max_rank: length of the returned CMC curve (``cmc[k-1]`` = rank-k accuracy).
        query_modality: pool x pool only: score only the rows of this modality.

    Returns:
        ``cmc`` float64 [max_rank], ``mAP`` and ``mINP``, averaged over the queries with a
        true match in their gallery (the others are skipped with a warning).

    Raises:
        DistanceMatrixError (a ValueError): malformed input, a setting the matrix cannot
            express, or no query with a true match.
    """
    dist = np.asarray(distmat)
    if dist.ndim != 2:
        raise DistanceMatrixError(f"distmat: expected a 2-D array [m, n], got shape {dist.shape}")
    if dist.dtype.kind not in "fiu":
        raise DistanceMatrixError(f"distmat: expected numbers, got dtype {dist.dtype}")
    m, n = dist.shape
    if m == 0 or n == 0:
        raise DistanceMatrixError(f"distmat: empty, shape {dist.shape}")
    finite = np.isfinite(dist)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        raise DistanceMatrixError(
            f"distmat: {int((~finite).sum())} NaN or Inf value(s) (first at [{row}, {col}])"
        )
    if cmc not in CMC_CONVENTIONS:
        raise DistanceMatrixError(f"cmc: {cmc!r} is not 'image' or 'identity'")
    if not isinstance(max_rank, int | np.integer) or max_rank < 1:
        raise DistanceMatrixError(f"max_rank: must be a positive integer, got {max_rank!r}")
    preset = _preset(setting)
    q_pid = _vector("q_pids", q_pids, m, "rows")
    g_pid = _vector("g_pids", g_pids, n, "columns")
    q_cam = _vector("q_camids", q_camids, m, "rows")
    g_cam = _vector("g_camids", g_camids, n, "columns")
    if (q_modalities is None) != (g_modalities is None):
        raise DistanceMatrixError(
            "q_modalities: give both q_modalities and g_modalities, or neither"
        )
    with_modality = q_modalities is not None
    if with_modality:
        q_mod = _modalities("q_modalities", q_modalities, m, "rows")
        g_mod = _modalities("g_modalities", g_modalities, n, "columns")
    else:
        q_mod = np.zeros(m, dtype=np.int64)
        g_mod = np.zeros(n, dtype=np.int64)
    # Without modalities, a square matrix with equal labels may still be query x gallery
    # (RegDB: image i of either modality is the same person); the Market rule removes the
    # query itself from a pool anyway, so only the mixed settings read it as a pool.
    pool = (
        (with_modality or preset.gallery_modality == "mixed")
        and m == n
        and np.array_equal(q_pid, g_pid)
        and np.array_equal(q_cam, g_cam)
        and np.array_equal(q_mod, g_mod)
    )
    if pool:
        if any(clause.modality != "any" for clause in preset.clauses) and not with_modality:
            raise DistanceMatrixError(
                f"q_modalities: setting {preset.name!r} constrains modality; give "
                "q_modalities and g_modalities"
            )
        clauses = preset.clause_codes()
        q_uid = np.arange(m, dtype=np.int64)
        g_uid = q_uid
        rows = np.arange(m, dtype=np.int64)
        if query_modality is not None:
            if query_modality not in MODALITY_CODES:
                raise DistanceMatrixError(
                    f"query_modality: {query_modality!r} is not 'infrared' or 'visible'"
                )
            if not with_modality:
                raise DistanceMatrixError("query_modality: needs q_modalities and g_modalities")
            rows = np.flatnonzero(q_mod == MODALITY_CODES[query_modality]).astype(np.int64)
            if rows.size == 0:
                raise EmptyEvaluationError(f"query_modality: no {query_modality} row")
    else:
        if preset.gallery_modality == "mixed":
            raise DistanceMatrixError(
                f"setting: {preset.name!r} puts images of the query's side in its gallery, "
                "which a query x gallery matrix cannot hold; pass the pool x pool matrix "
                "(square, q_* == g_*) to score it"
            )
        if query_modality is not None:
            raise DistanceMatrixError(
                "query_modality: only for a pool x pool matrix (a query x gallery matrix "
                "scores every row)"
            )
        codes = [MARKET_CLAUSE]
        if with_modality:
            relation = SAME if preset.gallery_modality == "opposite" else DIFFERENT
            codes.append((0, 0, relation))
        clauses = np.array(codes, dtype=np.int8)
        q_uid = np.arange(m, dtype=np.int64)
        g_uid = np.arange(m, m + n, dtype=np.int64)
        rows = np.arange(m, dtype=np.int64)
    scores = score_queries(
        dist,
        rows,
        q_uid[rows],
        q_pid[rows],
        q_cam[rows],
        q_mod[rows],
        np.arange(n, dtype=np.int64),
        g_uid,
        g_pid,
        g_cam,
        g_mod,
        clauses,
        cmc == "identity",
    )
    valid = scores["n_pos"] > 0
    if not valid.any():
        raise EmptyEvaluationError(
            f"distmat: no query has a true match in its gallery ({rows.size} queries, "
            f"setting {preset.name!r})"
        )
    first = scores["first_rank"][valid]
    curve = np.array([(first <= k).mean() for k in range(1, max_rank + 1)], dtype=np.float64)
    return RankResult(
        cmc=curve,
        mAP=float(scores["ap"][valid].mean()),
        mINP=float(scores["inp"][valid].mean()),
        queries=int(rows.size),
        skipped=int((~valid).sum()),
        setting=preset.name,
        pool=bool(pool),
    )


def evaluate_rank(
    distmat: object,
    q_pids: object,
    g_pids: object,
    q_camids: object,
    g_camids: object,
    q_modalities: object | None = None,
    g_modalities: object | None = None,
    setting: str | Preset = "cross",
    cmc: str = "image",
    max_rank: int = 50,
    query_modality: str | None = None,
) -> tuple[np.ndarray, float, float]:
    """Score a distance matrix; return ``(cmc, mAP, mINP)`` as fractions, as torchreid does.

    Args:
        distmat: float [m, n], query i's distance to gallery image j (smaller = closer).
        q_pids, g_pids, q_camids, g_camids: integer labels [m] / [n].
        q_modalities, g_modalities: optional [m] / [n]: 0 / ``"visible"``, 1 / ``"infrared"``.
        setting: a preset name (``vireid-bench protocols``) or a :class:`Preset`.
        cmc: ``"image"`` (rank of the first true match among gallery images, torchreid's)
            or ``"identity"`` (among identities, SYSU-MM01 / AGW).
        max_rank: length of the returned CMC curve (``cmc[k-1]`` = rank-k accuracy).
        query_modality: pool x pool only: score only the rows of this modality.

    Returns:
        ``cmc`` float64 [max_rank], ``mAP`` and ``mINP``, averaged over the queries with a
        true match in their gallery; the others are skipped with a warning saying how many.

    Raises:
        DistanceMatrixError (a ValueError): malformed input, or a setting the matrix cannot
            express (a mixed setting on a query x gallery matrix).
        EmptyEvaluationError (a ValueError): no query has a true match.
    """
    result = rank_scores(
        distmat,
        q_pids,
        g_pids,
        q_camids,
        g_camids,
        q_modalities,
        g_modalities,
        setting=setting,
        cmc=cmc,
        max_rank=max_rank,
        query_modality=query_modality,
    )
    if result.skipped:
        warnings.warn(
            f"distmat: {result.skipped} of {result.queries} queries have no true match in "
            "their gallery and are skipped",
            stacklevel=2,
        )
    return result.cmc, result.mAP, result.mINP
