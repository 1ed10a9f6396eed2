"""vireid-bench compare: paired significance of two models on the identical galleries."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vireid_bench.cli.compare import compare_command
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.results.stats import CompareError, compare_evaluations
from vireid_bench.synth.dumps import SynthStrengths, write_synth_dump

CAMS = "1,2:visible,3,4:infrared"


def dump(path, seed=0, ids=12, strengths=None):
    """Synthetic dumps with the same ids, cameras and counts hold the same images in the
    same order, whatever the seed and strengths: they can be compared."""
    return write_synth_dump(
        path,
        ids=ids,
        cameras=CAMS,
        per_cam=2,
        dim=16,
        seed=seed,
        strengths=strengths or SynthStrengths(),
    )


def run_json(*args):
    result = CliRunner().invoke(compare_command, [*map(str, args), "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["comparisons"]


def test_a_model_against_itself(tmp_path):
    a = dump(tmp_path / "a.h5")
    rows = run_json(a, a, "-p", "mix-id,cross", "--permutations", "500", "--bootstrap", "200")
    assert {(r["setting"], r["metric"]) for r in rows} == {
        (s, m)
        for s in ("mix-id@infrared", "mix-id@visible", "cross@infrared", "cross@visible")
        for m in ("mAP", "R1")
    }
    for row in rows:
        assert row["A"] == row["B"] and row["A-B"] == 0.0
        assert row["p"] == 1.0 and row["p (Holm)"] == 1.0
        assert row["CI 95% low"] == 0.0 and row["CI 95% high"] == 0.0


def test_a_clearly_better_model_is_significant(tmp_path):
    # Strong shared identity, weak modality component and noise: far better everywhere.
    strong = SynthStrengths(identity=2.0, modality=0.2, noise=0.3)
    good = dump(tmp_path / "good.h5", seed=1, ids=30, strengths=strong)
    poor = dump(tmp_path / "poor.h5", seed=2, ids=30)
    rows = run_json(good, poor, "-p", "mix-id,cross", "--permutations", "999", "--bootstrap", "500")
    for row in rows:
        assert row["A-B"] > 0
        assert row["CI 95% low"] <= row["A-B"] <= row["CI 95% high"]
        assert row["p (Holm)"] >= row["p"]
        # No random sign pattern reaches the observed difference: p = 1 / (1 + 999), and
        # Holm over the metric's 4 settings multiplies the smallest by 4 (all are equal).
        assert row["p"] == pytest.approx(1 / 1000)
        assert row["p (Holm)"] == pytest.approx(4 / 1000)
        assert row["CI 95% low"] > 0


def test_values_are_the_scored_ones(tmp_path):
    a_path, b_path = dump(tmp_path / "a.h5", seed=1), dump(tmp_path / "b.h5", seed=2)
    presets = resolve_presets("mix,mix-p")
    a, b = load_dump(a_path), load_dump(b_path)
    ev_a, ev_b = evaluate(a, presets), evaluate(b, presets)
    rows = compare_evaluations(a, ev_a, b, ev_b, permutations=200, resamples=100)
    scored_a = {(r["protocol"], r["query_modality"]): r for r in ev_a.rows}
    scored_b = {(r["protocol"], r["query_modality"]): r for r in ev_b.rows}
    for row in rows:
        protocol, modality = row.setting.split("@")
        metric = "mAP" if row.metric == "mAP" else "rank1"
        assert row.a == pytest.approx(scored_a[(protocol, modality)][metric], abs=1e-9)
        assert row.b == pytest.approx(scored_b[(protocol, modality)][metric], abs=1e-9)
        assert row.difference == pytest.approx(row.a - row.b, abs=1e-9)


def test_table_output_names_the_test(tmp_path):
    a, b = dump(tmp_path / "a.h5", seed=1), dump(tmp_path / "b.h5", seed=2)
    result = CliRunner().invoke(
        compare_command,
        [str(a), str(b), "-p", "mix-id", "--permutations", "300", "--bootstrap", "100"],
    )
    assert result.exit_code == 0, result.output
    assert "paired permutation test" in result.stdout and "Holm" in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("setting"))
    assert header.split()[:5] == ["setting", "metric", "A", "B", "A−B"]
    assert "95% CI" in header and "p (Holm)" in header


def test_different_galleries_are_refused(tmp_path):
    a = dump(tmp_path / "a.h5", ids=12)
    b = dump(tmp_path / "b.h5", ids=10)
    result = CliRunner().invoke(compare_command, [str(a), str(b), "-p", "mix"])
    assert result.exit_code == 2
    assert "compare needs the same images" in result.stderr
    c = write_synth_dump(
        tmp_path / "c.h5", ids=12, cameras=CAMS, per_cam=2, dim=16, dataset="regdb-like"
    )
    with pytest.raises(CompareError, match="dataset"):
        presets = resolve_presets("mix")
        da, dc = load_dump(a), load_dump(c)
        compare_evaluations(da, evaluate(da, presets), dc, evaluate(dc, presets))
