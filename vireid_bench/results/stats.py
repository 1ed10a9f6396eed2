"""Paired significance for two models scored on the identical galleries.

Per-query scores (AP, or rank-1 hit as 0/1) of models A and B come as arrays ``[T, Q]``:
trials × queries, NaN where the query has no true match in that trial's gallery. The
metric of a model is what :mod:`vireid_bench.engine.scoring` reports: the mean over trials of the
mean over the trial's valid queries. The statistic is the difference of the metrics,

``delta = mean_t ( sum_q v[t,q] d[t,q] / sum_q v[t,q] )``  with ``d = a - b``,

``v`` the validity mask. The *query* is the unit of pairing and resampling: a query keeps
its identity across trials (its gallery is re-sampled per trial), so a permutation flips
the sign of all of one query's differences together, and the bootstrap draws whole
queries.

* :func:`permutation_test`: paired randomization (sign-flip) test of ``delta = 0``,
  two-sided. Exact (all ``2^n`` sign patterns of the ``n`` queries whose differences are
  not all zero) when ``2^n`` is at most the requested number of permutations, otherwise
  Monte Carlo with the add-one estimate ``p = (1 + #{|delta*| >= |delta|}) / (1 + B)``.
* :func:`bootstrap_ci`: percentile confidence interval of ``delta`` from resampling queries
  with replacement (each resample re-normalises by its own valid counts).
* :func:`holm`: Holm's step-down adjustment of a family of p-values.

Randomness comes from ``numpy.random.default_rng(seed)``; the same seed gives the same
result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from vireid_bench.errors import VireidBenchError
from vireid_bench.results.keys import setting_key

DEFAULT_PERMUTATIONS = 10_000
DEFAULT_BOOTSTRAP = 10_000
DEFAULT_CONFIDENCE = 0.95
_BLOCK_ELEMENTS = 2_000_000


class CompareError(VireidBenchError):
    """Two dumps cannot be compared (different galleries, datasets or settings)."""


def _as_trials(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"expected per-query scores [Q] or [T, Q], got shape {array.shape}")
    return array


def _prepared(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (x, v): differences with NaN set to 0, and the validity mask, both [T, Q]."""
    d = _as_trials(differences)
    valid = ~np.isnan(d)
    return np.where(valid, d, 0.0), valid.astype(np.float64)


def mean_over_trials(values: np.ndarray) -> float:
    """The metric of per-query scores ``[T, Q]`` (or ``[Q]``): mean over trials of the mean
    over each trial's valid (non-NaN) queries; trials without a valid query are skipped.
    NaN when no query is valid."""
    x, v = _prepared(values)
    counts = v.sum(axis=1)
    used = counts > 0
    if not used.any():
        return float("nan")
    return float(np.mean(x.sum(axis=1)[used] / counts[used]))


def _statistics(weights: np.ndarray, x: np.ndarray, v: np.ndarray, renormalise: bool) -> np.ndarray:
    """Statistic per row of ``weights`` [B, Q] (signs or bootstrap counts)."""
    numerators = weights @ x.T  # [B, T]
    # Signs keep every query, so the valid counts stay; bootstrap counts re-weight them.
    counts = weights @ v.T if renormalise else v.sum(axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_trial = np.where(counts > 0, numerators / counts, np.nan)
    used = ~np.isnan(per_trial)
    n_used = used.sum(axis=1)
    totals = np.where(used, per_trial, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_used > 0, totals / n_used, np.nan)


@dataclass(frozen=True)
class PermutationResult:
    """Outcome of :func:`permutation_test`.

    Attributes:
        difference: the observed statistic (mean of A minus mean of B).
        p_value: two-sided p-value.
        permutations: sign patterns evaluated (``2^n`` when exact).
        exact: whether every sign pattern was enumerated.
    """

    difference: float
    p_value: float
    permutations: int
    exact: bool


def permutation_test(
    differences: np.ndarray,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> PermutationResult:
    """Paired sign-flip randomization test of ``delta = 0`` (two-sided).

    Args:
        differences: float ``[Q]`` or ``[T, Q]``, per-query ``a - b``; NaN = not valid.
        permutations: Monte Carlo sign patterns; when the ``n`` queries with a non-zero
            difference allow ``2^n <= permutations``, all patterns are enumerated instead.
        seed: seed of the sign patterns.

    Returns:
        The observed difference and its p-value (1.0 when every difference is zero).
    """
    if permutations < 1:
        raise ValueError("permutations must be positive")
    x, v = _prepared(differences)
    observed = float(_statistics(np.ones((1, x.shape[1])), x, v, renormalise=False)[0])
    if math.isnan(observed):
        return PermutationResult(observed, float("nan"), 0, False)
    # Queries whose differences are all zero do not change the statistic when flipped;
    # the denominators still count every valid query.
    active = np.flatnonzero(np.any(x != 0, axis=0))
    n = active.size
    if n == 0:
        return PermutationResult(observed, 1.0, 1, True)
    x_active = x[:, active]
    threshold = abs(observed) - 1e-9 * max(1.0, abs(observed))

    def extreme(signs: np.ndarray) -> int:
        stats = _statistics(signs, x_active, v, renormalise=False)
        return int(np.count_nonzero(np.abs(stats) >= threshold))

    block = max(1, _BLOCK_ELEMENTS // max(1, n))
    if 2**n <= permutations:
        total = 2**n
        hits = 0
        for start in range(0, total, block):
            codes = np.arange(start, min(start + block, total), dtype=np.int64)
            bits = (codes[:, None] >> np.arange(n, dtype=np.int64)[None, :]) & 1
            hits += extreme(1.0 - 2.0 * bits)
        return PermutationResult(observed, hits / total, total, True)
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, block):
        size = min(block, permutations - start)
        hits += extreme(1.0 - 2.0 * rng.integers(0, 2, size=(size, n), dtype=np.int8))
    return PermutationResult(observed, (1 + hits) / (1 + permutations), permutations, False)


def bootstrap_ci(
    differences: np.ndarray,
    *,
    resamples: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the paired difference.

    Queries are drawn with replacement (a query brings all its trials); each resample's
    statistic re-normalises by the valid queries it drew.

    Args:
        differences: float ``[Q]`` or ``[T, Q]``, per-query ``a - b``; NaN = not valid.
        resamples: number of bootstrap resamples.
        confidence: the interval's coverage, in (0, 1).
        seed: seed of the resampling.

    Returns:
        ``(low, high)``; NaN when no query is valid.
    """
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if resamples < 1:
        raise ValueError("resamples must be positive")
    x, v = _prepared(differences)
    q = x.shape[1]
    if q == 0 or not v.any():
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ELEMENTS // q)
    values = []
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        # Row b counts how often each query was drawn in resample b (q draws).
        drawn = rng.integers(0, q, size=(size, q)) + (np.arange(size) * q)[:, None]
        counts = np.bincount(drawn.ravel(), minlength=size * q).reshape(size, q)
        values.append(_statistics(counts.astype(np.float64), x, v, renormalise=True))
    stats = np.concatenate(values)
    stats = stats[~np.isnan(stats)]
    alpha = 1.0 - confidence
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order.

    With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``, the adjusted value
    is ``max_{j <= i} min(1, (m - j + 1) p_(j))``. NaN entries are left NaN and do not count
    in ``m``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(~np.isnan(p))
    m = finite.size
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


# --------------------------------------------------------------------------- two dumps


COMPARE_METRICS = {"mAP": "ap", "R1": "rank1"}


@dataclass(frozen=True)
class ComparisonRow:
    """One (setting, metric) comparison of model A with model B, in percent.

    Attributes:
        setting: ``protocol[:variant]@query_modality``.
        metric: ``"mAP"`` or ``"R1"``.
        a, b: the two models' metric, as :mod:`vireid_bench.engine.scoring` reports it.
        difference: ``a - b``.
        ci_low, ci_high: bootstrap confidence interval of the difference.
        p_value: paired permutation test; p_holm: Holm-adjusted within the metric.
        queries: queries with a true match (in at least one trial); trials: trials paired.
        exact: whether the permutation test enumerated every sign pattern.
    """

    setting: str
    metric: str
    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    queries: int
    trials: int
    exact: bool


def _check_same_labels(dump_a, dump_b) -> None:
    if dump_a.dataset != dump_b.dataset:
        raise CompareError(
            f"{dump_a.source} is dataset {dump_a.dataset!r}, {dump_b.source} is "
            f"{dump_b.dataset!r}; compare needs the identical galleries"
        )
    if len(dump_a.splits) != len(dump_b.splits):
        raise CompareError(
            f"{dump_a.source} has {len(dump_a.splits)} split(s), {dump_b.source} "
            f"{len(dump_b.splits)}; compare needs the identical galleries"
        )
    for k, (sa, sb) in enumerate(zip(dump_a.splits, dump_b.splits, strict=True)):
        for name in ("pid", "cam", "modality"):
            x, y = getattr(sa, name), getattr(sb, name)
            if x.shape != y.shape or not np.array_equal(x, y):
                raise CompareError(
                    f"{dump_a.source} and {dump_b.source} differ in {name} of split {k}: "
                    "compare needs the same images in the same order"
                )
        if sa.path is not None and sb.path is not None and not np.array_equal(sa.path, sb.path):
            raise CompareError(
                f"{dump_a.source} and {dump_b.source} list different image paths in split {k}"
            )


def per_query_matrix(scores: Sequence, metric: str) -> np.ndarray:
    """Stack per-query scores of a setting's trials into ``[T, Q]`` (NaN: no true match).

    Args:
        scores: the :class:`~vireid_bench.engine.scoring.PlanScores` of one setting, one per trial,
            all with the same queries.
        metric: ``"ap"``, ``"inp"`` or ``"rank1"`` (first hit at rank 1, as 0/1).
    """
    rows = []
    for s in scores:
        valid = s.n_pos > 0
        if metric == "rank1":
            values = (s.first_rank == 1).astype(np.float64)
        else:
            values = np.asarray(getattr(s, metric), dtype=np.float64)
        rows.append(np.where(valid, values, np.nan))
    return np.vstack(rows) if rows else np.empty((0, 0))


def _grouped(per_query: Sequence) -> dict[tuple[str, str, str], list]:
    groups: dict[tuple[str, str, str], list] = {}
    for s in per_query:
        groups.setdefault((s.protocol, s.variant, s.query_modality), []).append(s)
    for scores in groups.values():
        scores.sort(key=lambda s: s.plan.trial)
    return groups


def compare_evaluations(
    dump_a,
    evaluation_a,
    dump_b,
    evaluation_b,
    *,
    metrics: Sequence[str] = ("mAP", "R1"),
    permutations: int = DEFAULT_PERMUTATIONS,
    resamples: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[ComparisonRow]:
    """Compare two evaluations of dumps that hold the same images (labels and order).

    Every setting scored in both is paired query by query and trial by trial; the plans
    (queries and gallery pools) must be identical. p-values are Holm-adjusted across the
    settings, separately for each metric.

    Raises:
        CompareError: when the dumps differ in dataset, splits or labels, or a setting's
            plans differ, or no setting was scored in both.
    """
    _check_same_labels(dump_a, dump_b)
    unknown = [m for m in metrics if m not in COMPARE_METRICS]
    if unknown:
        raise CompareError(f"unknown metric {unknown[0]!r} (valid: {', '.join(COMPARE_METRICS)})")
    groups_a, groups_b = _grouped(evaluation_a.per_query), _grouped(evaluation_b.per_query)
    keys = [k for k in groups_a if k in groups_b]
    if not keys:
        raise CompareError("no setting was scored for both dumps")
    rows: list[ComparisonRow] = []
    for protocol, variant, modality in keys:
        scores_a, scores_b = (
            groups_a[(protocol, variant, modality)],
            groups_b[(protocol, variant, modality)],
        )
        setting = setting_key(protocol, variant, modality)
        if len(scores_a) != len(scores_b) or any(
            not (
                np.array_equal(x.plan.query_idx, y.plan.query_idx)
                and np.array_equal(x.plan.pool_idx, y.plan.pool_idx)
                and x.plan.split == y.plan.split
            )
            for x, y in zip(scores_a, scores_b, strict=False)
        ):
            raise CompareError(f"{setting}: the two evaluations used different galleries")
        for metric in metrics:
            a = 100.0 * per_query_matrix(scores_a, COMPARE_METRICS[metric])
            b = 100.0 * per_query_matrix(scores_b, COMPARE_METRICS[metric])
            if a.shape[1] == 0 or np.isnan(a).all():
                continue
            d = a - b
            test = permutation_test(d, permutations=permutations, seed=seed)
            low, high = bootstrap_ci(d, resamples=resamples, confidence=confidence, seed=seed)
            rows.append(
                ComparisonRow(
                    setting=setting,
                    metric=metric,
                    a=mean_over_trials(a),
                    b=mean_over_trials(b),
                    difference=test.difference,
                    ci_low=low,
                    ci_high=high,
                    p_value=test.p_value,
                    p_holm=float("nan"),
                    queries=int(np.any(~np.isnan(d), axis=0).sum()),
                    trials=a.shape[0],
                    exact=test.exact,
                )
            )
    adjusted: dict[int, float] = {}
    for metric in metrics:
        indices = [i for i, r in enumerate(rows) if r.metric == metric]
        for i, p in zip(indices, holm([rows[i].p_value for i in indices]), strict=True):
            adjusted[i] = float(p)
    return [replace(r, p_holm=adjusted.get(i, float("nan"))) for i, r in enumerate(rows)]
