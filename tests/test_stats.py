"""Paired permutation test, bootstrap CI and Holm correction on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vireid_bench.results.stats import bootstrap_ci, holm, mean_over_trials, permutation_test


def test_identical_models_have_p_value_one_and_a_zero_interval():
    d = np.zeros(500)
    result = permutation_test(d)
    assert result.difference == 0.0 and result.p_value == 1.0
    assert bootstrap_ci(d, resamples=200) == (0.0, 0.0)
    # Invalid queries (NaN) do not count; the rest is still identical.
    d[::7] = np.nan
    assert permutation_test(d).p_value == 1.0


def test_exact_enumeration_on_four_queries():
    # d = (1, 2, 3, -1): observed mean 1.25, i.e. |sum| >= 5. Of the 16 sign patterns
    # s.|d| over |d| = (1, 2, 3, 1), |sum| >= 5 holds for +(1+2+3+1) = 7, flipping either
    # 1 (sum 5), and the three mirror images: 6 patterns, p = 6/16 = 0.375.
    result = permutation_test(np.array([1.0, 2.0, 3.0, -1.0]))
    assert result.exact and result.permutations == 16
    assert result.difference == pytest.approx(1.25)
    assert result.p_value == pytest.approx(0.375)


def test_zero_differences_do_not_enter_the_enumeration():
    # Queries with d = 0 only scale the mean: same p-value as without them (0.375).
    d = np.array([1.0, 2.0, 3.0, -1.0] + [0.0] * 40)
    result = permutation_test(d)
    assert result.exact and result.permutations == 16
    assert result.p_value == pytest.approx(0.375)
    assert result.difference == pytest.approx(5.0 / 44)


def test_a_clearly_better_model_has_a_small_p_value():
    rng = np.random.default_rng(0)
    d = 0.3 + 0.5 * rng.standard_normal(300)
    result = permutation_test(d, permutations=2000, seed=1)
    assert not result.exact
    assert result.p_value == pytest.approx(1 / 2001)  # no sign pattern reaches the observed
    # A model equal on average gets a large p-value.
    assert permutation_test(d - d.mean(), permutations=2000).p_value > 0.5


def test_the_test_is_seeded():
    d = np.random.default_rng(3).standard_normal(100) + 0.1
    first = permutation_test(d, permutations=500, seed=7)
    assert permutation_test(d, permutations=500, seed=7) == first
    assert bootstrap_ci(d, resamples=300, seed=7) == bootstrap_ci(d, resamples=300, seed=7)


def test_bootstrap_interval_covers_the_true_difference_on_a_hand_built_case():
    # A - B = 5 + e with e = (+1, -1) alternating: the true difference is exactly 5 and
    # every resample mean lies within [4, 6].
    d = 5.0 + np.tile([1.0, -1.0], 100)
    low, high = bootstrap_ci(d, resamples=2000, seed=0)
    assert 4.0 < low < 5.0 < high < 6.0
    # A constant difference has a degenerate interval.
    assert bootstrap_ci(np.full(50, 2.5), resamples=100) == pytest.approx((2.5, 2.5))


def test_bootstrap_coverage_is_near_nominal():
    # 40 simulated comparisons with true difference 1.0: a 95% interval should miss about
    # 2 of them; the seeded outcome is checked against a loose bound.
    rng = np.random.default_rng(42)
    covered = 0
    for i in range(40):
        d = 1.0 + 2.0 * rng.standard_normal(100)
        low, high = bootstrap_ci(d, resamples=1000, seed=i)
        covered += low <= 1.0 <= high
    assert covered >= 34


def test_trials_are_averaged_as_the_scorer_does():
    # Two trials; trial 0 has valid queries (1, 3) -> mean 2, trial 1 has (2, 4, 6) -> 4.
    # The metric is the mean of the trial means: (2 + 4) / 2 = 3, not the pooled 3.2.
    values = np.array([[1.0, 3.0, np.nan], [2.0, 4.0, 6.0]])
    assert mean_over_trials(values) == pytest.approx(3.0)
    assert permutation_test(values).difference == pytest.approx(3.0)
    low, high = bootstrap_ci(values, resamples=500)
    assert low <= 3.0 <= high
    assert math.isnan(mean_over_trials(np.full((2, 3), np.nan)))


def test_holm_against_a_hand_worked_example():
    # Sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04,
    # raised to the running maximum 0.06). Back in input order:
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # Capped at 1; NaN stays NaN and does not count in m (m = 2 here).
    adjusted = holm([0.6, float("nan"), 0.2])
    assert adjusted[0] == pytest.approx(0.6) and adjusted[2] == pytest.approx(0.4)
    assert math.isnan(adjusted[1])
    # 0.8 x 2 = 1.6 -> 1; 0.9 x 1 = 0.9, raised to the running maximum 1.
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]).size == 0
