"""Results across training runs: run-level statistics and the run-level test.

Gallery trials and the per-query tests of :mod:`vireid_bench.results.stats` measure the
noise of *sampling the test set*; they say nothing about *training noise* (another seed,
another data order). Several dumps of one model (same ``model`` attribute, different
``seed``/``run``) are the runs of that model; this module summarises them and compares two
models at the level of runs.

* :func:`group_runs`: dumps grouped by ``model``; a group whose dumps were scored on
  different test sets (dataset, or image count of a split) is refused.
* :func:`summarize_runs`: per group, setting and metric, over the runs: mean, sample
  standard deviation (``ddof=1``), a confidence interval of the mean
  (:func:`run_interval`: Student-t with ``n - 1`` degrees of freedom for fewer than
  :data:`BOOTSTRAP_MIN_RUNS` runs, a seeded percentile bootstrap of the mean from that many
  on), min, max, number of runs.
* :func:`compare_groups`: two groups, per setting and metric: Welch's t-test
  (:func:`welch_test`, ``scipy.stats.ttest_ind(equal_var=False)``), an exact permutation
  test over runs (:func:`run_permutation_test`, every relabelling of the runs into two
  groups of the same sizes when there are at most ``permutations`` of them), and beside them
  the per-query paired test of ``compare`` on the run-averaged per-query scores (same
  statistic, A - B of the means). Each comparison names the noise that dominates: the
  standard error of A - B over runs (Welch's, ``sqrt(s_a^2/n_a + s_b^2/n_b)``) against its
  standard error over queries and trials (from the paired bootstrap interval).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.stats

from vireid_bench.engine.distributed import ScoreRequest, evaluate_requests
from vireid_bench.errors import VireidBenchError
from vireid_bench.io.dump import load_dump
from vireid_bench.results.keys import METRIC_LABELS, setting_key
from vireid_bench.results.stats import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_PERMUTATIONS,
    PermutationResult,
    bootstrap_ci,
    per_query_matrix,
    permutation_test,
)

if TYPE_CHECKING:
    from vireid_bench.engine.scheduler import Scheduler
    from vireid_bench.engine.scoring import MemoryOptions
    from vireid_bench.protocol.presets import Preset

RUN_METRICS = ("rank1", "mAP", "mINP")
"""Metrics summarised over runs (the scorer's row fields)."""
PER_QUERY_FIELDS = {"rank1": "rank1", "mAP": "ap", "mINP": "inp"}
"""The per-query score behind each metric (:func:`~vireid_bench.results.stats.per_query_matrix`)."""
BOOTSTRAP_MIN_RUNS = 10
"""From this many runs on, the interval of the mean is a percentile bootstrap; below, t-based."""
_EPS = 1e-9


class RunsError(VireidBenchError):
    """Dumps that cannot be summarised or compared as runs (different test sets...)."""


# --------------------------------------------------------------------------- statistics


def _values(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[~np.isnan(array)]


def t_interval(
    values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """Student-t interval of the mean: ``mean -+ t_{(1+c)/2, n-1} s / sqrt(n)``.

    NaN for fewer than 2 values (no spread to estimate); ``(mean, mean)`` when all are equal.
    """
    x = _values(values)
    if x.size < 2:
        return float("nan"), float("nan")
    half = scipy.stats.t.ppf((1 + confidence) / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    *,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: runs drawn with replacement, seeded."""
    x = _values(values)
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class RunInterval:
    """A confidence interval of the mean over runs and how it was made (``t``, ``bootstrap``)."""

    low: float
    high: float
    method: str


def run_interval(
    values: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    *,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> RunInterval:
    """The interval of the mean over runs: t-based below :data:`BOOTSTRAP_MIN_RUNS` runs
    (the bootstrap of a handful of values is too narrow), percentile bootstrap from there."""
    if _values(values).size >= BOOTSTRAP_MIN_RUNS:
        low, high = bootstrap_interval(values, confidence, resamples=resamples, seed=seed)
        return RunInterval(low, high, "bootstrap")
    return RunInterval(*t_interval(values, confidence), "t")


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test: statistic, degrees of freedom, two-sided p-value."""

    t: float
    df: float
    p_value: float


def welch_test(a: Sequence[float], b: Sequence[float]) -> WelchResult:
    """Welch's t-test of equal means (``scipy.stats.ttest_ind(a, b, equal_var=False)``).

    NaN when a group has fewer than 2 runs, or both groups have no spread at all.
    """
    x, y = _values(a), _values(b)
    nan = WelchResult(float("nan"), float("nan"), float("nan"))
    if x.size < 2 or y.size < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return nan
    result = scipy.stats.ttest_ind(x, y, equal_var=False)
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))  # Welch-Satterthwaite
    return WelchResult(float(result.statistic), float(df), float(result.pvalue))


def run_permutation_test(
    a: Sequence[float],
    b: Sequence[float],
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> PermutationResult:
    """Two-sided permutation test of equal means over runs.

    The statistic is ``mean(a) - mean(b)``; the runs are relabelled into groups of the same
    sizes. When there are at most ``permutations`` relabellings (``C(n_a + n_b, n_a)``) all
    are enumerated and ``p = #{|stat*| >= |stat|} / C`` is exact (the observed labelling is
    among them); otherwise ``permutations`` random relabellings with the add-one estimate
    ``(1 + hits) / (1 + permutations)``.
    """
    if permutations < 1:
        raise ValueError("permutations must be positive")
    x, y = _values(a), _values(b)
    if x.size == 0 or y.size == 0:
        return PermutationResult(float("nan"), float("nan"), 0, False)
    pooled = np.concatenate([x, y])
    n, k = pooled.size, x.size
    observed = float(x.mean() - y.mean())
    threshold = abs(observed) - _EPS * max(1.0, abs(observed))
    total = pooled.sum()

    def stats(first_sums: np.ndarray) -> np.ndarray:
        return first_sums / k - (total - first_sums) / (n - k)

    count = math.comb(n, k)
    if count <= permutations:
        sums = np.array([pooled[list(c)].sum() for c in itertools.combinations(range(n), k)])
        hits = int(np.count_nonzero(np.abs(stats(sums)) >= threshold))
        return PermutationResult(observed, hits / count, count, True)
    rng = np.random.default_rng(seed)
    keys = rng.random((permutations, n))
    chosen = np.argsort(keys, axis=1)[:, :k]
    hits = int(np.count_nonzero(np.abs(stats(pooled[chosen].sum(axis=1))) >= threshold))
    return PermutationResult(observed, (1 + hits) / (1 + permutations), permutations, False)


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class RunGroup:
    """The runs of one model: dumps with the same ``model`` attribute.

    Attributes:
        model, dataset: the model and the dataset all its dumps were scored on.
        sources: the dump files, in the order given.
        seeds, runs, selections: each dump's ``seed``, ``run``, ``selection`` (None: unsaid).
        images: images per split, the same for every dump of the group.
    """

    model: str
    dataset: str
    sources: tuple[str, ...]
    seeds: tuple[int | None, ...]
    runs: tuple[str | None, ...]
    selections: tuple[str | None, ...]
    images: tuple[int, ...]

    @property
    def n(self) -> int:
        """Number of runs."""
        return len(self.sources)


def _test_set(dump) -> tuple[str, tuple[int, ...]]:
    return dump.dataset, tuple(split.n_images for split in dump.splits)


def _describe(test_set: tuple[str, tuple[int, ...]]) -> str:
    dataset, images = test_set
    return f"{dataset} with {'/'.join(map(str, images))} images"


def group_runs(dumps: Sequence) -> list[RunGroup]:
    """Group loaded dumps by ``model``, in order of first appearance.

    Raises:
        RunsError: a group whose dumps differ in dataset or image count, naming two of them.
    """
    grouped: dict[str, list] = {}
    for dump in dumps:
        grouped.setdefault(dump.model, []).append(dump)
    groups = []
    for model, members in grouped.items():
        first = members[0]
        for other in members[1:]:
            if _test_set(other) != _test_set(first):
                raise RunsError(
                    f"model {model!r}: {os.path.basename(first.source)} is scored on "
                    f"{_describe(_test_set(first))}, {os.path.basename(other.source)} on "
                    f"{_describe(_test_set(other))}; runs of one model must share the test set"
                )
        groups.append(
            RunGroup(
                model=model,
                dataset=first.dataset,
                sources=tuple(d.source for d in members),
                seeds=tuple(d.seed for d in members),
                runs=tuple(d.run for d in members),
                selections=tuple(d.selection for d in members),
                images=_test_set(first)[1],
            )
        )
    return groups


def duplicate_seed_notes(groups: Sequence[RunGroup]) -> list[str]:
    """One line per seed that appears twice in a group (the same run counted twice?)."""
    notes = []
    for group in groups:
        seen: dict[int, str] = {}
        for seed, source in zip(group.seeds, group.sources, strict=True):
            if seed is None:
                continue
            if seed in seen:
                notes.append(
                    f"model {group.model!r}: seed {seed} in both {os.path.basename(seen[seed])} "
                    f"and {os.path.basename(source)} (the same run counted twice?)"
                )
            seen.setdefault(seed, source)
    return notes


# --------------------------------------------------------------------------- summaries


def _setting_values(rows: Sequence[Mapping[str, object]]) -> dict[str, Mapping[str, object]]:
    return {
        setting_key(str(r["protocol"]), str(r.get("variant") or ""), str(r["query_modality"])): r
        for r in rows
        if r.get("status", "ok") == "ok"
    }


@dataclass(frozen=True)
class RunSummary:
    """One (model, setting, metric) over the runs of a group, in percent.

    Attributes:
        std: sample standard deviation over runs (``ddof=1``; NaN for one run).
        ci_low, ci_high, ci_method: the interval of the mean (:func:`run_interval`).
        values: each run's value, in the group's dump order (NaN: not scored there).
    """

    model: str
    setting: str
    metric: str
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    ci_method: str
    minimum: float
    maximum: float
    values: tuple[float, ...]


def summarize_values(
    model: str,
    setting: str,
    metric: str,
    values: Sequence[float],
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> RunSummary:
    """The :class:`RunSummary` of one metric's per-run values."""
    x = _values(values)
    interval = run_interval(x, confidence, resamples=resamples, seed=seed)
    return RunSummary(
        model=model,
        setting=setting,
        metric=metric,
        n=int(x.size),
        mean=float(x.mean()) if x.size else float("nan"),
        std=float(x.std(ddof=1)) if x.size > 1 else float("nan"),
        ci_low=interval.low,
        ci_high=interval.high,
        ci_method=interval.method,
        minimum=float(x.min()) if x.size else float("nan"),
        maximum=float(x.max()) if x.size else float("nan"),
        values=tuple(float(v) for v in values),
    )


def summarize_runs(
    group: RunGroup,
    rows_per_run: Sequence[Sequence[Mapping[str, object]]],
    *,
    metrics: Sequence[str] = RUN_METRICS,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> list[RunSummary]:
    """Summaries of a group's runs: its scoring rows, one list per dump in group order."""
    per_run = [_setting_values(rows) for rows in rows_per_run]
    settings = list(dict.fromkeys(key for rows in per_run for key in rows))
    summaries = []
    for setting in settings:
        for metric in metrics:
            values = [
                float(rows[setting][metric]) if setting in rows else float("nan")
                for rows in per_run
            ]
            summaries.append(
                summarize_values(
                    group.model,
                    setting,
                    metric,
                    values,
                    confidence=confidence,
                    resamples=resamples,
                    seed=seed,
                )
            )
    return summaries


# --------------------------------------------------------------------------- two groups


@dataclass(frozen=True)
class RunComparison:
    """Model A against model B in one (setting, metric), at the run level and per query.

    Attributes:
        a, b: mean over runs; difference: ``a - b``; n_a, n_b: runs.
        std_a, std_b: standard deviation over runs.
        welch: Welch's t-test over runs; permutation: the permutation test over runs.
        run_se: standard error of A - B from run-to-run variation (Welch's).
        query_p, query_exact: the per-query paired permutation test of the run-averaged
            per-query scores (``compare``'s test); query_ci_low/high: its bootstrap interval
            of A - B; query_se: the standard error that interval implies. NaN when the
            runs do not share the same images and galleries.
        dominant: ``"run-to-run"``, ``"per-query"``, or ``""`` when one side is unknown.
    """

    setting: str
    metric: str
    a: float
    b: float
    difference: float
    n_a: int
    n_b: int
    std_a: float
    std_b: float
    welch: WelchResult
    permutation: PermutationResult
    run_se: float
    query_p: float = float("nan")
    query_exact: bool = False
    query_ci_low: float = float("nan")
    query_ci_high: float = float("nan")
    query_se: float = float("nan")
    dominant: str = ""


@dataclass
class PerQuery:
    """A group's per-query scores, averaged over its runs: setting -> metric -> [T, Q]."""

    matrices: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    plans: dict[str, list] = field(default_factory=dict)


def _grouped_scores(per_query: Sequence) -> dict[str, list]:
    groups: dict[str, list] = {}
    for s in per_query:
        groups.setdefault(setting_key(s.protocol, s.variant, s.query_modality), []).append(s)
    for scores in groups.values():
        scores.sort(key=lambda s: s.plan.trial)
    return groups


def _same_plans(x: Sequence, y: Sequence) -> bool:
    return len(x) == len(y) and all(
        p.plan.split == q.plan.split
        and np.array_equal(p.plan.query_idx, q.plan.query_idx)
        and np.array_equal(p.plan.pool_idx, q.plan.pool_idx)
        for p, q in zip(x, y, strict=True)
    )


def run_averaged_scores(
    per_query_per_run: Sequence[Sequence], metrics: Sequence[str] = RUN_METRICS
) -> PerQuery | None:
    """Average each setting's per-query scores ``[T, Q]`` over the runs of a group.

    None when the runs' plans differ (other images or galleries): no per-query pairing.
    """
    averaged = PerQuery()
    per_run = [_grouped_scores(scores) for scores in per_query_per_run]
    for setting, first in per_run[0].items():
        runs = [grouped.get(setting) for grouped in per_run]
        if any(scores is None or not _same_plans(first, scores) for scores in runs):
            return None
        averaged.plans[setting] = first
        averaged.matrices[setting] = {
            metric: np.mean(
                [100.0 * per_query_matrix(scores, PER_QUERY_FIELDS[metric]) for scores in runs],
                axis=0,
            )
            for metric in metrics
        }
    return averaged


def same_images(dumps: Sequence) -> bool:
    """Whether every dump holds the same labels (and paths, when all have them) in order."""
    first = dumps[0]
    for other in dumps[1:]:
        if len(other.splits) != len(first.splits):
            return False
        for x, y in zip(first.splits, other.splits, strict=True):
            for name in ("pid", "cam", "modality"):
                if not np.array_equal(getattr(x, name), getattr(y, name)):
                    return False
            if x.path is not None and y.path is not None and not np.array_equal(x.path, y.path):
                return False
    return True


def compare_groups(
    summaries_a: Sequence[RunSummary],
    summaries_b: Sequence[RunSummary],
    per_query_a: PerQuery | None = None,
    per_query_b: PerQuery | None = None,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    resamples: int = DEFAULT_BOOTSTRAP,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[RunComparison]:
    """Run-level (and, with per-query scores of both, per-query) comparison of A and B.

    Every (setting, metric) summarised for both groups is compared.
    """
    by_key = {(s.setting, s.metric): s for s in summaries_b}
    z = scipy.stats.norm.ppf((1 + confidence) / 2)
    comparisons = []
    for sa in summaries_a:
        sb = by_key.get((sa.setting, sa.metric))
        if sb is None:
            continue
        a, b = _values(sa.values), _values(sb.values)
        if a.size == 0 or b.size == 0:
            continue
        var_a = a.var(ddof=1) if a.size > 1 else float("nan")
        var_b = b.var(ddof=1) if b.size > 1 else float("nan")
        run_se = math.sqrt(var_a / a.size + var_b / b.size)
        comparison = RunComparison(
            setting=sa.setting,
            metric=sa.metric,
            a=float(a.mean()),
            b=float(b.mean()),
            difference=float(a.mean() - b.mean()),
            n_a=int(a.size),
            n_b=int(b.size),
            std_a=sa.std,
            std_b=sb.std,
            welch=welch_test(a, b),
            permutation=run_permutation_test(a, b, permutations=permutations, seed=seed),
            run_se=run_se,
        )
        comparisons.append(
            _with_per_query(
                comparison, per_query_a, per_query_b, z, permutations, resamples, confidence, seed
            )
        )
    return comparisons


def _with_per_query(
    comparison: RunComparison,
    per_query_a: PerQuery | None,
    per_query_b: PerQuery | None,
    z: float,
    permutations: int,
    resamples: int,
    confidence: float,
    seed: int,
) -> RunComparison:
    setting, metric = comparison.setting, comparison.metric
    if per_query_a is None or per_query_b is None:
        return comparison
    if setting not in per_query_a.matrices or setting not in per_query_b.matrices:
        return comparison
    if not _same_plans(per_query_a.plans[setting], per_query_b.plans[setting]):
        return comparison
    d = per_query_a.matrices[setting][metric] - per_query_b.matrices[setting][metric]
    if d.size == 0 or np.isnan(d).all():
        return comparison
    test = permutation_test(d, permutations=permutations, seed=seed)
    low, high = bootstrap_ci(d, resamples=resamples, confidence=confidence, seed=seed)
    query_se = (high - low) / (2 * z)
    dominant = ""
    if not (math.isnan(query_se) or math.isnan(comparison.run_se)):
        dominant = "run-to-run" if comparison.run_se > query_se else "per-query"
    return RunComparison(
        **{
            **comparison.__dict__,
            "query_p": test.p_value,
            "query_exact": test.exact,
            "query_ci_low": low,
            "query_ci_high": high,
            "query_se": query_se,
            "dominant": dominant,
        }
    )


def verdict(comparisons: Sequence[RunComparison]) -> str:
    """One line: which noise dominates the comparisons, and what to trust."""
    judged = [c for c in comparisons if c.dominant]
    if not comparisons:
        return "verdict: no setting was scored for both models"
    if not judged:
        return (
            "verdict: only the run-level tests apply (the runs do not share images and "
            "galleries, or a model has a single run)"
        )
    runs = [c for c in judged if c.dominant == "run-to-run"]
    median_run = float(np.median([c.run_se for c in judged]))
    median_query = float(np.median([c.query_se for c in judged]))
    numbers = (
        f"median standard error of A-B: {median_run:.2f} over runs, {median_query:.2f} over "
        "queries/trials"
    )
    if len(runs) * 2 > len(judged):
        return (
            f"verdict: run-to-run noise dominates in {len(runs)} of {len(judged)} comparisons "
            f"({numbers}): judge A vs B by the run-level tests (Welch, permutation over runs); "
            "the per-query p-values overstate the evidence"
        )
    return (
        f"verdict: per-query/trial noise dominates in {len(judged) - len(runs)} of "
        f"{len(judged)} comparisons ({numbers}): the test set limits the comparison more "
        "than training noise; more runs would not sharpen it much"
    )


# --------------------------------------------------------------------------- report


@dataclass
class RunsReport:
    """What ``vireid-bench runs`` prints: the groups, their summaries, and the comparison
    of exactly two groups (empty otherwise)."""

    groups: list[RunGroup]
    summaries: list[RunSummary]
    comparisons: list[RunComparison]
    confidence: float
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The one-line verdict of the comparison ("" without one)."""
        if len(self.groups) != 2:
            return ""
        return verdict(self.comparisons)


def metric_label(metric: str) -> str:
    """``R1``, ``mAP``, ``mINP``."""
    return METRIC_LABELS.get(metric, metric)


def runs_report(
    paths: Sequence[str | os.PathLike],
    presets: Sequence[Preset],
    *,
    metrics: Sequence[str] = RUN_METRICS,
    options: Mapping[str, object] | None = None,
    scheduler: Scheduler | None = None,
    memory: MemoryOptions | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    resamples: int = DEFAULT_BOOTSTRAP,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> RunsReport:
    """Load, group, score (each dump once) and summarise dumps as runs; compare two groups.

    Every dump is loaded and the groups checked before anything is scored. Dumps are scored
    together by ``scheduler`` (:func:`~vireid_bench.engine.distributed.evaluate_requests`:
    in this process, or all at once on a Dask cluster), with ``options`` as
    :func:`~vireid_bench.engine.scoring.evaluate` takes them.

    Raises:
        RunsError: a group whose dumps were scored on different test sets, two groups on
            different test sets, an unknown metric, or a dump given twice.
        DumpError: an invalid dump.
    """
    unknown = [m for m in metrics if m not in RUN_METRICS]
    if unknown:
        valid = ", ".join(metric_label(m) for m in RUN_METRICS)
        raise RunsError(f"--metric: unknown metric {unknown[0]!r} (valid: {valid})")
    names = [os.fspath(p) for p in paths]
    if not names:
        raise RunsError("no dump given")
    repeated = [n for i, n in enumerate(names) if n in names[:i]]
    if repeated:
        raise RunsError(f"{repeated[0]}: given twice (a run counts once)")
    dumps = [load_dump(name, lazy=True) for name in names]
    groups = group_runs(dumps)
    if len(groups) == 2:
        first, second = (next(d for d in dumps if d.model == g.model) for g in groups)
        if _test_set(first) != _test_set(second):
            raise RunsError(
                f"model {groups[0].model!r} is scored on {_describe(_test_set(first))}, "
                f"model {groups[1].model!r} on {_describe(_test_set(second))}; a run-level "
                "test needs one test set"
            )
    requests = [
        ScoreRequest(name, tuple(presets), dict(options or {}), memory=memory) for name in names
    ]
    evaluations = dict(zip(names, evaluate_requests(requests, scheduler), strict=True))
    summaries: list[RunSummary] = []
    per_query: list[PerQuery | None] = []
    for group in groups:
        summaries += summarize_runs(
            group,
            [evaluations[s].rows for s in group.sources],
            metrics=metrics,
            confidence=confidence,
            resamples=resamples,
            seed=seed,
        )
        per_query.append(
            run_averaged_scores([evaluations[s].per_query for s in group.sources], metrics)
        )
    comparisons: list[RunComparison] = []
    if len(groups) == 2:
        paired = same_images(dumps)
        comparisons = compare_groups(
            [s for s in summaries if s.model == groups[0].model],
            [s for s in summaries if s.model == groups[1].model],
            per_query[0] if paired else None,
            per_query[1] if paired else None,
            permutations=permutations,
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )
    notes = duplicate_seed_notes(groups)
    if len(groups) > 2:
        notes.append(f"{len(groups)} models: the run-level test compares exactly two")
    return RunsReport(groups, summaries, comparisons, confidence, notes)
