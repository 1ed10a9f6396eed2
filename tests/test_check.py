"""vireid-bench check: stored dumps against their expected results."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from vireid_bench.cli.check import check_command
from vireid_bench.results.check import compare_results, row_key
from vireid_bench.synth.dumps import write_synth_dump


@pytest.fixture
def stored(tmp_path):
    """A stored-dump folder with two small dumps and freshly recorded expectations."""
    folder = tmp_path / "feature_dumps"
    folder.mkdir()  # write_dump no longer creates a missing folder
    write_synth_dump(
        folder / "one.h5", ids=8, cameras="1,2:visible,3,4:infrared", per_cam=2, dim=16, seed=0
    )
    write_synth_dump(
        folder / "two.h5", ids=6, cameras="1:visible,2:infrared", per_cam=3, dim=16, seed=1
    )
    result = CliRunner().invoke(check_command, [str(folder), "--update"])
    assert result.exit_code == 0, result.output
    return folder


def edit_expected(folder, name, setting, field, delta):
    path = folder / "expected" / f"{name}.json"
    data = json.loads(path.read_text())
    row = next(r for r in data["results"] if row_key(r) == setting)
    old = row[field]
    row[field] = old + delta
    path.write_text(json.dumps(data, indent=2))
    return old


def test_update_records_expected_files(stored):
    data = json.loads((stored / "expected" / "one.json").read_text())
    assert data["dump"] == "one.h5" and len(data["dump_sha256"]) == 64
    keys = [row_key(r) for r in data["results"]]
    assert "mix-id@infrared" in keys and "cross@visible" in keys
    # two.h5 has one camera per modality: Mix-Cam is recorded as skipped, with its status.
    two = json.loads((stored / "expected" / "two.json").read_text())
    skipped = [r for r in two["results"] if r["status"] != "ok"]
    assert skipped and all(r["mAP"] is None for r in skipped)


def test_check_passes_on_unchanged_dumps(stored):
    result = CliRunner().invoke(check_command, [str(stored)])
    assert result.exit_code == 0, result.output
    assert "one.h5: 14 setting(s): ok" in result.stdout
    assert "all 2 dump(s) match their expected results" in result.stdout


def test_an_edited_expected_value_is_a_regression_with_a_diff_table(stored):
    old = edit_expected(stored, "one", "mix-id@infrared", "mAP", 0.5)
    result = CliRunner().invoke(check_command, [str(stored)])
    assert result.exit_code == 1
    assert "one.h5: 14 setting(s): 1 cell(s) moved" in result.stdout
    assert "two.h5: " in result.stdout and "two.h5: 14 setting(s): ok" in result.stdout
    table = result.stdout[result.stdout.index("dump ") :].splitlines()
    assert table[0].split() == ["dump", "setting", "field", "expected", "actual", "delta"]
    row = table[2].split()
    assert row[:3] == ["one.h5", "mix-id@infrared", "mAP"]
    assert float(row[3]) == pytest.approx(old + 0.5, abs=1e-6)
    assert float(row[4]) == pytest.approx(old, abs=1e-6)
    assert row[5] == "-0.500000"
    assert "--update" in result.stderr


def test_tolerance(stored):
    edit_expected(stored, "one", "cross@infrared", "rank1", 5e-7)
    assert CliRunner().invoke(check_command, [str(stored)]).exit_code == 0
    edit_expected(stored, "one", "cross@infrared", "rank1", 1e-3)
    assert CliRunner().invoke(check_command, [str(stored)]).exit_code == 1
    result = CliRunner().invoke(check_command, [str(stored), "--tolerance", "0.01"])
    assert result.exit_code == 0, result.output


def test_counts_and_statuses_must_match_exactly(stored):
    edit_expected(stored, "two", "uni@visible", "queries", 1)
    result = CliRunner().invoke(check_command, [str(stored)])
    assert result.exit_code == 1
    assert "uni@visible" in result.stdout and "queries" in result.stdout


def test_update_rewrites_and_prints_what_changed(stored):
    old = edit_expected(stored, "one", "mix@visible", "rank5", -2.0)
    before_two = (stored / "expected" / "two.json").read_text()
    result = CliRunner().invoke(check_command, [str(stored), "--update"])
    assert result.exit_code == 0, result.output
    assert "updated" in result.stdout and "mix@visible" in result.stdout
    assert "rank5" in result.stdout
    data = json.loads((stored / "expected" / "one.json").read_text())
    row = next(r for r in data["results"] if row_key(r) == "mix@visible")
    assert row["rank5"] == pytest.approx(old)
    assert (stored / "expected" / "two.json").read_text() == before_two  # unchanged: untouched
    assert CliRunner().invoke(check_command, [str(stored)]).exit_code == 0


def test_a_dump_without_expected_file_fails_until_recorded(stored):
    write_synth_dump(
        stored / "three.h5", ids=4, cameras="1:visible,2:infrared", per_cam=2, dim=8, seed=3
    )
    result = CliRunner().invoke(check_command, [str(stored)])
    assert result.exit_code == 1
    assert "three.h5: 14 setting(s): no expected file" in result.stdout
    (stored / "expected" / "two.json").rename(stored / "expected" / "gone.json")
    result = CliRunner().invoke(check_command, [str(stored), "--update"])
    assert result.exit_code == 0
    assert "gone.json: no dump gone.h5" in result.stderr


def test_bad_folder_exits_2(tmp_path):
    result = CliRunner().invoke(check_command, [str(tmp_path)])
    assert result.exit_code == 2
    assert "no feature dump" in result.stderr


def test_compare_results_rules():
    base = {
        "protocol": "mix",
        "variant": "",
        "query_modality": "infrared",
        "status": "ok",
        "trials": 1,
        "queries": 4,
        "mAP": 50.0,
        "mINP": None,
    }
    same = dict(base, mINP=math.nan)  # null and NaN are the same missing value
    assert compare_results("d", [base], [same]) == []
    moved = compare_results("d", [base], [dict(base, mAP=50.1, status="skipped")])
    assert [(m.field, m.expected, m.actual) for m in moved] == [
        ("status", "ok", "skipped"),
        ("mAP", 50.0, 50.1),
    ]
    assert moved[1].delta == pytest.approx(0.1)
    extra = dict(base, protocol="cross")
    missing = compare_results("d", [base], [extra])
    assert [(m.setting, m.expected, m.actual) for m in missing] == [
        ("mix@infrared", "present", None),
        ("cross@infrared", None, "present"),
    ]


def test_a_changed_dump_hash_is_a_note_and_update_records_it(stored):
    path = stored / "expected" / "one.json"
    data = json.loads(path.read_text())
    real = data["dump_sha256"]
    data["dump_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(check_command, [str(stored)])
    assert result.exit_code == 0, result.output  # the numbers decide
    assert "note: one.h5: the dump's SHA-256 changed" in result.stderr
    result = CliRunner().invoke(check_command, [str(stored), "--update"])
    assert result.exit_code == 0
    assert "updated 1 expected file(s)" in result.stdout
    assert json.loads(path.read_text())["dump_sha256"] == real


def test_check_and_leaderboard_under_a_small_memory_limit(tmp_path):
    """`--memory-limit` streams (and reads lazily) with the same numbers as in memory.

    Features of +-1 entries (D = 16) make every float32 distance exact whatever the block
    shape, so the streamed scores must equal the recorded in-memory ones.
    """
    import numpy as np

    from vireid_bench.cli.leaderboard import leaderboard_command
    from vireid_bench.io.dump import write_dump

    rng = np.random.default_rng(0)
    n = 700
    folder = tmp_path / "dumps"
    folder.mkdir()  # write_dump no longer creates a missing folder
    write_dump(
        folder / "exact.h5",
        features=rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, 16)),
        pid=rng.integers(0, 70, n),
        cam=rng.integers(1, 5, n),
        modality=rng.integers(0, 2, n),
    )
    runner = CliRunner()
    assert runner.invoke(check_command, [str(folder), "--update"]).exit_code == 0
    # 700 x 64 B of features: more than half of 64 KiB (lazy), rows do not fit (streamed)
    result = runner.invoke(check_command, [str(folder), "--memory-limit", "64KiB"])
    assert result.exit_code == 0, result.output
    assert "all 1 dump(s) match their expected results" in result.stdout
    boards = []
    for extra in ([], ["--memory-limit", "64KiB"]):
        out = tmp_path / f"board{len(boards)}"
        args = [str(folder / "exact.h5"), "--out", str(out), *extra]
        result = runner.invoke(leaderboard_command, args)
        assert result.exit_code == 0, result.output
        boards.append((out / "generic.csv").read_text())
    assert boards[0] == boards[1]
