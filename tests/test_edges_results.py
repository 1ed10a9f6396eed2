"""Reliability at the edges of the results stage (issue 11): leaderboard and check inputs,
custom presets on a leaderboard, table number formatting, the protocol citation.

Every test runs the real command (click's CliRunner) on real files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from vireid_bench.cli.check import check_command
from vireid_bench.cli.leaderboard import leaderboard_command
from vireid_bench.cli.main import cli

REPO = Path(__file__).resolve().parents[1]
REGDB = REPO / "feature_dumps" / "synth-regdb.h5"


@pytest.fixture(scope="module")
def scored_json(tmp_path_factory) -> dict:
    """A real `score --format json` document of the stored RegDB dump (mix-id, cross)."""
    out = tmp_path_factory.mktemp("scored") / "scored.json"
    result = CliRunner().invoke(
        cli, ["score", str(REGDB), "-p", "mix-id,cross", "-f", "json", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def one_line_error(result, *needles: str) -> None:
    """Exit 2 with exactly one line on stderr, `error: ...`, containing every needle."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


def run_board(*args: str):
    return CliRunner().invoke(leaderboard_command, [*map(str, args)])


def edited(tmp_path, document: dict, field: str, value, name: str = "edited.json") -> Path:
    data = json.loads(json.dumps(document))
    data["results"][0][field] = value
    path = tmp_path / name
    path.write_text(json.dumps(data))  # json.dumps writes inf/nan as Infinity/NaN
    return path


# --------------------------------------------------------------------------- leaderboard JSON


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("rank1", "99.5", "results[0].rank1: expected a number in percent"),
        ("rank1", -5.0, "results[0].rank1: -5 is outside 0-100"),
        ("mAP", 250.0, "results[0].mAP: 250 is outside 0-100"),
        ("mAP", float("inf"), "results[0].mAP: not a finite number"),
        ("mINP", float("nan"), "results[0].mINP: not a finite number"),
        ("rank1", True, "results[0].rank1: expected a number in percent"),
        ("protocol", "my-setting", "results[0].protocol: unknown setting 'my-setting'"),
        ("query_modality", "thermal", "results[0].query_modality: expected infrared or visible"),
    ],
)
def test_leaderboard_refuses_bad_result_values(tmp_path, scored_json, field, value, needle):
    path = edited(tmp_path, scored_json, field, value)
    result = run_board(path, "--out", tmp_path / "board")
    one_line_error(result, str(path), needle)
    assert not (tmp_path / "board").exists()  # nothing written, nothing bolded


def test_an_out_of_range_value_is_never_bolded_as_best(tmp_path, scored_json):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(scored_json))
    bad = edited(tmp_path, scored_json, "mAP", 250.0, name="bad.json")
    data = json.loads(bad.read_text())
    for row in data["results"]:
        row["model"] = "cheater"
    bad.write_text(json.dumps(data))
    result = run_board(good, bad, "--out", tmp_path / "board", "--no-reported")
    one_line_error(result, "bad.json", "outside 0-100")
    assert not (tmp_path / "board").exists()


def test_deeply_nested_json_is_a_one_line_error(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    one_line_error(run_board(deep, "--out", tmp_path / "b"), str(deep), "nested too deeply")


def test_non_utf8_json_is_a_one_line_error(tmp_path, scored_json):
    latin = tmp_path / "latin.json"
    latin.write_bytes(json.dumps(scored_json).replace("regdb", "r\u00e9gdb").encode("latin-1"))
    one_line_error(run_board(latin, "--out", tmp_path / "b"), str(latin), "not UTF-8")


def test_a_fifo_input_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    outcome: dict = {}

    def invoke() -> None:
        outcome["result"] = run_board(fifo, "--out", tmp_path / "b")

    worker = threading.Thread(target=invoke, daemon=True)
    worker.start()
    worker.join(timeout=20)
    if worker.is_alive():  # unblock the reader so the test process can end
        with open(fifo, "w") as handle:
            handle.write("{}")
        worker.join(timeout=5)
        pytest.fail("leaderboard hung on a FIFO input")
    one_line_error(outcome["result"], str(fifo), "not a regular file")


def test_results_from_json_refuses_a_folder(tmp_path):
    from vireid_bench.results.leaderboard import LeaderboardError, results_from_json

    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(LeaderboardError, match=r"folder\.json: is a folder"):
        results_from_json(folder)


def not_a_dump(tmp_path) -> Path:
    """A `.h5` file that scoring would fail on: reaching it means scoring has started."""
    path = tmp_path / "garbage.h5"
    path.write_bytes(b"this is not HDF5" * 64)
    return path


def test_inputs_are_checked_before_any_dump_is_scored(tmp_path):
    """A missing result file fails before the dumps are opened, not after scoring them."""
    missing = tmp_path / "results" / "model.json"
    result = run_board(not_a_dump(tmp_path), missing, "--out", tmp_path / "b")
    one_line_error(result, str(missing), "no such file")


def test_a_bad_result_file_fails_before_scoring(tmp_path, scored_json):
    bad = edited(tmp_path, scored_json, "rank1", -5.0)
    result = run_board(not_a_dump(tmp_path), bad, "--out", tmp_path / "b")
    one_line_error(result, str(bad), "results[0].rank1", "outside 0-100")


def test_readme_leaderboard_example_works():
    """The README's leaderboard line names folders that exist and runs as written."""
    readme = (REPO / "README.md").read_text()
    line = next(
        line for line in readme.splitlines() if line.startswith("vireid-bench leaderboard ")
    )
    command = line.split("#")[0].split()
    for arg in command[2:]:
        if arg.startswith("-") or arg == "leaderboards/":
            continue
        assert list(REPO.glob(arg)), f"README leaderboard example: {arg} matches nothing"


def test_merge_csv_with_out_of_range_value_is_refused(tmp_path):
    out = tmp_path / "board"
    assert run_board(REGDB, "--out", out, "--no-reported", "-p", "mix-id").exit_code == 0
    csv_path = out / "regdb.csv"
    lines = csv_path.read_text().splitlines()
    header = lines[1].split(",")
    column = next(i for i, name in enumerate(lines[0].split(",")) if name.endswith(".mAP"))
    header[column] = "250"
    csv_path.write_text("\n".join([lines[0], ",".join(header), *lines[2:]]) + "\n")
    result = run_board(REGDB, "--out", out, "--merge", "-p", "mix-id")
    one_line_error(result, str(csv_path), "line 2", "outside 0-100")


# --------------------------------------------------------------------------- custom presets


CUSTOM_CROSS = """
name = "cross"
description = "Cross-modal without the same-camera exclusion (a user's variant)."
paper = "none"
query_modalities = ["infrared", "visible"]
gallery_modality = "opposite"

[[exclude]]
modality = "same"
"""


def test_a_custom_preset_named_cross_never_lands_in_the_cross_column(tmp_path):
    """Refused by provenance (a preset file), whatever name the file gives its preset."""
    custom = tmp_path / "my-cross.toml"
    custom.write_text(CUSTOM_CROSS)
    result = run_board(REGDB, "-p", str(custom), "--out", tmp_path / "b", "--no-reported")
    one_line_error(result, str(custom))
    assert not (tmp_path / "b").exists()


def test_the_python_api_refuses_a_custom_preset_file_too(tmp_path):
    from vireid_bench.results.leaderboard import LeaderboardError, results_from_dump

    custom = tmp_path / "my-cross.toml"
    custom.write_text(CUSTOM_CROSS)
    with pytest.raises(LeaderboardError, match="custom preset file"):
        results_from_dump(REGDB, version="test", protocols=f"mix,{custom}")


# --------------------------------------------------------------------------- check


def test_check_with_a_missing_expected_folder_is_a_one_line_error(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    shutil.copy(REGDB, folder / REGDB.name)
    result = CliRunner().invoke(check_command, [str(folder)])
    one_line_error(result, str(folder / "expected"), "--update")
    other = CliRunner().invoke(check_command, [str(folder), "--expected", str(tmp_path / "none")])
    one_line_error(other, str(tmp_path / "none"))
    recorded = CliRunner().invoke(check_command, [str(folder), "--update"])
    assert recorded.exit_code == 0, recorded.output
    assert (folder / "expected" / "synth-regdb.json").is_file()


def test_check_expected_path_that_is_a_file_is_a_one_line_error(tmp_path):
    folder = tmp_path / "dumps"
    folder.mkdir()
    shutil.copy(REGDB, folder / REGDB.name)
    (folder / "expected").write_text("not a folder")
    one_line_error(CliRunner().invoke(check_command, [str(folder)]), "not a folder")


# --------------------------------------------------------------------------- number formatting


def metric_cells(text: str) -> list[str]:
    """The R1..mINP cells of every scored row of a `score` table or Markdown output."""
    cells = []
    for line in text.splitlines():
        parts = [p.strip() for p in re.split(r"\s{2,}|\|", line) if p.strip()]
        if len(parts) >= 8 and re.match(r"[IV]→", parts[1]):
            cells += parts[2:8]
    return cells


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_score_tables_print_every_metric_with_two_decimals(fmt):
    result = CliRunner().invoke(cli, ["score", str(REGDB), "-p", "mix,mix-p", "-f", fmt])
    assert result.exit_code == 0, result.output
    cells = metric_cells(result.stdout)
    assert cells and all(re.fullmatch(r"\d{1,3}\.\d\d", c) for c in cells), cells
    assert "100.00" in cells


# --------------------------------------------------------------------------- citation


def test_generated_leaderboards_cite_the_protocol_spec_that_exists(tmp_path):
    out = tmp_path / "board"
    assert run_board("--out", out, "-f", "md", "-f", "html").exit_code == 0
    for page in [*out.glob("*.md"), *out.glob("*.html"), *(REPO / "leaderboards").glob("*.md")]:
        text = page.read_text()
        assert "PROTOCOLS.md" not in text, page
        assert "docs/protocols.md" in text, page
    assert (REPO / "docs" / "protocols.md").is_file()


# --------------------------------------------------------------------------- protocol version


def test_a_dump_and_its_score_json_share_one_row(tmp_path):
    """The leaderboard files a dump under the protocol version `score -f json` records, so
    the same model from both inputs is one row, not two."""
    scored = tmp_path / "scored.json"
    result = CliRunner().invoke(
        cli, ["score", str(REGDB), "-p", "mix-id", "-f", "json", "-o", str(scored)]
    )
    assert result.exit_code == 0, result.output
    version = json.loads(scored.read_text())["protocol_version"]
    out = tmp_path / "board"
    result = run_board(REGDB, scored, "-p", "mix-id", "--out", out, "--no-reported")
    assert result.exit_code == 0, result.output
    rows = [line for line in (out / "regdb.csv").read_text().splitlines()[1:] if line]
    assert len(rows) == 1, rows
    assert f",{version}," in rows[0]
