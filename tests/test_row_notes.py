"""Row notes: ``regdb-saai`` reports mINP as absent (not part of SAAI / MPANet's RegDB
evaluation), and LLCM's V->I row says what its queries are (``direction``)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from dataset_trees import (
    dump_from_table,
    features_for,
    make_llcm,
    make_regdb,
    random_llcm_counts,
    regdb_dump,
)

from vireid_bench.cli.main import cli
from vireid_bench.engine.scoring import evaluate
from vireid_bench.io.dump import INFRARED, VISIBLE, load_dump
from vireid_bench.protocol import resolve_presets
from vireid_bench.protocol.datasets import LLCMConvention, index_llcm, index_regdb
from vireid_bench.results.check import check_dumps, compare_results, row_key
from vireid_bench.results.report import render_json

DEEN_V2I = "v2i (DEEN test.py mode: infrared queries, visible gallery)"


def _regdb(tmp_path, name, seed):
    """One RegDB split (split 4): 6 ids, 3 images per id and modality, continuous features."""
    lists = {
        word: [
            (f"{folder}/{p}/f_{word[0]}_{p:05d}_{k}.bmp", p) for p in range(1, 7) for k in range(3)
        ]
        for word, folder in (("visible", "Visible"), ("thermal", "Thermal"))
    }
    root = make_regdb(tmp_path / f"root-{name}", {4: lists})
    frame = index_regdb(root, trials=(4,))
    features = {3: features_for(frame, np.random.default_rng(seed))}
    return regdb_dump(tmp_path / f"{name}.h5", frame, features)


@pytest.fixture
def saai_dump(tmp_path):
    return _regdb(tmp_path, "regdb", 5)


def _score(path, *options):
    result = CliRunner().invoke(
        cli, ["score", str(path), "-p", "regdb-saai", "--regdb-split", "4", *options]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_regdb_saai_minp_is_absent_in_every_format(saai_dump):
    # JSON: null, with the note field; the other metrics are numbers
    rows = json.loads(_score(saai_dump, "--format", "json"))["results"]
    assert [r["query_modality"] for r in rows] == ["infrared", "visible"]
    for row in rows:
        assert row["mINP"] is None and row["mINP_std"] is None
        assert row["absent_metrics"] == ["mINP"]
        assert 0 < row["mAP"] <= 100 and row["status"] == "ok"
    # CSV: empty cells and an absent_metrics column
    records = list(csv.DictReader(io.StringIO(_score(saai_dump, "--format", "csv"))))
    assert [(r["mINP"], r["mINP_std"], r["absent_metrics"]) for r in records] == [
        ("", "", "mINP")
    ] * 2
    assert float(records[0]["mAP"]) == pytest.approx(rows[0]["mAP"], abs=1e-9)
    # table and Markdown: the cell says absent, the note column says why
    for fmt in ("table", "markdown"):
        text = _score(saai_dump, "--format", fmt)
        lines = [line for line in text.splitlines() if "regdb-saai (saai)" in line]
        assert len(lines) == 2
        for line in lines:
            assert "absent" in line
            assert "mINP absent: not part of the regdb-saai convention" in line
            assert "n/a" not in line


def test_plain_regdb_rows_keep_their_minp(saai_dump):
    """The control: regdb-t2v on the same dump reports mINP and no note field; with
    continuous features (no ties) regdb-saai's image-level mAP is the same number."""
    dump = load_dump(saai_dump)
    (plain,) = evaluate(dump, resolve_presets("regdb-t2v")).rows
    (saai,) = evaluate(dump, resolve_presets("regdb-saai"), query_modalities=["infrared"]).rows
    assert 0 < plain["mINP"] <= 100 and "absent_metrics" not in plain
    assert math.isnan(saai["mINP"]) and math.isnan(saai["mINP_std"])
    assert saai["mAP"] == pytest.approx(plain["mAP"], abs=1e-9)


def test_regdb_saai_per_query_inp_is_absent_too(saai_dump):
    """Statistics over queries (runs, compare) get no mINP either."""
    dump = load_dump(saai_dump)
    evaluation = evaluate(dump, resolve_presets("regdb-saai"))
    assert evaluation.per_query and all(np.isnan(s.inp).all() for s in evaluation.per_query)
    assert all(np.isfinite(s.ap).all() for s in evaluation.per_query)


def test_regdb_saai_check_round_trip(saai_dump, tmp_path):
    """Absent equals absent (no difference); an old expected number for mINP is one."""
    dump = load_dump(saai_dump)
    rows = evaluate(dump, resolve_presets("regdb-saai")).rows
    stored = json.loads(render_json(rows, "test"))["results"]
    assert [(r["mINP"], r["absent_metrics"]) for r in stored] == [(None, ["mINP"])] * 2
    expected_file = tmp_path / "expected.json"
    expected_file.write_text(json.dumps({"results": stored}))
    again = json.loads(expected_file.read_text())["results"]
    rescored = evaluate(load_dump(saai_dump), resolve_presets("regdb-saai")).rows
    assert compare_results("regdb.h5", again, rescored) == []
    old = [dict(r, mINP=12.5) for r in again]
    moved = compare_results("regdb.h5", old, rescored)
    assert [(d.setting, d.field) for d in moved] == [
        ("regdb-saai:saai@infrared", "mINP"),
        ("regdb-saai:saai@visible", "mINP"),
    ]


def test_regdb_saai_leaderboard_leaves_minp_empty(saai_dump, tmp_path):
    runner = CliRunner()
    stale = tmp_path / "stale.json"  # a result file written before mINP was absent
    document = json.loads(_score(saai_dump, "--format", "json"))
    for row in document["results"]:
        row["mINP"], row["mINP_std"] = 33.0, 0.0
        del row["absent_metrics"]
    stale.write_text(json.dumps(document))
    for inputs, out in (
        ([str(saai_dump), "-p", "regdb-saai,regdb-t2v"], "dump"),
        ([str(stale)], "stale"),
    ):
        result = runner.invoke(
            cli, ["leaderboard", *inputs, "-o", str(tmp_path / out), "--no-reported"]
        )
        assert result.exit_code == 0, result.output
        (record,) = csv.DictReader((tmp_path / out / "regdb.csv").open())
        assert record["cross:saai@infrared.mINP"] == ""
        assert record["cross:saai@visible.mINP"] == ""
        assert float(record["cross:saai@infrared.mAP"]) > 0
        if out == "dump":  # the plain RegDB column keeps its mINP
            assert float(record["cross@infrared.mINP"]) > 0
        markdown = (tmp_path / out / "regdb.md").read_text()
        assert "nan" not in markdown.lower()
    # merging the written CSV back reads the empty cells
    result = runner.invoke(
        cli, ["leaderboard", "--merge", "-o", str(tmp_path / "stale"), "--no-reported"]
    )
    assert result.exit_code == 0, result.output
    (record,) = csv.DictReader((tmp_path / "stale" / "regdb.csv").open())
    assert record["cross:saai@infrared.mINP"] == ""


def test_regdb_saai_runs_and_compare(tmp_path):
    """Runs of two models (summaries and the run-level comparison) and the paired
    per-query comparison report no mINP number for regdb-saai."""
    runner = CliRunner()
    dumps = [_regdb(tmp_path, name, seed) for seed, name in enumerate(("a1", "a2", "b1", "b2"))]
    for path in dumps[2:]:
        with h5py.File(path, "r+") as handle:
            handle.attrs["model"] = "other"
    paths = [str(p) for p in dumps]
    result = runner.invoke(cli, ["runs", *paths, "-p", "regdb-saai", "-f", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    summaries = [s for s in document["summary"] if s["metric"] == "mINP"]
    assert len(summaries) == 4  # two models x two directions
    assert all(s["mean"] is None and s["runs"] == 0 for s in summaries)
    numbers = [s for s in document["summary"] if s["metric"] == "mAP"]
    assert all(s["runs"] == 2 and s["mean"] > 0 for s in numbers)
    compared = [c["metric"] for c in document["comparisons"]]
    assert sorted(compared) == ["R1", "R1", "mAP", "mAP"]  # none for mINP
    result = runner.invoke(cli, ["compare", paths[0], paths[2], "-p", "regdb-saai"])
    assert result.exit_code == 0, result.output
    assert "mINP" not in result.stdout


# --------------------------------------------------------------------------- LLCM V->I


@pytest.fixture(scope="module")
def llcm_dump(tmp_path_factory):
    rng = np.random.default_rng(4)
    tmp = tmp_path_factory.mktemp("llcm-notes")
    ids = sorted(rng.choice(np.arange(1, 60), size=12, replace=False).tolist())
    root = make_llcm(tmp / "root", random_llcm_counts(rng, ids), test_ids=ids)
    frame = index_llcm(root)
    return dump_from_table(tmp / "llcm.h5", frame, features_for(frame, rng), "llcm")


def test_llcm_v2i_row_says_its_queries_are_infrared(llcm_dump):
    dump = load_dump(llcm_dump)
    evaluation = evaluate(dump, resolve_presets("llcm-i2v,llcm-v2i"), trials=2)
    i2v, v2i = evaluation.rows
    assert v2i["direction"] == DEEN_V2I and "direction" not in i2v
    # the keys stay the setting's directions: distinct, and as stored results have them
    assert (row_key(i2v), row_key(v2i)) == ("llcm-i2v@infrared", "llcm-v2i@visible")
    # what the label says is what was scored: sampled NIR queries, every VIS image
    for scores in evaluation.per_query:
        split = dump.splits[scores.plan.split]
        queries = set(split.modality[scores.plan.query_idx].tolist())
        gallery = set(split.modality[scores.plan.pool_idx].tolist())
        assert (queries, gallery) == ({INFRARED}, {VISIBLE})
    rule = LLCMConvention("visible-queries")
    other = evaluate(dump, resolve_presets("llcm-v2i"), convention=rule, trials=2)
    (row,) = other.rows
    assert row["direction"] == "v2i (visible queries, sampled infrared gallery)"
    plan = other.per_query[0].plan
    assert set(dump.splits[0].modality[plan.query_idx].tolist()) == {VISIBLE}
    # mixed settings with visible queries really query visible images: no direction
    (mix,) = evaluate(dump, resolve_presets("mix"), query_modalities=["visible"], trials=1).rows
    assert "direction" not in mix


def test_llcm_direction_in_outputs(llcm_dump):
    runner = CliRunner()
    base = ["score", str(llcm_dump), "-p", "llcm-i2v,llcm-v2i", "--trials", "1"]
    rows = json.loads(runner.invoke(cli, [*base, "-f", "json"]).stdout)["results"]
    assert [r.get("direction") for r in rows] == [None, DEEN_V2I]
    records = list(csv.DictReader(io.StringIO(runner.invoke(cli, [*base, "-f", "csv"]).stdout)))
    assert [r["direction"] for r in records] == ["", DEEN_V2I]
    table = runner.invoke(cli, [*base, "-f", "table"]).stdout
    (line,) = [line for line in table.splitlines() if line.startswith("llcm-v2i")]
    assert f"direction: {DEEN_V2I}" in line
    visible = runner.invoke(cli, [*base, "--llcm-v2i", "visible-queries", "-f", "json"]).stdout
    assert json.loads(visible)["results"][1]["direction"].startswith("v2i (visible queries")


def test_stored_llcm_expectation_still_matches(tmp_path):
    """The stored expected results (recorded before the direction field) still match:
    the numbers and the keys are unchanged, so no --update is needed."""
    (tmp_path / "expected").mkdir()
    shutil.copy("feature_dumps/synth-llcm.h5", tmp_path)
    shutil.copy("feature_dumps/expected/synth-llcm.json", tmp_path / "expected")
    stored = json.loads((tmp_path / "expected" / "synth-llcm.json").read_text())["results"]
    assert not any("direction" in row for row in stored)
    report = check_dumps(tmp_path, version="test")
    assert report.ok, report.differences
    (document,) = [c.document for c in report.checks]
    v2i = [
        r
        for r in document["results"]
        if r["protocol"] == "cross" and r["query_modality"] == "visible"
    ]
    assert [r["direction"] for r in v2i] == [DEEN_V2I]
