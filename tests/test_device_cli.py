"""``--device`` on ``check`` and ``leaderboard`` (the torch backend, here on CPU): the same
results as the default Numba path, through the real command line and real HDF5 dumps."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from vireid_bench.cli.main import cli
from vireid_bench.io.dump import write_dump
from vireid_bench.results.check import check_dumps

pytest.importorskip("torch")


def exact_dump(path, seed, n=40):
    rng = np.random.default_rng(seed)
    cam = rng.integers(1, 5, n)
    return write_dump(
        path, features=rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(n, 16)),
        pid=rng.integers(0, 6, n), cam=cam, modality=(cam >= 3).astype(np.uint8),
        model=f"m{seed}",
    )  # fmt: skip


def test_check_with_device_cpu_matches_expected_recorded_by_numba(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    for seed in (1, 2):
        exact_dump(folder / f"d{seed}.h5", seed)
    runner = CliRunner()
    recorded = runner.invoke(cli, ["check", str(folder), "--update"])
    assert recorded.exit_code == 0, recorded.output
    result = runner.invoke(cli, ["check", str(folder), "--device", "cpu", "--tolerance", "1e-9"])
    assert result.exit_code == 0, result.output
    assert "all 2 dump(s) match their expected results" in result.output
    # the Python API takes the same option
    report = check_dumps(folder, version="x", tolerance=1e-9, scoring={"device": "cpu"})
    assert report.ok and len(report.checks) == 2


def test_leaderboard_with_device_cpu_writes_the_same_table(tmp_path):
    dumps = [str(exact_dump(tmp_path / f"d{seed}.h5", seed)) for seed in (3, 4)]
    runner = CliRunner()
    outputs = []
    for extra in ([], ["--device", "cpu"]):
        out = tmp_path / f"board{len(extra)}"
        result = runner.invoke(
            cli, ["leaderboard", *dumps, "--out", str(out), "--no-reported", "-f", "csv", *extra]
        )
        assert result.exit_code == 0, result.output
        (table,) = out.glob("*.csv")
        with open(table, newline="") as handle:
            outputs.append(list(csv.DictReader(handle)))
    # the same cells; numbers equal up to the float64 summation order of AP (~1e-15)
    assert [row.keys() for row in outputs[0]] == [row.keys() for row in outputs[1]]
    assert {row["model"] for row in outputs[0]} >= {"m3", "m4"}
    for a, b in zip(*outputs, strict=True):
        for key, value in a.items():
            try:
                number = float(value)
            except ValueError:
                assert b[key] == value, key
            else:
                assert float(b[key]) == pytest.approx(number, abs=1e-9, nan_ok=True), key


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("check", ["--tf32"], "error: --tf32: needs --device cuda (or auto)"),
        ("leaderboard", ["--device", "cpu", "--scheduler", "dask"],
         "error: --device: not available with --scheduler dask yet"),
    ],
)  # fmt: skip
def test_device_option_errors_are_one_line(tmp_path, command, args, message):
    folder = tmp_path / "dumps"
    folder.mkdir()
    path = exact_dump(folder / "d.h5", 5)
    target = [str(folder)] if command == "check" else [str(path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(cli, [command, *target, *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [message]
