"""``score --format json|csv`` carries the dump's run metadata (seed, run, selection,
trained_on, synthetic), and a leaderboard built from such a result file keeps it."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
from click.testing import CliRunner

from vireid_bench.cli.main import cli
from vireid_bench.io.dump import write_dump
from vireid_bench.results.leaderboard_inputs import results_from_json
from vireid_bench.results.run_fields import RUN_FIELDS

ARRAYS = {
    "features": np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.1, 0.9, 0]], dtype=np.float32),
    "pid": [1, 1, 2, 2],
    "cam": [1, 3, 1, 3],
    "modality": [0, 1, 0, 1],
}
RECORDED = {
    "seed": 7,
    "run": "lr 3e-4, seed 7",
    "selection": "val",
    "trained_on": "sysu-mm01 train without val ids",
    "synthetic": True,
}


def _dumps(tmp_path):
    with_run = write_dump(tmp_path / "run.h5", **ARRAYS, model="M", **RECORDED)
    plain = write_dump(tmp_path / "plain.h5", **ARRAYS, model="P")
    return with_run, plain


def _score(paths, fmt):
    args = ["score", *map(str, paths), "--protocol", "cross", "--format", fmt]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_rows_carry_the_recorded_run_and_only_that(tmp_path):
    with_run, plain = _dumps(tmp_path)
    rows = json.loads(_score([with_run, plain], "json"))["results"]
    by_dump = {}
    for row in rows:
        by_dump.setdefault(row["dump"], []).append(row)
    assert set(by_dump) == {"run.h5", "plain.h5"}
    for row in by_dump["run.h5"]:
        assert {key: row[key] for key in RUN_FIELDS} == RECORDED
        assert type(row["seed"]) is int and row["synthetic"] is True
        # after the result keys and the digest
        assert list(row)[-len(RUN_FIELDS) - 1 :] == ["dump_sha256", *RUN_FIELDS]
    for row in by_dump["plain.h5"]:
        assert not set(RUN_FIELDS) & set(row)


def test_csv_gains_run_columns_with_empty_cells_for_other_dumps(tmp_path):
    with_run, plain = _dumps(tmp_path)
    rows = list(csv.DictReader(io.StringIO(_score([with_run, plain], "csv"))))
    assert list(rows[0])[-len(RUN_FIELDS) :] == list(RUN_FIELDS)
    for row in rows:
        if row["dump"] == "run.h5":
            assert (row["seed"], row["run"], row["selection"]) == ("7", "lr 3e-4, seed 7", "val")
            assert row["trained_on"] == RECORDED["trained_on"] and row["synthetic"] == "True"
        else:
            assert all(row[key] == "" for key in RUN_FIELDS)
    # a dump without run metadata keeps the old columns exactly
    header = _score([plain], "csv").splitlines()[0].split(",")
    assert not set(RUN_FIELDS) & set(header)


def test_a_leaderboard_from_the_result_file_keeps_the_run(tmp_path):
    with_run, plain = _dumps(tmp_path)
    result_file = tmp_path / "results.json"
    result_file.write_text(_score([with_run, plain], "json"))
    results = results_from_json(result_file)
    recorded = [r for r in results if r.model == "M"]
    other = [r for r in results if r.model == "P"]
    assert recorded and other
    assert {(r.selection, r.seed, r.run, r.synthetic) for r in recorded} == {
        ("val", 7, "lr 3e-4, seed 7", True)
    }
    assert {(r.selection, r.seed, r.run, r.synthetic) for r in other} == {("", None, "", False)}
