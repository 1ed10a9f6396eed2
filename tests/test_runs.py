"""``vireid-bench runs``: statistics over training runs and the run-level test.

The statistics are checked against SciPy and against hand computations on hand-made run
sets; the command runs on real synthetic dumps (5 seeds of one model, and two models).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump, write_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.results.runs import (
    BOOTSTRAP_MIN_RUNS,
    bootstrap_interval,
    run_interval,
    run_permutation_test,
    summarize_values,
    t_interval,
    welch_test,
)
from vireid_bench.synth.dumps import SynthStrengths, write_synth_dump

SMALL = {"ids": 12, "per_cam": 2, "dim": 16, "dataset": "sysu-mm01"}
SCORE_ARGS = ["-p", "cross", "--trials", "2", "--bootstrap", "500", "--permutations", "2000"]


def one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- statistics


def test_t_interval_by_hand_and_against_scipy():
    runs = [70.0, 72.0, 71.0, 74.0, 73.0]  # mean 72, s^2 = 2.5
    low, high = t_interval(runs, 0.95)
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975, 4} s / sqrt(n)
    assert low == pytest.approx(72 - half, abs=1e-12) and high == pytest.approx(72 + half)
    reference = scipy.stats.t.interval(0.95, 4, loc=72.0, scale=scipy.stats.sem(runs))
    assert (low, high) == pytest.approx(reference, abs=1e-12)
    assert all(math.isnan(v) for v in t_interval([71.0]))  # one run: no spread to estimate


def test_interval_is_t_below_ten_runs_and_bootstrap_from_ten():
    rng = np.random.default_rng(3)
    nine, ten = rng.normal(50, 2, 9), rng.normal(50, 2, BOOTSTRAP_MIN_RUNS)
    assert run_interval(nine).method == "t"
    assert (run_interval(nine).low, run_interval(nine).high) == t_interval(nine)
    interval = run_interval(ten, seed=4)
    assert interval.method == "bootstrap"
    assert (interval.low, interval.high) == bootstrap_interval(ten, seed=4)  # seeded
    assert bootstrap_interval(ten, seed=5) != bootstrap_interval(ten, seed=4)
    reference = scipy.stats.bootstrap(
        (ten,),
        np.mean,
        confidence_level=0.95,
        method="percentile",
        n_resamples=20_000,
        random_state=0,
    ).confidence_interval
    # both are Monte Carlo percentiles of the same bootstrap distribution
    assert interval.low == pytest.approx(reference.low, abs=0.15)
    assert interval.high == pytest.approx(reference.high, abs=0.15)
    # percentile interval of a bootstrap of means: inside the sample's range
    assert ten.min() < interval.low < ten.mean() < interval.high < ten.max()


def test_welch_by_hand_and_against_scipy():
    a, b = [1.0, 2.0, 3.0], [4.0, 6.0, 8.0]
    result = welch_test(a, b)
    # se^2 = 1/3 + 4/3; t = -4 / sqrt(5/3); df = (5/3)^2 / ((1/3)^2/2 + (4/3)^2/2) = 50/17
    assert result.t == pytest.approx(-4 / math.sqrt(5 / 3), abs=1e-12)
    assert result.df == pytest.approx(50 / 17, abs=1e-12)
    reference = scipy.stats.ttest_ind(a, b, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue, abs=1e-12)
    two_sided = 2 * scipy.stats.t.sf(abs(result.t), 50 / 17)
    assert result.p_value == pytest.approx(two_sided, abs=1e-12)
    assert math.isnan(welch_test([1.0], [2.0, 3.0]).p_value)  # one run: no variance
    assert math.isnan(welch_test([2.0, 2.0], [3.0, 3.0]).p_value)  # no spread at all


def test_exact_permutation_over_runs_by_hand():
    # 20 ways to split {1..6} into 3 + 3; only {1,2,3}|{4,5,6} and its mirror reach |-3|
    result = run_permutation_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert result.exact and result.permutations == 20
    assert result.difference == pytest.approx(-3.0)
    assert result.p_value == pytest.approx(2 / 20)
    reference = scipy.stats.permutation_test(
        ([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type="independent",
        n_resamples=np.inf,
    )
    assert result.p_value == pytest.approx(reference.pvalue, abs=1e-12)
    # unequal sizes: C(5, 2) = 10 splits; |mean diff| >= 4 for {0,1}|{5,6,7}... count by hand
    a, b = [0.0, 1.0], [5.0, 6.0, 7.0]
    brute = []
    pooled = a + b
    import itertools

    for chosen in itertools.combinations(range(5), 2):
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(5) if i not in chosen]
        brute.append(abs(np.mean(x) - np.mean(y)) >= abs(np.mean(a) - np.mean(b)) - 1e-12)
    assert run_permutation_test(a, b).p_value == pytest.approx(sum(brute) / 10)


def test_monte_carlo_permutation_when_relabellings_exceed_the_budget():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 12), rng.normal(0.8, 1, 12)  # C(24, 12) = 2.7 million
    exact = scipy.stats.permutation_test(
        (a, b),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type="independent",
        n_resamples=200_000,
        random_state=1,
    ).pvalue
    result = run_permutation_test(a, b, permutations=20_000, seed=2)
    assert not result.exact and result.permutations == 20_000
    assert result.p_value == pytest.approx(exact, abs=0.01)
    assert result.p_value >= 1 / 20_001  # add-one estimate, never 0


def test_summary_of_hand_made_runs():
    summary = summarize_values("M", "cross@infrared", "mAP", [60.0, 62.0, 61.0, float("nan")])
    assert summary.n == 3 and summary.mean == pytest.approx(61.0)
    assert summary.std == pytest.approx(statistics.stdev([60.0, 62.0, 61.0]))  # 1.0
    assert (summary.minimum, summary.maximum, summary.ci_method) == (60.0, 62.0, "t")
    assert summary.ci_low == pytest.approx(61 - 4.302652729911275 / math.sqrt(3))


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def five_seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    return [
        write_synth_dump(folder / f"a-seed{seed}.h5", seed=seed, model="A", **SMALL)
        for seed in range(5)
    ]


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs-b")
    strengths = SynthStrengths(identity=1.4)
    return [
        write_synth_dump(
            folder / f"b-seed{seed}.h5", seed=seed, model="B", strengths=strengths, **SMALL
        )
        for seed in range(10, 14)
    ]


def run_json(paths, *extra):
    result = CliRunner().invoke(cli, ["runs", *map(str, paths), *SCORE_ARGS, "-f", "json", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_five_seeds_of_one_model(five_seeds):
    payload = run_json(five_seeds)
    (group,) = payload["groups"]
    assert group["model"] == "A" and [r["seed"] for r in group["runs"]] == [0, 1, 2, 3, 4]
    assert payload["comparisons"] == [] and payload["verdict"] == ""
    # each dump scored on its own, the same way
    per_dump = []
    for path in five_seeds:
        rows = evaluate(load_dump(path), resolve_presets("cross"), trials=2).rows
        per_dump.append({(r["protocol"], r["variant"], r["query_modality"]): r for r in rows})
    summaries = {(s["setting"], s["metric"]): s for s in payload["summary"]}
    assert len(summaries) == 4 * 3  # cross all/indoor x infrared/visible queries x 3 metrics
    for (protocol, variant, modality), _ in per_dump[0].items():
        for metric, label in (("rank1", "R1"), ("mAP", "mAP"), ("mINP", "mINP")):
            s = summaries[(f"{protocol}:{variant}@{modality}", label)]
            values = [d[(protocol, variant, modality)][metric] for d in per_dump]
            assert s["values"] == pytest.approx(values, abs=1e-12)
            assert s["runs"] == 5 and s["ci_method"] == "t"
            assert s["mean"] == pytest.approx(statistics.fmean(values), abs=1e-9)
            assert s["std"] == pytest.approx(statistics.stdev(values), abs=1e-9)
            assert (s["min"], s["max"]) == pytest.approx((min(values), max(values)))
            assert (s["ci_low"], s["ci_high"]) == pytest.approx(t_interval(values), abs=1e-9)
    assert len({s["mean"] for s in payload["summary"]}) > 1  # the seeds do differ


def test_two_models_run_level_test_and_verdict(five_seeds, other_model):
    payload = run_json([*five_seeds, *other_model], "--metric", "mAP,R1")
    assert [g["model"] for g in payload["groups"]] == ["A", "B"]
    summaries = {(s["model"], s["setting"], s["metric"]): s for s in payload["summary"]}
    assert len(payload["comparisons"]) == 4 * 2
    for c in payload["comparisons"]:
        a = summaries[("A", c["setting"], c["metric"])]["values"]
        b = summaries[("B", c["setting"], c["metric"])]["values"]
        reference = scipy.stats.ttest_ind(a, b, equal_var=False)
        assert c["welch_p"] == pytest.approx(reference.pvalue, abs=1e-12)
        assert c["permutation_exact"] and c["permutations"] == math.comb(9, 5)  # 126
        assert c["permutation_p"] == pytest.approx(run_permutation_test(a, b).p_value)
        assert c["difference"] == pytest.approx(np.mean(a) - np.mean(b), abs=1e-9)
        assert c["run_se"] == pytest.approx(
            math.sqrt(np.var(a, ddof=1) / 5 + np.var(b, ddof=1) / 4), abs=1e-9
        )
        # per-query test on the run-averaged scores: same images in every dump
        assert c["query_p"] is not None and c["query_se"] > 0
        assert c["query_ci_low"] <= c["difference"] <= c["query_ci_high"]
        expected = "run-to-run" if c["run_se"] > c["query_se"] else "per-query"
        assert c["dominant_noise"] == expected
    assert payload["verdict"].startswith("verdict: ") and "\n" not in payload["verdict"]
    assert "noise dominates" in payload["verdict"]
    paths = [str(p) for p in [*five_seeds, *other_model]]
    table = CliRunner().invoke(cli, ["runs", *paths, *SCORE_ARGS, "--metric", "mAP,R1"])
    assert table.exit_code == 0, table.output
    verdicts = [line for line in table.stdout.splitlines() if line.startswith("verdict:")]
    assert verdicts == [payload["verdict"]]


def test_csv_and_markdown(five_seeds):
    result = CliRunner().invoke(cli, ["runs", *map(str, five_seeds[:3]), *SCORE_ARGS, "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["row"] for r in rows} == {"summary"} and len(rows) == 12
    assert all(r["runs"] == "3" and r["ci_method"] == "t" for r in rows)
    markdown = CliRunner().invoke(
        cli, ["runs", *map(str, five_seeds[:2]), *SCORE_ARGS, "-f", "markdown"]
    )
    assert markdown.exit_code == 0 and "| model " in markdown.stdout


def test_group_on_different_test_sets_is_refused(five_seeds, tmp_path):
    other = write_synth_dump(tmp_path / "a-small.h5", seed=9, model="A", **{**SMALL, "ids": 10})
    result = CliRunner().invoke(cli, ["runs", str(five_seeds[0]), str(other), *SCORE_ARGS])
    one_line_error(result, "model 'A'", "a-seed0.h5", "a-small.h5", "must share the test set")
    regdb = write_synth_dump(
        tmp_path / "a-regdb.h5", seed=9, model="A", **{**SMALL, "dataset": "regdb"}
    )
    result = CliRunner().invoke(cli, ["runs", str(five_seeds[0]), str(regdb), *SCORE_ARGS])
    one_line_error(result, "sysu-mm01 with", "regdb with")


def test_two_models_on_different_test_sets_are_refused(five_seeds, tmp_path):
    other = write_synth_dump(tmp_path / "b.h5", seed=9, model="B", **{**SMALL, "ids": 10})
    result = CliRunner().invoke(cli, ["runs", *map(str, five_seeds[:2]), str(other), *SCORE_ARGS])
    one_line_error(result, "a run-level test needs one test set")


def test_bad_inputs_are_one_line_errors(five_seeds, tmp_path):
    same = str(five_seeds[0])
    one_line_error(CliRunner().invoke(cli, ["runs", same, same]), "given twice")
    one_line_error(
        CliRunner().invoke(cli, ["runs", same, "--metric", "R5"]), "--metric", "unknown metric"
    )
    one_line_error(CliRunner().invoke(cli, ["runs", str(tmp_path / "none.h5")]), "none.h5")


def test_duplicate_seed_warns(tmp_path):
    arrays = {
        "features": np.eye(4, dtype=np.float32) + 0.1,
        "pid": [1, 1, 2, 2],
        "cam": [1, 3, 1, 3],
        "modality": [0, 1, 0, 1],
        "dataset": "generic",
        "model": "M",
        "seed": 1,
    }
    paths = [str(write_dump(tmp_path / f"m{k}.h5", **arrays)) for k in range(2)]
    result = CliRunner().invoke(cli, ["runs", *paths, "-f", "json"])
    assert result.exit_code == 0, result.output
    assert "seed 1 in both m0.h5 and m1.h5" in result.stderr
